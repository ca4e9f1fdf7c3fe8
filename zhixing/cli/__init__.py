"""The `zhixing` command: the one layer on top of the library (DESIGN.md §1).

One module per command group (`zhixing/cli/<group>.py`), imported lazily, so `zhixing --help` stays
instant and a broken optional part cannot break the others. The library never imports this package.

Errors: every `ZhixingError` (zhixing.errors) already names the file / key / flag and the fix, so a
command that raises one ends with that one line on stderr and exit status 1, never a traceback;
so do missing files and the plain ValueErrors of argument checks.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import click

from zhixing.errors import ZhixingError

# name -> "module:attribute" of a click.Command. Add a line here to add a sub-command.
COMMANDS: dict[str, str] = {
    "models": "zhixing.cli.models:models_cmd",
    "info": "zhixing.cli.models:info_cmd",
    "convert": "zhixing.cli.convert:convert_cmd",
    "tokenizer": "zhixing.cli.tokenizer:tokenizer_group",
    "prepare": "zhixing.cli.prepare:prepare_cmd",
    "generate": "zhixing.cli.generate:generate_cmd",
    "chat": "zhixing.cli.generate:chat_cmd",
    "pretrain": "zhixing.cli.pretrain:pretrain_cmd",
    "quickstart": "zhixing.cli.pretrain:quickstart_cmd",
    "finetune": "zhixing.cli.finetune:finetune_cmd",
    "distill": "zhixing.cli.distill:distill_cmd",
    "evaluate": "zhixing.cli.finetune:evaluate_cmd",
    "predict": "zhixing.cli.finetune:predict_cmd",
    "merge": "zhixing.cli.merge:merge_cmd",
    "ngram": "zhixing.cli.ngram:ngram_group",
    "pipeline": "zhixing.cli.pipeline:pipeline_cmd",
    "serve": "zhixing.cli.serve:serve_cmd",
    "viz": "zhixing.cli.viz:viz_cmd",
    "quantize": "zhixing.cli.quantize:quantize_cmd",
    "prune": "zhixing.cli.prune:prune_cmd",
    "prompt": "zhixing.cli.prompt:prompt_cmd",
    "translate": "zhixing.cli.translate:translate_cmd",
    "app": "zhixing.cli.app:app_group",
}

# Errors whose message is the whole story: shown as one line (a ZhixingError, a missing path, and the
# ValueErrors raised by argument checks); anything else is a bug and keeps its traceback.
ONE_LINE_ERRORS = (ZhixingError, FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError)


def one_line(error: BaseException) -> click.ClickException:
    return click.ClickException(str(error))


def exit_if_interrupted(summary: dict) -> None:
    """A run that Ctrl-C or SIGTERM stopped has saved its checkpoint: say how to continue it and exit 130,
    as a shell does after SIGINT (`zhixing pretrain` and `zhixing finetune` alike)."""
    if summary.get("status") == "interrupted":
        where = f" in {summary['run_dir']}" if summary.get("run_dir") else ""
        click.echo(f"interrupted at step {summary['step']}; the checkpoint is saved{where}. Continue "
                   "with the same command plus train.resume=true", err=True)
        sys.exit(130)


class LazyGroup(click.Group):
    """A group whose sub-commands (`commands`: name -> "module:attribute") are imported when named."""

    commands_by_name: dict[str, str] = COMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands_by_name)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = self.commands_by_name.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ONE_LINE_ERRORS as e:
            raise one_line(e) from None


_default_format = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """zhixing's own warnings are messages for the user (they name the file and the fix): one line,
    without the source line of the warn() call; other libraries' keep Python's format."""
    if category is UserWarning and f"{os.sep}zhixing{os.sep}" in filename:
        return f"warning: {message}\n"
    return _default_format(message, category, filename, lineno, line)


def set_process_defaults() -> None:
    """Settings that belong to a process, not a library import: made here, where the process starts
    (before torch is imported by a command), and never over the user's own environment."""
    from zhixing.device import openmp_defaults

    # The user chose, or OpenMP is loaded already (a command run in-process, e.g. by a test) and would not
    # read the variable: nothing to measure.
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return
    for key, value in openmp_defaults().items():
        os.environ.setdefault(key, value)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zhixing")
def main() -> None:
    """知行 zhixing — Transformer language models from theory to practice."""
    set_process_defaults()
    previous, warnings.formatwarning = warnings.formatwarning, _format_warning
    click.get_current_context().call_on_close(lambda: setattr(warnings, "formatwarning", previous))


__all__ = ["main", "COMMANDS", "ONE_LINE_ERRORS", "one_line"]
