"""Model families, one readable file each, built from zhixing.nn blocks."""

from zhixing.config import ModelConfig
from zhixing.models.base import CheckpointError, Model, ModelOutput
from zhixing.models.bert import Bert
from zhixing.models.electra import Electra, ElectraPretraining
from zhixing.models.gpt import GPT
from zhixing.models.transformer import Transformer
from zhixing.models.xlnet import XLNet

FAMILIES: dict[str, type[Model]] = Model.families  # arch -> class, filled as each family is defined


def build_model(config: ModelConfig | str, **overrides) -> Model:
    """A freshly initialised model from a config or a preset name (see `zhixing models`)."""
    if isinstance(config, str):
        config = ModelConfig.from_preset(config, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    return Model.build(config)


__all__ = ["Bert", "GPT", "Transformer", "Electra", "ElectraPretraining", "XLNet", "Model", "ModelOutput",
           "ModelConfig", "CheckpointError", "build_model", "FAMILIES"]
