"""Pruning: structured (attention heads, FFN neurons — physically removed) and unstructured (weights zeroed
by magnitude on a schedule during fine-tuning).

Head importance (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): gate each head's output
with ξ_h (all ones), MultiHead(X) = Concat(ξ_1 head_1, ..., ξ_H head_H) W^O, and score

    I_h = Σ_batches |∂L/∂ξ_h|,       then   I_h ← I_h / ||I_layer||_2   (per layer)

— the first-order change of the loss when head h is removed. The least important heads over all layers are
pruned: their rows of W^Q, W^K, W^V and columns of W^O are deleted (nn.attention.Attention.keep_heads), so
the model is smaller and faster, and equals the unpruned model with those ξ_h = 0. FFN neurons the same way
with a gate on each hidden unit of W2 act(W1 x): I_j = Σ |∂L/∂m_j| (or the weight magnitude
||W1[j]|| · ||W2[:, j]||), rows of W1 and columns of W2 deleted (nn.layers.FeedForward.keep_neurons).
A pruned model's config records its per-layer widths (`heads_per_layer`, `ffn_dims`), so it saves and
loads like any other (`zhixing.load`). Every layer keeps at least one head and one neuron: a layer without
attention is not supported, and global selection never picks a layer's most important head.

Unstructured magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): during fine-tuning every
weight matrix of the Transformer blocks is pruned to the sparsity

    s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3      for t_0 <= t <= t_1

(the smallest-|w| fraction s_t of each matrix set to 0, re-applied after every optimizer step:
`MagnitudePruning`, a Trainer callback). Zeros stored in dense tensors make the model neither smaller on
disk nor faster: the gain is the size of a sparse encoding (`sparse_nbytes`), not speed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from zhixing.errors import ConfigError
from zhixing.objectives.base import Batch, Objective
from zhixing.train.callbacks import Callback


def blocks(model: nn.Module) -> list[nn.Module]:
    """The Transformer blocks of a bert / electra / gpt model (`model.layers`), the units pruning works on."""
    layers = getattr(model, "layers", None)
    arch = getattr(getattr(model, "config", None), "arch", type(model).__name__)
    if not isinstance(layers, nn.ModuleList) or not all(hasattr(b, "attn") and hasattr(b, "ffn")
                                                        for b in layers):
        raise ConfigError(f"pruning works on bert, electra and gpt models (a stack `layers` of blocks), "
                          f"not {arch}")
    return list(layers)


def batch_loss(model: nn.Module, objective: Objective, batch: Batch) -> torch.Tensor:
    """The objective's mean loss over a batch (each part's sum over its targets / their count, summed)."""
    counts = objective.targets(batch)
    device = next(model.parameters()).device
    parts = objective.losses(model, {k: v.to(device) for k, v in batch.items()})
    terms = [p / n for p, n in zip(parts, counts) if n]
    if not terms:
        return parts[0] * 0.0
    return sum(terms[1:], terms[0])


def _gate_scores(model: nn.Module, batches: Iterable[Batch], objective: Objective, kind: str
                 ) -> list[torch.Tensor]:
    """Σ_batches |∂L/∂gate| for a gate of ones on every head (kind="heads") or FFN neuron ("neurons")."""
    layers = blocks(model)
    device = next(model.parameters()).device
    owners = [b.attn for b in layers] if kind == "heads" else [b.ffn for b in layers]
    attr = "head_mask" if kind == "heads" else "neuron_mask"
    sizes = [o.num_heads if kind == "heads" else o.ffn_dim for o in owners]
    gates = [torch.ones(n, device=device, requires_grad=True) for n in sizes]
    scores = [torch.zeros(n, dtype=torch.float64) for n in sizes]
    was_training, seen = model.training, 0
    model.eval()  # no dropout: the gradient of the model that will be used
    try:
        for owner, gate in zip(owners, gates):
            setattr(owner, attr, gate)
        for batch in batches:
            loss = batch_loss(model, objective, batch)
            for score, grad in zip(scores, torch.autograd.grad(loss, gates)):
                score += grad.detach().abs().double().cpu()
            seen += 1
    finally:
        for owner in owners:
            setattr(owner, attr, None)
        model.train(was_training)
    if not seen:
        raise ConfigError("importance: no batches were given; pass a non-empty sample of (dev/train) data")
    return [s.float() for s in scores]


def _normalised(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """I ← I / ||I||_2 per layer (Michel et al. §4.2: makes layers comparable for global pruning)."""
    return [s / s.norm().clamp_min(1e-20) for s in scores]


def head_importance(model: nn.Module, batches: Iterable[Batch], objective: Objective,
                    normalize: bool = True) -> list[torch.Tensor]:
    """Per layer, I_h = Σ_batches |∂L/∂ξ_h| (heads,), L2-normalised per layer unless normalize=False.

    batches: dicts the objective takes (a sample of dev or train data); objective: what L is (e.g.
    `Classification()` for a seq_cls model). The model's weights and mode are left as they were."""
    scores = _gate_scores(model, batches, objective, "heads")
    return _normalised(scores) if normalize else scores


def neuron_importance(model: nn.Module, batches: Iterable[Batch] | None = None,
                      objective: Objective | None = None, method: str = "gradient",
                      normalize: bool = True) -> list[torch.Tensor]:
    """Per layer, an importance per FFN hidden neuron (ffn_dim,): method="gradient": Σ_batches |∂L/∂m_j|
    for a gate m on the neuron's activation; method="magnitude": ||W1[j]||_2 · ||W2[:, j]||_2 (no data).
    L2-normalised per layer unless normalize=False."""
    if method == "magnitude":
        scores = []
        for b in blocks(model):
            ffn, n = b.ffn, b.ffn.ffn_dim
            up = ffn.up.weight.detach().float()
            rows = up[:n].norm(dim=1) * (up[n:].norm(dim=1) if ffn.gated else 1.0)
            scores.append((rows * ffn.down.weight.detach().float().norm(dim=0)).cpu())
    elif method == "gradient":
        if batches is None or objective is None:
            raise ConfigError("neuron importance by gradient needs batches and an objective "
                              "(or method='magnitude')")
        scores = _gate_scores(model, batches, objective, "neurons")
    else:
        raise ConfigError(f"importance method {method!r}: expected 'gradient' or 'magnitude'")
    return _normalised(scores) if normalize else scores


def check_fraction(fraction: float, name: str = "fraction") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ConfigError(f"{name}={fraction!r}: expected a number with 0 <= {name} < 1 (the share to prune)")
    return float(fraction)


def select(importance: list[torch.Tensor], fraction: float | None = None, count: int | None = None,
           what: str = "heads") -> dict[int, list[int]]:
    """The least important units over all layers: {layer: [indices]} for `count` units, or
    round(fraction x all units). Each layer's most important unit is never chosen (a layer keeps >= 1),
    so at most Σ (n_layer - 1) can go; asking for more is a ConfigError saying how many can."""
    total = sum(len(s) for s in importance)
    if (fraction is None) == (count is None):
        raise ConfigError(f"prune {what}: give a fraction or a count (one of them)")
    if fraction is not None:
        count = round(check_fraction(fraction) * total)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count={count!r}: expected a whole number of {what} >= 0")
    candidates = []  # (score, layer, index), every unit except each layer's best
    for layer, scores in enumerate(importance):
        best = int(torch.argmax(scores))
        candidates += [(float(s), layer, i) for i, s in enumerate(scores.tolist()) if i != best]
    if count > len(candidates):
        raise ConfigError(f"cannot prune {count} of {total} {what}: every layer keeps at least one, so at "
                          f"most {len(candidates)} can go (fraction < {(len(candidates) + 1) / total:.3f})")
    chosen: dict[int, list[int]] = {}
    for _, layer, i in sorted(candidates)[:count]:
        chosen.setdefault(layer, []).append(i)
    return {layer: sorted(ix) for layer, ix in sorted(chosen.items())}


def _check_units(model: nn.Module, units: Mapping[int, Iterable[int]], sizes: list[int], what: str,
                 ) -> dict[int, list[int]]:
    out = {}
    for layer, ix in units.items():
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(sizes):
            raise ConfigError(f"prune {what}: layer {layer!r} does not exist (the model has layers "
                              f"0..{len(sizes) - 1})")
        ix = sorted(set(ix))
        bad = [i for i in ix if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < sizes[layer]]
        if bad:
            raise ConfigError(f"prune {what}: layer {layer} has {what} 0..{sizes[layer] - 1}; "
                              f"{bad[0]!r} does not exist")
        if len(ix) >= sizes[layer]:
            raise ConfigError(f"prune {what}: would remove all {sizes[layer]} {what} of layer {layer}; keep "
                              "at least one (a layer without them is not supported)")
        if ix:
            out[layer] = ix
    return out


def prune_heads(model: nn.Module, heads: Mapping[int, Iterable[int]]) -> nn.Module:
    """Remove attention heads for good: {layer: [head indices]} (indices of the model's current heads,
    0..h-1 in each layer). Updates `model.config.heads_per_layer`; returns the model (changed in place)."""
    layers = blocks(model)
    heads = _check_units(model, heads, [b.attn.num_heads for b in layers], "heads")
    for layer, ix in heads.items():
        attn = layers[layer].attn
        attn.keep_heads([i for i in range(attn.num_heads) if i not in ix])
    if heads:
        model.config = model.config.replace(heads_per_layer=[b.attn.num_heads for b in layers])
    return model


def prune_neurons(model: nn.Module, neurons: Mapping[int, Iterable[int]]) -> nn.Module:
    """Remove FFN hidden neurons for good: {layer: [neuron indices]}. Updates `model.config.ffn_dims`."""
    layers = blocks(model)
    neurons = _check_units(model, neurons, [b.ffn.ffn_dim for b in layers], "neurons")
    for layer, ix in neurons.items():
        ffn = layers[layer].ffn
        drop = set(ix)
        ffn.keep_neurons([i for i in range(ffn.ffn_dim) if i not in drop])
    if neurons:
        model.config = model.config.replace(ffn_dims=[b.ffn.ffn_dim for b in layers])
    return model


@contextlib.contextmanager
def masked(model: nn.Module, heads: Mapping[int, Iterable[int]] | None = None,
           neurons: Mapping[int, Iterable[int]] | None = None) -> Iterator[nn.Module]:
    """Inside the block, the given heads / neurons are silenced by a 0 gate (nothing removed): what
    pruning them must equal, and a way to try a pruning before making it."""
    layers = blocks(model)
    device = next(model.parameters()).device
    gated: list[tuple[nn.Module, str]] = []
    try:
        for units, kind in ((heads or {}), "heads"), ((neurons or {}), "neurons"):
            for layer, ix in units.items():
                owner = layers[layer].attn if kind == "heads" else layers[layer].ffn
                attr = "head_mask" if kind == "heads" else "neuron_mask"
                gate = torch.ones(owner.num_heads if kind == "heads" else owner.ffn_dim, device=device)
                gate[list(ix)] = 0.0
                setattr(owner, attr, gate)
                gated.append((owner, attr))
        yield model
    finally:
        for owner, attr in gated:
            setattr(owner, attr, None)


# -- unstructured magnitude pruning ---------------------------------------------------------------------

def cubic_sparsity(step: int, final: float, start: int, end: int, initial: float = 0.0) -> float:
    """Zhu & Gupta's schedule: s_t = s_f + (s_i - s_f)(1 - (t - t_0)/(t_1 - t_0))^3, s_i before t_0 and
    s_f after t_1. Fast pruning early (while the network can recover), slow near the target."""
    if step < start:
        return 0.0
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight matrices magnitude pruning works on: every Linear inside the Transformer blocks
    (attention and FFN); embeddings, norms, biases, pooler and heads stay dense."""
    out = {}
    for i, block in enumerate(blocks(model)):
        for name, module in block.named_modules():
            if isinstance(module, nn.Linear):
                out[f"layers.{i}.{name}.weight"] = module.weight
    return out


def magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Per matrix, a bool mask keeping all but the round(sparsity x numel) smallest |w|."""
    masks = {}
    for name, w in weights.items():
        k = round(sparsity * w.numel())
        keep = torch.ones(w.numel(), dtype=torch.bool, device=w.device)
        if k:
            keep[w.detach().abs().flatten().argsort()[:k]] = False
        masks[name] = keep.view_as(w)
    return masks


def sparsity(model: nn.Module) -> float:
    """The share of zeros in the prunable weight matrices."""
    weights = prunable_weights(model).values()
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))


def sparse_nbytes(model: nn.Module) -> int:
    """Bytes of the model's tensors if each prunable matrix were stored as a bitmap (1 bit per entry) plus
    its non-zero values, the rest dense: what unstructured sparsity could save on disk. A computed size
    (zhixing writes no sparse format); dense safetensors files do not shrink."""
    prunable = {id(w) for w in prunable_weights(model).values()}
    total, seen = 0, set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in prunable:
            total += math.ceil(p.numel() / 8) + int((p != 0).sum()) * p.element_size()
        else:
            total += p.numel() * p.element_size()
    return total


class MagnitudePruning(Callback):
    """Unstructured magnitude pruning during training (a `Trainer` callback): each prunable matrix (see
    `prunable_weights`) is pruned to `cubic_sparsity(step)` every `every` steps from `start_step` to
    `end_step` (default: the run's max_steps), and the mask is re-applied after every optimizer step (the
    optimizer would otherwise grow pruned weights back). Single-process runs only (callbacks run on rank 0).

        Trainer(model, objective, cfg, loader, callbacks=[MagnitudePruning(0.8, every=50)])
    """

    def __init__(self, final_sparsity: float, start_step: int = 0, end_step: int | None = None,
                 every: int = 50, initial_sparsity: float = 0.0):
        self.final = check_fraction(final_sparsity, "final_sparsity")
        self.initial = check_fraction(initial_sparsity, "initial_sparsity")
        if every < 1 or start_step < 0 or (end_step is not None and end_step <= start_step):
            raise ConfigError(f"magnitude pruning: every={every} must be >= 1 and 0 <= start_step="
                              f"{start_step} < end_step={end_step}")
        self.start, self.end, self.every = start_step, end_step, every
        self.masks: dict[str, torch.Tensor] = {}
        self.current = 0.0  # the sparsity of the masks now applied
        self.weights: dict[str, nn.Parameter] = {}

    def on_start(self, trainer: Any) -> None:
        if trainer.dist.enabled:
            raise ConfigError("magnitude pruning runs in a single process (callbacks run on rank 0 only)")
        self.end = self.end or trainer.cfg.max_steps
        if self.end <= self.start:
            raise ConfigError(f"magnitude pruning: end_step={self.end} must be after start_step={self.start}")
        self.weights = prunable_weights(trainer.raw)
        if trainer.step > self.start:  # a resumed run: the masks of the step it stopped at
            self._update(trainer.step)

    def _update(self, step: int) -> None:
        self.current = cubic_sparsity(step, self.final, self.start, self.end, self.initial)
        self.masks = magnitude_masks(self.weights, self.current) if self.current > 0 else {}
        self._apply()

    @torch.no_grad()
    def _apply(self) -> None:
        for name, mask in self.masks.items():
            self.weights[name].mul_(mask)

    def on_step(self, trainer: Any, step: int, logs: dict[str, Any] | None) -> None:
        if self.start <= step <= self.end and ((step - self.start) % self.every == 0 or step == self.end):
            self._update(step)
        else:
            self._apply()


__all__ = ["head_importance", "neuron_importance", "select", "prune_heads", "prune_neurons", "masked",
           "cubic_sparsity", "magnitude_masks", "prunable_weights", "sparsity", "sparse_nbytes",
           "MagnitudePruning", "blocks", "batch_loss", "check_fraction"]
