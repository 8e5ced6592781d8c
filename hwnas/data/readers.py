"""Readers for the formats users keep datasets in: idx folders, CIFAR python batches, image folders.

Each returns a :class:`~hwnas.data.config.RawData` (uint8 (N, H, W, C) images, int64 labels,
provenance with the sha256 of every file read).

* idx folder: MNIST/Fashion-MNIST/KMNIST/EMNIST layout, see :func:`hwnas.data.idx.find_idx_files`.
  (EMNIST stores images transposed; they are read as stored.)
* CIFAR-10 / CIFAR-100 "python version" (Krizhevsky, 2009, "Learning Multiple Layers of Features
  from Tiny Images"): ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` or
  ``cifar-100-python/{train,test,meta}``; each a pickled dict with ``b"data"`` (N, 3072) uint8
  (1024 red, 1024 green, 1024 blue, row-major) and ``b"labels"`` (CIFAR-100: ``b"fine_labels"``).
  Read with :func:`hwnas.data.safe_pickle.safe_load`, never plain ``pickle``.
* image folder: one sub-folder per class (sorted names = labels 0, 1, ...), or ``train/`` and
  ``test/`` each holding such class folders. Images are decoded with Pillow only when a split
  needs them: centre-cropped to a square, resized (bilinear) to the resolution.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hwnas.data.config import RawData
from hwnas.data.idx import find_idx_files, read_idx
from hwnas.data.safe_pickle import safe_load
from hwnas.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
log = logging.getLogger(__name__)

UNKNOWN_LICENCE = "user-provided files; licence as the user obtained them (not checked)"

#: classes -> (sub-folder, train files glob, test file, meta file, label key, class-names key)
_CIFAR = {
    10: (
        "cifar-10-batches-py",
        "data_batch_[1-5]",
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
    ),
    100: ("cifar-100-python", "train", "test", "meta", "fine_labels", "fine_label_names"),
}


def read_idx_folder(root: Path, need_test: bool = True) -> RawData:
    """Read a folder of idx files (images idx3 uint8 (N, H, W), labels idx1)."""
    paths = find_idx_files(root, need_test=need_test)
    arrays: Dict[str, np.ndarray] = {}
    files: Dict[str, str] = {}
    for role, path in sorted(paths.items()):
        arrays[role], files[path.name] = read_idx(path)
    for split in ("train", "test"):
        if f"{split}_images" not in arrays:
            continue
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1:
            raise UserError(f"{root}: {split} images must be uint8 (N, H, W) and labels (N,)")
        if len(images) != len(labels):
            raise UserError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
        if labels.min() < 0:
            raise UserError(f"{root}: negative {split} labels")
        arrays[f"{split}_images"] = images[..., None]
        arrays[f"{split}_labels"] = labels.astype(np.int64)
    test_labels = arrays.get("test_labels")
    top = max(arrays["train_labels"].max(), -1 if test_labels is None else test_labels.max())
    return RawData(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays.get("test_images"),
        test_labels=test_labels,
        class_names=tuple(str(i) for i in range(int(top) + 1)),
        pixel_max=255.0,
        info={"source": str(Path(root).resolve()), "format": "idx", "files_sha256": files},
    )


def _field(batch: Any, key: str, path: Path) -> Any:
    if not isinstance(batch, dict):
        raise UserError(f"{path} does not hold a dict (not a CIFAR python batch)")
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise UserError(f"{path} has no {key!r} entry (not a CIFAR python batch)")


def _read_batch(path: Path, label_key: str) -> Tuple[np.ndarray, np.ndarray, str]:
    batch = safe_load(path)
    data = _field(batch, "data", path)
    labels = np.asarray(_field(batch, label_key, path))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise UserError(f"{path}: 'data' must be a uint8 (N, 3072) array")
    if data.shape[1] != 3072 or labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise UserError(f"{path}: want data (N, 3072) and N integer labels, got {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64), _sha256(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cifar_dir(root: Path, marker: str, sub: str) -> Path:
    for candidate in (root, root / sub):
        if (candidate / marker).is_file():
            return candidate
    raise UserError(f"no CIFAR python files in {root} (looked for {marker} there and in {sub}/)")


def read_cifar(root: Path, classes: int) -> RawData:
    """Read CIFAR-10 (``classes=10``) or CIFAR-100 (``classes=100``, fine labels) python batches.

    Args:
        root: the extracted folder (``cifar-10-batches-py``/``cifar-100-python``) or its parent.
        classes: 10 or 100.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    if classes not in _CIFAR:
        raise ValueError(f"CIFAR has 10 or 100 classes, not {classes}")
    sub, train_glob, test_file, meta_file, label_key, names_key = _CIFAR[classes]
    folder = _cifar_dir(root, test_file, sub)
    train_files = sorted(folder.glob(train_glob))
    if not train_files:
        raise UserError(f"{folder} has no CIFAR-{classes} training batches ({train_glob})")
    if classes == 10 and len(train_files) < 5:
        log.warning("%s: only %d of the 5 CIFAR-10 training batches", folder, len(train_files))
    files: Dict[str, str] = {}
    train = [_read_batch(p, label_key) for p in train_files]
    test = _read_batch(folder / test_file, label_key)
    for path, part in zip([*train_files, folder / test_file], [*train, test]):
        files[path.name] = part[2]
    names = _cifar_names(folder / meta_file, names_key, classes, files)
    train_labels = np.concatenate([t[1] for t in train])
    for labels in (train_labels, test[1]):
        if labels.min() < 0 or labels.max() >= classes:
            raise UserError(f"{folder}: labels outside 0..{classes - 1}")
    return RawData(
        train_images=np.concatenate([t[0] for t in train]),
        train_labels=train_labels,
        test_images=test[0],
        test_labels=test[1],
        class_names=names,
        pixel_max=255.0,
        info={
            "source": str(folder.resolve()),
            "format": f"cifar-{classes} python batches (restricted unpickler)",
            "files_sha256": files,
            "licence": UNKNOWN_LICENCE + "; CIFAR: Krizhevsky (2009), no licence stated",
        },
    )


def _cifar_names(path: Path, key: str, classes: int, files: Dict[str, str]) -> Tuple[str, ...]:
    if not path.is_file():
        return tuple(str(i) for i in range(classes))
    names = _field(safe_load(path), key, path)
    files[path.name] = _sha256(path)
    if not isinstance(names, list) or len(names) != classes:
        raise UserError(f"{path}: {key!r} must list {classes} class names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


class ImageFiles:
    """Image files decoded on demand: ``files[index_array]`` -> (n, res, res, C) uint8."""

    def __init__(self, paths: Sequence[Path], resolution: int, channels: int) -> None:
        self.paths = list(paths)
        self.resolution = resolution
        self.mode = "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        out = np.empty((len(index), self.resolution, self.resolution, len(self.mode)), np.uint8)
        for row, i in enumerate(np.asarray(index).reshape(-1)):
            try:
                with Image.open(self.paths[i]) as image:
                    square = _centre_square(image.convert(self.mode))
                    size = (self.resolution, self.resolution)
                    pixels = np.asarray(square.resize(size, Image.BILINEAR))
            except (OSError, UnidentifiedImageError) as exc:
                raise UserError(f"cannot decode image {self.paths[i]}: {exc}") from None
            out[row] = pixels.reshape(out.shape[1:])
        return out


def _centre_square(image: Any) -> Any:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _list_classes(
    folder: Path, classes: Optional[List[str]]
) -> Tuple[List[str], List[Path], np.ndarray]:
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is not None and found != classes:
        raise UserError(f"{folder} has classes {found}, train/ has {classes}")
    paths: List[Path] = []
    labels: List[int] = []
    for label, name in enumerate(found):
        images = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += images
        labels += [label] * len(images)
    if len(found) < 2 or not paths:
        raise UserError(f"{folder} needs one sub-folder of images per class (2 or more classes)")
    return found, paths, np.asarray(labels, dtype=np.int64)


def read_image_folder(root: Path, resolution: int, channels: int) -> RawData:
    """Index an image folder (see the module docstring); images are decoded lazily."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    names, train_paths, train_labels = _list_classes(root / "train" if has_splits else root, None)
    test_files: Optional[ImageFiles] = None
    test_labels: Optional[np.ndarray] = None
    all_paths = list(train_paths)
    if has_splits:
        _, test_paths, test_labels = _list_classes(root / "test", names)
        test_files = ImageFiles(test_paths, resolution, channels)
        all_paths += test_paths
    digest = hashlib.sha256()
    for path in all_paths:
        digest.update(f"{path.relative_to(root).as_posix()}\0{_sha256(path)}\n".encode())
    return RawData(
        train_images=ImageFiles(train_paths, resolution, channels),
        train_labels=train_labels,
        test_images=test_files,
        test_labels=test_labels,
        class_names=tuple(names),
        pixel_max=255.0,
        info={
            "source": str(root.resolve()),
            "format": "image folder (Pillow; centre square crop, bilinear resize)",
            "files_sha256": {
                "combined": digest.hexdigest(),
                "rule": "sha256 over 'relative/path\\0<file sha256>\\n' lines, sorted paths",
                "count": len(all_paths),
            },
            "licence": UNKNOWN_LICENCE,
        },
    )
