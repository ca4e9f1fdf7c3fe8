"""`zhixing quantize`: a model directory -> its quantized copy (docs/compression.md, "Quantization")."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("quantize")
@click.argument("model")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--method", default="int8", show_default=True,
              help="dynamic-int8 (encoders), int8 / int4 (weight-only, decoding), bf16, fp16.")
@click.option("--group-size", type=int, default=None,
              help="int4 only: inputs per scale and zero (32, 64, 128 or 256; default 64).")
def quantize_cmd(model: str, out: Path, method: str, group_size: int | None) -> None:
    """Quantize MODEL (a zhixing, run or Hugging Face directory) and write it to OUT.

    \b
    zhixing quantize runs/shakespeare out/int4 --method int4 --group-size 64
    zhixing generate out/int4 "ROMEO:"           # loads the quantized model as is

    The tokenizer and generation_config.json travel along. The sizes before and after are printed.
    """
    from zhixing.generation.config import FILENAME
    from zhixing.hub import load, resolve
    from zhixing.quant import quantize, save

    src, _ = resolve(model)
    m = load(model)
    before = sum(t.numel() * t.element_size() for t in m.unique_state_dict().values())
    quantize(m, method, group_size)
    extra = tuple(p for p in [src / FILENAME] if p.is_file())
    save(m, out, extra_files=extra)
    after = (out / "model.safetensors").stat().st_size
    group = f", group size {m.quantization['group_size']}" if "group_size" in m.quantization else ""
    click.echo(f"quantized {model} ({method}{group}): {before / 2**20:.1f} MB of float weights -> "
               f"{after / 2**20:.1f} MB in {out}")
