"""HTTP routes and the web page of the writing assistant, mounted on a `zhixing serve` app:

    zhixing serve --app write=write.yaml

write.yaml names what to serve (paths relative to the file):

    models:                       # GPT runs that continue drafts, by the name the page shows
      reviews: runs/gpt-reviews-zh-cpu
      poetry: runs/gpt-tang-poetry-cpu
    guide: runs/write-sentiment-guide   # optional: the sentiment classifier that steers (FUDGE)
    index: runs/write-materials         # optional: a material index (zhixing app write index)

Routes (JSON bodies; with `--api-key`, send `Authorization: Bearer KEY` as on /v1/*):
    GET  /apps/write/            the page          GET  /apps/write/info    models, forms, labels, index
    POST /apps/write/continue    {model, text, ...; stream: true -> server-sent events `data: {"text": ...}`
                                 then `data: [DONE]`}
    POST /apps/write/rewrite     {model, text, target, strength, keep?}
    POST /apps/write/materials   {text, k}
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field

from zhixing.errors import ConfigError

PAGE = Path(__file__).parent / "static" / "index.html"
MAX_TEXT = 2000  # characters of a draft the routes accept


# Request bodies (module level: FastAPI reads the annotations of the route functions by name)
class Decode(BaseModel):
    """POST /apps/write/continue (and the fields rewrite shares)."""

    model: str = ""
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    max_new_tokens: int = Field(48, ge=1, le=256)
    temperature: float = Field(0.8, ge=0.05, le=2.0)
    top_k: int = Field(20, ge=1, le=200)
    seed: int | None = None
    form: str | None = None
    acrostic: str | None = Field(None, max_length=8)
    target: str | None = None
    strength: float = Field(2.0, ge=0.0, le=20.0)
    stream: bool = False


class Rewrite(Decode):
    target: str  # required here
    keep: int | None = Field(None, ge=1, le=200)


class Materials(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    k: int = Field(5, ge=1, le=50)


class WriteService:
    """What the routes serve: the loaded writers, the guide and the index, behind one lock (decoding on a
    CPU is compute-bound; one request at a time keeps each fast instead of all slow)."""

    def __init__(self, spec: dict[str, Any], base: Path, device: str = "cpu"):
        from zhixing.apps.write import MaterialIndex, StyleGuide, Writer

        unknown = set(spec) - {"models", "guide", "index", "device"}
        if unknown:
            raise ConfigError(
                f"write app settings: unknown key(s) {', '.join(sorted(unknown))}; valid: models, "
                "guide, index, device"
            )
        models = spec.get("models")
        if not isinstance(models, dict) or not models:
            raise ConfigError(
                "write app settings: 'models' must map names to GPT runs (e.g. reviews: runs/gpt)"
            )
        device = spec.get("device", device)
        self.writers = {str(k): Writer(_under(base, v), device) for k, v in models.items()}
        self.guide = (
            StyleGuide(_under(base, spec["guide"]), _first_label(_under(base, spec["guide"])), 0.0)
            if spec.get("guide")
            else None
        )
        self.index = MaterialIndex.load(_under(base, spec["index"]), device) if spec.get("index") else None
        self.lock = threading.Lock()

    def writer(self, name: str) -> Any:
        if name not in self.writers:
            raise ConfigError(f"model={name!r} is not served; choose one of {', '.join(self.writers)}")
        return self.writers[name]

    def styled(self, target: str | None, strength: float, top_k: int = 20) -> Any:
        """A copy of the served guide for one request (the shared one is never changed)."""
        if not target:
            return None
        if self.guide is None:
            raise ConfigError("no guide classifier is served (add guide: RUN to the app's settings)")
        guide = self.guide.retarget(target).with_strength(strength)
        guide.top_k = top_k  # the request's candidate set
        return guide


def _under(base: Path, value: Any) -> str:
    p = Path(os.path.expandvars(str(value)))
    return str(p if p.is_absolute() else base / p)


def _first_label(path: str) -> str:
    from zhixing.hub import resolve
    from zhixing.io import read_json_object

    labels = read_json_object(resolve(path)[0] / "config.json").get("label_names") or []
    if not labels:
        raise ConfigError(f"{path}: the guide has no label names (is it a classification run?)")
    return str(labels[0])


def load_settings(path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The app's YAML (or JSON) settings and the directory its relative paths start from."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: the write app's settings file is missing (a YAML with models: ...)")
    try:
        spec = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{p}: expected a mapping with 'models' (and optionally 'guide', 'index')")
    return spec, p.resolve().parent


def mount(app: Any, path: str | os.PathLike, service: WriteService | None = None) -> WriteService:
    """Add /apps/write/* to a FastAPI app; `path` is the settings file (or pass a ready `service`)."""
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

    if service is None:
        spec, base = load_settings(path)
        service = WriteService(spec, base)

    def authorize(request: Request) -> None:
        key = getattr(getattr(app.state, "settings", None), "api_key", None)
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), key.encode()):
            raise HTTPException(401, "missing or invalid API key: send 'Authorization: Bearer <key>'")

    def settings_of(req: Decode) -> dict[str, Any]:
        out = {
            "max_new_tokens": req.max_new_tokens,
            "temperature": req.temperature,
            "top_k": req.top_k,
            "seed": req.seed,
        }
        if req.form:
            out["form"] = req.form
            out["acrostic"] = req.acrostic or None
        elif req.acrostic:
            raise ConfigError("acrostic needs a form (e.g. 五言绝句)")
        return out

    def prepare(req: Decode) -> tuple[Any, Any, dict[str, Any]]:
        """The writer the request names (or the first), its style guide and its decoding settings."""
        writer = service.writer(req.model or next(iter(service.writers)))
        return writer, service.styled(req.target, req.strength, req.top_k), settings_of(req)

    def bad(e: Exception) -> JSONResponse:
        return JSONResponse({"error": {"message": str(e), "type": "invalid_request_error"}}, status_code=400)

    @app.get("/apps/write/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/apps/write/info")
    async def info(request: Request) -> dict[str, Any]:
        authorize(request)
        from zhixing.generation.constraints import FORMS

        return {
            "models": list(service.writers),
            "forms": list(FORMS),
            "labels": service.guide.labels if service.guide else [],
            "index": {"kind": service.index.kind, "passages": len(service.index.passages)}
            if service.index
            else None,
        }

    @app.post("/apps/write/continue")
    def continue_(req: Decode, request: Request) -> Any:
        authorize(request)
        try:
            writer, guide, settings = prepare(req)
            if not req.stream:
                with service.lock:
                    return {"text": writer.continue_text(req.text, guide, **settings)}
            pieces = writer.stream(req.text, guide, **settings)
        except (ConfigError, ValueError) as e:
            return bad(e)

        def events():
            with service.lock:
                try:
                    for piece in pieces:
                        yield f"data: {json.dumps({'text': piece}, ensure_ascii=False)}\n\n"
                except (ConfigError, ValueError) as e:  # raised once decoding starts (e.g. a bad form)
                    yield f"data: {json.dumps({'error': str(e)}, ensure_ascii=False)}\n\n"
                finally:
                    pieces.close()
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/apps/write/rewrite")
    def rewrite(req: Rewrite, request: Request) -> Any:
        authorize(request)
        try:
            writer, guide, settings = prepare(req)
            with service.lock:
                out = writer.rewrite(req.text, guide, req.keep, **settings)
                before, after = guide.target_probability([req.text.strip(), out["text"]]).tolist()
        except (ConfigError, ValueError) as e:
            return bad(e)
        return {
            **out,
            "target": req.target,
            "strength": req.strength,
            "p_target_before": round(before, 4),
            "p_target_after": round(after, 4),
        }

    @app.post("/apps/write/materials")
    def materials(req: Materials, request: Request) -> Any:
        authorize(request)
        if service.index is None:
            return bad(ConfigError("no material index is served (add index: DIR to the app's settings)"))
        try:
            with service.lock:
                return {"hits": service.index.search(req.text, req.k)}
        except (ConfigError, ValueError) as e:
            return bad(e)

    return service
