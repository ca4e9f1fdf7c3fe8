"""Instruction tuning: supervised fine-tuning (SFT) of a GPT on conversations, in its chat format.

    zhixing pretrain --config my-sft.yaml          # data.objective: sft, model.init: a trained GPT

Each conversation is rendered with the chat template the model will be served with (`data.chat_template`:
a Jinja file, else the init tokenizer's template, else the plain transcript of zhixing.generation.chat),
and the template is saved with the run's tokenizer, so `zhixing chat` and `zhixing serve` render prompts
exactly as training did. The loss is the causal LM's, on the tokens of the assistant turns only (and the
end-of-text after the last one): for assistant turn i,

    prompt_i   = render(messages[:i], add_generation_prompt=True)      -> labels -100 (context)
    reply_i    = render(messages[:i+1])[len(prompt_i):]                -> labels = the tokens (learned)

which needs a template whose renderings extend each other (all common ones do; one that does not is
refused). Several conversations are packed into one sequence of `data.block_size` tokens, each with its
own positions (restarting at 0) and a block-diagonal attention mask, so none attends to another — the
same logits as alone (tests/nn/test_attention.py), without the padding of one conversation per row.

Input: JSONL, one conversation per line — {"messages": [{"role": ..., "content": ...}, ...]}, or
{"prompt": ..., "response": ...}, or Alpaca's {"instruction": ..., "input": ..., "output": ...}.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zhixing.errors import ConfigError, DataError
from zhixing.models.heads import IGNORE
from zhixing.tasks.data import TaskLoader
from zhixing.train import distributed as D
from zhixing.train.config import Recipe

ROLES = ("system", "user", "assistant")
_PROBE = "\u2063zhixing-slot\u2063"  # a text no template writes by itself


def read_conversations(path: str | os.PathLike) -> list[list[dict[str, str]]]:
    """The conversations of a JSONL file; one-line errors naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected JSONL conversations)")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object")
        if "messages" in record:
            messages = record["messages"]
        elif "prompt" in record and "response" in record:
            messages = [{"role": "user", "content": record["prompt"]},
                        {"role": "assistant", "content": record["response"]}]
        elif "instruction" in record and "output" in record:
            prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
            messages = [{"role": "user", "content": prompt},
                        {"role": "assistant", "content": record["output"]}]
        else:
            raise DataError(f"{where}: expected 'messages', or 'prompt' + 'response', or 'instruction' + "
                            f"'output'; got keys {sorted(record)}")
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: 'messages' must be a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(f"{where}: message {i} must be {{'role': one of {', '.join(ROLES)}, "
                                f"'content': text}}, got {m!r}"[:300])
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{where}: no assistant message: nothing to learn from this conversation")
        out.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if not out:
        raise DataError(f"{path}: no conversations")
    return out


def check_template(template: str, tokenizer) -> None:
    """Refuse a template that drops the messages (no slot for their content) — one line."""
    from zhixing.generation.chat import render

    text = render([{"role": "user", "content": _PROBE}], template, tokenizer=tokenizer)
    reply = render([{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}], template,
                   tokenizer=tokenizer, add_generation_prompt=False)
    if _PROBE not in text or _PROBE not in reply:
        raise ConfigError("the chat template has no slot for the message: its rendering does not contain "
                          "the messages' content (use {{ message['content'] }} in its loop)")


def encode_conversation(messages: list[dict[str, str]], tokenizer, template: str) -> dict[str, list[int]]:
    """input_ids and labels (-100 outside the assistant replies) of one conversation, eos at the end."""
    from zhixing.generation.chat import render

    pieces: list[tuple[str, bool]] = []  # (text, learned)
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = render(messages[:i], template, tokenizer=tokenizer, add_generation_prompt=True)
        full = render(messages[: i + 1], template, tokenizer=tokenizer, add_generation_prompt=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ConfigError("the chat template's renderings do not extend each other (the text up to a "
                              "reply changes when the reply is added), so replies cannot be told apart for "
                              "the loss; use a template whose turns are appended")
        pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    ids: list[int] = []
    labels: list[int] = []
    for text, learned in pieces:
        if not text:
            continue
        part = tokenizer.encode(text, add_special_tokens=False).ids
        ids += part
        labels += part if learned else [IGNORE] * len(part)
    ids.append(tokenizer.eos_id)
    labels.append(tokenizer.eos_id)
    return {"input_ids": ids, "labels": labels}


def pack(features: list[dict[str, list[int]]], block_size: int) -> list[dict[str, list[int]]]:
    """Conversations packed in order into rows of at most block_size tokens (a longer one is cut)."""
    rows: list[dict[str, list[int]]] = []
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": [], "doc": []}
    cut = 0
    for f in features:
        ids, labels = f["input_ids"][:block_size], f["labels"][:block_size]
        cut += len(f["input_ids"]) > block_size
        if row["input_ids"] and len(row["input_ids"]) + len(ids) > block_size:
            rows.append(row)
            row = {"input_ids": [], "labels": [], "position_ids": [], "doc": []}
        doc = row["doc"][-1] + 1 if row["doc"] else 0
        row["input_ids"] += ids
        row["labels"] += labels
        row["position_ids"] += list(range(len(ids)))
        row["doc"] += [doc] * len(ids)
    if row["input_ids"]:
        rows.append(row)
    if cut:
        warnings.warn(f"{cut} conversation(s) longer than data.block_size={block_size} tokens were cut; "
                      "raise data.block_size (and model.max_seq_len) to keep them whole", stacklevel=2)
    return rows


class PackedLoader(TaskLoader):
    """Rows of packed conversations: padded to the longest, a block-diagonal causal attention mask."""

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows, longest = len(features), max(len(f["input_ids"]) for f in features)
        ids = torch.full((rows, longest), self.pad_id, dtype=torch.long)
        labels = torch.full((rows, longest), IGNORE, dtype=torch.long)
        positions = torch.zeros(rows, longest, dtype=torch.long)
        doc = torch.full((rows, longest), -1, dtype=torch.long)  # -1: padding, sees only itself
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            ids[r, :n], labels[r, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"])
            positions[r, :n], doc[r, :n] = torch.tensor(f["position_ids"]), torch.tensor(f["doc"])
        keep = doc[:, :, None] == doc[:, None, :]
        return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": keep}


def build_trainer(recipe: Recipe, info: D.DistInfo, progress: bool) -> Any:
    """The GPT of model.init, its tokenizer with the chat template, the packed conversations, a Trainer."""
    from zhixing.generation.chat import template_of
    from zhixing.hub import load
    from zhixing.io import RunDir
    from zhixing.objectives import build_objective
    from zhixing.train.loop import Trainer

    d, t = recipe.data, recipe.train
    init = recipe.model.get("init")
    if not init:
        raise ConfigError(f"{recipe.source}: data.objective=sft fine-tunes a trained GPT: set model.init to "
                          "its run or model directory")
    overrides = {k: v for k, v in recipe.model.items() if k != "init"}
    model = load(init, **overrides)
    if model.config.arch != "gpt" or model.config.head != "lm":
        raise ConfigError(f"{recipe.source}: model.init={init!r} is a {model.config.arch} with head "
                          f"{model.config.head}; instruction tuning needs a GPT with an LM head")
    tok = model.tokenizer
    if tok is None or tok.eos_id is None:
        raise ConfigError(f"{recipe.source}: model.init={init!r} needs its tokenizer, with an eos token")
    if d.chat_template:
        template = Path(d.chat_template).read_text(encoding="utf-8")
    else:
        template = template_of(tok)
    check_template(template, tok)
    tok.chat_template = template  # saved with the run's tokenizer: chat / serve render as training did
    conversations = read_conversations(d.corpus)
    order = np.random.default_rng(t.seed).permutation(len(conversations))
    n_val = max(1, round(len(conversations) * d.val_fraction)) if len(conversations) > 1 else 0
    encoded = [encode_conversation(conversations[i], tok, template) for i in order]
    block = min(d.block_size, model.config.max_seq_len)
    if d.pack:
        train_rows = pack(encoded[n_val:], block)
    else:  # one conversation per row
        train_rows = [row for e in encoded[n_val:] for row in pack([e], block)]
    val_rows = pack(encoded[:n_val], block) if n_val else []
    pad = tok.pad_id if tok.pad_id is not None else tok.eos_id
    train = PackedLoader(train_rows, t.batch_size, pad, seed=t.seed)
    val = PackedLoader(val_rows, t.batch_size, pad, shuffle=False) if val_rows else None
    run = RunDir(recipe.run_dir, tokenizer=tok, config=recipe.to_dict())
    return Trainer(model.train(), build_objective("clm"), t, train, val, run, dist=info)
