"""`zhixing app support train|chat|eval`: the customer-service assistant (zhixing.apps.support).

Imports only click at module level; torch and the application load when a command runs.
"""

from __future__ import annotations

import json
import sys

import click


@click.group("support")
def support_group() -> None:
    """Customer service: one encoder for intent (with out-of-scope detection), slots and sentiment; FAQ
    answers by dense retrieval; a dialogue loop with clarification and hand-off."""


@support_group.command("train", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1)
def train_cmd(args: tuple[str, ...]) -> None:
    """Train the multi-task model into runs/<name>/. ARGS: an optional YAML config first, then key=value
    settings (e.g. `configs/support/hwu64-minilm.yaml steps=300`, or `tasks=intent name=intent-only`)."""
    from zhixing.apps.support.train import load_config, train_support

    config = args[0] if args and "=" not in args[0] else None
    cfg = load_config(config, args[1:] if config else args)
    path = train_support(cfg)
    click.echo(f"trained: {path} (zhixing app support eval {path})")


@support_group.command("chat")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--faq",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="FAQ file (YAML/CSV); default: the one in RUN.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each turn's full result as one JSON line.")
@click.option("--threads", default=2, show_default=True, help="CPU threads.")
def chat_cmd(run: str, faq: str | None, as_json: bool, threads: int) -> None:
    """Chat on stdin, one turn per line (an empty line or EOF ends); prints intent, slots, sentiment,
    action and answer for each turn."""
    import torch

    from zhixing.apps.support.http import build_bot

    torch.set_num_threads(threads)
    bot = build_bot(run, faq)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            click.echo("you> ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line or not line.strip():
            break
        r = bot.turn("cli", line.strip())
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
            continue
        slots = ", ".join(f"{k}={v}" for k, v in r["slots"].items()) or "-"
        scope = "" if r["in_scope"] else " (out of scope)"
        click.echo(
            f"  intent {r['intent']} {r['confidence']:.2f}{scope} | slots {slots} | "
            f"sentiment {r['sentiment']} ({r['negative']:.2f} neg) | action {r['action']}"
        )
        click.echo(f"bot> {r['answer']}")


@support_group.command("eval")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--hwu64-test",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="HWU64 test.csv (default: the one the run was configured with).",
)
@click.option(
    "--sentiment-test",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Sentiment test file, SST-2 dev.tsv (default: the run's).",
)
@click.option(
    "--faq",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="FAQ file (default: the one in RUN).",
)
@click.option("--latency-turns", default=60, show_default=True, help="Turns timed for latency (0 = none).")
@click.option("--threads", default=2, show_default=True, help="CPU threads.")
def eval_cmd(
    run: str,
    hwu64_test: str | None,
    sentiment_test: str | None,
    faq: str | None,
    latency_turns: int,
    threads: int,
) -> None:
    """Print the run's figures as JSON: intent accuracy, slot F1, OOS precision/recall, sentiment accuracy,
    retrieval recall@1/5, latency per turn, parameters and disk size."""
    import torch

    from zhixing.apps.support.evaluate import evaluate_run

    torch.set_num_threads(threads)
    out = evaluate_run(
        run, hwu64_test=hwu64_test, sentiment_test=sentiment_test, faq=faq, latency_turns=latency_turns
    )
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))
