"""The customer-service assistant on `zhixing serve --app support=RUN`.

    GET  /apps/support/          the chat page (static/index.html)
    GET  /apps/support/info      the model's intents, slot types and thresholds
    POST /apps/support/turn      {"conversation_id": str, "text": str}
                                 -> {intent, confidence, slots, sentiment, answer, action, ...}
    POST /apps/support/reset     {"conversation_id": str}: forget a conversation's state

RUN is a run directory of `zhixing app support train` holding its FAQ (faq.yaml / faq.csv, copied there
by training; `zhixing app support chat --faq` names another). When the server has an API key, the POST
routes need it as the /v1 routes do (Authorization: Bearer <key>).
"""

import secrets
from pathlib import Path
from typing import Any

from zhixing.errors import ConfigError

STATIC = Path(__file__).parent / "static"
MAX_TEXT = 2000  # characters per turn: an utterance, not a document


def find_faq(run: Path) -> Path:
    for name in ("faq.yaml", "faq.yml", "faq.csv"):
        if (run / name).is_file():
            return run / name
    raise ConfigError(
        f"{run}: no faq.yaml / faq.csv in the run directory; train with faq=FILE or copy a FAQ file there"
    )


def build_bot(run: str | Path, faq: str | Path | None = None, **settings: Any):
    """A SupportBot from a run directory and a FAQ file (default: the run's own)."""
    from zhixing.apps.support.bot import SupportBot
    from zhixing.apps.support.faq import FaqIndex
    from zhixing.apps.support.model import SupportModel

    run = Path(run)
    model = SupportModel.load(run)
    faq_index = FaqIndex.from_file(faq or find_faq(run), threshold=model.labels.faq_threshold)
    return SupportBot(model, faq_index, **settings)


def _check(body: Any, need_text: bool) -> tuple[str, str]:
    from fastapi import HTTPException

    if not isinstance(body, dict):
        raise HTTPException(400, "expected a JSON object {conversation_id, text}")
    cid = body.get("conversation_id")
    if not isinstance(cid, str) or not cid or len(cid) > 200:
        raise HTTPException(400, "conversation_id: expected a non-empty string (at most 200 characters)")
    if not need_text:
        return cid, ""
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise HTTPException(400, "text: expected a non-empty string")
    if len(text) > MAX_TEXT:
        raise HTTPException(400, f"text: {len(text)} characters; at most {MAX_TEXT} per turn")
    return cid, text


def mount(app: Any, path: str) -> None:
    """Add the support routes and page to a `zhixing serve` FastAPI app; `path`: the run directory."""
    from fastapi import HTTPException, Request
    from fastapi.responses import FileResponse
    from starlette.concurrency import run_in_threadpool

    bot = build_bot(path)
    prefix = "/apps/support"

    def authorize(request: Request) -> None:
        settings = getattr(app.state, "settings", None)
        key = getattr(settings, "api_key", None)
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), key.encode()):
            raise HTTPException(401, "missing or invalid API key: send 'Authorization: Bearer <key>'")

    @app.get(prefix + "/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    @app.get(prefix + "/support.js", include_in_schema=False)
    def script():
        return FileResponse(STATIC / "support.js", media_type="text/javascript")

    @app.get(prefix + "/info")
    def info():
        labels = bot.model.labels
        return {
            "intents": labels.intents,
            "slot_types": sorted({t[2:] for t in labels.slot_tags if t != "O"}),
            "oos_threshold": labels.oos_threshold,
            "temperature": labels.temperature,
            "faq_entries": len(bot.faq.entries),
            "faq_threshold": bot.faq.threshold,
        }

    async def read_body(request: Request) -> Any:
        authorize(request)
        try:
            return await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not valid JSON; expected {conversation_id, text}") from None

    @app.post(prefix + "/turn")
    async def turn(request: Request):
        cid, text = _check(await read_body(request), need_text=True)
        return await run_in_threadpool(bot.turn, cid, text)  # the model runs off the event loop

    @app.post(prefix + "/reset")
    async def reset(request: Request):
        cid, _ = _check(await read_body(request), need_text=False)
        bot.reset(cid)
        return {"conversation_id": cid, "reset": True}


__all__ = ["mount", "build_bot", "find_faq"]
