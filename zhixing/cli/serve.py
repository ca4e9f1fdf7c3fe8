"""`zhixing serve RUN_OR_MODEL [NAME=PATH ...]`: the OpenAI-compatible HTTP server with the web UI."""

from __future__ import annotations

import os
import signal
import sys

import click


def parse_models(specs: tuple[str, ...]) -> dict[str, str]:
    """ "PATH" or "NAME=PATH" -> {name: path}; a bare path is named after its last folder."""
    models: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            path = spec
            name = os.path.basename(os.path.normpath(spec)) or spec
        if name in models:
            raise ValueError(f"two models are named {name!r}; name them: NAME=PATH")
        models[name] = path
    return models


def mount_apps(app, specs: tuple[str, ...]) -> list[str]:
    """`--app NAME=PATH`: each application's `zhixing.apps.<NAME>.http.mount(app, PATH)` adds its routes
    and its web page under /apps/NAME/; GET /apps lists them (the web UI links them from its header)."""
    import importlib

    from zhixing.cli.app import APPS

    choices = ", ".join(sorted(APPS))
    mounted: list[str] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ValueError(f"--app {spec!r}: expected NAME=PATH with NAME one of {choices}")
        if name not in APPS:
            raise ValueError(f"--app {spec!r}: no application {name!r}; choose one of {choices}")
        if name in mounted:
            raise ValueError(f"--app {name} given twice")
        importlib.import_module(f"zhixing.apps.{name}.http").mount(app, path)
        mounted.append(name)
    app.state.apps = mounted

    @app.get("/apps", include_in_schema=False)
    async def list_apps():
        return {"apps": [{"name": n, "url": f"/apps/{n}/"} for n in mounted]}

    return mounted


@click.command("serve")
@click.argument("models", nargs=-1)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (0.0.0.0 exposes the server to the network: set --api-key).",
)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--api-key",
    envvar="ZHIXING_API_KEY",
    default=None,
    help="Require 'Authorization: Bearer KEY' on /v1/* (also from $ZHIXING_API_KEY).",
)
@click.option(
    "--max-batch", default=32, show_default=True, type=int, help="Sequences decoded together per model."
)
@click.option("--max-queue", default=256, show_default=True, type=int, help="Waiting sequences before 429.")
@click.option(
    "--max-tokens",
    "max_tokens_limit",
    default=1024,
    show_default=True,
    type=int,
    help="Largest max_tokens a request may ask for.",
)
@click.option(
    "--max-body",
    "max_body_bytes",
    default=1 << 20,
    show_default=True,
    type=int,
    help="Largest request body in bytes (413 above).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Allow this browser origin (CORS is off by default; repeatable).",
)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="NAME=PATH",
    help="Also serve an application (support, kg, write, recommend) from PATH at /apps/NAME/ (repeatable).",
)
def serve_cmd(
    models,
    host,
    port,
    api_key,
    max_batch,
    max_queue,
    max_tokens_limit,
    max_body_bytes,
    cors_origins,
    device,
    apps,
):
    """Serve models over HTTP: OpenAI-compatible /v1/completions, /v1/chat/completions, /v1/embeddings,
    /v1/models; /v1/classify, /v1/ner, /v1/qa for fine-tuned runs; /v1/attention; /health, /metrics;
    the web UI at /.

    MODELS: model or run directories (or Hub ids), each optionally NAME=PATH (none needed when --app is
    given). SIGTERM or Ctrl-C stops taking requests, lets the streams in flight finish, and exits.
    """
    import uvicorn

    from zhixing.serve.app import ServeSettings, create_app

    if not models and not apps:
        raise click.UsageError("name at least one model (MODELS) or application (--app NAME=PATH)")
    if max_batch < 1 or max_queue < 1 or max_tokens_limit < 1 or max_body_bytes < 1:
        raise ValueError("--max-batch, --max-queue, --max-tokens and --max-body must be >= 1")
    settings = ServeSettings(
        api_key=api_key or None,
        max_body_bytes=max_body_bytes,
        max_tokens_limit=max_tokens_limit,
        max_batch=max_batch,
        max_queue=max_queue,
        cors_origins=tuple(cors_origins),
        device=device,
    )
    app = create_app(parse_models(models), settings)
    mount_apps(app, apps)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        click.echo(
            f"warning: listening on {host} without --api-key: anyone who can reach it can use it", err=True
        )
    what = ", ".join([*app.state.served, *(f"/apps/{a}/" for a in apps)])
    click.echo(f"serving {what} at http://{host}:{port}/ (API under /v1)", err=True)
    # uvicorn drains on SIGTERM / Ctrl-C (no new connections, streams in flight run to their end), then
    # re-raises the signal; this handler makes that a clean exit (status 0) instead of a kill by signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
