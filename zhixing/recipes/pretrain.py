"""A recipe from corpus to trained model: tokenizer -> token shards -> loaders -> model -> Trainer.

    summary = run_recipe(Recipe.load("configs/gpt-shakespeare-char.yaml", ["train.lr=3e-4"]))

Tokenizers and shards are cached under `data.cache_dir` and reused when the corpus and options match
(`prepare_shards` is idempotent), so a second run starts training at once. Under torchrun rank 0
prepares the data while the other ranks wait at a barrier.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from zhixing.config import ModelConfig
from zhixing.errors import ConfigError
from zhixing.io import RunDir
from zhixing.objectives import Objective, build_objective
from zhixing.train import distributed as D
from zhixing.train.config import Recipe


def _slug(corpus: str) -> str:
    """A directory name for a corpus: built-in names as they are, paths as stem + short hash."""
    if re.fullmatch(r"[A-Za-z0-9_.-]+", corpus) and not Path(corpus).exists():
        return corpus
    digest = hashlib.sha256(str(Path(corpus).resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', Path(corpus).stem)}-{digest}"


def data_dir(recipe: Recipe) -> Path:
    """<cache_dir>/<corpus>-<tokenizer kind>-<vocab> (or -tok<hash> for a given tokenizer directory)."""
    d = recipe.data
    if d.tokenizer:
        tag = "tok" + hashlib.sha256(str(Path(d.tokenizer).resolve()).encode()).hexdigest()[:8]
    else:
        tag = f"{d.tokenizer_kind}{d.vocab_size}" + (f"-{d.chinese_words}" if d.chinese_words else "")
    return Path(d.cache_dir) / f"{_slug(d.corpus)}-{tag}"


def prepare_tokenizer(recipe: Recipe, info: D.DistInfo, progress: bool = True):
    """The recipe's tokenizer: loaded from data.tokenizer, or trained on the corpus once and cached."""
    from zhixing.data import read_documents
    from zhixing.data.shards import source_fingerprint
    from zhixing.recipes.tokenizer import cached_tokenizer

    return cached_tokenizer(recipe, info, progress, lambda: read_documents(recipe.data.corpus),
                            data_dir(recipe) / "tokenizer", source=source_fingerprint(recipe.data.corpus))


def prepare_data(recipe: Recipe, tokenizer: Any, info: D.DistInfo, progress: bool = True) -> Path:
    """Token shards of the recipe's corpus (built by rank 0, reused when up to date)."""
    from zhixing.data import prepare_shards

    out = data_dir(recipe) / "shards"
    if info.is_main:
        prepare_shards(recipe.data.corpus, tokenizer, out, val_fraction=recipe.data.val_fraction,
                       split=recipe.data.split, progress=progress)
    D.barrier(info)
    return out


def check_model_fits_data(recipe: Recipe, config: ModelConfig) -> None:
    """Objective vs architecture, block size vs positions: errors that name the field to change."""
    d, src = recipe.data, recipe.source
    if d.block_size > config.max_seq_len:
        raise ConfigError(
            f"{src}: data.block_size={d.block_size} is above the model's max_seq_len={config.max_seq_len}; "
            f"lower data.block_size or raise model.max_seq_len to {d.block_size}"
        )
    if d.objective == "clm" and (config.arch != "gpt" or config.head != "lm"):
        raise ConfigError(f"{src}: data.objective=clm trains a GPT with head lm; the model is "
                          f"{config.arch} with head {config.head} (set model.preset to a gpt-* preset)")
    if d.objective == "plm" and (config.arch != "xlnet" or config.head != "lm"):
        raise ConfigError(f"{src}: data.objective=plm trains an XLNet with head lm (an xlnet-* preset); the "
                          f"model is {config.arch} with head {config.head}")
    if d.objective == "rtd" and (config.arch != "electra" or config.head != "pretraining"):
        raise ConfigError(f"{src}: data.objective=rtd trains an ELECTRA generator + discriminator (arch "
                          f"electra, head pretraining: an electra-* preset); the model is {config.arch} with "
                          f"head {config.head}")
    if d.objective == "mlm":
        if config.arch != "bert" or config.head not in ("mlm", "pretraining"):
            raise ConfigError(f"{src}: data.objective=mlm trains a BERT with head mlm or pretraining; the "
                              f"model is {config.arch} with head {config.head}")
        if d.nsp != (config.head == "pretraining"):
            fix = "model.head=pretraining" if d.nsp else "data.nsp=true (or model.head=mlm)"
            raise ConfigError(f"{src}: data.nsp={str(d.nsp).lower()} but model.head={config.head}; set {fix}")
        if d.nsp and not config.type_vocab_size:
            raise ConfigError(f"{src}: NSP needs segment embeddings; set model.type_vocab_size=2")


def build_loaders(recipe: Recipe, shards_dir: Path, tokenizer: Any, info: D.DistInfo) -> tuple[Any, Any]:
    """(train loader sharded by rank, val loader) for the recipe's objective."""
    from zhixing.data import CLMLoader, MLMLoader, TokenShards

    d, t = recipe.data, recipe.train
    train, val = TokenShards(shards_dir, "train"), TokenShards(shards_dir, "val")
    train.check_tokenizer(tokenizer)
    common = dict(block_size=d.block_size, batch_size=t.batch_size, rank=info.rank,
                  world_size=info.world_size)
    if d.objective == "clm":
        return CLMLoader(train, seed=t.seed, **common), CLMLoader(val, seed=t.seed, **common)
    if d.objective == "plm":
        from zhixing.data.plm import PLMLoader

        plm = dict(k=d.plm_k, max_span=d.plm_max_span)
        return (PLMLoader(train, tokenizer, seed=t.seed, **common, **plm),
                PLMLoader(val, tokenizer, seed=t.seed, **common, **plm))
    mlm = dict(mlm_probability=d.mlm_probability, mask_ratio=d.mask_ratio, random_ratio=d.random_ratio,
               whole_word=d.whole_word, nsp=d.nsp)
    return (MLMLoader(train, tokenizer, seed=t.seed, **common, **mlm),
            MLMLoader(val, tokenizer, seed=t.seed, **common, **mlm))


def objective_for(recipe: Recipe) -> Objective:
    """The training objective the recipe's data section names (data.objective, data.nsp)."""
    d = recipe.data
    return build_objective(d.objective, nsp=d.nsp, disc_weight=d.disc_weight)


def model_config_for(recipe: Recipe, tokenizer: Any) -> ModelConfig:
    """The recipe's model with the tokenizer's vocabulary size and special-token ids filled in."""
    config = recipe.model_config(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id,
                                 bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    check_model_fits_data(recipe, config)
    return config


def lora_settings(recipe: Recipe) -> dict[str, Any] | None:
    """The recipe's `peft` section as LoRA settings for zhixing.peft.runs.apply_method (None without one),
    checked now, before the data is prepared. LoRA adapts a trained model, so it needs model.init; the
    pretraining heads stay frozen with the rest (PEFT's setting for causal LMs)."""
    if not recipe.peft:
        return None
    from zhixing.peft import LoRAConfig

    if not recipe.model.get("init"):
        raise ConfigError(f"{recipe.source}: peft.method=lora adapts a trained model: set model.init to it "
                          "(LoRA on frozen random weights would learn next to nothing)")
    if recipe.data.objective in ("seq2seq", "sft"):
        raise ConfigError(f"{recipe.source}: peft in a recipe is for the pretraining objectives (clm, mlm, "
                          f"plm, rtd); data.objective={recipe.data.objective} trains in full")
    settings = {k: v for k, v in recipe.peft.items() if k != "method"}
    try:
        checked = LoRAConfig(**settings).to_dict()  # checked now; LoRAConfig's defaults filled in
    except ConfigError as e:
        raise ConfigError(f"{recipe.source}: peft: {e}") from None
    checked.pop("modules_to_save")  # nothing beside the adapters trains
    if not settings.get("targets"):
        checked.pop("targets")  # the family's default, as `zhixing finetune method=lora` picks it (GPT: qkv)
    return checked


def build_trainer(recipe: Recipe, info: D.DistInfo, progress: bool) -> Any:
    """Prepare the data (tokenizer, shards) and build the model, loaders and Trainer of a recipe."""
    import torch

    from zhixing.models import build_model
    from zhixing.tokenizers.layout import apply_layout
    from zhixing.train.loop import Trainer

    lora = lora_settings(recipe)
    if recipe.data.objective == "seq2seq":  # parallel text: its own data path (zhixing.recipes.translation)
        from zhixing.recipes import translation

        return translation.build_trainer(recipe, info, progress)
    if recipe.data.objective == "sft":  # conversations in a chat format (zhixing.recipes.sft)
        from zhixing.recipes import sft

        return sft.build_trainer(recipe, info, progress)
    init = recipe.model.get("init")
    if init and not recipe.data.tokenizer:  # continued pretraining reads the text as the model did
        from zhixing.hub import resolve, tokenizer_directory

        found = tokenizer_directory(*resolve(init))
        if found is None:
            raise ConfigError(f"{recipe.source}: model.init={init!r} has no tokenizer beside it; set "
                              "data.tokenizer to the one it was trained with")
        recipe.data = recipe.data.replace(tokenizer=str(found))
    # Validate what needs no data first, so a typo fails in a second, not after tokenization.
    recipe.model_config()
    if recipe.data.block_size > recipe.model_config().max_seq_len:
        check_model_fits_data(recipe, recipe.model_config())
    tokenizer = prepare_tokenizer(recipe, info, progress=progress and info.is_main)
    config = model_config_for(recipe, tokenizer)
    shards = prepare_data(recipe, tokenizer, info, progress=progress and info.is_main)
    train_loader, val_loader = build_loaders(recipe, shards, tokenizer, info)
    torch.manual_seed(recipe.train.seed)  # identical initial weights on every rank
    if init:  # continued (domain-adaptive) pretraining: the trained weights, the recipe's overrides
        from zhixing.hub import load

        overrides = {k: v for k, v in recipe.model.items() if k != "init"}
        model = load(init, **overrides).train()
    else:
        model = build_model(config)
    records = {}
    if lora is not None:  # LoRA on the frozen init model: only the adapters train and are saved
        from zhixing.peft.runs import ADAPTER_RECORD, apply_method, record

        apply_method(model, "lora", lora, modules_to_save=[])
        records[ADAPTER_RECORD] = record(model, init)
    # a family whose inputs have their own layout (XLNet: <cls> last, left padding) saves its tokenizer
    # with it, so fine-tuning builds the inputs pretraining used (the shards hold no special tokens)
    apply_layout(tokenizer, model.tokenizer_layout)
    run = RunDir(recipe.run_dir, tokenizer=tokenizer, config=recipe.to_dict(), records=records)
    return Trainer(model, objective_for(recipe), recipe.train, train_loader, val_loader, run, dist=info)


def run_recipe(recipe: Recipe, *, progress: bool | None = None) -> dict[str, Any]:
    """Prepare the data, build the model and train it; returns the run's summary (see Trainer.fit)."""
    info = D.setup(recipe.train.device)
    try:
        show = recipe.train.progress if progress is None else progress
        summary = build_trainer(recipe, info, show).fit()
        if recipe.data.objective == "seq2seq" and info.is_main:
            from zhixing.recipes import translation

            summary = translation.finish(recipe, summary, show)
        return summary
    finally:
        D.teardown()


def find_lr_recipe(recipe: Recipe, *, progress: bool | None = None, **test: Any) -> tuple[Any, Path]:
    """The learning-rate range test (zhixing.train.lr_find) on a recipe's model, objective and data:
    (LRFindResult, the run directory holding lr_find.png / lr_find.json). `test`: start_lr, end_lr, steps."""
    from zhixing.train.lr_find import lr_range_test

    info = D.setup(recipe.train.device)
    try:
        show = recipe.train.progress if progress is None else progress
        trainer = build_trainer(recipe, info, show)
        result = lr_range_test(trainer, **test)
        result.save(recipe.run_dir, title=recipe.name)
        return result, Path(recipe.run_dir)
    finally:
        D.teardown()
