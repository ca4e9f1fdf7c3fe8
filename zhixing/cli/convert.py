"""`zhixing convert`: Hugging Face directory <-> zhixing directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import click


def _copy_tokenizer(src: Path, out: Path) -> list[str]:
    """Copy the tokenizer files (HF format, which zhixing reads too) next to the converted weights."""
    from zhixing.interop.core import TOKENIZER_FILES

    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file() and src.resolve() != out.resolve():
            tmp = out / f".{name}.tmp"
            shutil.copyfile(src / name, tmp)
            tmp.replace(out / name)
            copied.append(name)
    return copied


@click.command("convert")
@click.option("--from-hf", "from_hf_dir", metavar="DIR", help="Hugging Face model directory (or Hub id).")
@click.option("--to-hf", "to_hf_dir", metavar="DIR", help="zhixing model or run directory to export.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory.")
@click.option("--head", default=None, help="Import with this head, not the checkpoint's (e.g. seq_cls).")
def convert_cmd(from_hf_dir: str | None, to_hf_dir: str | None, out: Path, head: str | None) -> None:
    """Convert a checkpoint between Hugging Face format and zhixing's.

    \b
    zhixing convert --from-hf path/to/bert --out models/bert      HF (bert/roberta/gpt2/llama) -> zhixing
    zhixing convert --to-hf runs/gpt/best --out export/gpt       zhixing -> HF (transformers loads it)
    zhixing convert --to-hf runs/sst2-lora --out export/adapter  an adapter run -> PEFT's adapter files

    Tokenizer files found next to the weights are copied along. Files are written to a temporary
    directory and moved in when complete; a failed conversion leaves nothing behind.
    """
    if (from_hf_dir is None) == (to_hf_dir is None):
        raise click.UsageError("give exactly one of --from-hf DIR or --to-hf DIR")
    from zhixing.config import ConfigError
    from zhixing.hub import resolve, tokenizer_directory
    from zhixing.interop import from_hf, to_hf
    from zhixing.models.base import CheckpointError

    created = not out.exists()
    try:
        if from_hf_dir is not None:
            src, named = resolve(from_hf_dir)
            model = from_hf(src, head=head)
            model.save_pretrained(out)
            what = f"{src} -> zhixing {model.config.arch}/{model.config.head}"
            tok = tokenizer_directory(src, named)
            saved = _copy_tokenizer(tok, out) if tok is not None else []
        else:
            if head is not None:
                raise click.UsageError("--head applies to --from-hf only")
            from zhixing.hub import load

            model = load(to_hf_dir)  # attaches the tokenizer, which to_hf saves along
            import json

            if getattr(model, "lora_config", None) is not None or getattr(model, "prompt_config", None):
                from zhixing.peft import save_peft  # an adapter run: the adapter, in PEFT's format

                save_peft(model, out)
                kind = json.loads((out / "adapter_config.json").read_text())["peft_type"]
                what = f"{to_hf_dir} -> PEFT {kind} adapter (base: {getattr(model, 'base_path', '?')})"
                saved = []
            else:
                to_hf(model, out)
                arch = json.loads((out / "config.json").read_text())["architectures"][0]
                what = f"{to_hf_dir} -> Hugging Face {arch}"
                saved = ["tokenizer.json"] if model.tokenizer is not None else []
    except (ConfigError, CheckpointError, FileNotFoundError, NotADirectoryError) as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise click.ClickException(str(e)) from None
    params = model.num_parameters()
    click.echo(f"converted {what}: {params:,} parameters -> {out}"
               + (f" (tokenizer: {', '.join(saved)})" if saved else ""))
