"""``hwnas search --data-root``: a user's dataset folder reaches the data loader."""

from __future__ import annotations

from hwnas.cli import main
from hwnas.search.config import resolve_config


def test_data_root_flag_sets_the_data_section() -> None:
    config = resolve_config(None, {"dataset": "cifar10", "data_root": "/data/cifar"})
    assert config.data.dataset == "cifar10" and config.data.root == "/data/cifar"


def test_missing_dataset_folder_is_a_one_line_error(tmp_path, capsys) -> None:
    argv = ["search", "--dataset", "cifar10", "--data-root", str(tmp_path / "nope")]
    argv += ["--latency-ms", "20", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
