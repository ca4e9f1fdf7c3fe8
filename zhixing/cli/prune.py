"""`zhixing prune RUN --data FILE --out DIR --heads 0.3 --ffn 0.2`: structured pruning of a fine-tuned
model."""

from __future__ import annotations

import json
import time

import click

EPILOG = """\b
Examples:
  zhixing prune runs/sst2 --data sst2/train.tsv --out pruned/sst2-h30 --heads 0.3
  zhixing prune runs/sst2 --data sst2/train.tsv --out pruned/sst2-f40 --ffn 0.4 --dev sst2/dev.tsv
\b
Head importance (Michel et al. 2019) is |dL/d gate| summed over --samples examples of --data (use training
data: the dev set then stays a fair test); FFN neurons by the same gradient or by weight magnitude. The
least important heads / neurons over all layers go (every layer keeps at least one); the output directory
loads with zhixing.load and works with `zhixing predict` / `evaluate`. prune.json there records the
importance scores, what was removed and the parameter counts (and dev metrics with --dev).
"""


def _fraction(value: float | None, flag: str) -> float:
    from zhixing.compress.prune import check_fraction

    return check_fraction(value, flag) if value is not None else 0.0


@click.command("prune", epilog=EPILOG)
@click.argument("run")
@click.option("--data", required=True, help="Labelled examples (task format) to score importance on.")
@click.option("--out", "out_dir", required=True, help="Directory for the pruned model.")
@click.option("--heads", type=float, default=None, help="Share of all attention heads to remove, in [0, 1).")
@click.option("--ffn", type=float, default=None, help="Share of all FFN neurons to remove, in [0, 1).")
@click.option("--ffn-method", type=click.Choice(["gradient", "magnitude"]), default="gradient",
              show_default=True, help="FFN neuron importance.")
@click.option("--samples", type=int, default=2000, show_default=True, help="Examples of --data used.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--dev", "dev_file", default=None, help="Optional labelled file scored before and after.")
@click.option("--task", type=click.Choice(["classify", "ner", "qa"]), default=None,
              help="Needed only for a model directory without task.json.")
def prune_cmd(run: str, data: str, out_dir: str, heads: float | None, ffn: float | None, ffn_method: str,
              samples: int, batch_size: int, dev_file: str | None, task: str | None) -> None:
    """Remove the least important attention heads and/or FFN neurons of a fine-tuned RUN."""
    import torch

    from zhixing.compress import prune as P
    from zhixing.io import staged_files
    from zhixing.models.base import write_model_files
    from zhixing.objectives import Classification, SpanQA
    from zhixing.tasks.data import collate
    from zhixing.tasks.finetune import load_task_run

    head_share, ffn_share = _fraction(heads, "--heads"), _fraction(ffn, "--ffn")
    if heads is None and ffn is None:
        raise click.UsageError("say what to prune: --heads FRACTION and/or --ffn FRACTION")
    if samples < 1 or batch_size < 1:
        raise click.BadParameter("--samples and --batch-size must be >= 1")
    model, spec, cfg = load_task_run(run, task)
    tokenizer = model.tokenizer
    examples = spec.read(data, cfg)[:samples]
    labels = model.config.label_names or None
    if labels is not None:
        spec.check_labels(examples, labels, data)
    feats = spec.encode_train(examples, tokenizer, cfg, labels)
    batches = [collate(feats[i:i + batch_size], tokenizer.pad_id) for i in range(0, len(feats), batch_size)]
    objective = SpanQA() if spec.objective == "span" else Classification()
    dev = spec.read(dev_file, cfg) if dev_file else None
    report: dict = {"source": run, "data": data, "samples": len(examples),
                    "params_before": model.num_parameters()}
    if dev is not None:
        report["dev_before"] = spec.evaluate(model, tokenizer, dev, cfg)
    t0 = time.perf_counter()
    with torch.enable_grad():
        if heads is not None:
            scores = P.head_importance(model, batches, objective)
            chosen = P.select(scores, fraction=head_share, what="heads")
            P.prune_heads(model, chosen)
            report["head_importance"] = [s.tolist() for s in scores]
            report["heads_removed"] = {str(k): v for k, v in chosen.items()}
        if ffn is not None:
            scores = P.neuron_importance(model, batches, objective, method=ffn_method)
            chosen = P.select(scores, fraction=ffn_share, what="neurons")
            P.prune_neurons(model, chosen)
            report["neurons_removed_per_layer"] = {str(k): len(v) for k, v in chosen.items()}
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report.update(heads_per_layer=model.config.heads_per_layer, ffn_dims=model.config.ffn_dims,
                  params_after=model.num_parameters())
    if dev is not None:
        report["dev_after"] = spec.evaluate(model, tokenizer, dev, cfg)
    with staged_files(out_dir) as tmp:
        write_model_files(tmp, model.unique_state_dict(), model.config.to_dict(), tokenizer)
        (tmp / "prune.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    cfg_after = model.config
    click.echo(f"params {report['params_before']:,} -> {report['params_after']:,}; heads per layer "
               f"{cfg_after.heads_per_layer or 'unchanged'}; FFN widths {cfg_after.ffn_dims or 'unchanged'}")
    for when in ("dev_before", "dev_after"):
        if when in report:
            text = ", ".join(f"{k} {v:.4f}" for k, v in report[when].items() if isinstance(v, float))
            click.echo(f"{when.replace('_', ' ')}: {text}")
    click.echo(f"saved: {out_dir}")
