"""DFQ: differentiable search of per-layer weight bitwidths under a validation-loss constraint.

Differentiable Fine-grained Quantization (Cheng et al., NeurIPS 2018 CDNNRIA workshop,
arXiv 1810.10351; METHODS.md §9). Every structure s (a layer, or a group of its output channels:
the "fine-grained" part) has architecture logits ``alpha_s`` over candidate weight bitwidths
``b_1 < ... < b_J``; its weight is the DARTS-style mixture
``w_eff = sum_j softmax(alpha_s)_j * Q_{b_j}(w)``, each ``Q`` a straight-through quantizer on the
symmetric per-channel grid of :mod:`hwnas.graph.qparams` (1 bit: ``sign(w) * mean|w_c|``).
Activations stay float: this is the weight-only, model-size setting of the paper's experiments.
A candidate of 32 is the float weight. With ``DFQConfig.act_bits`` set (latency mode) the
integer candidates also quantize the layer's input activations and the mixture is of the ops'
outputs (:class:`hwnas.quant.dfq_act.ActRelaxedNet`); the cost matrix is then in ms.

The search solves ``min_alpha G(alpha)  s.t.  L_val(w, alpha) <= theta`` with

* ``G(alpha) = sum_s frac_s * sum_j p_sj * cost[l(s), j]``, ``cost`` a (layers, candidates)
  matrix: bytes from :func:`hwnas.graph.wcodes.weight_bytes` by default (:func:`size_costs`), or
  per-layer latencies in ms; ``frac_s`` is the structure's share of its layer's channels;
* the Lagrangian ``G / G_ref + mu * max(0, L_val - theta)``. ``G_ref`` is the cost with every
  layer at its largest candidate, so ``G / G_ref`` is the model's relative size (<= 1) and is
  unit-free like the loss (nats); ``mu >= 0`` follows dual ascent
  ``mu <- max(0, mu + eta_mu * (L_val - theta))``;
* first-order alternation (DARTS): an SGD step on ``w`` with the task loss of the relaxed model
  on a train batch (``alpha`` fixed), then an Adam step on ``alpha`` with the Lagrangian on a val
  batch (``w`` fixed).

The result is ``argmax_j`` per structure; a layer's bits are the largest of its structures' (a
plain ``dict[str, int]``, which the caller fine-tunes and exports).
:func:`hwnas.quant.dfq_budget.dfq_for_budget` turns a size budget in bytes into the theta DFQ
needs.

The relaxed model composes :class:`~hwnas.quant.qnet.QuantNet` from outside: a float QuantNet
(empty policy) holds the weights, and ``torch.func.functional_call`` runs it with the mixed
weights in place of its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from hwnas.graph.nodes import Graph
from hwnas.graph.qparams import FLOAT_BITS
from hwnas.graph.wcodes import weight_bytes
from hwnas.quant.dfq_act import ActRelaxedNet
from hwnas.quant.dfq_relax import RelaxedNet, quantize_candidate  # noqa: F401 (public here)
from hwnas.quant.qat import torch_threads
from hwnas.quant.qnet import QuantNet
from hwnas.quant.quantize import CALIBRATION_IMAGES, DataTensors

logger = logging.getLogger(__name__)

CANDIDATES = (2, 4, 8)


@dataclass(frozen=True)
class DFQConfig:
    """Search budget and optimizer settings.

    Defaults measured on the MLP of ``tests/quant/test_dfq.py`` (candidates 1/8, 4 groups per
    layer, 150 steps, theta swept from 0.05 below to 1.0 above the 8-bit loss): alpha lr 0.02,
    0.05 and 0.1 all gave a monotone size-vs-theta curve and all-8-bit below the 8-bit loss;
    DARTS' 3e-4 moves the logits by at most 0.05 in 150 steps (see the report of issue 16).
    ``mu_lr`` 5 kept every structure at 8 bits below the 8-bit loss where 1 let one go binary.

    Attributes:
        steps: alternations (one w-step and one alpha-step each).
        batch_size: images per w-step (train batch).
        val_batch_size: images per alpha-step (val batch); larger than ``batch_size`` because
            its loss also drives the dual ascent of ``mu``, where batch noise reads as
            constraint violation.
        alpha_lr: Adam lr on the logits. DARTS uses 3e-4 over tens of thousands of steps; on
            searches of a few hundred steps the logits must move by O(1), so this is larger.
        alpha_weight_decay: DARTS' 1e-3.
        w_lr, w_momentum, w_weight_decay: SGD on the (BN-folded) weights, as :mod:`qat`.
        mu_init: initial Lagrange multiplier.
        mu_lr: dual ascent step ``eta_mu`` (per nat of constraint violation).
        channel_groups: structures per layer (contiguous output-channel groups; 1: per layer).
        seed: data order and the logits' small random init.
        act_bits: None (default): weight-only, activations float (the paper's size setting);
            2..8: the integer candidates run on quantized activations too (latency mode,
            :mod:`hwnas.quant.dfq_act`; needs ``channel_groups`` 1).
        threads: torch intra-op threads (None: leave as is).
        device: torch device of the search.
    """

    steps: int = 150
    batch_size: int = 64
    val_batch_size: int = 256
    alpha_lr: float = 0.05
    alpha_weight_decay: float = 1e-3
    w_lr: float = 1e-4
    w_momentum: float = 0.9
    w_weight_decay: float = 4e-5
    mu_init: float = 1.0
    mu_lr: float = 5.0
    channel_groups: int = 1
    seed: int = 0
    act_bits: int | None = None
    threads: int | None = 1
    device: str = "cpu"


@dataclass(frozen=True)
class DFQResult:
    """One DFQ search.

    Attributes:
        bits: layer name -> weight bits (argmax; the largest over a layer's groups).
        group_bits: layer name -> argmax bits of each channel group.
        probs: layer name -> softmax(alpha), one row per group, one column per candidate.
        candidates: the candidate bitwidths, ascending.
        theta: the loss constraint (nats).
        cost: priced cost of ``bits`` (sum of the cost matrix's chosen entries).
        group_cost: cost of ``group_bits`` (each group priced at its channel share).
        cost_ref: cost with every layer at the largest candidate (``G_ref``).
        history: per step: expected cost ``G``, ``mu``, val-batch loss of the relaxed model.
        seconds: wall time of the search.
    """

    bits: dict[str, int]
    group_bits: dict[str, list[int]]
    probs: dict[str, list[list[float]]]
    candidates: tuple[int, ...]
    theta: float
    cost: float
    group_cost: float
    cost_ref: float
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def size_costs(graph: Graph, candidates=CANDIDATES, kind: str = "linear") -> np.ndarray:
    """(layers, candidates) priced bytes of each layer's weights at each candidate."""
    rows = [
        [
            weight_bytes(int(layer.weight.size), int(layer.weight.shape[0]), b, kind)
            for b in candidates
        ]
        for layer in graph.layers
    ]
    return np.asarray(rows, dtype=np.float64)


def policy_cost(graph: Graph, bits: dict[str, int], cost: np.ndarray, candidates) -> float:
    """Priced cost of a per-layer bits policy under a (layers, candidates) matrix."""
    index = {b: j for j, b in enumerate(candidates)}
    return float(sum(cost[i, index[bits[layer.name]]] for i, layer in enumerate(graph.layers)))


def _relaxed(graph: Graph, data: DataTensors, candidates, config: DFQConfig) -> RelaxedNet:
    if config.act_bits is None:
        return RelaxedNet(graph, candidates, config.channel_groups, config.seed)
    if config.channel_groups != 1:
        raise ValueError("activation DFQ (act_bits) decides per layer: channel_groups must be 1")
    calibration = data.train_x[:CALIBRATION_IMAGES]
    return ActRelaxedNet(graph, candidates, config.act_bits, calibration, config.seed)


def float_val_loss(graph: Graph, data: DataTensors, batch_size: int = 256) -> float:
    """Mean cross-entropy (nats) of the float graph on the val split: theta = this + delta."""
    net = QuantNet(graph, {}).eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(data.val_y), batch_size):
            logits = net(data.val_x[i : i + batch_size])
            total += float(F.cross_entropy(logits, data.val_y[i : i + batch_size], reduction="sum"))
    return total / len(data.val_y)


def _group_cost(model: RelaxedNet, group_bits: dict[str, list[int]], cost: np.ndarray) -> float:
    """Cost of a per-group policy: one-hot probabilities through ``expected_cost``."""
    index = {b: j for j, b in enumerate(model.candidates)}
    onehot = {}
    for name, bits in group_bits.items():
        rows = torch.zeros(len(bits), len(model.candidates), dtype=torch.float64)
        rows[torch.arange(len(bits)), [index[b] for b in bits]] = 1.0
        onehot[name] = rows
    return float(model.expected_cost(torch.as_tensor(cost, dtype=torch.float64), onehot))


class _Batches:
    """Endless seeded batches of one split (reshuffled every epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator) -> None:
        self.x, self.y, self.size, self.gen = x, y, min(size, len(y)), gen
        self.order, self.pos = torch.randperm(len(y), generator=gen), 0

    def next(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.size > len(self.y):
            self.order, self.pos = torch.randperm(len(self.y), generator=self.gen), 0
        idx = self.order[self.pos : self.pos + self.size]
        self.pos += self.size
        return self.x[idx].to(device), self.y[idx].to(device)


def dfq_search(
    graph: Graph,
    data: DataTensors,
    theta: float,
    config: DFQConfig | None = None,
    candidates=CANDIDATES,
    cost: np.ndarray | None = None,
) -> DFQResult:
    """Search weight bits per layer: minimise the expected cost with val loss <= ``theta``.

    Args:
        graph: the folded float graph (its weights are the starting point; not modified).
        data: train batches for the w-steps, val batches for the alpha-steps.
        theta: the loss constraint in nats; ``float_val_loss(graph, data) + delta`` for an
            allowed loss increase ``delta``.
        config: steps and optimizer settings (default :class:`DFQConfig`).
        candidates: candidate weight bitwidths (1..8; 1 = binary; 32 = float).
        cost: (layers, candidates) cost matrix; default :func:`size_costs` (bytes).

    Returns:
        The argmax policy, its priced cost, the probabilities and the G / mu / loss trajectory.
    """
    config = DFQConfig() if config is None else config
    candidates = tuple(sorted(candidates))
    if len(set(candidates)) != len(candidates) or not all(
        1 <= b <= 8 or b == FLOAT_BITS for b in candidates
    ):
        raise ValueError(f"candidates must be distinct bitwidths in 1..8 or 32, got {candidates}")
    cost = size_costs(graph, candidates) if cost is None else np.asarray(cost, dtype=np.float64)
    if cost.shape != (len(graph.layers), len(candidates)):
        raise ValueError(
            f"cost must be (layers, candidates) = {(len(graph.layers), len(candidates))}"
        )
    start = time.perf_counter()
    with torch_threads(config.threads):
        torch.manual_seed(config.seed)
        device = torch.device(config.device)
        model = _relaxed(graph, data, candidates, config).to(device)
        cost_t = torch.as_tensor(cost, dtype=torch.float32, device=device)
        cost_ref = float(cost.max(axis=1).sum())
        w_opt = torch.optim.SGD(
            model.weight_params(),
            lr=config.w_lr,
            momentum=config.w_momentum,
            weight_decay=config.w_weight_decay,
        )
        a_opt = torch.optim.Adam(
            model.alphas.parameters(), lr=config.alpha_lr, weight_decay=config.alpha_weight_decay
        )
        gen = torch.Generator().manual_seed(config.seed)
        train = _Batches(data.train_x, data.train_y, config.batch_size, gen)
        val = _Batches(data.val_x, data.val_y, config.val_batch_size, gen)
        mu = config.mu_init
        history: dict[str, list[float]] = {"cost": [], "mu": [], "val_loss": []}
        model.train()
        for _ in range(config.steps):
            x, y = train.next(device)  # w-step: task loss through the relaxed model, alpha fixed
            fixed = {n: p.detach() for n, p in model.probs().items()}
            loss = F.cross_entropy(model(x, fixed), y)
            w_opt.zero_grad()
            loss.backward()
            w_opt.step()
            x, y = val.next(device)  # alpha-step: Lagrangian on a val batch, w fixed
            probs = model.probs()
            val_loss = F.cross_entropy(model(x, probs), y)
            g = model.expected_cost(cost_t, probs)
            lagrangian = g / cost_ref + mu * F.relu(val_loss - theta)
            grads = torch.autograd.grad(lagrangian, list(model.alphas.parameters()))
            for p, grad in zip(model.alphas.parameters(), grads):
                p.grad = grad
            a_opt.step()
            mu = max(0.0, mu + config.mu_lr * (val_loss.item() - theta))  # dual ascent
            history["cost"].append(g.item())
            history["mu"].append(mu)
            history["val_loss"].append(val_loss.item())
        group_bits = model.argmax_bits()
        probs_out = {n: p.detach().tolist() for n, p in model.probs().items()}
    bits = {n: max(b) for n, b in group_bits.items()}
    seconds = time.perf_counter() - start
    logger.info("DFQ theta %.4f: %d steps in %.1f s, bits %s", theta, config.steps, seconds, bits)
    return DFQResult(
        bits,
        group_bits,
        probs_out,
        candidates,
        float(theta),
        policy_cost(graph, bits, cost, candidates),
        _group_cost(model.cpu(), group_bits, cost),
        cost_ref,
        history,
        seconds,
    )
