"""Architecture CSVs: order kept, latencies optional, bad rows named by line."""

from __future__ import annotations

import hashlib

import pytest

from hwnas.errors import UserError
from hwnas.lut.measurements import read_arch_csv

ARCH = "-".join(["0"] * 21 + ["8"])


def write(tmp_path, text):
    path = tmp_path / "a.csv"
    path.write_text(text)
    return path


def test_reads_in_order_with_and_without_latency(tmp_path, fbnet):
    other = "-".join(["3"] * 22)
    path = write(tmp_path, f"arch,latency_ms,note\n{ARCH},12.5,x\n{other},20,y\n")
    table = read_arch_csv(path, fbnet, require_latency=True)
    assert table.archs == ((0,) * 21 + (8,), (3,) * 22)
    assert table.latency_ms.tolist() == [12.5, 20.0]
    assert table.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_arch_csv(write(tmp_path, f"arch\n{other}\n"), fbnet).latency_ms is None
    assert read_arch_csv(write(tmp_path, f"arch,latency_ms\n{other},\n"), fbnet).latency_ms is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("arc,latency_ms\n", "no 'arch' column"),
        ("arch,latency_ms\n", "no architectures"),
        (
            f"arch,latency_ms\n{ARCH},1\n0-1-2,3\n",
            r"line 3: bad fbnet arch '0-1-2': FBNet arch has 3 layers",
        ),
        (
            f"arch,latency_ms\n{ARCH[:-1]}9,1\n",
            r"line 2: bad fbnet arch .*out of range 0..8: \[9\]",
        ),
        (f"arch,latency_ms\n{ARCH[:-1]}x,1\n", "line 2: bad fbnet arch"),
        (f"arch,latency_ms\n{ARCH},fast\n", "line 2: latency_ms 'fast' is not a number"),
        (f"arch,latency_ms\n{ARCH},-3\n", "line 2: latency_ms must be a positive number"),
        (f"arch,latency_ms\n{ARCH},nan\n", "line 2: latency_ms must be a positive number"),
        (f"arch,latency_ms\n{ARCH},1\n{ARCH},\n", "line 3: latency_ms is empty while other rows"),
        ("arch,latency_ms\n,1\n", "line 2: empty 'arch'"),
    ],
)
def test_bad_files_name_the_line(tmp_path, fbnet, text, message):
    with pytest.raises(UserError, match=message) as info:
        read_arch_csv(write(tmp_path, text), fbnet)
    assert "\n" not in str(info.value)


def test_latency_required_for_fitting(tmp_path, fbnet):
    with pytest.raises(UserError, match="no 'latency_ms' column"):
        read_arch_csv(write(tmp_path, f"arch\n{ARCH}\n"), fbnet, require_latency=True)
    with pytest.raises(UserError, match="line 2: latency_ms is empty"):
        read_arch_csv(write(tmp_path, f"arch,latency_ms\n{ARCH},\n"), fbnet, require_latency=True)
    with pytest.raises(UserError, match="does not exist"):
        read_arch_csv(tmp_path / "none.csv", fbnet)
