"""A Tang-poetry GPT under form constraints: held-out perplexity, constraint satisfaction, and their cost.

Usage: python benchmarks/poetry.py --run runs/gpt-tang-poetry-cpu [--samples 100] [--top-k 40]

The model is the one `zhixing pretrain --config configs/gpt-tang-poetry-cpu.yaml` trains on 全唐诗 without
the 366 poems of 唐诗三百首. Here:

1. held-out perplexity per character on 唐诗三百首 ("title\\npoem" documents, each scored after an
   end-of-text token as in training, its closing end-of-text included);
2. for the held-out poems tagged with one of the four regulated forms (五言/七言 绝句/律诗), the title as
   prompt, sampled with top-k: the share of outputs that take the form (lines, characters per line,
   punctuation, acrostic) without the constraint processors, with `form=`, and with `form=` + `acrostic=`
   (the first characters of the held-out poem's own lines);
3. what the constraints cost: the perplexity, under the same model, of the poems each setting wrote
   (their characters given the title) — how far the constrained text is from what the model prefers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

FORMS = ("五言绝句", "七言绝句", "五言律诗", "七言律诗")


def held_out(data: Path) -> list[dict]:
    path = data / "chinese-poetry" / "tang300.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@torch.no_grad()
def nll(model, context: list[int], target: list[int]) -> float:
    """Summed negative log-likelihood (nats) of `target` after `context`."""
    ids = torch.tensor([context + target])
    logits = model(ids[:, :-1]).logits
    logp = torch.log_softmax(logits.float(), dim=-1)[0, len(context) - 1:]
    return float(-logp.gather(1, torch.tensor(target)[:, None]).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a run directory of configs/gpt-tang-poetry-cpu.yaml")
    ap.add_argument("--samples", type=int, default=100, help="held-out regulated poems used as prompts")
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    import zhixing
    from zhixing.data.corpora import data_dir
    from zhixing.generation import generate
    from zhixing.generation.constraints import poem_form

    model = zhixing.load(args.run).eval()
    tok = zhixing.load_tokenizer(args.run)
    eos = tok.eos_id
    poems = held_out(data_dir())

    # 1. held-out perplexity
    start = time.perf_counter()
    total, count, unknown = 0.0, 0, 0
    for p in poems:
        ids = tok.encode(f"{p['title']}\n{''.join(p['paragraphs'])}", add_special_tokens=False).ids
        unknown += sum(1 for i in ids if i == tok.unk_id)
        target = ids + [eos]
        for s in range(0, len(target), model.config.max_seq_len - 1):  # long poems in context-sized pieces
            piece = target[s: s + model.config.max_seq_len - 1]
            context = [eos] if s == 0 else target[max(0, s - 1): s]
            total += nll(model, context, piece)
            count += len(piece)
    ppl = math.exp(total / count)
    print(json.dumps({"bench": "poetry_heldout", "poems": len(poems), "chars": count,
                      "unknown_rate": round(unknown / count, 4), "ppl_per_char": round(ppl, 2),
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)

    # 2. + 3. constraint satisfaction and cost
    regulated = [(p, f) for p in poems for f in FORMS if f in p.get("tags", [])][: args.samples]
    settings = {"none": {}, "form": {"form": True}, "form+acrostic": {"form": True, "acrostic": True}}
    rows = []
    for name, setting in settings.items():
        ok = nats = chars = 0
        start = time.perf_counter()
        for i, (p, form_name) in enumerate(regulated):
            form = poem_form(form_name)
            lines = [seg for para in p["paragraphs"] for seg in para.replace("。", "。|").replace("，", "，|")
                     .split("|") if seg]
            lines = [line.replace("[", "").replace("]", "") for line in lines]  # "[玄]宗": editor marks
            acrostic = "".join(line[0] for line in lines[: form.lines])
            acrostic = "".join(ch for ch in acrostic if tok.token_to_id(ch) is not None)[: form.lines]
            prompt = [eos] + tok.encode(f"{p['title']}\n", add_special_tokens=False).ids
            kwargs = dict(do_sample=True, top_k=args.top_k, seed=args.seed + i,
                          max_new_tokens=form.length + 1)
            if setting.get("form"):
                kwargs["form"] = form_name
            if setting.get("acrostic") and acrostic:
                kwargs["acrostic"] = acrostic
            out = generate(model, [prompt], tokenizer=tok, **kwargs)
            text = out.texts[0]
            ok += not form.check(text, acrostic=kwargs.get("acrostic"))
            new = [t for t in out.tokens[0].tolist() if t != eos][: form.length]
            if new:
                nats += nll(model, prompt, new)
                chars += len(new)
        rows.append({"setting": name, "poems": len(regulated), "satisfied": round(ok / len(regulated), 4),
                     "ppl_of_output": round(math.exp(nats / max(chars, 1)), 2),
                     "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps({"bench": "poetry_constraints", **rows[-1]}), flush=True)
    print(f"\nheld-out 唐诗三百首: perplexity per character {ppl:.2f} ({count:,} characters)\n")
    print(f"| decoding (top-k {args.top_k}, one sample per poem) | poems | form satisfied "
          "| perplexity of the output |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['setting']} | {r['poems']} | {100 * r['satisfied']:.1f}% | {r['ppl_of_output']:.2f} |")


if __name__ == "__main__":
    main()
