"""The search-space interface and the ``SPACES`` registry (names are CLI words).

A space is everything a search method needs to know about *what* it searches, and nothing about
*how*: the text/JSON encodings of a discrete architecture, the shape of the architecture
parameters of its relaxation, additive cost tables per metric (``hwnas.costs``), a trainable
supernet, and the standalone network of a discrete architecture.

Relaxations (``Space.relaxation``):

* ``"choice"``: one op per layer (FBNet). Architecture parameters have shape (L, K); the supernet
  mixes the K ops of a layer with weights (L, K) it is given (gates, softmax probabilities or a
  one-hot path: the method decides). Cost tables are :class:`~hwnas.costs.tables.ChoiceTable`.
* ``"channel"``: one gate per middle channel (FGA-NAS / AtomNAS). Architecture parameters have
  shape (N,); the supernet multiplies channel i by ``weights[i]``. Cost tables are
  :class:`~hwnas.costs.tables.ChannelTable`.
* ``"edge"``: one scale factor per edge of a completely connected block (DSO-NAS, ``dso``).
  Architecture parameters have shape (N,); the supernet multiplies edge i's output by
  ``weights[i]``; an architecture is the set of surviving edges. Cost tables are
  :class:`~hwnas.costs.tables.ChannelTable` with one item per edge, so repair and fill treat
  edges like channels.
* ``"cell"``: DARTS cells (``hwnas.spaces.darts``).

Importing this module does not import torch; ``build_supernet``/``build_net`` do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np

from hwnas.errors import UserError
from hwnas.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from hwnas.costs.tables import CostTable

Arch = Any  # a space's discrete architecture: a hashable tuple (see each space)
METRICS = ("latency_ms", "flops", "params")


@dataclass(frozen=True)
class SpaceConfig:
    """Geometry of a space instance.

    Attributes:
        resolution: input height = width in pixels (the LUT's geometry: 32 for the reference
            LUTs); costs are computed for this resolution.
        num_classes: classifier outputs (FLOPs/params count this classifier).
        search_width: width multiplier of the supernet used as a search proxy (1, 0.5, 0.25,
            0.125 where the space allows it). Costs are always those of the full-width network.
    """

    resolution: int = 32
    num_classes: int = 10
    search_width: float = 1.0

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 1024:
            raise UserError(f"resolution must be 8..1024 pixels, got {self.resolution}")
        if self.num_classes < 2:
            raise UserError(f"num_classes must be at least 2, got {self.num_classes}")
        if not 0 < self.search_width <= 1:
            raise UserError(f"search width must be in (0, 1], got {self.search_width}")

    def to_dict(self) -> dict:
        return asdict(self)


class Space(ABC):
    """One search space instance (geometry fixed by a :class:`SpaceConfig`)."""

    name: ClassVar[str] = ""
    relaxation: ClassVar[str] = ""  # "choice", "channel", "edge" or "cell"
    lut_space: ClassVar[str] = ""  # the hwnas.lut space whose LUT entries price its latency
    latency_luts: ClassVar[tuple[str, ...]] = ()  # LUT spaces to look for, in order (default:
    # lut_space); the space's cost_table("latency_ms", source) gets a predictor or a LUT

    def __init__(self, config: SpaceConfig) -> None:
        self.config = config

    # -- encodings -------------------------------------------------------------------------------
    @abstractmethod
    def parse_arch(self, text: str) -> Arch:
        """Text encoding -> arch; raises :class:`UserError` saying what is wrong."""

    @abstractmethod
    def format_arch(self, arch: Arch) -> str:
        """Arch -> text encoding (``parse_arch(format_arch(a)) == a``)."""

    @abstractmethod
    def arch_to_json(self, arch: Arch) -> Any:
        """Arch -> JSON-ready value (lists and ints)."""

    @abstractmethod
    def arch_from_json(self, value: Any) -> Arch:
        """Inverse of :meth:`arch_to_json`; raises :class:`UserError` on a malformed value."""

    # -- relaxation and costs ----------------------------------------------------------------------
    @property
    @abstractmethod
    def alpha_shape(self) -> tuple[int, ...]:
        """Shape of the architecture parameters: (L, K) for "choice", (N,) for "channel"/"edge"."""

    @abstractmethod
    def arch_vector(self, arch: Arch) -> np.ndarray:
        """The arch in the index space of its cost tables: op indices (L,) or counts (B, K)."""

    @abstractmethod
    def arch_from_vector(self, vector: np.ndarray) -> Arch:
        """Inverse of :meth:`arch_vector`."""

    def position_name(self, index: int) -> str:
        """Readable name of flat position ``index`` of :meth:`arch_vector` (repair/fill reports)."""
        return f"layer {index}"

    @abstractmethod
    def cost_table(self, metric: str, latency_predictor: Any = None) -> CostTable:
        """Additive table of ``metric`` (one of :data:`METRICS`) for full-width networks.

        Args:
            metric: ``latency_ms``, ``flops`` (MACs) or ``params``.
            latency_predictor: for ``latency_ms``: the latency source
                :func:`hwnas.costs.latency.load_latency_source` returns for this space (a LUT
                predictor of :attr:`lut_space`, or a LUT).
        """

    @abstractmethod
    def sample_arch(self, rng: np.random.Generator) -> Arch:
        """A random architecture (uniform over the encoding's choices)."""

    # -- networks ------------------------------------------------------------------------------
    @abstractmethod
    def build_supernet(self, seed: int = 0) -> nn.Module:
        """Training-mode supernet at ``config.search_width``; ``forward(x, weights)`` -> logits.

        ``x``: (B, 3, H, W) float32; ``weights``: a tensor of shape :attr:`alpha_shape`.
        """

    @abstractmethod
    def build_net(self, arch: Arch, width: float = 1.0, seed: int = 0) -> nn.Module:
        """Training-mode standalone network of ``arch``: (B, 3, H, W) -> (B, num_classes)."""

    # -- helpers -------------------------------------------------------------------------------
    def describe(self) -> dict:
        return {"space": self.name, "relaxation": self.relaxation, **self.config.to_dict()}


SPACES: Registry[type[Space]] = Registry(
    "space",
    builtin={
        "darts": "hwnas.spaces.darts",
        "dso": "hwnas.spaces.dso",
        "fbnet": "hwnas.spaces.fbnet",
        "ib-channel": "hwnas.spaces.ib_channel",
    },
)
"""Each space's module registers its class (``@SPACES.register``); this module never imports them."""


def create_space(name: str, config: Optional[SpaceConfig] = None) -> Space:
    """Instantiate the space registered as ``name`` (unknown names list the known ones)."""
    return space_class(name)(config or SpaceConfig())


def space_class(name: str) -> type[Space]:
    """The class registered as ``name`` (for class-level facts such as ``relaxation``)."""
    return SPACES.get(name)


def list_spaces() -> list[str]:
    return SPACES.names()
