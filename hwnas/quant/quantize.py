"""HAQ mixed precision for a searched network, priced with a cost model measured on the device.

The flow of ``hwnas quantize`` (HAQ: Wang et al., CVPR 2019, with measured hardware feedback);
the steps on the device (2 and 5) are the run layer's (:mod:`hwnas.runs.quantize`), the rest is
here:

1. Load the run directory's network and fold it (:mod:`hwnas.graph.lower`).
2. On the device: probe its int8 weight bits, time every layer at fp32 and int8 and the whole
   network at both (:mod:`hwnas.runs.measure`), and calibrate the cost model
   (:mod:`hwnas.quant.costs`). int8 is offered only if the int8 network *is* faster there.
3. Refuse a budget below the cheapest achievable latency (exit 2, saying that latency).
4. DDPG episodes (:mod:`hwnas.quant.haq`): each policy is walled into the budget, calibrated on
   real train images, fine-tuned briefly and scored on validation images.
5. The best policy is exported and timed end to end; if the measurement misses the budget the
   budget is tightened by the miss and the wall re-applied (at most ``max_repairs`` times).
6. Final quantization-aware fine-tune; accuracy on val and test; files into the run directory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from hwnas.errors import UserError
from hwnas.graph.qparams import LayerBits
from hwnas.quant.calibrate import CalibrationCache, calibrate
from hwnas.quant.costs import PrecisionCost
from hwnas.quant.haq import HAQConfig, SearchResult, haq_search
from hwnas.quant.haq_env import HAQEnv, device_choices, enforce_budget, layer_infos, min_cost
from hwnas.quant.qat import FinetuneConfig, accuracy, finetune
from hwnas.quant.qnet import QuantNet

logger = logging.getLogger(__name__)

CALIBRATION_IMAGES = 256


class HAQSettings(Protocol):
    """What HAQ reads from a run's configuration (:class:`hwnas.runs.quantize.QuantizeConfig`)."""

    latency_ms: float
    episodes: int
    search_steps: int
    batch_size: int
    seed: int
    torch_device: str


@dataclass(frozen=True)
class DataTensors:
    """Train/val/test images (N, C, H, W) and labels, as tensors.

    ``select_x``/``select_y`` (optional): validation images disjoint from ``val_x``, on which
    the best-rewarded policies are re-scored (:func:`hwnas.quant.haq.reselect`).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    select_x: torch.Tensor | None = None
    select_y: torch.Tensor | None = None


def load_data(
    data: dict, train_images: int, val_images: int, seed: int, select_images: int = 0
) -> DataTensors:
    """The run's dataset, subsampled (seeded) to ``train_images``/``val_images``; full test.

    ``select_images`` > 0 also draws that many further validation images, disjoint from the
    ``val_images`` (UserError if the split has too few).
    """
    from hwnas.data import DataConfig, load_dataset

    splits = load_dataset(DataConfig(**data))
    gen = torch.Generator().manual_seed(seed)
    tx, ty = splits.train.tensors
    vx, vy = splits.val.tensors
    if select_images and val_images + select_images > len(vy):
        raise UserError(
            f"--select-images {select_images} with --val-images {val_images} needs "
            f"{val_images + select_images} validation images; the split has {len(vy)}"
        )
    ti = torch.randperm(len(ty), generator=gen)[:train_images]
    order = torch.randperm(len(vy), generator=gen)
    vi = order[:val_images]
    sx, sy = splits.test.tensors
    select = {}
    if select_images:
        si = order[val_images : val_images + select_images]
        select = {"select_x": vx[si].contiguous(), "select_y": vy[si]}
    return DataTensors(
        tx[ti].contiguous(), ty[ti], vx[vi].contiguous(), vy[vi], sx.contiguous(), sy, **select
    )


def check_budget(cost: PrecisionCost, choices, budget_ms: float) -> float:
    """The cheapest achievable latency; raises UserError (exit 2) if the budget is below it."""
    cheapest, _ = min_cost(choices, _cost_fn(cost), len(cost.layer_names))
    if budget_ms < cheapest:
        offered = "fp32 and int8" if any(w <= 8 for w in choices.w_levels[0]) else "fp32 only"
        raise UserError(
            f"no policy meets {budget_ms:g} ms: the cheapest achievable latency on this device "
            f"is {cheapest:.3f} ms ({offered})"
        )
    return cheapest


def _cost_fn(cost: PrecisionCost) -> Callable[[int, LayerBits], float]:
    return cost.layer_ms


class PolicyEvaluator:
    """``policy -> val accuracy %``: calibrated, fine-tuned ``steps`` SGD steps, validated.

    Memoised, and the calibration is read off a :class:`~hwnas.quant.calibrate.CalibrationCache`
    built on the first call, so with ``steps=0`` (the default of HAQ's latency mode) an
    evaluation is building the fake-quantized net and one validation pass. ``evaluated``
    counts the distinct policies scored since the last :meth:`reset_count`.
    """

    def __init__(self, graph, data: DataTensors, steps: int, settings: HAQSettings):
        self.graph, self.data, self.steps, self.settings = graph, data, steps, settings
        self.names = [layer.name for layer in graph.layers]
        self.memo: dict[tuple, float] = {}
        self.seen: set[tuple] = set()
        self._cache: CalibrationCache | None = None

    def __call__(self, policy) -> float:
        key = tuple(policy)
        self.seen.add(key)
        if key not in self.memo:
            if self._cache is None:
                self._cache = CalibrationCache(
                    self.graph,
                    [self.data.train_x[:CALIBRATION_IMAGES]],
                    seed=self.settings.seed,
                    device=self.settings.torch_device,
                )
            net = QuantNet(self.graph, dict(zip(self.names, key))).to(self.settings.torch_device)
            self._cache.apply(net)
            if self.steps:
                ft = FinetuneConfig(
                    steps=self.steps, batch_size=self.settings.batch_size, seed=self.settings.seed
                )
                net = finetune(net, self.data.train_x, self.data.train_y, ft)
            self.memo[key] = accuracy(net, self.data.val_x, self.data.val_y)
        return self.memo[key]

    @property
    def evaluated(self) -> int:
        return len(self.seen)

    def reset_count(self) -> None:
        self.seen = set()


def quantized_net(
    graph, policy: dict, data: DataTensors, steps: int, config: HAQSettings
) -> QuantNet:
    """Calibrated and fine-tuned fake-quantized model of ``graph`` under ``policy``."""
    net = QuantNet(graph, policy).to(config.torch_device)
    calibrate(net, [data.train_x[:CALIBRATION_IMAGES]], seed=config.seed)
    ft = FinetuneConfig(steps=steps, batch_size=config.batch_size, seed=config.seed)
    return finetune(net, data.train_x, data.train_y, ft)


def run_search(
    graph,
    cost: PrecisionCost,
    choices,
    data: DataTensors,
    config: HAQSettings,
    progress: Callable | None = None,
) -> tuple[SearchResult, float]:
    """HAQ over ``choices`` under ``config.latency_ms``; returns the result and float accuracy."""
    float_net = QuantNet(graph, {}).to(config.torch_device)
    float_acc = accuracy(float_net, data.val_x, data.val_y)
    evaluate = PolicyEvaluator(graph, data, config.search_steps, config)
    env = HAQEnv(
        layer_infos(graph), choices, _cost_fn(cost), config.latency_ms, evaluate, float_acc
    )
    start = time.perf_counter()
    result = haq_search(env, HAQConfig(episodes=config.episodes, seed=config.seed), progress)
    logger.info("HAQ search: %d episodes in %.1f s", config.episodes, time.perf_counter() - start)
    return result, float_acc


def repair_policy(
    policy: list[LayerBits],
    choices,
    cost: PrecisionCost,
    budget_ms: float,
    measured_ms: float,
    predicted_ms: float,
) -> tuple[list[LayerBits], float]:
    """Tighten the budget by the measured miss and wall the policy again."""
    tighter = budget_ms * min(predicted_ms / measured_ms, 1.0) * 0.98
    return enforce_budget(policy, choices, _cost_fn(cost), tighter), tighter


def offered_choices(cost: PrecisionCost, n_layers: int, w_max: int, simulate: bool):
    """Device choices: int8 only where the measured int8 network beats the fp32 one."""
    net = cost.network_ms
    integer = "int8" in net and "fp32" in net and net["int8"] < net["fp32"]
    return device_choices(n_layers, integer, w_max, simulate), integer
