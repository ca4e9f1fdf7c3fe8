"""Parameter-efficient fine-tuning: LoRA (lora.py) and Hugging Face PEFT's adapter format (hf.py).

    from zhixing.peft import LoRAConfig, add_lora, save_peft, load_peft
    add_lora(model, LoRAConfig(r=8, alpha=16, targets=["query", "value"], modules_to_save=["classifier"]))

Methods wrap a model in place (only the adapters and `modules_to_save` keep requires_grad), so the one
training loop trains them unchanged. docs/peft.md has the equations and the usage.
"""

from zhixing.peft.hf import load_peft, peft_state, save_peft
from zhixing.peft.lora import (
    LoRAConfig,
    LoRALinear,
    adapter_state_dict,
    add_lora,
    lora_layers,
    merge_lora,
    remove_lora,
    resolve_targets,
    trainable_parameters,
    unmerge_lora,
)

__all__ = ["LoRAConfig", "LoRALinear", "add_lora", "adapter_state_dict", "lora_layers", "merge_lora",
           "remove_lora", "resolve_targets", "trainable_parameters", "unmerge_lora", "load_peft",
           "peft_state", "save_peft"]
