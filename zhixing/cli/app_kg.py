"""`zhixing app kg ...`: the knowledge-graph application (zhixing/apps/kg).

    zhixing app kg extract RUN TEXTFILE --db kg.sqlite      triples from raw text into a SQLite store
    zhixing app kg load kg.sqlite TEST_FILE_FULL.TXT        annotated triples (gold labels) into a store
    zhixing app kg query kg.sqlite "water hammer"           the store's triples about an entity
    zhixing app kg ask kg.sqlite "What causes the burst?"   an answer with its evidence sentence
    zhixing app kg eval RUN TESTFILE                         official SemEval score + KGQA accuracy

RUN is a relation run (`zhixing finetune --task relation ...`). Output is JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from zhixing.cli.app_kg_embed import embed_cmd


def _emit(obj: object) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


@click.group("kg")
def kg_group():
    """Knowledge graph: relation extraction into a SQLite triple store, queries, question answering."""


@kg_group.command("extract")
@click.argument("run")
@click.argument("textfile", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--db", required=True, type=click.Path(dir_okay=False), help="SQLite store (created if absent)."
)
@click.option("--min-score", default=0.5, show_default=True, type=float, help="Keep relations this probable.")
@click.option(
    "--max-candidates", default=12, show_default=True, type=int, help="Candidate nominals per sentence."
)
@click.option("--device", default="cpu", show_default=True)
def extract_cmd(run, textfile, db, min_score, max_candidates, device):
    """Extract triples from TEXTFILE (UTF-8 text) with the relation run RUN into --db."""
    from zhixing.apps.kg.extract import Extractor
    from zhixing.apps.kg.store import TripleStore
    from zhixing.data.corpora import read_utf8
    from zhixing.errors import DataError

    text = read_utf8(Path(textfile), error=DataError)
    ex = Extractor(run, device=device, min_score=min_score, max_candidates=max_candidates)
    with TripleStore(db) as store:
        out = ex.extract_into(store, text, source=Path(textfile).name)
        store.set_meta("relation_run", str(Path(run).resolve()))
        stats = store.stats()
    for t in out.pop("triples"):
        _emit(t)
    _emit({**out, "store": stats})


@kg_group.command("load")
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("labelled", type=click.Path(exists=True, dir_okay=False))
def load_cmd(db, labelled):
    """Add the triples of an annotated file (SemEval-2010 Task 8 or JSONL with labels) to DB, each with
    its sentence as evidence (score 1.0); Other pairs add nothing."""
    from zhixing.apps.kg.extract import to_triple
    from zhixing.apps.kg.store import TripleStore
    from zhixing.tasks import relation

    examples = relation.read(labelled)
    triples = [t for t in (to_triple(x, str(x.label), 1.0, Path(labelled).name) for x in examples) if t]
    with TripleStore(db) as store:
        new = store.add_triples(triples)
        _emit(
            {"examples": len(examples), "triples": len(triples), "new_triples": new, "store": store.stats()}
        )


@kg_group.command("query")
@click.argument("db", type=click.Path(exists=True, dir_okay=False))
@click.argument("entity", required=False)
@click.option("--relation", default=None, help="Only this relation (e.g. Cause-Effect).")
@click.option("--role", type=click.Choice(["any", "head", "tail"]), default="any", show_default=True)
@click.option("--limit", default=50, show_default=True, type=int)
def query_cmd(db, entity, relation, role, limit):
    """Triples of DB about ENTITY (and/or of --relation), best first, with their evidence."""
    from zhixing.apps.kg.store import TripleStore

    if entity is None and relation is None:
        raise click.UsageError("give an ENTITY and/or --relation")
    with TripleStore(db) as store:
        rows = store.query(entity, relation, role, limit)
    for r in rows:
        _emit(r)
    if not rows:
        click.echo(f"no triples for {entity or relation!r}", err=True)


@kg_group.command("ask")
@click.argument("db", type=click.Path(exists=True, dir_okay=False))
@click.argument("question")
@click.option("--embedder", default=None, help="Sentence encoder directory (default: all-MiniLM-L6-v2).")
def ask_cmd(db, question, embedder):
    """Answer QUESTION from DB: entity linking, relation prediction, lookup; the answer with evidence."""
    from zhixing.apps.kg.qa import KGQA, default_embedder
    from zhixing.apps.kg.store import TripleStore

    with TripleStore(db) as store:
        _emit(KGQA(store, default_embedder(embedder)).ask(question).to_dict())


@kg_group.command("eval")
@click.argument("run")
@click.argument("testfile", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--qa-triples", default=600, show_default=True, type=int, help="Gold triples questions come from."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--embedder", default=None, help="Sentence encoder directory (default: all-MiniLM-L6-v2).")
def eval_cmd(run, testfile, qa_triples, seed, embedder):
    """Score RUN on TESTFILE (official SemEval-2010 Task 8 macro-F1), then KGQA: a store of the model's
    predicted triples, asked questions made from gold triples with the held-out templates."""
    from zhixing.apps.kg.evaluate import evaluate_run

    _emit(evaluate_run(run, testfile, qa_triples=qa_triples, seed=seed, embedder=embedder))


# Knowledge-graph embeddings (TransE / RotatE / ComplEx): `zhixing app kg embed train|eval|predict`.
kg_group.add_command(embed_cmd, "embed")
