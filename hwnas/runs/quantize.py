"""``quantize_run``: the whole ``hwnas quantize`` command as one library call.

Two modes, by the budget given: ``latency_ms`` (on a device:
:mod:`hwnas.runs.quantize_latency`) or ``size_kb`` (HAQ's model-size mode, no device:
:mod:`hwnas.runs.quantize_size`). This module holds the configuration both read and the
dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hwnas.errors import UserError
from hwnas.quant.haq import PAPER_EPISODES
from hwnas.quant.latency import LATENCY_METHODS
from hwnas.quant.qat import torch_threads
from hwnas.runs.measure import MeasureSettings
from hwnas.runs.quantize_latency import (  # noqa: F401 (re-exported: bench/haq.py, callers)
    REPORT_KIND,
    device_format,
    hardware_check,
    quantize_latency_run,
)


@dataclass(frozen=True)
class QuantizeConfig:
    """Everything ``hwnas quantize`` needs (the CLI builds it; written to the report).

    Exactly one of ``latency_ms`` and ``size_kb`` is given.

    Attributes:
        run_dir: the search run directory.
        device: registered device name (must be measurable; latency mode only).
        latency_ms: the latency budget on that device.
        size_kb: the model-size budget, priced weight bytes / 1000 (size mode).
        coding: size mode's weight coding, ``kmeans`` (default, as HAQ's size experiments) or
            ``linear``.
        method: ``haq``, ``random``, ``greedy``, ``uniform`` or ``dfq`` (size mode: those of
            :data:`hwnas.quant.size.SIZE_METHODS`).
        baselines: also run the other methods (same evaluator, same number of episodes for
            random, same final fine-tune; latency mode: the same hardware check) and report
            them; a baseline that cannot meet the budget is reported as infeasible.
        episodes: HAQ episodes (default 600, the paper's schedule; each a validation pass of
            a policy, plus ``search_steps`` fine-tune steps in latency mode).
        search_steps: latency mode: fine-tune SGD steps per scored policy (default 0: scored
            after calibration, which is observed once; the paper's linear mode fine-tunes an
            epoch per episode).
        dfq_steps: DFQ alternations per search (latency mode's ``dfq``).
        final_steps: fine-tune SGD steps of the chosen policy.
        train_images: train images used for calibration and fine-tuning.
        val_images: validation images that score a policy.
        select_images: size mode: further validation images, disjoint from those, on which
            haq's and random's ten best-rewarded policies are re-scored and the best taken
            (default 0: the best reward, as in the paper).
        simulate_bits: also offer 2..7-bit integer layers (accuracy simulation; they run and
            cost as int8 on the device).
        seed: seeds data subsets, agent and fine-tuning.
        measure: timing settings on the device.
        max_repairs: budget tightenings after end-to-end measurement.
        threads: torch threads for fine-tuning and the agent (None: torch's default).
        torch_device: where fine-tuning runs (``cpu``, ``cuda``...).
    """

    run_dir: Path
    device: str | None = None
    latency_ms: float | None = None
    size_kb: float | None = None
    coding: str | None = None
    method: str = "haq"
    baselines: bool = False
    episodes: int | None = None
    search_steps: int = 0
    dfq_steps: int = 150
    final_steps: int = 300
    batch_size: int = 64
    train_images: int = 4096
    val_images: int = 1000
    select_images: int = 0
    simulate_bits: bool = False
    seed: int = 0
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    max_repairs: int = 3
    threads: int | None = 1
    torch_device: str = "cpu"

    def __post_init__(self) -> None:
        if (self.latency_ms is None) == (self.size_kb is None):
            raise UserError("give exactly one budget: --latency-ms or --size-kb")
        if self.size_kb is not None:
            self._check_size_mode()
        else:
            if self.method not in LATENCY_METHODS:
                known = ", ".join(LATENCY_METHODS)
                raise UserError(f"unknown latency-mode method {self.method!r}; known: {known}")
            if self.device is None:
                raise UserError("--latency-ms needs --device (the device to measure on)")
            if self.coding is not None:
                raise UserError("--coding is a size-mode option (--size-kb)")
            if not self.latency_ms > 0:
                raise UserError(f"--latency-ms must be positive, got {self.latency_ms}")
        if self.episodes is None:
            object.__setattr__(self, "episodes", PAPER_EPISODES)
        for name in ("episodes", "train_images", "val_images", "dfq_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1")
        if self.select_images < 0:
            raise UserError(f"select_images must be at least 0, got {self.select_images}")
        if self.select_images and self.size_kb is None:
            raise UserError("--select-images is a size-mode option (--size-kb)")
        if self.search_steps < 0:
            raise UserError(f"search_steps must be at least 0, got {self.search_steps}")

    def _check_size_mode(self) -> None:
        from hwnas.quant.size import SIZE_METHODS

        if self.method not in SIZE_METHODS:
            raise UserError(
                f"unknown size-mode method {self.method!r}; known: {', '.join(SIZE_METHODS)}"
            )
        if not self.size_kb > 0:
            raise UserError(f"--size-kb must be positive, got {self.size_kb}")
        if self.coding is None:
            object.__setattr__(self, "coding", "kmeans")
        if self.coding not in ("kmeans", "linear"):
            raise UserError(f"unknown weight coding {self.coding!r}; known: kmeans, linear")

    @property
    def mode(self) -> str:
        return "size" if self.size_kb is not None else "latency"

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "measure"}
        out.update(run_dir=str(self.run_dir), measure=self.measure.to_dict())
        return out


def quantize_run(config: QuantizeConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Run ``config.method`` (and the baselines) and write the run directory's quantization
    files; returns the report."""
    with torch_threads(config.threads):
        if config.mode == "size":
            from hwnas.runs.quantize_size import quantize_size_run

            return quantize_size_run(config, progress)
        return quantize_latency_run(config, progress)
