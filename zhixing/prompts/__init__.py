"""Prompt learning: cloze templates and verbalizers read through a masked LM or an ELECTRA
discriminator (PET / LM-BFF: zero-shot, prompt-based fine-tuning, ensembles and their distillation into a
classifier), in-context learning with a causal LM, and automatic prompts (label-word search, AutoPrompt
triggers). docs/prompts.md has the equations."""

from zhixing.prompts.cloze import ClozeClassifier, PromptLoader, ensemble
from zhixing.prompts.icl import InContextClassifier, continuation_logprobs
from zhixing.prompts.pet import distill_ensemble
from zhixing.prompts.template import Template, Verbalizer

__all__ = ["Template", "Verbalizer", "ClozeClassifier", "PromptLoader", "ensemble", "InContextClassifier",
           "continuation_logprobs", "distill_ensemble"]
