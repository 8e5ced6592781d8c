"""NAO's encoder, predictor and decoder (Luo, Tian, Qin, Chen, Liu, "Neural Architecture
Optimization", NeurIPS 2018; METHODS.md §8.1), on token sequences of any space.

An architecture is a sequence of ``T`` tokens from a vocabulary of ``V`` (:class:`TokenSpec`:
which tokens each position may hold, which positions must differ, which spans may be swapped
without changing the architecture):

* **encoder**: token embedding (48) -> 1-layer LSTM (96) reading ``group`` tokens per step (NAO
  reads (input, op) pairs); every output step is L2-normalised, the embedding ``e`` is their
  mean, L2-normalised again. Outputs (B, S, H), ``e`` (B, H), ``S = T / group``.
* **predictor**: one head per target, each an MLP (3 x 200, ReLU, dropout 0.1) and a sigmoid:
  head 0 predicts the min-max normalised accuracy; the others (hwnas' hardware-aware extension,
  METHODS.md §8.2) predict normalised costs.
* **decoder**: 1-layer LSTM (96), initial state ``(e, e)``, Luong attention over the
  encoder outputs, a start token; logits of illegal tokens are masked at every position, in
  training and in greedy decoding alike, so every decoded sequence is a valid architecture.
* **loss**: ``trade_off * MSE + (1 - trade_off) * NLL`` (``trade_off`` 0.8), Adam (1e-3, weight
  decay 1e-4), gradient-norm clip 5; every batch swaps each swappable span pair with
  probability 1/2 (NAO's symmetric augmentation; a no-op where the encoding has none).
* **optimisation** (:func:`generate`): the gradient ``g`` of ``sum_i w_i f_i`` (the heads,
  weighted) with respect to the seeds' encoder outputs ``h``; ``h' = normalise(h + eta g)``,
  ``e' = normalise(mean h')``, decoded greedily, for ``eta = 1, 2, ...`` until enough new
  architectures are accepted or ``max_step`` is reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_MASKED = -1e9  # logit of an illegal token (finite: no inf - inf in the backward pass)


@dataclass(frozen=True)
class TokenSpec:
    """How a space's architectures are written as tokens.

    Attributes:
        legal: (T, V) bool, the tokens position t may hold.
        group: tokens the encoder reads per step (``T % group == 0``).
        distinct: ``(t1, t2)`` pairs, t1 < t2: position t2 may not repeat position t1's token.
        swaps: ``(a, b, n)``: exchanging spans ``[a, a+n)`` and ``[b, b+n)`` keeps the
            architecture (the augmentation).
    """

    legal: np.ndarray
    group: int = 1
    distinct: tuple[tuple[int, int], ...] = ()
    swaps: tuple[tuple[int, int, int], ...] = ()

    @property
    def length(self) -> int:
        return self.legal.shape[0]

    @property
    def vocab(self) -> int:
        return self.legal.shape[1]

    def swapped(self, tokens: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``tokens`` (B, T) with each swap applied to a random half of the rows."""
        out = tokens.clone()
        for a, b, n in self.swaps:
            rows = torch.rand(len(out), generator=gen) < 0.5
            order = torch.arange(self.length)
            order[a : a + n], order[b : b + n] = torch.arange(b, b + n), torch.arange(a, a + n)
            out[rows] = out[rows][:, order]
        return out


def _mlp(hidden: int, layers: int, width: int, dropout: float) -> nn.Sequential:
    parts: list[nn.Module] = []
    for i in range(layers):
        parts += [nn.Linear(hidden if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)]
    parts.append(nn.Linear(width if layers else hidden, 1))
    return nn.Sequential(*parts)


class Controller(nn.Module):
    """Encoder, ``heads`` predictor heads and decoder (module docstring)."""

    def __init__(
        self,
        spec: TokenSpec,
        heads: int = 1,
        embedding: int = 48,
        hidden: int = 96,
        mlp_layers: int = 3,
        mlp_width: int = 200,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if spec.length % spec.group:
            raise ValueError(f"{spec.length} tokens do not split into groups of {spec.group}")
        self.spec, v = spec, spec.vocab
        self.embed_in = nn.Embedding(v, embedding)
        self.encoder = nn.LSTM(spec.group * embedding, hidden, batch_first=True)
        self.heads = nn.ModuleList(
            _mlp(hidden, mlp_layers, mlp_width, dropout) for _ in range(heads)
        )
        self.embed_out = nn.Embedding(v + 1, embedding)  # token v: the start token
        self.decoder = nn.LSTM(embedding, hidden, batch_first=True)
        self.attend = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, v)
        self.register_buffer("legal", torch.as_tensor(spec.legal, dtype=torch.bool))
        self._after = {t2: t1 for t1, t2 in spec.distinct}

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised encoder outputs (B, S, H) of tokens (B, T)."""
        b, t = tokens.shape
        x = self.embed_in(tokens).reshape(b, t // self.spec.group, -1)
        return F.normalize(self.encoder(x)[0], dim=-1)

    @staticmethod
    def embedding(outputs: torch.Tensor) -> torch.Tensor:
        """Architecture embedding (B, H): the normalised mean of the outputs."""
        return F.normalize(outputs.mean(1), dim=-1)

    def predict(self, emb: torch.Tensor) -> torch.Tensor:
        """Head outputs in (0, 1), (B, heads)."""
        return torch.cat([torch.sigmoid(head(emb)) for head in self.heads], dim=1)

    def _attend(self, h: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Logits (B, T', V) of decoder states h (B, T', H) attending over outputs (B, S, H)."""
        weights = torch.softmax(torch.bmm(h, outputs.transpose(1, 2)), dim=2)
        context = torch.bmm(weights, outputs)
        return self.out(torch.tanh(self.attend(torch.cat([h, context], 2))))

    def _mask(self, t: slice, known: torch.Tensor) -> torch.Tensor:
        """(B, T', V) legal tokens at positions ``t`` given the known tokens (B, T)."""
        mask = self.legal[t].expand(len(known), -1, -1).clone()
        rows = torch.arange(len(known))
        for t2, t1 in self._after.items():
            if t.start <= t2 < t.stop:
                mask[rows, t2 - t.start, known[:, t1]] = False
        return mask

    def decode(self, outputs: torch.Tensor, targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Log-probabilities (B, T, V) under teacher forcing (``targets`` (B, T)), or greedily
        decoded tokens (B, T) when ``targets`` is None."""
        emb = self.embedding(outputs).unsqueeze(0)
        b, v, length = len(outputs), self.spec.vocab, self.spec.length
        start = torch.full((b, 1), v, dtype=torch.long)
        if targets is not None:
            h, _ = self.decoder(self.embed_out(torch.cat([start, targets[:, :-1]], 1)), (emb, emb))
            logits = self._attend(h, outputs).masked_fill(
                ~self._mask(slice(0, length), targets), _MASKED
            )
            return torch.log_softmax(logits, dim=2)
        chosen = torch.zeros(b, length, dtype=torch.long)
        prev, state = start, (emb, emb)
        for t in range(length):
            h, state = self.decoder(self.embed_out(prev), state)
            logits = self._attend(h, outputs)
            logits = logits.masked_fill(~self._mask(slice(t, t + 1), chosen), _MASKED)
            prev = logits.argmax(2)
            chosen[:, t] = prev[:, 0]
        return chosen

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor, trade_off: float):
        """``(trade_off * MSE + (1 - trade_off) * NLL, MSE, NLL)`` of a batch."""
        outputs = self.encode(tokens)
        mse = F.mse_loss(self.predict(self.embedding(outputs)), targets)
        logp = self.decode(outputs, tokens)
        nll = F.nll_loss(logp.reshape(-1, self.spec.vocab), tokens.reshape(-1))
        return trade_off * mse + (1 - trade_off) * nll, mse, nll


@dataclass(frozen=True)
class FitSettings:
    """Controller training (NAO's values; the method's config may scale ``epochs`` down)."""

    epochs: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    trade_off: float = 0.8


def fit(
    model: Controller,
    optimizer: torch.optim.Optimizer,
    tokens: np.ndarray,
    targets: np.ndarray,
    settings: FitSettings,
    gen: torch.Generator,
) -> dict:
    """Train on ``tokens`` (N, T) and ``targets`` (N, heads) in [0, 1]; returns the last
    epoch's mean ``mse`` and ``nll``."""
    x = torch.as_tensor(tokens, dtype=torch.long)
    y = torch.as_tensor(targets, dtype=torch.float32)
    model.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(x), generator=gen)
        sums = np.zeros(2)
        for i in range(0, len(x), settings.batch_size):
            idx = order[i : i + settings.batch_size]
            loss, mse, nll = model.loss(model.spec.swapped(x[idx], gen), y[idx], settings.trade_off)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            sums += np.array([mse.item(), nll.item()]) * len(idx)
    model.eval()
    return {"mse": float(sums[0] / len(x)), "nll": float(sums[1] / len(x))}


@torch.no_grad()
def predict(model: Controller, tokens: np.ndarray) -> np.ndarray:
    """Head outputs (N, heads) of ``tokens`` (N, T) (eval mode)."""
    model.eval()
    outputs = model.encode(torch.as_tensor(tokens, dtype=torch.long))
    return model.predict(model.embedding(outputs)).numpy()


@torch.no_grad()
def reconstruction(model: Controller, tokens: np.ndarray) -> float:
    """Share of tokens the decoder reproduces from their own encoding (eta = 0)."""
    model.eval()
    x = torch.as_tensor(tokens, dtype=torch.long)
    return float((model.decode(model.encode(x)) == x).float().mean())


def pairwise_accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    """Share of pairs with different true values that ``predicted`` orders the same way."""
    i, j = np.triu_indices(len(true), 1)
    keep = true[i] != true[j]
    return float(
        np.mean(np.sign(predicted[i] - predicted[j])[keep] == np.sign(true[i] - true[j])[keep])
    )


def generate(
    model: Controller,
    seeds: np.ndarray,
    weights: Sequence[float],
    wanted: int,
    accept: Callable[[np.ndarray, float], str],
    max_step: int,
    exact: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> dict:
    """Move the seeds (S, T) up ``sum_i weights[i] * head_i`` and decode (module docstring).

    ``accept(tokens, gain)`` judges each decoded sequence that differs from its seed, ``gain``
    being its weighted score minus its seed's, and returns ``"new"`` (taken) or another verdict
    (``"seen"``, ``"rejected"``...), counted. A score is ``weights @ heads`` of the re-encoded
    sequence, with ``exact(tokens (N, T)) -> (N, heads - 1)`` in place of heads 1.. when given
    (exact costs in the cost heads' target units). Stops once ``wanted`` were taken.

    Returns:
        ``{"step_size": last eta, "<verdict>": count, ...}``.
    """
    model.eval()
    x = torch.as_tensor(seeds, dtype=torch.long)
    outputs = model.encode(x).detach().requires_grad_()
    w = torch.as_tensor(weights, dtype=torch.float32)
    (grad,) = torch.autograd.grad((model.predict(model.embedding(outputs)) @ w).sum(), [outputs])

    def score(tokens: torch.Tensor) -> np.ndarray:
        heads = predict(model, tokens.numpy())
        if exact is not None:
            heads[:, 1:] = exact(tokens.numpy())
        return heads @ np.asarray(weights)

    base, counts, eta = score(x), {"new": 0}, 0
    with torch.no_grad():
        while counts["new"] < wanted and eta < max_step:
            eta += 1
            decoded = model.decode(F.normalize(outputs + eta * grad, dim=-1))
            changed = (decoded != x).any(1).numpy()
            gains = score(decoded) - base
            for row, gain in zip(decoded.numpy()[changed], gains[changed]):
                verdict = accept(row, float(gain))
                counts[verdict] = counts.get(verdict, 0) + 1
                if counts["new"] >= wanted:
                    break
    return {"step_size": eta, **counts}
