"""Plain data at the dataset boundary: what to load (:class:`DataConfig`) and what comes back.

Torch-free: :class:`DataSplits` only names ``torch.utils.data.TensorDataset`` in annotations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

import numpy as np

from hwnas.errors import UserError

if TYPE_CHECKING:
    from torch.utils.data import TensorDataset


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load, from where, in which geometry, split how.

    Attributes:
        name: the dataset's registry name (CLI word): ``fashion-mnist``, ``mnist``, ``digits``,
            ``cifar10``, ``cifar100``, ``mnist-idx`` (alias ``idx``), ``image-folder``.
        root: a folder holding the dataset files; ``None`` lets the loader look in its default
            places (see each loader).
        resolution: output height = width, in pixels. Smaller sources are upsampled by the
            largest whole factor (nearest) and centre zero-padded; larger ones resized down.
        channels: 1 or 3. Grey repeats to 3 channels; RGB goes to 1 by ITU-R 601 luma.
        seed: seeds every random choice (val carve, subsets, test carve where there is no
            official test split).
        train_limit: use at most this many images of the official train split (a class-
            stratified draw); the val split is carved from these. ``None``: all.
        val_fraction: fraction of the used train images held out as the val split.
        test_limit: use at most this many test images (class-stratified draw). ``None``: all.
        test_fraction: fraction carved out as the test split, only for datasets without an
            official test split (digits, an image folder without ``train/``/``test/``).
    """

    name: str = "fashion-mnist"
    root: Optional[Union[str, Path]] = None
    resolution: int = 32
    channels: int = 3
    seed: int = 0
    train_limit: Optional[int] = None
    val_fraction: float = 0.1
    test_limit: Optional[int] = None
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.root is not None:
            object.__setattr__(self, "root", Path(self.root).expanduser())
        if not 4 <= self.resolution <= 1024:
            raise UserError(f"resolution must be 4..1024 pixels, got {self.resolution}")
        if self.channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, got {self.channels}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for field in ("train_limit", "test_limit"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise UserError(f"{field} must be a positive number of images, got {value}")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able form (``root`` as a string)."""
        out = asdict(self)
        out["root"] = None if self.root is None else str(self.root)
        return out


@dataclass(frozen=True)
class DataSplits:
    """A dataset ready to train on.

    Attributes:
        train: ``TensorDataset(images, labels)``; images float32 (N, C, H, W), normalised per
            channel with the train split's mean and std (after scaling pixels to [0, 1]);
            labels int64 (N,) in ``0..num_classes-1``. Grey images repeated to 3 channels are a
            stride-0 view (``expand``): do not modify them in place.
        val: the same, carved from the official train split.
        test: the same, the official test split where one exists.
        num_classes: number of classes.
        input_shape: (C, H, W) of one image.
        info: JSON-able provenance: source, licence, file sha256s, counts, preprocessing.
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: Tuple[int, int, int]
    info: Dict[str, Any]


@dataclass(frozen=True)
class RawData:
    """A dataset as read from disk, before splitting and preprocessing (internal).

    Attributes:
        train_images: (N, H, W, C) uint8, or an object that returns such an array when indexed
            with an index array (an image folder decodes only the files it is asked for).
        train_labels: (N,) int64.
        test_images: as ``train_images`` for the official test split, or ``None``.
        test_labels: (M,) int64, or ``None``.
        class_names: one name per class, in label order.
        pixel_max: the value of a white pixel (255; 16 for sklearn digits).
        info: provenance (source, licence, files with sha256, notes).
    """

    train_images: Any
    train_labels: np.ndarray
    test_images: Any
    test_labels: Optional[np.ndarray]
    class_names: Tuple[str, ...]
    pixel_max: float
    info: Dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
