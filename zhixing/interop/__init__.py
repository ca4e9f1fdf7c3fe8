"""Hugging Face interop: `from_hf` imports a transformers model or checkpoint directory, `to_hf` writes
one that transformers loads. One mapping per family (bert.py: BERT + RoBERTa, gpt2.py, llama.py,
electra.py, xlnet.py); the tables are in docs/interop.md. transformers itself is never imported
here: directories are read and written as config.json + safetensors, so converting needs no
transformers install.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhixing.config import ConfigError, ModelConfig
from zhixing.interop import bert, electra, gpt2, llama, xlnet
from zhixing.interop.core import (
    Family,
    check_rules,
    convert_state,
    normalise,
    read_config,
    read_weights,
    state_to_hf,
)
from zhixing.io import staged_files
from zhixing.models.base import write_model_files

if TYPE_CHECKING:
    import torch

    from zhixing.models.base import Model

FAMILIES: dict[str, Family] = {t: f.FAMILY for f in (bert, gpt2, llama, electra, xlnet)
                               for t in f.FAMILY.model_types}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(FAMILIES)


def family_for_hf(hf: dict[str, Any], source: str) -> tuple[Family, str]:
    """The mapping for an HF config dict, or an error listing the supported model types."""
    model_type = hf.get("model_type")
    if model_type not in FAMILIES:
        raise ConfigError(f"{source}: model_type {model_type!r} is not supported; "
                          f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return FAMILIES[model_type], model_type


def family_for_config(cfg: ModelConfig) -> tuple[Family, str]:
    """The HF family our config exports to: bert/roberta for `bert`; gpt2 or llama for `gpt`; electra;
    xlnet."""
    if cfg.arch == "bert":
        model_type = bert.model_type_of(cfg)
    elif cfg.arch in ("electra", "xlnet"):
        model_type = cfg.arch
    elif cfg.arch == "gpt" and cfg.position in ("learned", "rotary"):
        model_type = "gpt2" if cfg.position == "learned" else "llama"
    else:
        raise ConfigError(
            f"no Hugging Face family for arch={cfg.arch!r}, position={cfg.position!r}: "
            "bert/roberta take arch=bert; gpt2 takes arch=gpt with learned positions; "
            "llama takes arch=gpt with rotary positions; electra takes arch=electra; xlnet takes arch=xlnet "
            f"(supported model types: {', '.join(SUPPORTED_MODEL_TYPES)})")
    return FAMILIES[model_type], model_type


def _head_of(family: Family, model_type: str, class_name: str, source: str) -> str:
    if class_name not in family.architectures:
        known = [a for a in family.architectures if a.lower().startswith(model_type)]
        raise ConfigError(f"{source}: {class_name} is not supported; supported {model_type} classes: "
                          f"{', '.join(known)} (or pass head=... to load the backbone with a new head)")
    return family.architectures[class_name]


def from_hf(source: Any, *, head: str | None = None, **overrides: Any) -> Model:
    """A zhixing model with the weights of a Hugging Face model.

    source: a transformers `PreTrainedModel` (BertModel, Bert/RobertaFor{MaskedLM, SequenceClassification,
    TokenClassification, QuestionAnswering}, BertForPreTraining, RobertaModel, GPT2Model, GPT2LMHeadModel,
    LlamaModel, LlamaForCausalLM) or a directory with config.json and model.safetensors / pytorch_model.bin.
    The head comes from the class (or config.json's `architectures`). `head=` asks for another one: its
    tensors that the checkpoint lacks are freshly initialised (with a warning), e.g. a BertModel checkpoint
    loaded with head="seq_cls", num_labels=3 for fine-tuning. `overrides` are ModelConfig fields
    (attn_impl="eager", dropout=0.0, ...). The model is returned in eval mode, in float32.
    """
    from zhixing.models import build_model

    if isinstance(source, (str, os.PathLike)):
        directory = Path(source)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"{directory}: not a directory; from_hf takes a Hugging Face model directory "
                "(config.json + weights) or a transformers model (for Hub ids use zhixing.load)")
        hf, state, name = read_config(directory), read_weights(directory), str(directory)
        class_name = (hf.get("architectures") or [None])[0]
    elif hasattr(source, "config") and hasattr(source, "state_dict"):
        hf, state, class_name = source.config.to_dict(), source.state_dict(), type(source).__name__
        name = class_name
    else:
        raise TypeError(f"from_hf takes a transformers model or a directory, not {type(source).__name__}")
    family, model_type = family_for_hf(hf, name)
    if head is None:  # the checkpoint's own head
        if class_name is None:
            head = family.default_head(hf)
        else:
            head = _head_of(family, model_type, class_name, name)
        fresh_head = False
    else:
        fresh_head = head != family.architectures.get(class_name or "")
    cfg = family.config_from_hf(hf, head)
    if overrides:
        cfg = cfg.replace(**overrides)
    model = build_model(cfg)
    ckpt = normalise(state, family, family.prefix(model_type))
    ours = convert_state(ckpt, model.unique_state_dict(), cfg, family, model_type, name,
                         fresh_head=fresh_head)
    model.load_weights(ours, source=name)
    return model.eval()


def hf_state_dict(model: Model) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(HF config dict with `architectures`, HF state dict with full names) for one of our models."""
    cfg = model.config
    if getattr(model, "lora_config", None) is not None or getattr(model, "prompt_config", None) is not None:
        raise ConfigError("this model carries a parameter-efficient adapter (zhixing.peft); export the "
                          "adapter in PEFT's format (zhixing.peft.save_peft) beside the base model's "
                          "export, or fold a LoRA run into a plain model first (zhixing merge RUN --out DIR)")
    family, model_type = family_for_config(cfg)
    if cfg.entity_markers:
        raise ConfigError("cannot export to Hugging Face: the classifier reads entity-marker states beside "
                          "[CLS] (a relation head, config.entity_markers), which no transformers class has; "
                          "use the zhixing directory")
    if cfg.heads_per_layer or cfg.ffn_dims:  # transformers 5 dropped `pruned_heads`; no per-layer FFN width
        raise ConfigError(f"cannot export to Hugging Face {model_type}: the model is pruned (heads_per_layer"
                          f"={cfg.heads_per_layer}, ffn_dims={cfg.ffn_dims}) and transformers' {model_type} "
                          "has one head count and FFN width for every layer; use the zhixing directory")
    fields = family.config_to_hf(cfg)  # first: it names every setting HF cannot express
    hf = {"architectures": [family.architecture(model_type, cfg.head)], **fields}
    own = model.unique_state_dict()
    hf["dtype"] = str(next(iter(own.values())).dtype).removeprefix("torch.")
    state = state_to_hf(own, cfg, check_rules(own, family.rules(cfg), model_type))
    prefix = family.prefix(model_type)
    if cfg.head != "none":  # BertModel etc. save without the prefix; the task classes nest the base model
        state = {k if k.startswith(family.outside_base) else f"{prefix}.{k}": v for k, v in state.items()}
    return hf, state


def to_hf(model: Model, directory: str | os.PathLike) -> Path:
    """Write `model` as a Hugging Face directory (config.json + model.safetensors) that
    `transformers.AutoModel*.from_pretrained(directory)` loads with the same outputs.

    A tokenizer attached as `model.tokenizer` (zhixing.load attaches one) is saved alongside, in the
    tokenizer.json format transformers' AutoTokenizer reads. The files are written to a temporary
    directory and moved in when complete: a failed export leaves nothing behind. Raises ConfigError
    naming each setting HF's family cannot express.
    """
    hf, state = hf_state_dict(model)
    with staged_files(directory) as tmp:
        write_model_files(tmp, state, hf, getattr(model, "tokenizer", None), metadata={"format": "pt"})
    return Path(directory)


def pretraining_from_hf(generator: Any, discriminator: Any, **overrides: Any):
    """An `ElectraPretraining` pair from a Hugging Face generator (ElectraForMaskedLM) and discriminator
    (ElectraForPreTraining), models or directories, e.g. to continue pretraining. The generator must have
    the shape `generator_size` gives (hidden, FFN and heads scaled alike, same depth) and the same
    embedding tables (they are one shared set here); anything else is an error naming what differs."""
    import torch

    from zhixing.models.electra import ElectraPretraining, embed_width, generator_config

    gen, disc = from_hf(generator, **overrides), from_hf(discriminator, **overrides)
    if (gen.config.arch, gen.config.head, disc.config.arch, disc.config.head) != ("electra", "mlm",
                                                                                  "electra", "rtd"):
        raise ConfigError("pretraining_from_hf takes an ElectraForMaskedLM generator and an "
                          f"ElectraForPreTraining discriminator, got {gen.config.arch}/{gen.config.head} and "
                          f"{disc.config.arch}/{disc.config.head}")
    cfg = disc.config.replace(head="pretraining", generator_size=gen.config.dim / disc.config.dim)
    want = generator_config(cfg)
    expected = {**want.to_dict(), "embed_dim": embed_width(want)}
    got = {**gen.config.to_dict(), "embed_dim": embed_width(gen.config)}
    differ = [f"{k}: {got[k]!r} (the pair needs {expected[k]!r})" for k in expected
              if k not in ("head", "label_names", "num_labels", "generator_size") and expected[k] != got[k]]
    if differ:
        raise ConfigError(f"generator does not fit discriminator as an ELECTRA pair: {'; '.join(differ)}")
    for name in ("tok_embed", "pos_embed", "type_embed", "embed_norm"):
        for (key, a), b in zip(getattr(gen, name).state_dict().items(),
                               getattr(disc, name).state_dict().values()):
            if not torch.equal(a, b):
                raise ConfigError(f"generator and discriminator have different {name}.{key}; the pair shares "
                                  "its embeddings (convert them separately instead)")
    pair = ElectraPretraining(cfg)
    pair.discriminator.load_state_dict(disc.state_dict())
    pair.generator.load_state_dict(gen.state_dict())  # the shared tables: the same values again
    return pair.eval()


__all__ = ["from_hf", "pretraining_from_hf", "to_hf", "hf_state_dict", "SUPPORTED_MODEL_TYPES",
           "family_for_hf", "family_for_config"]
