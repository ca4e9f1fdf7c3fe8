"""Model families, one readable file each, built from zhixing.nn blocks."""

from collections.abc import Callable

from zhixing.config import ModelConfig
from zhixing.models.base import CheckpointError, Model, ModelOutput
from zhixing.models.bert import Bert
from zhixing.models.electra import Electra, ElectraPretraining
from zhixing.models.electra import build as build_electra
from zhixing.models.gpt import GPT
from zhixing.models.transformer import Transformer

# arch -> the model class (or, for ELECTRA, a function choosing the pretraining pair or one encoder)
FAMILIES: dict[str, Callable[[ModelConfig], Model]] = {"bert": Bert, "gpt": GPT, "transformer": Transformer,
                                                       "electra": build_electra}


def build_model(config: ModelConfig | str, **overrides) -> Model:
    """A freshly initialised model from a config or a preset name (see `zhixing models`)."""
    if isinstance(config, str):
        config = ModelConfig.from_preset(config, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    return FAMILIES[config.arch](config)


__all__ = ["Bert", "GPT", "Transformer", "Electra", "ElectraPretraining", "Model", "ModelOutput",
           "ModelConfig", "CheckpointError", "build_model", "FAMILIES"]
