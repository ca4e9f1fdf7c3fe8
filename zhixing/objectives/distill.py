"""Knowledge distillation (Hinton et al. 2015): a small student learns from a large teacher's outputs.

With p^T = softmax(z^teacher / T), p^S = softmax(z^student / T) at temperature T, per example (or, for a
language model, per predicted token):

    L = T² · KL(p^T ‖ p^S)  +  α · CE(y, softmax(z^student))               (soft + hard targets)
        + β_h · Σ_{(i,j) ∈ map} MSE(h^S_i W_h, h^T_j)                       (TinyBERT, Jiao et al. 2020)
        + β_a · Σ_{(i,j) ∈ map} Σ_k (A^S_i - A^T_j)²_{q,k}  (head mean)     (TinyBERT attention maps)
        + β_c · (1 - cos(h^S_L, h^T_L))                                   (DistilBERT, Sanh et al. 2019)

T² keeps the soft-target gradient's scale independent of T (its gradient is (p^S - p^T)/T per logit).
The intermediate terms compare, per real token, student layer i's output with teacher layer j's through
a layer map (index 0 = the embeddings); W_h is a learned projection when the widths differ (identity
otherwise). Attention maps are compared head by head when the head counts agree, else head-averaged.

Each term is one loss part, summed over its targets (examples; tokens for the intermediate terms), so
the loop takes each mean over the whole step (objectives/base.py). The teacher runs in eval mode under
no_grad; its logits may come from a cache computed once per data set (`teacher_logits`: (n, classes),
row = the example's `index` in the batch), which removes its forward pass from every epoch.

Students: `student_from_layers` copies the teacher's embeddings, the chosen layers and the head into a
shallower model (DistilBERT's every-other-layer init); `narrow_student` builds a narrower one (random).
Language models: `CausalLMDistillation` matches a GPT teacher's next-token distributions (same vocab).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.errors import ConfigError
from zhixing.models.heads import IGNORE, classification_loss, shift_labels
from zhixing.objectives.base import Batch
from zhixing.objectives.classification import INPUTS, Classification
from zhixing.objectives.clm import CausalLM


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            reduction: str = "sum") -> torch.Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) over the last dim, summed over rows (or their mean).
    (rows, classes) logits; the teacher's carry no gradient."""
    t = float(temperature)
    log_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_t = F.log_softmax(teacher_logits.detach().float() / t, dim=-1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum") * t * t
    return kl / student_logits.shape[0] if reduction == "mean" else kl


def check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not t > 0:
        raise ConfigError(f"temperature={temperature}: the distillation temperature must be > 0 "
                          "(1 = the teacher's own probabilities; 2-4 soften them)")
    return t


def default_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer i (1-based, 0 = embeddings) <- teacher layer round(i · L_t / L_s): uniform (TinyBERT)."""
    return [round(i * teacher_layers / student_layers) for i in range(student_layers + 1)]


def check_layers(layers: Sequence[int], num_layers: int) -> list[int]:
    layers = [int(i) for i in layers]
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad or not layers:
        listed = ",".join(map(str, layers)) or "(none)"
        raise ConfigError(f"student layers {listed}: the teacher has layers 0..{num_layers - 1}"
                          + (f"; {','.join(map(str, bad))} not among them" if bad else ""))
    return layers


def every_other_layer(num_layers: int) -> list[int]:
    """0, 2, 4, ...: DistilBERT's initialisation from the teacher's layers."""
    return list(range(0, num_layers, 2))


def student_from_layers(teacher: nn.Module, layers: Sequence[int]) -> nn.Module:
    """A student with len(layers) blocks: student block i = a copy of teacher block layers[i]; the
    embeddings, pooler, final norm and head are copied too. The teacher's tokenizer comes along."""
    from zhixing.models import build_model

    layers = check_layers(layers, teacher.config.num_layers)
    student = build_model(teacher.config.replace(num_layers=len(layers)))
    state = {}
    for name, t in teacher.state_dict().items():
        if name.startswith("layers."):
            j, rest = name[len("layers."):].split(".", 1)
            for i, src in enumerate(layers):
                if src == int(j):
                    state[f"layers.{i}.{rest}"] = t.detach().clone()
        else:
            state[name] = t.detach().clone()
    student.load_state_dict(state)
    student.tokenizer = getattr(teacher, "tokenizer", None)
    return student


def narrow_student(teacher: nn.Module, **config: Any) -> nn.Module:
    """A randomly initialised student with the teacher's config but `config` (dim, num_layers, num_heads,
    ffn_dim, ...) changed; same vocabulary, labels and tokenizer."""
    from zhixing.models import build_model

    cfg = teacher.config.replace(**config)
    if "dim" in config and "ffn_dim" not in config and teacher.config.ffn_dim:
        cfg = cfg.replace(ffn_dim=teacher.config.ffn_dim * cfg.dim // teacher.config.dim)
    student = build_model(cfg)
    student.tokenizer = getattr(teacher, "tokenizer", None)
    return student


def check_vocab(student: nn.Module, teacher: nn.Module) -> None:
    s, t = student.config.vocab_size, teacher.config.vocab_size
    if s != t:
        raise ConfigError(f"the student's vocabulary ({s} tokens) differs from the teacher's ({t}): "
                          "distillation compares their outputs token for token; build the student with the "
                          "teacher's tokenizer (e.g. --student layers=0,2,4)")
    st, tt = getattr(student, "tokenizer", None), getattr(teacher, "tokenizer", None)
    if st is not None and tt is not None and hasattr(st, "get_vocab") and st.get_vocab() != tt.get_vocab():
        raise ConfigError("the student's tokenizer differs from the teacher's (same size, other tokens): "
                          "distill with the teacher's tokenizer")


def _prepare_teacher(teacher: nn.Module, device: torch.device) -> nn.Module:
    teacher.eval().requires_grad_(False)
    if next(teacher.parameters()).device != device:
        teacher.to(device)
    return teacher


class Distillation(Classification):
    """Task-specific distillation of a sequence classifier (see the module docstring for L).

    teacher: the fine-tuned model (kept out of the trained model; eval mode, no_grad).
    temperature T > 0; alpha: weight of the hard-label cross-entropy; kd_weight: of T²·KL.
    hidden_weight / attn_weight / cos_weight: the intermediate terms (0 = off). layer_map: teacher layer
    per student layer (len = student layers + 1, index 0 = embeddings; default uniform).
    teacher_logits: (n, classes) cached teacher logits, row = batch["index"] (only without intermediate
    terms, which need the teacher's states). Evaluation: as Classification (the task's dev-set evaluator).
    """

    name = "distill"

    def __init__(self, teacher: nn.Module | None = None, temperature: float = 2.0, alpha: float = 0.5,
                 kd_weight: float = 1.0, hidden_weight: float = 0.0, attn_weight: float = 0.0,
                 cos_weight: float = 0.0, layer_map: Sequence[int] | None = None,
                 teacher_logits: torch.Tensor | None = None, **kw):
        super().__init__(**kw)
        self.temperature = check_temperature(temperature)
        self.alpha, self.kd_weight = float(alpha), float(kd_weight)
        self.hidden_weight, self.attn_weight, self.cos_weight = map(float, (hidden_weight, attn_weight,
                                                                           cos_weight))
        if min(self.alpha, self.kd_weight, self.hidden_weight, self.attn_weight, self.cos_weight) < 0:
            raise ConfigError("distillation weights (alpha, kd_weight, hidden_weight, attn_weight, "
                              "cos_weight) must be >= 0")
        self.teacher, self.teacher_logits = teacher, teacher_logits
        self.layer_map = list(layer_map) if layer_map is not None else None
        self.parts = ("kd", "ce") + tuple(p for p, w in (("hidden", self.hidden_weight),
                                                          ("attn", self.attn_weight),
                                                          ("cos", self.cos_weight)) if w > 0)
        self.intermediate = len(self.parts) > 2
        if teacher is None and (teacher_logits is None or self.intermediate):
            raise ConfigError("distillation needs the teacher model (cached logits alone serve only the "
                              "soft-target term)")
        self.proj: nn.Module | None = None

    def check(self, model: nn.Module) -> None:
        super().check(model)
        if self.teacher is not None:
            check_vocab(model, self.teacher)
            if self.teacher.config.num_labels != model.config.num_labels:
                raise ConfigError(f"the student has {model.config.num_labels} labels, the teacher "
                                  f"{self.teacher.config.num_labels}")
            t_layers = self.teacher.config.num_layers
            if self.layer_map is None:
                self.layer_map = default_layer_map(model.config.num_layers, t_layers)
            if len(self.layer_map) != model.config.num_layers + 1 or \
                    not all(0 <= j <= t_layers for j in self.layer_map):
                raise ConfigError(f"layer_map {self.layer_map}: one teacher layer (0..{t_layers}, 0 = "
                                  f"embeddings) per student layer and the embeddings "
                                  f"({model.config.num_layers + 1} values)")
            s_dim, t_dim = model.config.dim, self.teacher.config.dim
            if (self.hidden_weight or self.cos_weight) and s_dim != t_dim and self.proj is None:
                self.proj = nn.Linear(s_dim, t_dim)  # W_h of TinyBERT: student width -> teacher width

    def setup(self, device: torch.device) -> list[nn.Parameter]:
        if self.teacher is not None:
            _prepare_teacher(self.teacher, device)
        if self.proj is None:
            return []
        self.proj.to(device)
        return list(self.proj.parameters())

    def targets(self, batch: Batch) -> tuple[float, ...]:
        n = batch["input_ids"].size(0)
        (labelled,) = super().targets(batch)
        mask = batch.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        return (n, labelled) + (tokens,) * (len(self.parts) - 2)

    @torch.no_grad()
    def _teacher(self, batch: Batch, device: torch.device):
        if not self.intermediate and self.teacher_logits is not None:
            return None, self.teacher_logits[batch["index"].cpu()].to(device)
        _prepare_teacher(self.teacher, device)
        out = self.teacher(**{k: batch[k] for k in INPUTS if k in batch},
                           output_hidden_states=self.hidden_weight > 0 or self.cos_weight > 0,
                           output_attentions=self.attn_weight > 0)
        return out, out.logits

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        inputs = {k: batch[k] for k in INPUTS if k in batch}
        want_h = self.hidden_weight > 0 or self.cos_weight > 0
        out = model(**inputs, output_hidden_states=want_h, output_attentions=self.attn_weight > 0)
        t_out, t_logits = self._teacher(batch, out.logits.device)
        kd = self.kd_weight * kd_loss(out.logits, t_logits, self.temperature)
        w = self.weights.to(out.logits.device) if self.weights is not None else None
        ce = self.alpha * classification_loss(out.logits, batch["labels"], reduction="sum", weight=w)
        parts = [kd, ce]
        if not self.intermediate:
            return tuple(parts)
        real = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()  # (b, t)
        if self.hidden_weight > 0:
            mse = sum(self._hidden_mse(out.hidden_states[i], t_out.hidden_states[j], real)
                      for i, j in enumerate(self.layer_map))
            parts.append(self.hidden_weight * mse)
        if self.attn_weight > 0:
            mse = sum(_attention_mse(out.attentions[i - 1], t_out.attentions[j - 1], real)
                      for i, j in enumerate(self.layer_map) if i > 0 and j > 0)
            parts.append(self.attn_weight * mse)
        if self.cos_weight > 0:
            h_s, h_t = self._project(out.hidden_states[-1])[real], t_out.hidden_states[-1][real]
            parts.append(self.cos_weight * (1 - F.cosine_similarity(h_s, h_t, dim=-1)).sum())
        return tuple(parts)

    def _project(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h) if self.proj is not None else h

    def _hidden_mse(self, h_s: torch.Tensor, h_t: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Σ over real tokens of the mean squared difference over the (teacher's) width."""
        return (self._project(h_s)[real] - h_t[real]).pow(2).mean(-1).sum()

    def __repr__(self) -> str:
        return (f"Distillation(T={self.temperature}, alpha={self.alpha}, parts={self.parts}, "
                f"cached={self.teacher_logits is not None})")


def _attention_mse(a_s: torch.Tensor, a_t: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Σ over real query tokens of Σ_k (A^S - A^T)², averaged over heads; (b, h, q, k) maps."""
    if a_s.size(1) != a_t.size(1):  # different head counts: compare the head-averaged maps
        a_s, a_t = a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True)
    keys = real[:, None, None, :].to(a_s.dtype)
    d = ((a_s - a_t) * keys).pow(2).sum(-1).mean(1)  # (b, q)
    return d[real].sum()


class CausalLMDistillation(CausalLM):
    """A GPT student matches a GPT teacher's next-token distributions (same vocabulary):
    L = T² · KL(p^T ‖ p^S) + α · CE per predicted token. Evaluation: the student's own held-out loss and
    perplexity (val_loss / val_ppl), so it compares with a model trained from scratch."""

    name = "clm_distill"
    parts = ("kd", "ce")

    def __init__(self, teacher: nn.Module, temperature: float = 2.0, alpha: float = 0.5,
                 kd_weight: float = 1.0):
        self.teacher = teacher
        self.temperature = check_temperature(temperature)
        self.alpha, self.kd_weight = float(alpha), float(kd_weight)

    def check(self, model: nn.Module) -> None:
        super().check(model)
        check_vocab(model, self.teacher)

    def setup(self, device: torch.device) -> list[nn.Parameter]:
        _prepare_teacher(self.teacher, device)
        return []

    def targets(self, batch: Batch) -> tuple[float, ...]:
        (n,) = super().targets(batch)
        return (n, n)

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
        logits = model(**inputs).logits  # (b, t, vocab)
        with torch.no_grad():
            _prepare_teacher(self.teacher, logits.device)
            t_logits = self.teacher(**inputs).logits
        keep = shift_labels(batch["labels"]) != IGNORE  # (b, t): position t predicts t + 1
        labels = shift_labels(batch["labels"])[keep]
        kd = self.kd_weight * kd_loss(logits[keep], t_logits[keep], self.temperature)
        ce = self.alpha * F.cross_entropy(logits[keep].float(), labels, reduction="sum")
        return kd, ce

    def eval_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        (n,) = CausalLM.targets(self, batch)
        (loss,) = CausalLM.losses(self, model, batch)
        return torch.stack([loss.detach().double(), torch.tensor(float(n), dtype=torch.float64,
                                                                 device=loss.device)])

    def __repr__(self) -> str:
        return f"CausalLMDistillation(T={self.temperature}, alpha={self.alpha})"


__all__ = ["Distillation", "CausalLMDistillation", "kd_loss", "student_from_layers", "narrow_student",
           "every_other_layer", "default_layer_map", "check_vocab", "check_temperature"]
