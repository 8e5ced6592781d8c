"""``hwnas search`` as a run: resolve the devices, search and report, verify on the device.

The search itself (:func:`hwnas.search.pipeline.run_search`) resolves the target device's LUT,
prices architectures with cost models and never opens a device. What touches one is here: the
device names are checked against the registry before any data loads, and ``--verify`` measures
the exported ``model.onnx`` on a device with an agent (``--verify-device``, default the target
device) through a function handed to the report. Under ``torchrun`` the ranks other than 0 are
sent to :func:`follow_search` (the search stage only, nothing written).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from hwnas.errors import UserError
from hwnas.search.config import RunConfig
from hwnas.search.pipeline import Progress


def run_search(
    config: RunConfig,
    out: Path,
    progress: Optional[Progress] = None,
    resume: bool = False,
    stop_requested: Optional[Callable[[], bool]] = None,
) -> dict:
    """Run (or resume) one search into the run directory ``out``; returns the report.

    Args: as :func:`hwnas.search.pipeline.run_search`, which this calls on rank 0 with a
    ``--verify`` measurement when the config asks for one.
    """
    import torch

    from hwnas.search.distributed import init_from_env
    from hwnas.search.pipeline import check_names
    from hwnas.search.pipeline import run_search as search_and_report

    if config.threads:
        torch.set_num_threads(config.threads)
    dist = init_from_env()  # under torchrun: one process per rank (no-op otherwise)
    if not dist.is_main:  # only rank 0 writes; the others join a data-parallel search
        return follow_search(config, Path(out))
    check_names(config)
    check_devices(config)
    verify = (lambda data, ms: verify_onnx(config, data, ms)) if config.verify else None
    return search_and_report(config, out, progress, resume, stop_requested, verify)


def check_devices(config: RunConfig) -> None:
    """Fail fast on an unknown device and an unmeasurable verify device (before data loads)."""
    from hwnas.devices.registry import get_device

    if not Path(config.device).is_file():  # a LUT or predictor file may stand for the device
        get_device(config.device)
    if config.verify:
        target = get_device(config.verify_device or config.device)
        if not target.measurable:
            raise UserError(
                f"--verify: {target.name!r} is a reference device (published LUT, no agent) and "
                f"cannot run the model; add --verify-device local (or another registered device)"
            )


def verify_onnx(config: RunConfig, onnx_bytes: bytes, predicted_ms: Optional[float]) -> dict:
    """Measure ``onnx_bytes`` on the verify device: the ``verify`` entry of ``report.json``."""
    from hwnas.devices.connect import open_device
    from hwnas.devices.registry import get_device

    device = get_device(config.verify_device or config.device)
    with open_device(device) as client:
        m = client.measure(
            onnx_bytes,
            warmup=10,
            repeats=config.verify_repeats,
            core=device.core,
            runtime=device.runtime,
        )
    s = m.stats.to_dict()
    same = device.name == config.device
    return {
        "device": device.name,
        **s,
        "runtime": m.runtime,
        "fingerprint": m.fingerprint,
        "predicted_ms": predicted_ms if same else None,
        "note": None
        if same
        else f"measured on {device.name}; the prediction is for "
        f"{config.device} (different hardware)",
    }


def follow_search(config: Any, out: Path) -> dict:
    """A non-zero rank's share of ``hwnas search``: the search stage, nothing written.

    Mirrors rank 0 in :func:`run_search`: waits until rank 0 has set up the
    run directory, skips the search if rank 0 will (``arch.json`` exists), joins it if the method
    is data-parallel (its config class says ``data_parallel = True``), and returns
    ``{"role": "follower"}``; rank 0 trains, exports and reports on its own.
    """
    from hwnas.search.api import Hooks, get_method, method_config
    from hwnas.search.distributed import ReadOnlyCheckpointStore, current, shutdown
    from hwnas.search.pipeline import build_problem, check_names
    from hwnas.search.rundir import RunDir

    ctx = current()
    check_names(config)  # fails exactly where rank 0 fails, before the barrier
    check_devices(config)
    ctx.barrier()  # rank 0 has created (or found) the run directory
    rundir = RunDir(out)
    spec = get_method(config.method)
    done = rundir.has("arch.json") and rundir.has("search.json")
    if not done and getattr(spec.config_cls, "data_parallel", False):
        problem, _, _ = build_problem(config)
        hooks = Hooks(checkpoint=ReadOnlyCheckpointStore(rundir.checkpoints))
        spec.run(problem, method_config(spec, config.method_settings), hooks)
    shutdown()
    return {"role": "follower", "rank": ctx.rank, "world": ctx.world}
