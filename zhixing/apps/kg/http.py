"""The knowledge-graph application on `zhixing serve --app kg=DB` (DB: a SQLite store of zhixing.apps.kg).

    GET  /apps/kg/                 the web page (paste text -> triples; ask a question -> answer + evidence)
    GET  /apps/kg/stats            counts of entities, relations, triples, sentences; the relation model
    POST /apps/kg/extract          {"text", "source"?, "save"?: true} -> {"triples": [...], counts}
    GET  /apps/kg/query            ?entity=&relation=&role=any|head|tail&limit= -> {"triples": [...]}
    POST /apps/kg/ask              {"question"} -> {"answer", "answers": [{"answer", "sentence", ...}], ...}

Extraction uses the relation run that built the store (recorded in it by `zhixing app kg extract`);
a store without one answers /extract with 409 and says how to record one. Bad input is a 400 naming the
field. The models load on first use; SQLite access is serialised by a lock (one connection).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: the routes' annotations are resolved from its globals

from zhixing.apps.kg.store import TripleStore
from zhixing.errors import ZhixingError

PAGE = Path(__file__).parent / "static" / "index.html"
MAX_TEXT = 20_000  # characters of text one /extract request may carry


class KGService:
    """The store with its lazily loaded extractor and QA, shared by the routes."""

    def __init__(self, db: str | Path, run: str | None = None, embedder: str | None = None):
        self.store = TripleStore(db)
        self.run = run or self.store.meta("relation_run")
        self.embedder_path = embedder
        self.lock = threading.Lock()
        self._extractor: Any = None
        self._qa: Any = None

    def extractor(self) -> Any:
        if self._extractor is None:
            if not self.run:
                raise LookupError(
                    f"{self.store.path}: no relation model recorded; build the store with "
                    "`zhixing app kg extract RUN TEXTFILE --db DB` first"
                )
            from zhixing.apps.kg.extract import Extractor

            self._extractor = Extractor(self.run)
        return self._extractor

    def qa(self) -> Any:
        if self._qa is None:
            from zhixing.apps.kg.qa import KGQA, default_embedder

            self._qa = KGQA(self.store, default_embedder(self.embedder_path))
        return self._qa

    def extract(self, text: str, source: str, save: bool) -> dict[str, Any]:
        got = self.extractor().extract(text, source)
        with self.lock:
            new = self.store.add_triples(got.triples) if save else 0
            if save and self._qa is not None:
                self._qa.refresh()
        return {
            "sentences": got.sentences,
            "candidates": got.candidates,
            "pairs": got.pairs,
            "triples": [t.to_dict() for t in got.triples],
            "new_triples": new,
        }

    def ask(self, question: str) -> dict[str, Any]:
        qa = self.qa()
        with self.lock:
            return qa.ask(question).to_dict()


def mount(app: Any, path: str) -> KGService:
    """Add the routes and the page under /apps/kg/ to a FastAPI app; `path` is the store's SQLite file
    (created when absent)."""
    from fastapi.responses import FileResponse, JSONResponse

    service = KGService(path)
    app.state.kg = service

    def error(status: int, message: str, param: str | None = None) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": message, "type": "invalid_request_error", "param": param}},
            status_code=status,
        )

    async def body(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            data = await request.json()
        except ValueError:
            return error(400, "the body must be a JSON object")
        return data if isinstance(data, dict) else error(400, "the body must be a JSON object")

    @app.get("/apps/kg/", include_in_schema=False)
    async def page():
        return FileResponse(PAGE)

    @app.get("/apps/kg/stats")
    def stats():
        with service.lock:
            return {
                **service.store.stats(),
                "relations_known": service.store.relations(),
                "relation_run": service.run,
                "db": service.store.path,
            }

    @app.post("/apps/kg/extract")
    async def extract(request: Request):
        data = await body(request)
        if isinstance(data, JSONResponse):
            return data
        text, source, save = data.get("text"), data.get("source", "web"), data.get("save", True)
        if not isinstance(text, str) or not text.strip():
            return error(400, "'text' must be a non-empty string", "text")
        if len(text) > MAX_TEXT:
            return error(400, f"'text' has {len(text)} characters; at most {MAX_TEXT} per request", "text")
        if not isinstance(source, str) or not isinstance(save, bool):
            return error(400, "'source' must be a string and 'save' a boolean", "source")
        try:
            return service.extract(text, source, save)
        except LookupError as e:
            return error(409, str(e))
        except ZhixingError as e:
            return error(400, str(e), "text")

    @app.get("/apps/kg/query")
    def query(entity: str | None = None, relation: str | None = None, role: str = "any", limit: int = 50):
        if entity is None and relation is None:
            return error(400, "give 'entity' and/or 'relation'", "entity")
        if role not in ("any", "head", "tail"):
            return error(400, f"'role' must be any, head or tail, got {role!r}", "role")
        if not 1 <= limit <= 1000:
            return error(400, f"'limit' must be in 1..1000, got {limit}", "limit")
        with service.lock:
            return {"triples": service.store.query(entity, relation, role, limit)}

    @app.post("/apps/kg/ask")
    async def ask(request: Request):
        data = await body(request)
        if isinstance(data, JSONResponse):
            return data
        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            return error(400, "'question' must be a non-empty string", "question")
        if len(question) > 1000:
            return error(400, "'question' is longer than 1000 characters", "question")
        try:
            return service.ask(question)
        except ZhixingError as e:
            return error(400, str(e), "question")

    return service


__all__ = ["mount", "KGService"]
