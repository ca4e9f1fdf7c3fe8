"""`zhixing app <name> ...`: the applications of zhixing/apps (customer service, knowledge graph, writing
assistant, recommendation explanations). Each lives in `zhixing/cli/app_<name>.py` as a click group,
imported only when named, so one application's optional dependencies never slow or break the others."""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of the application's click group.
APPS: dict[str, str] = {
    "support": "zhixing.cli.app_support:support_group",
    "kg": "zhixing.cli.app_kg:kg_group",
    "write": "zhixing.cli.app_write:write_group",
    "recommend": "zhixing.cli.app_recommend:recommend_group",
}


class _AppGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(APPS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = APPS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:  # an application not built yet in this checkout
            if e.name == module:
                return None
            raise


@click.group("app", cls=_AppGroup)
def app_group():
    """Applications: support (customer service), kg (knowledge graph), write (writing assistant),
    recommend (review-based recommendation with explanations). `zhixing app NAME --help` for each;
    `zhixing serve ... --app NAME=PATH` serves one with its web page at /apps/NAME/."""
