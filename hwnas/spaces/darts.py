"""The DARTS cell space (Liu, Simonyan, Yang, "DARTS", ICLR 2019), registered as ``darts``.

An architecture is a genotype (:mod:`hwnas.spaces.darts_genotype`): two cells, 4 nodes each, two
(source, op) edges per node. The network it describes is the DARTS search network's
macro-architecture at full width: C = 16, 8 cells (reductions at 2 and 5), at the space's
resolution (:mod:`hwnas.spaces.darts_geometry`), which is also the geometry the ``darts`` LUT of
``hwnas build-lut --space darts`` times. The supernet runs at ``search_width`` (C = 16 x width).

* Relaxation ``"cell"``: architecture parameters (28, 8), one row per edge of the normal cell
  (rows 0..13) and the reduction cell (14..27); the supernet mixes the ops of every edge with
  weights the method gives (softmax(alpha) for DARTS and DCA-NAS). The derivation is DARTS' rule
  (:func:`~hwnas.spaces.darts_genotype.derive_genotype`), not an argmax per row: methods of
  the ``"choice"`` relaxation (one op per row) do not apply.
* Cost tables (:class:`CellTable`, an additive (28, 8) table): ``values[e, o]`` is the cost of op
  ``o`` on edge ``e`` summed over every cell of that type; ``none`` and identity skips cost 0;
  stem, preprocessing, pooling and classifier are the constant. A genotype's cost is the sum over
  its 16 kept edges, so a one-hot of :meth:`arch_vector` gives exactly the discrete cost, and
  softmax(alpha) gives DCA-NAS' Eq. 3 expected cost. FLOPs (MACs) and params are analytic;
  latency sums the entries of a ``darts`` LUT built on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hwnas.blocks.specs import BlockSpec
from hwnas.costs.tables import ChoiceTable
from hwnas.errors import UserError
from hwnas.spaces import darts_genotype as gt
from hwnas.spaces import darts_geometry as dg
from hwnas.spaces.base import METRICS, SPACES, Space, SpaceConfig

FULL_CHANNELS = 16
CELLS = 8


@dataclass(frozen=True, eq=False)
class CellTable(ChoiceTable):
    """A (28, 8) edge table whose bounds range over genotypes (two non-``none`` edges per node)."""

    def _extreme(self, pick: Callable[[np.ndarray], np.ndarray], reverse: bool) -> float:
        total = self.constant
        for c in range(len(gt.CELL_TYPES)):
            for n in range(dg.STEPS):
                best = pick(self.values[gt.node_rows(c, n), 1:])
                total += float(
                    np.sort(best)[::-1][:2].sum() if reverse else np.sort(best)[:2].sum()
                )
        return total

    def minimum(self) -> float:
        return self._extreme(lambda v: v.min(axis=1), reverse=False)

    def maximum(self) -> float:
        return self._extreme(lambda v: v.max(axis=1), reverse=True)


def edge_table(
    price: Callable[[BlockSpec], float], c: int, layers: int, resolution: int, num_classes: int
) -> CellTable:
    """The additive edge table of ``price`` (see the module docstring)."""
    values = np.zeros((gt.NUM_EDGES, gt.NUM_OPS))
    for cell in dg.cells(c, layers, resolution):
        offset = gt.EDGES_PER_CELL if cell.reduction else 0
        for e, edge in enumerate(dg.edges(cell)):
            for o, op in enumerate(dg.PRIMITIVES):
                spec = dg.edge_op_spec(cell, edge, op)
                values[offset + e, o] += 0.0 if spec is None else price(spec)
    constant = sum(price(s) for s in dg.fixed_specs(c, layers, resolution, num_classes))
    return CellTable(values, constant)


@SPACES.register("darts")
class DartsSpace(Space):
    """DARTS cells (see the module docstring).

    Args:
        config: resolution, classes and the supernet's width.
        cells: cells of the network (>= 3; 8 as in DARTS). Tests use 3.
        channels: C of the full-width network (even; 16 as in DARTS).
    """

    name = "darts"
    relaxation = "cell"
    lut_space = ""  # not a slot space of hwnas.lut: latency is priced from LUT entries directly
    latency_luts = ("darts",)

    def __init__(self, config: SpaceConfig, cells: int = CELLS, channels: int = FULL_CHANNELS):
        super().__init__(config)
        if cells < 3 or channels < 2 or channels % 2:
            raise UserError(f"darts needs >= 3 cells and an even C >= 2; got {cells}, {channels}")
        self.cells, self.channels = cells, channels
        self.search_channels = self._channels(config.search_width)

    def _channels(self, width: float) -> int:
        c = self.channels * width
        if not float(c).is_integer() or int(c) < 2 or int(c) % 2:
            raise UserError(f"darts width {width} gives C = {c}; it must be an even integer >= 2")
        return int(c)

    # -- encodings -------------------------------------------------------------------------------
    def parse_arch(self, text: str) -> gt.Genotype:
        try:
            return gt.parse_genotype(text)
        except ValueError as exc:
            raise UserError(f"bad darts genotype {text!r}: {exc}") from None

    def format_arch(self, arch: gt.Genotype) -> str:
        return gt.format_genotype(arch)

    def arch_to_json(self, arch: gt.Genotype) -> dict:
        return gt.genotype_to_json(arch)

    def arch_from_json(self, value: Any) -> gt.Genotype:
        try:
            return gt.genotype_from_json(value)
        except ValueError as exc:
            raise UserError(f"malformed darts genotype: {exc}") from None

    # -- relaxation and costs ----------------------------------------------------------------------
    @property
    def alpha_shape(self) -> tuple[int, int]:
        return (gt.NUM_EDGES, gt.NUM_OPS)

    def arch_vector(self, arch: gt.Genotype) -> np.ndarray:
        return gt.genotype_vector(arch)

    def arch_from_vector(self, vector: np.ndarray) -> gt.Genotype:
        return gt.genotype_from_vector(vector)

    def derive(self, weights: np.ndarray) -> gt.Genotype:
        """DARTS' derivation rule on edge weights (28, 8) (e.g. softmax(alpha))."""
        return gt.derive_genotype(weights)

    def cost_table(self, metric: str, latency_predictor: Any = None) -> CellTable:
        c, res = self.config, self.config.resolution
        if metric == "latency_ms":
            price = _lut_pricer(latency_predictor, res, c.num_classes)
        elif metric == "flops":
            price = lambda s: s.flops()  # noqa: E731
        elif metric == "params":
            price = lambda s: s.params()  # noqa: E731
        else:
            raise UserError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        return edge_table(price, self.channels, self.cells, res, c.num_classes)

    def sample_arch(self, rng: np.random.Generator) -> gt.Genotype:
        return gt.sample_genotype(rng)

    # -- networks ------------------------------------------------------------------------------
    def build_supernet(
        self, seed: int = 0, weight_sharing: bool = False, bottleneck: int = 1
    ) -> Any:
        """The search network at ``search_width`` (``forward(x, weights (28, 8))``).

        Args:
            seed: weight init.
            weight_sharing: DCA-NAS' shared ops per source node (Eq. 5).
            bottleneck: channel bottleneck factor b (1: none); must divide the search C.
        """
        from hwnas.spaces.darts_nets import DartsSupernet, init_search_weights_

        if bottleneck < 1 or self.search_channels % bottleneck:
            raise UserError(
                f"bottleneck {bottleneck} must divide the supernet's C = {self.search_channels}"
            )
        net = DartsSupernet(
            self.search_channels, self.cells, self.config.num_classes, weight_sharing, bottleneck
        )
        return init_search_weights_(net, seed).train()

    def build_net(self, arch: gt.Genotype, width: float = 1.0, seed: int = 0) -> Any:
        from hwnas.spaces.darts_nets import DartsNet

        gt.check_genotype(arch)
        c = self.config
        return DartsNet(arch, self._channels(width), self.cells, c.resolution, c.num_classes, seed)

    def describe(self) -> dict:
        return {**super().describe(), "cells": self.cells, "channels": self.channels}


def _lut_pricer(source: Any, resolution: int, num_classes: int) -> Callable[[BlockSpec], float]:
    """Block latency (ms) from a ``darts`` LUT (a LUT, or anything holding one in ``.lut``)."""
    from hwnas.lut.calibration import Pricer

    lut = getattr(source, "lut", source)
    if lut is None or not hasattr(lut, "entries"):
        raise UserError(
            "darts latency needs a darts LUT measured on the device "
            "(hwnas build-lut --device D --space darts)"
        )
    if lut.space not in (None, "darts") or (lut.resolution or 32) != resolution:
        raise UserError(
            f"LUT {lut.device_name!r} is for space {lut.space!r} at {lut.resolution} px, "
            f"not darts at {resolution} px"
        )
    if (lut.num_classes or num_classes) != num_classes:
        raise UserError(
            f"the darts LUT has a {lut.num_classes}-class classifier, not {num_classes}"
        )
    pricer = Pricer.of(lut)

    def price(spec: BlockSpec) -> float:
        term = pricer.term(spec)
        return 0.0 if term is None else term[1]

    return price
