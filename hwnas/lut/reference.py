"""Reference LUTs of real devices, derived from HW-NAS-Bench's end-to-end FBNet latencies.

HW-NAS-Bench (Li et al., ICLR 2021, MIT) gives the latency of FBNet architectures on a
Raspberry Pi 4 and a Pixel 3; HELP (Lee et al., NeurIPS 2021, MIT) republished 5,000 of them
per device (``raspi4.csv``, ``pixel3.csv``). Those numbers are exact sums of a per-block table,
so least squares recovers the table: every block-spec key is one unknown shared by all positions
where that spec occurs, plus one intercept. What the data cannot tell apart, and the convention
chosen for it (stored in each file):

* each position contributes one constant: only differences between the ops of a position are
  identified. Where the position's ``skip`` is an identity, the identity is taken to cost 0 ms,
  which makes the other ops' entries absolute costs (identified exactly).
* where the ``skip`` is a 1x1 conv (stride 2 or Cin != Cout; 6 of the 22 positions), its absolute
  cost is not identifiable. It is *estimated* by a non-negative least-squares model
  ``latency ~ a*dense_MACs + b*depthwise_MACs + c*bytes_moved + d*layers`` fitted to the
  identified entries of the same device; the other ops at that position are the skip estimate
  plus their exactly identified difference to the skip.
* the stem, head conv, pooling, classifier and the rest of the intercept are one number,
  ``fixed.latency_ms`` (= intercept - the estimated skip costs), covering those fixed blocks.

Any other split would predict every architecture identically; this one keeps each entry a
plausible absolute latency (usable as a prior or to train block regressors). Entries carry
``identified`` (``exact`` / ``skip-relative`` / ``estimated`` / ``convention``) and
``positions``. The source has no spread, so ``median_ms = p10_ms = p90_ms`` and ``n`` is the
number of architectures fitted (stated in ``provenance.statistics``).

Regenerate the shipped files with ``python -m hwnas.lut.reference DATA_DIR OUT_DIR``.
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from hwnas.errors import UserError
from hwnas.lut.features import cost_features
from hwnas.lut.measurements import read_arch_csv
from hwnas.lut.schema import LUT, FixedPart, LUTEntry, save_lut
from hwnas.lut.spaces import LatencySpace, get_space

log = logging.getLogger(__name__)

# (our device name, CSV stem, published device name)
REFERENCE_DEVICES = (("pi4", "raspi4", "Raspberry Pi 4"), ("pixel3", "pixel3", "Pixel 3"))
DECIMALS = 9  # entries rounded to 1e-9 ms: stable files across BLAS builds, far below 1e-6 ms
TOLERANCE_MS = 1e-6
LICENCE = (
    "Derived from HW-NAS-Bench (Li et al., ICLR 2021; MIT licence) as republished by HELP "
    "(Lee et al., NeurIPS 2021; MIT licence). Redistributed under the same MIT terms with "
    "attribution to both."
)


def derive_reference_lut(csv_path: Path, name: str, published_name: str) -> LUT:
    """Fit the per-block table of one HW-NAS-Bench CSV and return it as a LUT (FBNet, fp32)."""
    space = get_space("fbnet")
    table = read_arch_csv(csv_path, space, require_latency=True)
    archs, y = np.asarray(table.archs), table.latency_ms
    assert y is not None
    slot_ref = _slot_references(space)
    columns, column_of = _columns(space, slot_ref)
    X = np.zeros((len(archs), len(columns) + 1))
    X[:, -1] = 1.0
    for s in range(space.num_slots):
        for o in range(space.choices[s]):
            col = column_of.get((s, o))
            if col is not None:
                X[archs[:, s] == o, col] += 1.0
    coef, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    residual = float(np.max(np.abs(X @ coef - y)))
    if rank < X.shape[1] or residual > TOLERANCE_MS:
        raise UserError(
            f"{csv_path}: not an exact per-block sum (rank {rank}/{X.shape[1]}, max residual "
            f"{residual:.3g} ms); fit it with 'hwnas fit-latency' instead"
        )
    skip_model = _fit_skip_model(space, columns, coef, slot_ref)
    offsets = {s: float(skip_model(space.option_specs(s, o)[0])) for s, o in _conv_refs(slot_ref)}
    entries = _entries(space, columns, coef, slot_ref, offsets, len(y))
    fixed_ms = round(float(coef[-1]) - sum(offsets.values()), DECIMALS)
    lut = LUT(
        device={
            "name": name,
            "fingerprint": {
                "published_name": published_name,
                "source": f"HW-NAS-Bench '{csv_path.stem}'",
            },
        },
        runtime={
            "name": "tflite",
            "version": None,
            "note": "as reported by HW-NAS-Bench for this device; version not published",
        },
        settings={
            "precision": "fp32",
            "threads": None,
            "core": None,
            "warmup": None,
            "repeats": None,
            "method": "derived: least squares on end-to-end sums",
        },
        entries=tuple(entries),
        space=space.name,
        resolution=space.resolution,
        num_classes=space.num_classes,
        fixed=FixedPart(fixed_ms, tuple(s.key() for s in space.fixed_specs), _FIXED_NOTE),
        provenance=_provenance(csv_path, table.sha256, len(y), residual, skip_model.coef),
        licence=LICENCE,
    )
    _check_reproduces(lut, space, archs, y)
    return lut


def _slot_references(space: LatencySpace) -> dict[int, tuple[int, bool]]:
    """Per slot: the reference option (the skip) and whether it is an identity."""
    refs = {}
    for s in range(space.num_slots):
        o = space.choices[s] - 1
        (spec,) = space.option_specs(s, o)
        if spec.op != "skip":
            raise UserError(f"slot {s}: the last option is not a skip; not an FBNet-like space")
        refs[s] = (o, spec.is_identity)  # type: ignore[attr-defined]
    return refs


def _conv_refs(slot_ref: dict[int, tuple[int, bool]]) -> list[tuple[int, int]]:
    return [(s, o) for s, (o, identity) in slot_ref.items() if not identity]


def _columns(space: LatencySpace, slot_ref: dict) -> tuple[list[str], dict[tuple[int, int], int]]:
    """One column per distinct non-reference spec key; specs at 1x1-conv-skip slots must be unique."""
    columns: list[str] = []
    index: dict[str, int] = {}
    column_of: dict[tuple[int, int], int] = {}
    slots_of: dict[str, set[int]] = defaultdict(set)
    for s in range(space.num_slots):
        for o in range(space.choices[s]):
            if o == slot_ref[s][0]:
                continue
            key = space.option_specs(s, o)[0].key()
            slots_of[key].add(s)
            if key not in index:
                index[key] = len(columns)
                columns.append(key)
            column_of[(s, o)] = index[key]
    for s, _ in _conv_refs(slot_ref):
        for o in range(space.choices[s] - 1):
            if len(slots_of[space.option_specs(s, o)[0].key()]) > 1:
                raise UserError(
                    f"slot {s}: a spec is shared with other slots; convention undefined"
                )
    return columns, column_of


class _SkipModel:
    """latency ~ coef . [dense MACs, depthwise MACs, bytes moved, layers], coef >= 0."""

    def __init__(self, coef: np.ndarray) -> None:
        self.coef = coef

    @staticmethod
    def features(spec) -> np.ndarray:
        f = cost_features(spec)
        return np.array([f[0] / 1e6, f[1] / 1e6, (f[3] + f[4]) / 1e6, f[6]])

    def __call__(self, spec) -> float:
        return float(self.features(spec) @ self.coef)


def _fit_skip_model(
    space: LatencySpace, columns: list[str], coef: np.ndarray, slot_ref
) -> _SkipModel:
    from scipy.optimize import nnls

    from hwnas.blocks.specs import parse_key

    absolute = {
        space.option_specs(s, o)[0].key()
        for s, (_, ident) in slot_ref.items()
        if ident
        for o in range(space.choices[s] - 1)
    }
    keys = [k for k in columns if k in absolute]
    F = np.stack([_SkipModel.features(parse_key(k)) for k in keys])
    t = np.array([coef[columns.index(k)] for k in keys])
    weights = 1.0 / np.maximum(t, 1e-9)  # relative error: small blocks matter as much as big ones
    fitted, _ = nnls(F * weights[:, None], t * weights)
    return _SkipModel(fitted)


def _entries(space, columns, coef, slot_ref, offsets, n) -> list[LUTEntry]:
    values: dict[str, float] = {}
    identified: dict[str, str] = {}
    positions: dict[str, list[int]] = defaultdict(list)
    specs = {}
    for s in range(space.num_slots):
        ref, identity = slot_ref[s]
        for o in range(space.choices[s]):
            (spec,) = space.option_specs(s, o)
            key = spec.key()
            specs[key] = spec
            positions[key].append(s)
            if o == ref:
                values[key] = 0.0 if identity else offsets[s]
                identified[key] = "convention" if identity else "estimated"
            else:
                values[key] = float(coef[columns.index(key)]) + (0.0 if identity else offsets[s])
                identified[key] = "exact" if identity else "skip-relative"
    out = []
    for key, spec in specs.items():
        value = max(round(values[key], DECIMALS), 0.0)
        extra = {"positions": positions[key], "identified": identified[key]}
        out.append(LUTEntry(spec, "fp32", value, value, value, n, extra))
    return out


CONVENTION = (
    "Only differences between the ops of one position are identified by end-to-end sums. "
    "Identity skips are taken to cost 0 ms, so the other ops at those positions are absolute "
    "costs ('exact'). The absolute cost of the 1x1-conv skips (stride 2 or Cin != Cout) is not "
    "identifiable; it is estimated ('estimated') with a non-negative least-squares model "
    "latency ~ a*dense_MACs + b*depthwise_MACs + c*bytes_moved + d*layers fitted (relative "
    "error) to the exact entries of the same device (coefficients in skip_cost_model), and the "
    "other ops at those positions are that estimate plus their exactly identified difference "
    "('skip-relative'). fixed.latency_ms is the intercept minus the estimated skip costs. Any "
    "other split predicts every architecture identically; this one keeps entries plausible "
    "absolute latencies."
)

_FIXED_NOTE = (
    "Stem conv, head conv, global pooling and classifier, plus whatever per-network constant "
    "HW-NAS-Bench's sums contain: the fitted intercept minus the estimated costs of the six "
    "1x1-conv skips (identity skips count 0 ms). See provenance.convention."
)


def _provenance(csv_path: Path, sha256: str, n: int, residual: float, skip_coef) -> dict:
    return {
        "sources": [
            "HW-NAS-Bench: Li et al., 'HW-NAS-Bench: Hardware-Aware Neural Architecture Search "
            "Benchmark', ICLR 2021 (MIT licence)",
            "HELP: Lee et al., 'HELP: Hardware-Adaptive Efficient Latency Prediction for NAS via "
            "Meta-Learning', NeurIPS 2021 (MIT licence), which republished the FBNet latencies",
        ],
        "files": {csv_path.name: {"sha256": sha256, "architectures": n}},
        "derivation": (
            "least squares of end-to-end latency on one indicator per distinct block-spec key "
            "(shared across positions) plus an intercept, skip as reference per position; "
            f"max |residual| below {TOLERANCE_MS:g} ms (rounding) over {n} architectures"
        ),
        "convention": CONVENTION,
        "skip_cost_model": {
            "features": ["dense_MACs/1e6", "depthwise_MACs/1e6", "bytes_moved/1e6", "layers"],
            "coef_ms": [round(float(c), 12) for c in skip_coef],
        },
        "statistics": (
            "the source gives one number per architecture and no spread: median_ms = p10_ms = "
            "p90_ms, and n is the number of architectures the table was fitted from"
        ),
        "generator": "python -m hwnas.lut.reference (hwnas.lut.reference.derive_reference_lut)",
    }


def _check_reproduces(lut: LUT, space: LatencySpace, archs: np.ndarray, y: np.ndarray) -> None:
    from hwnas.lut.predictor import LUTPredictor

    predicted = LUTPredictor(lut, space).predict_ms(archs)
    worst = float(np.max(np.abs(predicted - y)))
    if worst > TOLERANCE_MS:
        raise AssertionError(f"derived LUT misses the data by {worst:.3g} ms")
    log.info("%s: reproduces %d architectures to %.2g ms", lut.device_name, len(y), worst)


def write_reference_luts(data_dir: Path, out_dir: Path) -> list[Path]:
    """Derive and write ``<out_dir>/<device>_fbnet.json`` for every reference device."""
    written = []
    for name, stem, published in REFERENCE_DEVICES:
        lut = derive_reference_lut(Path(data_dir) / f"{stem}.csv", name, published)
        written.append(save_lut(lut, Path(out_dir) / f"{name}_fbnet.json"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the shipped HW-NAS-Bench LUTs.")
    parser.add_argument("data_dir", type=Path, help="folder with raspi4.csv and pixel3.csv")
    parser.add_argument("out_dir", type=Path, help="where to write <device>_fbnet.json")
    args = parser.parse_args(argv)
    for path in write_reference_luts(args.data_dir, args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
