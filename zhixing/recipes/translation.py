"""The translation recipe: a parallel corpus -> joint BPE -> encoder–decoder Transformer -> BLEU.

    zhixing pretrain --config configs/transformer-multi30k-de-en.yaml

`data.objective: seq2seq` routes a recipe here from zhixing.recipes.pretrain. The loop is the one every
run uses (zhixing.train.Trainer with the Seq2Seq objective: label smoothing, teacher forcing); after it, the
last `data.average_last` checkpoints are averaged into `<run>/averaged/`, which translates the test split
with beam search; BLEU, its signature and the translations go into the run's summary and directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from zhixing.errors import ConfigError
from zhixing.io import RunDir, atomic_write_json, atomic_write_text, staged_dir
from zhixing.train import distributed as D
from zhixing.train.callbacks import Callback
from zhixing.train.config import Recipe

SPECIALS = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"}


@torch.no_grad()
def translate(model, tokenizer, texts: Sequence[str], *, num_beams: int = 5, length_penalty: float = 1.0,
              batch_size: int = 64, max_new_tokens: int | None = None, progress: bool = False) -> list[str]:
    """Translations of `texts` (beam search when num_beams > 1, else greedy), in input order."""
    from zhixing.generation import generate
    from zhixing.train.logging import progress_bar

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[str] = [""] * len(texts)
    limit = max_new_tokens or model.config.max_seq_len - 1
    with progress_bar("translating", len(texts), enabled=progress or None) as advance:
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            ids = [tokenizer.encode(texts[i], add_special_tokens=False).ids[: model.config.max_seq_len]
                   for i in idx]
            result = generate(model, ids, tokenizer=tokenizer, num_beams=num_beams, do_sample=False,
                              length_penalty=length_penalty, max_new_tokens=limit, early_stopping=True)
            for i, text in zip(idx, result.texts):
                out[i] = text.strip()
            advance(len(idx))
    return out


def bleu_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """sacreBLEU (cased, detokenised, 13a) with its signature, and the lowercased BLEU (13a tokens) — the
    PyTorch translation tutorial's kind of figure (36.52 on Multi30k de→en, greedy)."""
    import sacrebleu

    cased = sacrebleu.metrics.BLEU()
    score = cased.corpus_score(list(hypotheses), [list(references)])
    lower = sacrebleu.metrics.BLEU(lowercase=True)
    lscore = lower.corpus_score(list(hypotheses), [list(references)])
    return {"bleu": round(score.score, 2), "signature": str(cased.get_signature()),
            "bleu_lowercase": round(lscore.score, 2), "signature_lowercase": str(lower.get_signature())}


def evaluate_bleu(model, tokenizer, pairs: Sequence[tuple[str, str]], **decode: Any) -> dict[str, Any]:
    hyps = translate(model, tokenizer, [s for s, _ in pairs], **decode)
    return {**bleu_scores(hyps, [t for _, t in pairs]), "sentences": len(pairs), "hypotheses": hyps}




def _pairs(recipe: Recipe, split: str) -> list[tuple[str, str]]:
    from zhixing.tasks.translate import parallel_dir, read_parallel, split_files

    d = recipe.data
    return read_parallel(*split_files(parallel_dir(d.corpus), split, d.source_lang, d.target_lang))


def tokenizer_dir(recipe: Recipe) -> Path:
    d = recipe.data
    name = Path(d.corpus).name or d.corpus
    return Path(d.cache_dir) / f"{name}-{d.source_lang}{d.target_lang}-{d.tokenizer_kind}{d.vocab_size}"


def prepare_tokenizer(recipe: Recipe, pairs: list[tuple[str, str]], info: D.DistInfo, progress: bool):
    """One vocabulary for both languages, trained on both sides of the training split (cached)."""
    from zhixing.recipes.tokenizer import cached_tokenizer

    return cached_tokenizer(recipe, info, progress, lambda: [s for s, _ in pairs] + [t for _, t in pairs],
                            tokenizer_dir(recipe), SPECIALS)


def build_trainer(recipe: Recipe, info: D.DistInfo, progress: bool) -> Any:
    """Tokenizer, features, loaders, model and Trainer of a seq2seq recipe."""
    import torch

    from zhixing.models import build_model
    from zhixing.objectives import build_objective
    from zhixing.tasks.translate import ParallelLoader, encode_pairs
    from zhixing.train.loop import Trainer

    d, t = recipe.data, recipe.train
    if recipe.model.get("init"):
        raise ConfigError(f"{recipe.source}: model.init is not supported by seq2seq recipes yet; train "
                          "from a preset")
    base = recipe.model_config()
    if base.arch != "transformer":
        raise ConfigError(f"{recipe.source}: data.objective=seq2seq trains an encoder–decoder (a "
                          f"transformer-* preset); the model is {base.arch}")
    train_pairs, val_pairs = _pairs(recipe, d.train_split), _pairs(recipe, d.val_split)
    tok = prepare_tokenizer(recipe, train_pairs, info, progress and info.is_main)
    config = recipe.model_config(vocab_size=tok.vocab_size, pad_token_id=tok.pad_id, bos_token_id=tok.bos_id,
                                 eos_token_id=tok.eos_id, decoder_start_token_id=tok.bos_id)
    limit = min(d.block_size, config.max_seq_len)
    train = ParallelLoader(encode_pairs(train_pairs, tok, limit), t.batch_size, tok.pad_id, tok.bos_id,
                           seed=t.seed)
    val = ParallelLoader(encode_pairs(val_pairs, tok, limit), t.batch_size, tok.pad_id, tok.bos_id,
                         shuffle=False)
    torch.manual_seed(t.seed)
    model = build_model(config)
    run = RunDir(recipe.run_dir, tokenizer=tok, config=recipe.to_dict())
    if t.keep_last < d.average_last:  # the checkpoints to average must still be there at the end
        recipe.train = t = t.replace(keep_last=d.average_last)
    objective = build_objective("seq2seq", label_smoothing=d.label_smoothing)
    callbacks = [ValBleu(val_pairs, tok)] if d.val_bleu else []
    return Trainer(model, objective, t, train, val, run, dist=info, callbacks=callbacks)


class ValBleu(Callback):
    """At each evaluation, the val split translated greedily and scored: `<run>/val_bleu.jsonl` holds
    {step, bleu, elapsed_s} (elapsed: the run's wall time so far without these translations), for "wall time
    to a BLEU" comparisons with another training loop."""

    def __init__(self, pairs: list[tuple[str, str]], tokenizer):
        self.pairs, self.tokenizer, self.start = pairs, tokenizer, time.perf_counter()
        self.eval_seconds = 0.0  # time spent here, not counted as training time

    def on_start(self, trainer) -> None:
        self.start = time.perf_counter()

    def on_eval(self, trainer, step: int, metrics: dict[str, float]) -> None:
        began = time.perf_counter()
        model = trainer.raw
        was_training = model.training
        scores = evaluate_bleu(model.eval(), self.tokenizer, self.pairs, num_beams=1)
        model.train(was_training)
        record = {"step": step, "bleu": scores["bleu"], "bleu_lowercase": scores["bleu_lowercase"],
                  "elapsed_s": round(began - self.start - self.eval_seconds, 1)}
        self.eval_seconds += time.perf_counter() - began
        if trainer.run_dir is not None:
            with open(Path(trainer.run_dir) / "val_bleu.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def finish(recipe: Recipe, summary: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Average the last checkpoints into <run>/averaged/ and score the test split with BLEU."""
    from zhixing.hub import load, load_tokenizer
    from zhixing.models.base import write_model_files
    from zhixing.train.checkpoint import average_checkpoints

    d = recipe.data
    run = RunDir(recipe.run_dir)
    steps = [p for _, p in run.checkpoints()][-d.average_last:]
    model_dir = run.best if run.best.is_dir() else steps[-1]
    if d.average_last > 1 and len(steps) > 1:
        state = average_checkpoints(steps)
        config = json.loads((steps[-1] / "config.json").read_text(encoding="utf-8"))
        tok = load_tokenizer(steps[-1])
        model_dir = Path(recipe.run_dir) / "averaged"
        with staged_dir(model_dir) as tmp:
            write_model_files(tmp, state, config, tok)
        summary["averaged"] = {"checkpoints": [p.name for p in steps], "model": str(model_dir)}
    if not d.test_split:
        return summary
    model = load(model_dir).eval()
    tok = load_tokenizer(model_dir)
    start = time.perf_counter()
    result = evaluate_bleu(model, tok, _pairs(recipe, d.test_split), num_beams=d.num_beams,
                           length_penalty=d.length_penalty, progress=progress)
    hyps = result.pop("hypotheses")
    atomic_write_text(Path(recipe.run_dir) / f"{d.test_split}.{d.target_lang}.hyp", "\n".join(hyps) + "\n")
    summary["test"] = {**result, "split": d.test_split, "model": str(model_dir), "num_beams": d.num_beams,
                       "length_penalty": d.length_penalty, "seconds": round(time.perf_counter() - start, 1)}
    atomic_write_json(Path(recipe.run_dir) / "summary.json", summary)
    return summary


class TranslationPipeline:
    """`zhixing.pipeline("translation", run)`: a sentence (or a list) in, its translation(s) out."""

    def __init__(self, path, num_beams: int = 5, length_penalty: float = 1.0, batch_size: int = 64,
                 device: str = "cpu"):
        from zhixing.hub import load, load_tokenizer

        path = Path(path)
        if (path / "averaged").is_dir():
            path = path / "averaged"
        self.model = load(path).to(device).eval()
        if self.model.config.arch != "transformer":
            raise ValueError(f"{path}: a {self.model.config.arch} model; translation needs an "
                             "encoder–decoder")
        self.tokenizer = load_tokenizer(path)
        self.settings = dict(num_beams=num_beams, length_penalty=length_penalty, batch_size=batch_size)

    def __call__(self, texts: str | Sequence[str], **settings: Any) -> str | list[str]:
        single = isinstance(texts, str)
        out = translate(self.model, self.tokenizer, [texts] if single else list(texts),
                        **{**self.settings, **settings})
        return out[0] if single else out
