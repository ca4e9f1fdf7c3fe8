"""`zhixing app kg embed train|eval|predict`: knowledge representation learning (zhixing.apps.kg.embed) —
TransE / RotatE / ComplEx link prediction on FB15k-237 / WN18RR style triple files.

`embed_cmd` is a click group that the `zhixing app kg` group adds; imports only click at module level.
"""

from __future__ import annotations

import json

import click

# flag -> EmbedConfig field; a flag that is not given keeps the field's default
FLAGS = {
    "dim": "dim",
    "negatives": "negatives",
    "batch_size": "batch_size",
    "steps": "steps",
    "lr": "lr",
    "optimizer": "optimizer",
    "gamma": "gamma",
    "alpha": "alpha",
    "p_norm": "p_norm",
    "max_time": "max_time",
    "eval_every": "eval_every",
    "eval_valid": "eval_valid",
    "patience": "patience",
    "regularization": "regularization",
    "reciprocal": "reciprocal",
    "test_limit": "test_limit",
    "seed": "seed",
}


@click.group("embed")
def embed_cmd() -> None:
    """Knowledge-graph embeddings: train TransE / RotatE / ComplEx, evaluate filtered MRR and Hits@k,
    rank the answers of (head, relation, ?) or (?, relation, tail)."""


@embed_cmd.command("train")
@click.option(
    "--data",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory with train.txt, valid.txt, test.txt (head<TAB>relation<TAB>tail lines).",
)
@click.option(
    "--model", type=click.Choice(["transe", "rotate", "complex"]), default="rotate", show_default=True
)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--dim", type=int, help="Embedding size (complex dims for rotate/complex). [100]")
@click.option("--negatives", type=int, help="Corrupted triples per positive (transe, rotate). [128]")
@click.option("--batch-size", type=int, help="Positive triples per step. [512]")
@click.option("--steps", type=int, help="Optimizer steps. [2000]")
@click.option("--lr", type=float, help="Learning rate. [0.001]")
@click.option("--optimizer", type=click.Choice(["adam", "adagrad"]), help="The optimizer. [adam]")
@click.option("--gamma", type=float, help="Margin γ of transe/rotate. [6.0]")
@click.option("--alpha", type=float, help="Self-adversarial temperature α, 0 = uniform. [0.5]")
@click.option("--p-norm", type=int, help="TransE norm, 1 or 2. [1]")
@click.option("--max-time", type=float, help="Stop after this many seconds of training, 0 = no limit. [0]")
@click.option("--eval-every", type=int, help="Validate every N steps, 0 = at the end only. [500]")
@click.option("--eval-valid", type=int, help="Valid triples used for selection, 0 = all. [1000]")
@click.option("--patience", type=int, help="Stop after N validations without a better MRR, 0 = never. [0]")
@click.option("--regularization", type=float, help="ComplEx N3 weight. [0]")
@click.option(
    "--reciprocal/--no-reciprocal",
    default=None,
    help="Own embeddings for the inverse relations: (?, r, t) is asked as (t, r⁻¹, ?). [off]",
)
@click.option("--test-limit", type=int, help="Test triples evaluated at the end, 0 = all. [0]")
@click.option("--seed", type=int, help="Seed of initialisation, order and negatives. [0]")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
def train_cmd(data, model, out, quiet, **flags) -> None:
    """Train a knowledge-graph embedding on DATA's train split, keep the step with the best filtered
    valid MRR, evaluate it on test and write the run (safetensors + JSON) to --out.

    Example: zhixing app kg embed train --data ../shared/data/kg/WN18RR --model rotate --dim 100
    --steps 2000 --out runs/kge-wn18rr
    """
    from zhixing.apps.kg.embed import EmbedConfig, train
    from zhixing.apps.kg.kge_data import load_kg

    settings = {FLAGS[k]: v for k, v in flags.items() if v is not None}
    config = EmbedConfig.from_dict({"model": model, **settings}, source="flags")
    graph = load_kg(data)
    click.echo(
        f"{graph.num_entities} entities, {graph.num_relations} relations, "
        + ", ".join(f"{k} {len(v)}" for k, v in graph.splits.items()),
        err=True,
    )

    def log(record: dict) -> None:
        if not quiet:
            click.echo(
                " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                err=True,
            )

    result = train(graph, config, out, log=log)
    click.echo(json.dumps(result.summary, indent=2))


@embed_cmd.command("eval")
@click.argument("run", type=click.Path(file_okay=False))
@click.option(
    "--data",
    required=True,
    type=click.Path(file_okay=False),
    help="The triple directory the run was trained on.",
)
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True)
@click.option("--limit", type=int, default=0, show_default=True, help="Only the first N triples (0 = all).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Queries scored at once.")
def eval_cmd(run, data, split, limit, batch_size) -> None:
    """Filtered MRR, MR and Hits@1/3/10 of RUN on a split (head and tail prediction), as JSON."""
    from zhixing.apps.kg.embed import KGEmbedding

    if limit < 0 or batch_size < 1:
        raise click.BadParameter("--limit must be >= 0 and --batch-size >= 1")
    metrics = KGEmbedding.load(run).evaluate(data, split, batch_size=batch_size, limit=limit)
    click.echo(json.dumps(metrics, indent=2))


@embed_cmd.command("predict")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--relation", "-r", required=True, help="Relation name as in the training files.")
@click.option("--head", default=None, help="Rank tails of (HEAD, relation, ?).")
@click.option("--tail", default=None, help="Rank heads of (?, relation, TAIL).")
@click.option("-k", "top_k", type=int, default=10, show_default=True, help="How many answers.")
def predict_cmd(run, relation, head, tail, top_k) -> None:
    """The best-scored answers of a query, one `entity<TAB>score` per line."""
    from zhixing.apps.kg.embed import KGEmbedding

    if top_k < 1:
        raise click.BadParameter("-k must be at least 1")
    for entity, score in KGEmbedding.load(run).predict(relation, head=head, tail=tail, k=top_k):
        click.echo(f"{entity}\t{score:.4f}")
