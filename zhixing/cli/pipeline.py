"""`zhixing pipeline TASK MODEL INPUT...`: any pipeline from the command line, one JSON line per input.

    zhixing pipeline fill-mask bert-dir "知行合[MASK]。" --set top_k=3
    zhixing pipeline sentence-embedding MiniLM-dir "A man is eating." "Someone eats." --similarity
    zhixing pipeline text-generation runs/quickstart "中国人民" --set max_new_tokens=30
"""

from __future__ import annotations

import json
from typing import Any

import click


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):  # tensors: embeddings, token features
        return _jsonable(x.tolist())
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    return x


@click.command("pipeline")
@click.argument("task")
@click.argument("model_path", metavar="MODEL")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, auto, ...")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A pipeline setting (top_k=3, pooling=cls, max_new_tokens=20, ...); repeatable.")
@click.option("--similarity", is_flag=True, help="sentence-embedding: print the cosine similarity matrix.")
def pipeline_cmd(task: str, model_path: str, inputs: tuple[str, ...], device: str, settings: tuple[str, ...],
                 similarity: bool) -> None:
    """Run TASK (text-generation, fill-mask, feature-extraction, sentence-embedding, classify, ner, qa)
    with MODEL on each INPUT (batched), printing one JSON line per input."""
    import yaml

    options: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        options[key.strip()] = yaml.safe_load(value)
    if task == "text-generation":
        from zhixing.generation.pipeline import TextGenerationPipeline

        pipe = TextGenerationPipeline(model_path, device=device, **options)
    else:
        from zhixing.tasks.pipeline import pipeline

        pipe = pipeline(task, model_path, device=device, **options)
    out = pipe(list(inputs))
    if similarity:
        from zhixing.tasks.pretrained import similarity as cosine

        if task != "sentence-embedding":
            raise click.BadParameter("--similarity is for sentence-embedding", param_hint="--similarity")
        click.echo(json.dumps(_jsonable(cosine(out))))
        return
    for result in out:
        click.echo(json.dumps(_jsonable(result), ensure_ascii=False))
