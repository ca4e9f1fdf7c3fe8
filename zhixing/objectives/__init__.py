"""Training objectives: what a model is trained to do — its targets, its (fused) loss, its metrics.

The one training loop (zhixing.train) takes any `Objective`; a new one is a new file here plus a line in
`OBJECTIVES` (see docs/architecture.md).
"""

import inspect
from typing import Any

from zhixing.errors import ConfigError
from zhixing.objectives.base import Batch, Objective
from zhixing.objectives.classification import Classification, SpanQA
from zhixing.objectives.clm import CausalLM
from zhixing.objectives.distill import CausalLMDistillation, Distillation
from zhixing.objectives.mlm import MaskedLM
from zhixing.objectives.plm import PLM
from zhixing.objectives.rtd import RTDObjective
from zhixing.objectives.seq2seq import Seq2Seq

# data.objective name -> the class that implements it (recipes name their objective this way)
OBJECTIVES: dict[str, type[Objective]] = {"clm": CausalLM, "mlm": MaskedLM, "rtd": RTDObjective,
                                          "plm": PLM, "distill": Distillation,
                                          "clm_distill": CausalLMDistillation, "seq2seq": Seq2Seq}


def build_objective(name: str, **options: Any) -> Objective:
    """The objective called `name` ("clm", "mlm", ...), with its options (e.g. nsp=True for mlm)."""
    if name not in OBJECTIVES:
        from zhixing.config import nearest

        raise ConfigError(f"unknown objective {name!r}{nearest(name, OBJECTIVES)}; "
                          f"known: {', '.join(OBJECTIVES)}")
    cls = OBJECTIVES[name]
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted})  # a recipe's options for others


__all__ = ["Objective", "Batch", "CausalLM", "MaskedLM", "PLM", "RTDObjective", "Classification", "SpanQA",
           "Distillation", "CausalLMDistillation", "Seq2Seq",
           "OBJECTIVES", "build_objective"]
