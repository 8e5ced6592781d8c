"""HAQ's environment: layer-by-layer bitwidth decisions, the action wall, the episode reward.

HAQ (Wang et al., "HAQ: Hardware-Aware Automated Quantization with Mixed Precision", CVPR 2019;
``mit-han-lab/haq`` ``lib/env/linear_quantize_env.py``, re-described):

* An episode walks the quantizable layers (convs, linears) in order, two steps per layer: one
  for the weight bitwidth, one for the input-activation bitwidth.
* State (10-D): layer index, c_in, c_out, stride, kernel, #weights, input h*w, is-depthwise
  (min-max normalised over the layers), weight/activation flag, previous action.
* Action: a in [0, 1] -> one of n allowed levels in equal bins (HAQ's
  ``round(b_min - 0.5 + a * (b_max - b_min + 1))`` for contiguous bits).
* Action wall: if the policy's cost exceeds the budget, walk the layers from last to first and
  lower each by one step, stopping as soon as the cost fits.
* Reward: ``0.1 * (accuracy_quantized - accuracy_float)`` (accuracy in %), at the episode end.

Two modes, chosen by the ``choices`` object the environment is given:

* latency (:class:`BitChoices`): two steps per layer, a policy is a list of
  :class:`~hwnas.graph.qparams.LayerBits`, the cost is the layer's latency on the device;
* model size (:class:`WeightChoices`, HAQ's k-means experiments): one step per layer for its
  weight bits (2..8; activations stay float), a policy is a list of ints (32 = float), the cost
  is the layer's stored weight bytes (:func:`hwnas.graph.wcodes.weight_bytes`).

Hardware-aware restriction (ours): a layer may only take levels its device can *run*. On an
integer runtime that is float (32) or int8; bitwidths below 8 can be enabled for accuracy
simulation, and then execute (and cost) as int8. A wall step moves a layer to the
highest-bitwidth option that is strictly cheaper, so on a monotone table it is HAQ's "one bit
less", and it never spends accuracy on a step that saves no latency. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.graph.nodes import Conv, Graph
from hwnas.graph.qparams import FLOAT_BITS, LayerBits

CostFn = Callable[[int, "LayerBits | int"], float]
STATE_DIM = 10


@dataclass(frozen=True)
class LayerInfo:
    """What HAQ's state says about one layer (FC layers: kernel 1, stride 0)."""

    name: str
    index: int
    cin: int
    cout: int
    stride: int
    kernel: int
    params: int
    feat_hw: int
    is_depthwise: bool


def layer_infos(graph: Graph) -> list[LayerInfo]:
    """One :class:`LayerInfo` per conv/linear of ``graph``, in order."""
    out = []
    for i, layer in enumerate(graph.layers):
        shape = graph.shapes[layer.inp]
        if isinstance(layer, Conv):
            out.append(
                LayerInfo(
                    layer.name,
                    i,
                    layer.cin,
                    layer.cout,
                    layer.stride,
                    layer.kernel,
                    int(layer.weight.size),
                    shape[2] * shape[3],
                    layer.is_depthwise,
                )
            )
        else:
            cout, cin = layer.weight.shape
            out.append(
                LayerInfo(
                    layer.name, i, int(cin), int(cout), 0, 1, int(layer.weight.size), 1, False
                )
            )
    return out


@dataclass(frozen=True)
class BitChoices:
    """Latency mode. Per layer: the weight levels (ascending, 32 = float) and integer
    activation levels; two actions per layer, options are :class:`LayerBits`."""

    w_levels: tuple[tuple[int, ...], ...]
    a_levels: tuple[tuple[int, ...], ...]
    steps_per_layer = 2
    float_option = LayerBits(FLOAT_BITS, FLOAT_BITS)

    def lower(self, bits: LayerBits, index: int, cost: CostFn) -> LayerBits | None:
        """One wall step (see :func:`lower_step`)."""
        return lower_step(bits, index, self, cost)

    def options(self, index: int) -> list[LayerBits]:
        """Every (w, a) pair layer ``index`` may take."""
        out = [LayerBits(FLOAT_BITS, FLOAT_BITS)] if FLOAT_BITS in self.w_levels[index] else []
        for w in self.w_levels[index]:
            if w != FLOAT_BITS:
                out.extend(LayerBits(w, a) for a in self.a_levels[index])
        return out


@dataclass(frozen=True)
class WeightChoices:
    """Size mode. Per layer: the weight bit levels (ascending; 32 = float weights); one action
    per layer, activations stay float, options are plain ints."""

    levels: tuple[tuple[int, ...], ...]
    steps_per_layer = 1
    float_option = FLOAT_BITS  # what the other layers are while one layer's sensitivity is read

    @classmethod
    def uniform(cls, n_layers: int, min_bits: int = 2, max_bits: int = 8) -> WeightChoices:
        """Every layer offers ``min_bits``..``max_bits`` (HAQ's size experiments: 2..8)."""
        return cls((tuple(range(min_bits, max_bits + 1)),) * n_layers)

    def options(self, index: int) -> list[int]:
        return list(self.levels[index])

    def lower(self, bits: int, index: int, cost: CostFn) -> int | None:
        """HAQ's wall step: the highest offered level below ``bits`` that is strictly cheaper."""
        here = cost(index, bits)
        below = [b for b in self.levels[index] if b < bits and cost(index, b) < here]
        return below[-1] if below else None


def device_choices(
    n_layers: int,
    integer: bool,
    w_max: int = 8,
    simulate_bits: bool = False,
    min_bits: int = 2,
) -> BitChoices:
    """The levels a device offers: float always; int8 if ``integer`` (its weights ``w_max`` bits).

    With ``simulate_bits``, integer layers may also take ``min_bits``..8 bits (run as int8); the
    first and last layers keep 8 bits, as in HAQ.
    """
    if not integer:
        return BitChoices(((FLOAT_BITS,),) * n_layers, ((8,),) * n_layers)
    w_levels, a_levels = [], []
    for i in range(n_layers):
        edge = i in (0, n_layers - 1)
        low = w_max if edge or not simulate_bits else min_bits
        w_levels.append((*range(low, w_max + 1), FLOAT_BITS))
        a_levels.append(tuple(range(8 if edge or not simulate_bits else min_bits, 9)))
    return BitChoices(tuple(w_levels), tuple(a_levels))


def action_to_level(action: float, levels: Sequence[int]) -> int:
    """Map a in [0, 1] to one of ``levels`` (ascending) in equal bins."""
    n = len(levels)
    return levels[min(max(int(float(action) * n), 0), n - 1)]


def lower_step(bits: LayerBits, index: int, choices: BitChoices, cost: CostFn) -> LayerBits | None:
    """One wall step for a layer: the next cheaper option, or None if there is none.

    HAQ's order first (activation bits one level down, then weight bits one level down; float
    goes to the highest integer option); if neither saves latency (a non-monotone measured
    table, e.g. int8 slower than fp32 for this layer), the highest-bit option that does.
    """
    here = cost(index, bits)
    w_int = [w for w in choices.w_levels[index] if w != FLOAT_BITS]
    a_levels = choices.a_levels[index]
    steps = []
    if bits.is_float and w_int:
        steps.append(LayerBits(w_int[-1], a_levels[-1]))
    elif not bits.is_float:
        lower_a = [a for a in a_levels if a < bits.a_bits]
        lower_w = [w for w in w_int if w < bits.w_bits]
        if lower_a:
            steps.append(LayerBits(bits.w_bits, lower_a[-1]))
        if lower_w:
            steps.append(LayerBits(lower_w[-1], bits.a_bits))
    for step in steps:
        if cost(index, step) < here:
            return step
    cheaper = [o for o in choices.options(index) if cost(index, o) < here]
    return max(cheaper, key=lambda o: (o.w_bits, o.a_bits)) if cheaper else None


def enforce_budget(policy: Sequence, choices, cost: CostFn, budget: float) -> list:
    """HAQ's action wall: lower layers (last to first) one step at a time until cost <= budget.

    Returns the policy unchanged if it fits. Stops at the cheapest reachable policy (every layer
    at its cheapest option) if the budget is below that; callers check feasibility first.
    """
    policy = list(policy)
    current = sum(cost(i, b) for i, b in enumerate(policy))
    while current > budget:
        changed = False
        for i in reversed(range(len(policy))):
            step = choices.lower(policy[i], i, cost)
            if step is None:
                continue
            policy[i] = step
            current = sum(cost(j, b) for j, b in enumerate(policy))
            changed = True
            if current <= budget:
                break
        if not changed:
            break
    return policy


def min_cost(choices, cost: CostFn, n_layers: int) -> tuple[float, list]:
    """The cheapest policy and its cost (costs are additive over layers)."""
    best = [min(choices.options(i), key=lambda o: cost(i, o)) for i in range(n_layers)]
    return sum(cost(i, b) for i, b in enumerate(best)), best


class HAQEnv:
    """``choices.steps_per_layer`` steps per layer; ``evaluate(policy) -> accuracy %`` is called
    once per episode. ``metric`` names the cost in the episode's info (``latency_ms`` or
    ``size_bytes``)."""

    def __init__(
        self,
        layers: Sequence[LayerInfo],
        choices: BitChoices | WeightChoices,
        cost: CostFn,
        budget: float,
        evaluate: Callable[[list], float],
        reference_accuracy: float,
        metric: str = "latency_ms",
    ) -> None:
        self.metric = metric
        self.layers = list(layers)
        self.choices = choices
        self.cost = cost
        self.budget = budget
        self.evaluate = evaluate
        self.reference_accuracy = reference_accuracy
        self.features = _normalized_features(self.layers)
        self.reset()

    @property
    def steps_per_episode(self) -> int:
        return self.choices.steps_per_layer * len(self.layers)

    def reset(self) -> np.ndarray:
        self.step_index = 0
        self.w_bits: list[int] = []
        self.bits: list = []
        self.prev_action = 1.0
        return self.state()

    def state(self) -> np.ndarray:
        """The 10-D state of the current step (float32); the flag is 1 on weight steps."""
        per = self.choices.steps_per_layer
        layer = min(self.step_index // per, len(self.layers) - 1)
        flag = 1.0 if self.step_index % per == 0 else 0.0
        return np.concatenate([self.features[layer], [flag, self.prev_action]]).astype(np.float32)

    def step(self, action: float) -> tuple[np.ndarray, float, bool, dict]:
        """Apply one action; at the episode end returns the reward and the walled policy."""
        per = self.choices.steps_per_layer
        layer = self.step_index // per
        if per == 1:
            self.bits.append(action_to_level(action, self.choices.levels[layer]))
        elif self.step_index % 2 == 0:
            self.w_bits.append(action_to_level(action, self.choices.w_levels[layer]))
        else:
            w = self.w_bits[layer]
            a = (
                FLOAT_BITS
                if w == FLOAT_BITS
                else action_to_level(action, self.choices.a_levels[layer])
            )
            self.bits.append(LayerBits(w, a))
        self.prev_action = float(action)
        self.step_index += 1
        if self.step_index < self.steps_per_episode:
            return self.state(), 0.0, False, {}
        policy = enforce_budget(self.bits, self.choices, self.cost, self.budget)
        accuracy = float(self.evaluate(policy))
        reward = 0.1 * (accuracy - self.reference_accuracy)
        total = sum(self.cost(i, b) for i, b in enumerate(policy))
        info = {"policy": policy, "accuracy": accuracy, "cost": total, self.metric: total}
        return self.state(), reward, True, info


def _normalized_features(layers: Sequence[LayerInfo]) -> np.ndarray:
    raw = np.array(
        [
            [
                lay.index,
                lay.cin,
                lay.cout,
                lay.stride,
                lay.kernel,
                lay.params,
                lay.feat_hw,
                float(lay.is_depthwise),
            ]
            for lay in layers
        ],
        dtype=np.float64,
    )
    lo, hi = raw.min(axis=0), raw.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (raw - lo) / span
