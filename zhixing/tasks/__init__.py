"""Fine-tuning for downstream tasks: classification, NER and extractive QA (see docs/finetuning.md).

Submodules are imported on use: `zhixing.tasks.finetune`, `.pipeline`, `.metrics`, `.data`, ...
"""
