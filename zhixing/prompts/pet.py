"""PET's last step (Schick & Schütze 2021, §3.2): the ensemble of prompt-fine-tuned patterns labels
unlabelled texts softly, and an ordinary sequence classifier (no template, no masked-LM head at inference)
learns those soft labels by knowledge distillation:

    q(y | x) ∝ exp(Σ_k w_k log p_k(y | x) / Σ_k w_k)                    (prompts.cloze.ensemble)
    L = T² · KL(q^(T) ‖ p_student^(T))        over the unlabelled set, q^(T) = softmax(log q / T)

The ensemble's log-probabilities are the teacher's logits of objectives.distill.Distillation (cached once,
soft-target term only, alpha = 0): the loop, checkpoints and the best-dev selection are the Trainer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from torch import nn

from zhixing.errors import ConfigError
from zhixing.prompts.cloze import ClozeClassifier, KeepBest, ensemble
from zhixing.tasks.data import TextExample
from zhixing.train.config import TrainConfig


def distill_ensemble(classifiers: Sequence[ClozeClassifier], unlabeled: Sequence[TextExample],
                     student: nn.Module, config: TrainConfig | None = None,
                     dev: Sequence[TextExample] | None = None, weights: Sequence[float] | None = None,
                     temperature: float = 2.0, max_seq_len: int = 128, **overrides: Any) -> dict[str, Any]:
    """Train `student` (a seq_cls model whose label_names are the patterns' labels, in any order; its own
    `tokenizer`) on the ensemble's soft labels of `unlabeled`. With `dev` (labelled) the weights of the best
    dev accuracy are kept. Returns the Trainer's summary plus "best_dev" and "agreement" (the share of
    unlabelled texts where the student's argmax is the ensemble's)."""
    from zhixing.objectives.distill import Distillation
    from zhixing.tasks import classify
    from zhixing.tasks.data import TaskLoader
    from zhixing.train import Trainer

    if not classifiers or not unlabeled:
        raise ConfigError("distill_ensemble: no " + ("patterns (ClozeClassifiers) given" if not classifiers
                                                     else "unlabelled examples to label"))
    labels = list(classifiers[0].labels)
    names = list(getattr(student.config, "label_names", None) or [])
    if sorted(names) != sorted(labels):
        raise ConfigError(f"the student's labels {names} differ from the patterns' {labels}: build it with "
                          f"load_for_task(..., 'seq_cls', {labels})")
    soft = ensemble(classifiers, unlabeled, weights)[:, [labels.index(n) for n in names]]  # student order
    pseudo = [TextExample(e.text, e.pair, names[i]) for e, i in zip(unlabeled, soft.argmax(-1).tolist())]
    tok = student.tokenizer
    feats = classify.encode(pseudo, tok, max_seq_len, names)
    for i, f in enumerate(feats):
        f["index"] = i  # the row of its soft label

    cfg = config or TrainConfig(progress=False, tensorboard=False, plots=False, device="cpu")
    if overrides:
        cfg = cfg.replace(**overrides)

    eval_cfg = SimpleNamespace(max_seq_len=max_seq_len, eval_batch_size=64)
    best = KeepBest(lambda model: classify.evaluate(model, tok, dev, eval_cfg))
    objective = Distillation(teacher_logits=soft, temperature=temperature, alpha=0.0,
                             evaluator=best if dev else None, metric="accuracy")
    loader = TaskLoader(feats, cfg.batch_size, tok.pad_id, seed=cfg.seed)
    summary = Trainer(student, objective, cfg, loader).fit()
    best.restore(student)
    probs, _ = classify.probabilities(student, tok, pseudo, max_seq_len, eval_cfg.eval_batch_size)
    agreement = float((probs.argmax(-1) == soft.argmax(-1)).float().mean())
    return {**summary, "best_dev": best.metrics, "agreement": agreement}


__all__ = ["distill_ensemble"]
