"""A small trained FBNet run directory shared by the quantization and export tests.

FBNet at width 0.25 and 16 x 16 input (the space's full 22-block structure: grouped 1x1 convs,
channel shuffles, depthwise convs, residuals, skips), trained for a few epochs on scikit-learn's
digits, written with :func:`hwnas.runs.rundir.write_run`. Built once per test session.
"""

from __future__ import annotations

from pathlib import Path

ARCH = "1-5-2-3-8-0-4-6-7-8-1-2-3-4-5-6-7-8-0-1-2-3"
RESOLUTION = 16
WIDTH = 0.25
EPOCHS = 4

_CACHE: dict[str, Path] = {}


def trained_run(root: Path) -> Path:
    """Path of the trained run directory (trained on the first call of the session)."""
    if "run" in _CACHE:
        return _CACHE["run"]
    import torch

    from hwnas.data import DataConfig, load_dataset
    from hwnas.quant.qat import torch_threads
    from hwnas.runs.rundir import write_run
    from hwnas.spaces.base import SpaceConfig, create_space

    space = create_space("fbnet", SpaceConfig(resolution=RESOLUTION, num_classes=10))
    net = space.build_net(space.parse_arch(ARCH), width=WIDTH, seed=0)
    splits = load_dataset(DataConfig(name="digits", resolution=RESOLUTION))
    x, y = splits.train.tensors
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=4e-5)
    gen = torch.Generator().manual_seed(0)
    with torch_threads(1):
        for _ in range(EPOCHS):
            net.train()
            order = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), 32):
                idx = order[i : i + 32]
                loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    net.eval()
    config = {
        "resolution": RESOLUTION,
        "num_classes": 10,
        "width": WIDTH,
        "data": {"name": "digits", "resolution": RESOLUTION},
    }
    _CACHE["run"] = write_run(root / "digits-run", "fbnet", ARCH, net, config)
    return _CACHE["run"]
