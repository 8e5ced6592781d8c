"""Writers of tiny dataset files in the exact on-disk formats users have (for tests/data).

They are written independently of ``hwnas.data`` (struct/gzip/pickle/Pillow directly), so the
readers are tested against the formats, not against their own writers.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from hwnas.data.sources import DEBIAN_FASHION_MNIST, shipped_dir

IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of ``array`` (big-endian header and data), from the format description."""
    header = struct.pack(">BBBB", 0, 0, IDX_TYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx_file(path: Path, array: np.ndarray) -> None:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def write_idx_set(root: Path, rng: np.random.Generator, n_train: int, n_test: int, classes: int,
                  prefix: str = "", test: bool = True) -> None:  # fmt: skip
    """MNIST-layout files: ``{prefix}train-images-idx3-ubyte.gz`` etc. (28x28 uint8)."""
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": n_train, "t10k": n_test} if test else {"train": n_train}
    for split, n in splits.items():
        labels = (np.arange(n) % classes).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx_file(root / f"{prefix}{split}-images-idx3-ubyte.gz", images)
        write_idx_file(root / f"{prefix}{split}-labels-idx1-ubyte.gz", labels)


class Py2Pickler(pickle._Pickler):  # type: ignore[misc,name-defined]
    """Writes what Python 2's cPickle protocol 2 wrote for the CIFAR batches: every string as a
    py2 ``str`` (SHORT_BINSTRING/BINSTRING) and numpy's module as ``numpy.core.multiarray``."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: Any) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj: Any, name: Any = None) -> None:
        module = {"numpy._core.multiarray": "numpy.core.multiarray"}.get(
            obj.__module__, obj.__module__
        )
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def write_pickle(path: Path, obj: Any, style: str) -> None:
    """``style``: ``"py2"`` (as the real CIFAR files) or ``"py3"`` (``pickle`` protocol 2)."""
    with open(path, "wb") as stream:
        if style == "py2":
            Py2Pickler(stream, protocol=2).dump(obj)
        else:
            pickle.dump(obj, stream, protocol=2)


def cifar_batch(rng: np.random.Generator, n: int, classes: int, label_key: bytes) -> dict:
    """One batch dict laid out like the real ones (keys as bytes, data (n, 3072) uint8)."""
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        label_key: [int(v) for v in np.arange(n) % classes],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [v % 20 for v in batch[label_key]]
    return batch


def write_cifar10(root: Path, rng: np.random.Generator, per_batch: int = 4, style: str = "py2",
                  batches: int = 5) -> Path:  # fmt: skip
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, batches + 1):
        write_pickle(folder / f"data_batch_{i}", cifar_batch(rng, per_batch, 10, b"labels"), style)
    write_pickle(folder / "test_batch", cifar_batch(rng, 10, 10, b"labels"), style)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]  # fmt: skip
    meta = {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072}
    write_pickle(folder / "batches.meta", meta, style)
    return folder


def write_cifar100(root: Path, rng: np.random.Generator, style: str = "py3") -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    write_pickle(folder / "train", cifar_batch(rng, 200, 100, b"fine_labels"), style)
    write_pickle(folder / "test", cifar_batch(rng, 100, 100, b"fine_labels"), style)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    write_pickle(folder / "meta", meta, style)
    return folder


def write_image_folder(root: Path, rng: np.random.Generator, per_class: int = 6,
                       classes: tuple = ("cat", "dog", "emu")) -> Path:  # fmt: skip
    """One sub-folder per class of small PNG/JPEG files of different sizes."""
    from PIL import Image

    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (20 + 3 * i, 16 + 2 * label)
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            suffix = ".jpg" if i % 3 == 0 else ".png"
            Image.fromarray(pixels).save(root / name / f"{i:03d}{suffix}")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def writers() -> SimpleNamespace:
    """The file writers above, for test modules (fixtures work in any pytest import mode)."""
    return SimpleNamespace(
        idx_bytes=idx_bytes,
        write_idx_file=write_idx_file,
        write_idx_set=write_idx_set,
        Py2Pickler=Py2Pickler,
        write_pickle=write_pickle,
        cifar_batch=cifar_batch,
        write_cifar10=write_cifar10,
        write_cifar100=write_cifar100,
        write_image_folder=write_image_folder,
    )


@pytest.fixture
def debian_fashion() -> Path:
    """The Debian Fashion-MNIST folder; the test is skipped, saying why, when it is absent."""
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Debian package dataset-fashion-mnist not installed ({DEBIAN_FASHION_MNIST} absent)"
        )
    return DEBIAN_FASHION_MNIST


@pytest.fixture
def shipped() -> Path:
    return shipped_dir()
