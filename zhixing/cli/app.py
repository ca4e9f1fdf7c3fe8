"""`zhixing app <name> ...`: the applications of zhixing/apps (customer service, knowledge graph, writing
assistant, recommendation explanations). Each lives in `zhixing/cli/app_<name>.py` as a click group,
imported only when named, so one application's optional dependencies never slow or break the others."""

from __future__ import annotations

import click

from zhixing.cli import LazyGroup

# name -> "module:attribute" of the application's click group.
APPS: dict[str, str] = {
    "support": "zhixing.cli.app_support:support_group",
    "kg": "zhixing.cli.app_kg:kg_group",
    "write": "zhixing.cli.app_write:write_group",
    "recommend": "zhixing.cli.app_recommend:recommend_group",
}


class _AppGroup(LazyGroup):
    commands_by_name = APPS


@click.group("app", cls=_AppGroup)
def app_group():
    """Applications: support (customer service), kg (knowledge graph), write (writing assistant),
    recommend (review-based recommendation with explanations). `zhixing app NAME --help` for each;
    `zhixing serve ... --app NAME=PATH` serves one with its web page at /apps/NAME/."""
