"""Regenerate the Fashion-MNIST subset shipped in ``hwnas/data/shipped/`` from the full set.

Rule: with ``numpy.random.default_rng(0)``, for class 0, 1, ..., 9 in turn draw 1,000 distinct
rows of that class from the official train split (``rng.choice(rows, 1000, replace=False)``),
then likewise 200 rows per class from the official test split; keep the drawn rows in their
original order. The images and labels are written as gzip idx files with the original names
(gzip level 9, mtime 0, no file name: byte-for-byte reproducible with the same zlib), and
``MANIFEST.json`` records the originals' sha256, the rule, the row numbers drawn and the sha256
of the written files, compressed and decompressed (only the latter is independent of zlib).

Usage (needs the Debian package ``dataset-fashion-mnist`` or a folder of the original files)::

    python -m hwnas.data.make_shipped_subset [--source DIR] [--out DIR]
    python -m hwnas.data.make_shipped_subset --check   # regenerate in a temp dir and compare
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from hwnas.data.idx import read_idx, write_idx
from hwnas.data.sources import DEBIAN_FASHION_MNIST, KNOWN_SHA256, shipped_dir
from hwnas.errors import UserError

SEED = 0
TRAIN_PER_CLASS = 1000
TEST_PER_CLASS = 200
SPLITS = {"train": TRAIN_PER_CLASS, "t10k": TEST_PER_CLASS}


def draw_rows(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of ``per_class`` images of each class, drawn without replacement, sorted."""
    chosen = [
        rng.choice(np.flatnonzero(labels == label), per_class, replace=False)
        for label in range(int(labels.max()) + 1)
    ]
    return np.sort(np.concatenate(chosen))


def make_subset(source: Path, out: Path) -> Dict[str, Any]:
    """Write the subset of the Fashion-MNIST files in ``source`` to ``out``; return the manifest."""
    known = KNOWN_SHA256["fashion-mnist"]
    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    manifest: Dict[str, Any] = {
        "schema_version": 1,
        "kind": "hwnas-shipped-dataset",
        "dataset": "fashion-mnist",
        "drawn_from": "Fashion-MNIST (Zalando SE), canonical files as in Debian dataset-fashion-mnist",
        "licence": "MIT, see LICENSE-fashion-mnist.txt",
        "rule": (
            f"numpy default_rng({SEED}); per class 0..9 in order, rng.choice(rows of that class, "
            f"n, replace=False), train n={TRAIN_PER_CLASS} then t10k n={TEST_PER_CLASS}; "
            "rows kept in original order; gzip level 9, mtime 0"
        ),
        "seed": SEED,
        "originals_sha256": {},
        "files_sha256": {},
        "content_sha256": {},
        "counts": {},
        "rows": {},
    }
    for split, per_class in SPLITS.items():
        names = {kind: f"{split}-{kind}-ubyte.gz" for kind in ("images-idx3", "labels-idx1")}
        arrays = {}
        for kind, name in names.items():
            arrays[kind], digest = read_idx(source / name)
            if digest != known[name]:
                raise UserError(f"{source / name} is not the canonical Fashion-MNIST file")
            manifest["originals_sha256"][name] = digest
        rows = draw_rows(arrays["labels-idx1"], per_class, rng)
        for kind, name in names.items():
            manifest["files_sha256"][name] = write_idx(out / name, arrays[kind][rows])
            content = gzip.decompress((out / name).read_bytes())
            manifest["content_sha256"][name] = hashlib.sha256(content).hexdigest()
        manifest["counts"][split] = len(rows)
        manifest["rows"][split] = rows.tolist()
    (out / "MANIFEST.json").write_text(_dump(manifest))
    return manifest


def _dump(manifest: Dict[str, Any]) -> str:
    """Indented JSON with each list of row numbers on one line (keeps the file small)."""
    head = {key: value for key, value in manifest.items() if key != "rows"}
    rows = ",\n".join(
        f"  {json.dumps(split)}: {json.dumps(r, separators=(',', ':'))}"
        for split, r in manifest["rows"].items()
    )
    return json.dumps(head, indent=1)[:-2] + ',\n "rows": {\n' + rows + "\n }\n}\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: regenerate (or ``--check``) the shipped subset."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEBIAN_FASHION_MNIST)
    parser.add_argument("--out", type=Path, default=shipped_dir())
    parser.add_argument("--check", action="store_true", help="compare with the shipped files")
    args = parser.parse_args(argv)
    if not args.check:
        manifest = make_subset(args.source, args.out)
        print(json.dumps(manifest["files_sha256"], indent=1))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = make_subset(args.source, Path(tmp))
    shipped = json.loads((args.out / "MANIFEST.json").read_text())
    same = all(fresh[key] == shipped[key] for key in ("rows", "content_sha256"))
    same_bytes = fresh["files_sha256"] == shipped["files_sha256"]
    print(
        f"content {'identical' if same else 'DIFFERENT'}; gzip bytes "
        f"{'identical' if same_bytes else 'differ (another zlib?)'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
