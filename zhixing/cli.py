"""The `zhixing` command: one sub-command per recipe.

Sub-commands live next to the code they drive (``zhixing/<component>/cli.py``) and are imported
lazily, so `zhixing --help` stays instant and a broken optional part cannot break the others.
"""

from __future__ import annotations

import importlib
import os
import warnings

import click

# name -> "module:attribute" of a click.Command. Add a line here to add a sub-command.
COMMANDS: dict[str, str] = {
    "models": "zhixing.models.cli:models_cmd",
    "info": "zhixing.models.cli:info_cmd",
    "convert": "zhixing.interop.cli:convert_cmd",
    "tokenizer": "zhixing.tokenizers.cli:tokenizer_group",
    "prepare": "zhixing.data.cli:prepare_cmd",
    "generate": "zhixing.generation.cli:generate_cmd",
    "chat": "zhixing.generation.cli:chat_cmd",
    "pretrain": "zhixing.train.cli:pretrain_cmd",
    "quickstart": "zhixing.train.cli:quickstart_cmd",
    "finetune": "zhixing.tasks.cli:finetune_cmd",
    "evaluate": "zhixing.tasks.cli:evaluate_cmd",
    "predict": "zhixing.tasks.cli:predict_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


_default_format = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """zhixing's own warnings are messages for the user (they name the file and the fix): one line,
    without the source line of the warn() call; other libraries' keep Python's format."""
    if category is UserWarning and f"{os.sep}zhixing{os.sep}" in filename:
        return f"warning: {message}\n"
    return _default_format(message, category, filename, lineno, line)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zhixing")
def main() -> None:
    """知行 zhixing — Transformer language models from theory to practice."""
    previous, warnings.formatwarning = warnings.formatwarning, _format_warning
    click.get_current_context().call_on_close(lambda: setattr(warnings, "formatwarning", previous))


if __name__ == "__main__":
    main()
