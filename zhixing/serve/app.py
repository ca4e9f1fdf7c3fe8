"""The HTTP server: an OpenAI-compatible API, task endpoints, metrics and the web UI, in one FastAPI app.

    app = create_app({"gpt": "runs/gpt"}, ServeSettings(api_key="sk-..."))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Errors are OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with 400 (bad value), 401
(missing/wrong key), 404 (unknown model or route), 413 (body too large), 422 (wrong JSON types), 429
(queue full), 503 (shutting down); a bug is a 500 with a generic message, never a traceback.
Generation runs in each model's `Batcher` thread; a handler only waits on an asyncio queue of events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import struct
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhixing.serve import protocol as P
from zhixing.serve.batcher import Event, QueueFull, SamplingParams, Sequence
from zhixing.serve.models import ServedModel, load_model, render_chat

STATIC = Path(__file__).parent / "static"


@dataclass
class ServeSettings:
    """Limits and security of one server."""

    api_key: str | None = None  # required on /v1/* when set (Authorization: Bearer <key>)
    max_body_bytes: int = 1 << 20  # larger request bodies get 413
    max_tokens_limit: int = 1024  # largest max_tokens a request may ask for
    max_batch: int = 32  # rows decoded together per model (1 = one request at a time)
    max_queue: int = 256  # sequences waiting for a slot before 429
    max_inputs: int = 64  # inputs per embeddings / task request
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are named
    device: str = "cpu"


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_body(status: int, message: str, type_: str, param: str | None = None, code: str | None = None):
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status
    )


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can live in one process)."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("zhixing_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.errors = Counter(
            "zhixing_request_errors", "Requests answered with an error", ["endpoint", "type"], registry=r
        )
        self.queue = Gauge(
            "zhixing_queue_length", "Sequences waiting for a batch slot", ["model"], registry=r
        )
        self.active = Gauge("zhixing_active_sequences", "Sequences being decoded", ["model"], registry=r)
        self.tokens = Counter("zhixing_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.prompt_tokens = Counter(
            "zhixing_prompt_tokens", "Prompt tokens processed", ["model"], registry=r
        )
        self.latency = Histogram(
            "zhixing_request_latency_seconds",
            "Request latency (to the last byte)",
            ["endpoint"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.ttft = Histogram(
            "zhixing_time_to_first_token_seconds",
            "Time to the first generated text",
            ["model"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


ENDPOINTS = (
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/classify",
    "/v1/ner",
    "/v1/qa",
    "/v1/attention",
    "/health",
    "/metrics",
)


class Guard:
    """Pure ASGI middleware: request body limit (413), request metrics, and the last line of defence
    (an unexpected exception becomes a 500 JSON error without a traceback)."""

    def __init__(self, app, settings: ServeSettings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else ("/v1/other" if path.startswith("/v1/") else "/ui")
        started, status = time.monotonic(), {"code": 500, "sent": False}
        limit = self.settings.max_body_bytes

        async def reply(code: int, message: str, type_: str, code_name: str) -> None:
            resp = error_body(code, message, type_, None, code_name)
            await resp(scope, receive, send)

        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0
                if size > limit:
                    self._count(endpoint, 413, "request_too_large", started)
                    return await reply(
                        413,
                        f"request body is {size} bytes; the limit is {limit}",
                        "invalid_request_error",
                        "request_too_large",
                    )
        # Read the whole body first (it is small: at most the limit), so an oversized one is refused
        # before any handler parses it, whether or not it announced its length.
        body, more = [], True
        seen = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body.append(message.get("body", b""))
            seen += len(body[-1])
            more = message.get("more_body", False)
            if seen > limit:
                self._count(endpoint, 413, "request_too_large", started)
                return await reply(
                    413,
                    f"request body is over the limit of {limit} bytes",
                    "invalid_request_error",
                    "request_too_large",
                )
        replayed = False

        async def limited_receive():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(body), "more_body": False}
            return await receive()

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except Exception:
            if not status["sent"]:
                status["code"] = 500
                await reply(500, "internal server error", "server_error", "internal_error")
        self._count(endpoint, status["code"], None, started)

    def _count(self, endpoint: str, code: int, type_: str | None, started: float) -> None:
        m = self.metrics
        m.requests.labels(endpoint, str(code)).inc()
        if code >= 400:
            m.errors.labels(endpoint, type_ or str(code)).inc()
        m.latency.labels(endpoint).observe(time.monotonic() - started)


def create_app(models: dict[str, str | ServedModel], settings: ServeSettings | None = None) -> FastAPI:
    """The app serving `models` (name -> path, or an already loaded ServedModel)."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    served: dict[str, ServedModel] = {}
    state = {"draining": False}
    created = int(time.time())

    for name, m in models.items():
        served[name] = (
            m
            if isinstance(m, ServedModel)
            else load_model(
                name, m, max_batch=settings.max_batch, max_queue=settings.max_queue, device=settings.device
            )
        )

    def on_step_for(name: str):
        def on_step(active: int, waiting: int) -> None:
            metrics.active.labels(name).set(active)
            metrics.queue.labels(name).set(waiting)

        return on_step

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for name, s in served.items():
            if s.batcher is not None:
                s.batcher.on_step = on_step_for(name)
                s.batcher.start_thread()
        yield
        state["draining"] = True
        for s in served.values():
            if s.batcher is not None:
                s.batcher.stop()

    app = FastAPI(title="zhixing", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served, app.state.settings, app.state.metrics = served, settings, metrics

    # -- errors in OpenAI's shape ---------------------------------------------------------------------

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return error_body(e.status, e.message, e.type, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        errs = e.errors()
        first = errs[0] if errs else {}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        if first.get("type") == "json_invalid":
            return error_body(
                400, "the request body is not valid JSON", "invalid_request_error", None, "invalid_json"
            )
        param = ".".join(loc) or None
        msg = first.get("msg", "invalid request")
        return error_body(
            422, f"{param}: {msg}" if param else msg, "invalid_request_error", param, "invalid_type"
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return error_body(e.status_code, str(e.detail), kind, None, None)

    # -- auth, models, limits ---------------------------------------------------------------------------

    async def authorize(request: Request) -> None:
        if state["draining"]:
            raise APIError(503, "the server is shutting down", "server_error", None, "shutting_down")
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            raise APIError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                "authentication_error",
                None,
                "invalid_api_key",
            )

    def get_model(name: str, need: str | None = None) -> ServedModel:
        s = served.get(name)
        if s is None:
            raise APIError(
                404,
                f"the model {name!r} does not exist; served: {', '.join(served)}",
                "not_found_error",
                "model",
                "model_not_found",
            )
        if need == "generate" and not s.generates:
            raise APIError(
                400,
                f"the model {name!r} does not generate text (it is a {s.model.config.arch} with "
                f"a {s.model.config.head!r} head)",
                "invalid_request_error",
                "model",
                "model_not_supported",
            )
        if need in ("classify", "ner", "qa") and s.task != need:
            raise APIError(
                400,
                f"the model {name!r} is not fine-tuned for {need}"
                + (f" (it does {s.task})" if s.task else ""),
                "invalid_request_error",
                "model",
                "model_not_supported",
            )
        return s

    def encode(s: ServedModel, text: str) -> list[int]:
        return list(s.tokenizer.encode(text).ids)

    def sampling(
        s: ServedModel,
        req: P._Sampling,
        prompt_len: int,
        extra_stop: list[str],
        logprobs: int | None,
        default_max: int | None,
    ) -> SamplingParams:
        try:
            stops = req.stop_list()
        except ValueError as e:
            raise APIError(400, str(e), param="stop") from None
        room = s.context - prompt_len
        if room < 1:
            raise APIError(
                400,
                f"the prompt has {prompt_len} tokens; the model's context is {s.context}",
                param="prompt" if isinstance(req, P.CompletionRequest) else "messages",
                code="context_length_exceeded",
            )
        asked = req.max_completion_tokens or req.max_tokens
        if asked is not None and asked > settings.max_tokens_limit:
            raise APIError(
                400,
                f"max_tokens={asked} is over this server's limit of {settings.max_tokens_limit}",
                param="max_tokens",
            )
        if asked is not None and prompt_len + asked > s.context:
            raise APIError(
                400,
                f"this model's context is {s.context} tokens; the prompt has {prompt_len} and "
                f"max_tokens={asked} asks for {prompt_len + asked}; lower max_tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        max_tokens = asked if asked is not None else min(default_max or room, room, settings.max_tokens_limit)
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
            stop=stops + [x for x in extra_stop if x not in stops],
            seed=req.seed,
            logprobs=logprobs,
            ignore_eos=req.ignore_eos,
        )

    def start(
        s: ServedModel, prompt: list[int], params: SamplingParams, n: int, index0: int, q: asyncio.Queue
    ) -> list[Sequence]:
        loop = asyncio.get_running_loop()
        seqs = []
        for i in range(n):
            p = params
            if params.seed is not None and n > 1:  # n samples of one seeded request differ, reproducibly
                p = SamplingParams(**{**params.__dict__, "seed": params.seed + i})
            seqs.append(
                Sequence(
                    prompt,
                    p,
                    lambda ev: loop.call_soon_threadsafe(q.put_nowait, ev),
                    s.tokenizer,
                    index=index0 + i,
                )
            )
        try:
            for seq in seqs:
                s.batcher.submit(seq)
        except QueueFull as e:
            for seq in seqs:
                seq.cancel()
            raise APIError(
                429, f"the server is busy: {e}; retry later", "rate_limit_error", None, "queue_full"
            ) from None
        return seqs

    # -- generation ------------------------------------------------------------------------------------

    def prompts_of(s: ServedModel, prompt: Any) -> list[list[int]]:
        if isinstance(prompt, str):
            out = [encode(s, prompt)]
        elif prompt and all(isinstance(x, int) for x in prompt):
            out = [list(prompt)]
        elif prompt and all(isinstance(x, str) for x in prompt):
            out = [encode(s, x) for x in prompt]
        elif prompt and all(isinstance(x, list) for x in prompt):
            out = [list(x) for x in prompt]
        else:
            raise APIError(
                400, "prompt must be a non-empty string, list of strings, or token ids", param="prompt"
            )
        if len(out) > settings.max_inputs:
            raise APIError(
                400, f"{len(out)} prompts; at most {settings.max_inputs} per request", param="prompt"
            )
        vocab = s.model.config.vocab_size
        for ids in out:
            if any(not 0 <= t < vocab for t in ids):
                raise APIError(400, f"token ids must be in [0, {vocab})", param="prompt")
        bos = getattr(s.tokenizer, "bos_id", None)
        return [ids if ids else ([bos] if bos is not None else [0]) for ids in out]

    async def run_all(
        s: ServedModel, name: str, prompts: list[list[int]], params: list[SamplingParams], n: int
    ) -> tuple[asyncio.Queue, list[Sequence], int]:
        q: asyncio.Queue = asyncio.Queue()
        seqs: list[Sequence] = []
        try:
            for j, (p, sp) in enumerate(zip(prompts, params)):
                seqs += start(s, p, sp, n, j * n, q)
        except APIError:
            for seq in seqs:
                seq.cancel()
            raise
        metrics.prompt_tokens.labels(name).inc(sum(len(p) for p in prompts) * n)
        return q, seqs, len(seqs)

    async def events(
        q: asyncio.Queue, total: int, seqs: list[Sequence], name: str, t0: float
    ) -> AsyncIterator[Event]:
        """Events of all sequences until each has finished; cancels the rest when closed early."""
        done, first = 0, True
        try:
            while done < total:
                ev: Event = await q.get()
                if first and (ev.text or ev.finish_reason):
                    metrics.ttft.labels(name).observe(time.monotonic() - t0)
                    first = False
                metrics.tokens.labels(name).inc(len(ev.tokens))
                if ev.finish_reason:
                    done += 1
                yield ev
        finally:
            for seq in seqs:
                seq.cancel()  # a client gone mid-stream frees its slots before the next decode step

    def logprob_entries(s: ServedModel, ev: Event, chat: bool) -> Any:
        tok = s.tokenizer

        def piece(i: int) -> str:
            return tok.decode([i], skip_special_tokens=False)

        if chat:
            return [
                {
                    "token": piece(t.id),
                    "logprob": t.logprob,
                    "bytes": list(piece(t.id).encode()),
                    "top_logprobs": [
                        {"token": piece(i), "logprob": lp, "bytes": list(piece(i).encode())}
                        for i, lp in (t.top or [])
                    ],
                }
                for t in ev.tokens
                if t.logprob is not None
            ]
        return {
            "tokens": [piece(t.id) for t in ev.tokens],
            "token_logprobs": [t.logprob for t in ev.tokens],
            "top_logprobs": [{piece(i): lp for i, lp in (t.top or [])} for t in ev.tokens],
        }

    def usage(prompt_tokens: int, completion: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    def finish(reason: str | None) -> str | None:
        if reason in ("error", "abort"):
            raise APIError(
                503,
                "generation was interrupted (the server is shutting down or failed)",
                "server_error",
                None,
                "generation_aborted",
            )
        return reason

    async def generate(
        s: ServedModel,
        name: str,
        req: P._Sampling,
        prompts: list[list[int]],
        extra_stop: list[str],
        chat: bool,
    ) -> Response:
        if isinstance(req, P.CompletionRequest):
            if req.echo:
                raise APIError(400, "echo is not supported", param="echo")
            if req.suffix:
                raise APIError(400, "suffix is not supported", param="suffix")
            if req.best_of not in (None, req.n):
                raise APIError(400, "best_of is not supported (use n)", param="best_of")
            lp, default_max = req.logprobs, 16
        else:
            if req.tools:
                raise APIError(400, "tools are not supported", param="tools")
            lp = (req.top_logprobs or 0) if req.logprobs else None
            default_max = None
        params = [sampling(s, req, len(p), extra_stop, lp, default_max) for p in prompts]
        n = req.n
        t0 = time.monotonic()
        q, seqs, total = await run_all(s, name, prompts, params, n)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created_at = int(time.time())
        prompt_tokens = sum(len(p) for p in prompts)
        obj = "chat.completion" if chat else "text_completion"
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        if not req.stream:
            texts, reasons, counts = [""] * total, [None] * total, [0] * total
            lps: list[list[Any]] = [[] for _ in range(total)]
            async for ev in events(q, total, seqs, name, t0):
                texts[ev.index] += ev.text
                if lp is not None:
                    lps[ev.index].append(logprob_entries(s, ev, chat))
                if ev.finish_reason:
                    reasons[ev.index], counts[ev.index] = finish(ev.finish_reason), ev.completion_tokens
            choices = []
            for i in range(total):
                logprobs = None
                if lp is not None:
                    if chat:
                        logprobs = {"content": [e for part in lps[i] for e in part]}
                    else:
                        logprobs = {
                            k: [x for part in lps[i] for x in part[k]]
                            for k in ("tokens", "token_logprobs", "top_logprobs")
                        }
                        offsets, at = [], 0
                        for t in logprobs["tokens"]:
                            offsets.append(at)
                            at += len(t)
                        logprobs["text_offset"] = offsets
                if chat:
                    choices.append(
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": texts[i]},
                            "logprobs": logprobs,
                            "finish_reason": reasons[i],
                        }
                    )
                else:
                    choices.append(
                        {"index": i, "text": texts[i], "logprobs": logprobs, "finish_reason": reasons[i]}
                    )
            return JSONResponse(
                {
                    "id": rid,
                    "object": obj,
                    "created": created_at,
                    "model": name,
                    "choices": choices,
                    "usage": usage(prompt_tokens, sum(counts)),
                    "system_fingerprint": None,
                }
            )

        chunk_obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices: list[dict[str, Any]], use: dict[str, int] | None = None) -> str:
            body: dict[str, Any] = {
                "id": rid,
                "object": chunk_obj,
                "created": created_at,
                "model": name,
                "choices": choices,
            }
            if include_usage:
                body["usage"] = use
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def sse() -> AsyncIterator[str]:
            completion = 0
            try:
                if chat:
                    for i in range(total):
                        yield chunk(
                            [
                                {
                                    "index": i,
                                    "delta": {"role": "assistant", "content": ""},
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ]
                        )
                pending: list[str] = []
                async for ev in events(q, total, seqs, name, t0):
                    reason = ev.finish_reason
                    if reason in ("error", "abort"):
                        err = {
                            "message": "generation was interrupted (the server is shutting down or failed)",
                            "type": "server_error",
                            "param": None,
                            "code": "generation_aborted",
                        }
                        yield "".join(pending) + f"data: {json.dumps({'error': err})}\n\n"
                        return
                    if reason:
                        completion += ev.completion_tokens
                    if not ev.text and not reason:
                        continue
                    # chunks that are ready together go out in one write (fewer sends at high concurrency)
                    logprobs = None
                    if lp is not None and ev.tokens:
                        logprobs = (
                            {"content": logprob_entries(s, ev, True)}
                            if chat
                            else logprob_entries(s, ev, False)
                        )
                    if chat:
                        delta = {"content": ev.text} if ev.text else {}
                        pending.append(
                            chunk(
                                [
                                    {
                                        "index": ev.index,
                                        "delta": delta,
                                        "logprobs": logprobs,
                                        "finish_reason": reason,
                                    }
                                ]
                            )
                        )
                    else:
                        pending.append(
                            chunk(
                                [
                                    {
                                        "index": ev.index,
                                        "text": ev.text,
                                        "logprobs": logprobs,
                                        "finish_reason": reason,
                                    }
                                ]
                            )
                        )
                    if q.empty():
                        yield "".join(pending)
                        pending.clear()
                if pending:
                    yield "".join(pending)
                if include_usage:
                    yield chunk([], usage(prompt_tokens, completion))
                yield "data: [DONE]\n\n"
            finally:
                for seq in seqs:
                    seq.cancel()

        return StreamingResponse(
            sse(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    auth = [Depends(authorize)]

    @app.post("/v1/completions", dependencies=auth)
    async def completions(req: P.CompletionRequest):
        s = get_model(req.model, "generate")
        return await generate(s, req.model, req, prompts_of(s, req.prompt), [], chat=False)

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(req: P.ChatRequest):
        s = get_model(req.model, "generate")
        try:
            text, extra_stop = render_chat(
                [m.model_dump() for m in req.messages], s.tokenizer, s.chat_template
            )
        except Exception as e:  # a template error is the request's (or the model's) problem, not a crash
            raise APIError(400, f"could not render the chat template: {e}", param="messages") from None
        return await generate(s, req.model, req, [encode(s, text)], extra_stop, chat=True)

    # -- embeddings, tasks, attention ------------------------------------------------------------------

    async def in_thread(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def inputs_of(value: Any, param: str) -> list[Any]:
        items = [value] if isinstance(value, str) else list(value)
        if not items:
            raise APIError(400, f"{param} must not be empty", param=param)
        if len(items) > settings.max_inputs:
            raise APIError(
                400, f"{len(items)} inputs; at most {settings.max_inputs} per request", param=param
            )
        return items

    @app.post("/v1/embeddings", dependencies=auth)
    async def embeddings(req: P.EmbeddingRequest):
        s = get_model(req.model)
        raw = req.input
        if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            raw = [raw]
        items = inputs_of(raw, "input")
        ids = [encode(s, x) if isinstance(x, str) else list(x) for x in items]
        for x in ids:
            if not x:
                raise APIError(400, "input must not contain empty strings", param="input")
            if len(x) > s.context:
                raise APIError(
                    400,
                    f"an input has {len(x)} tokens; the model's context is {s.context}",
                    param="input",
                    code="context_length_exceeded",
                )
            if any(not 0 <= t < s.model.config.vocab_size for t in x):
                raise APIError(400, "token ids out of the vocabulary", param="input")
        if req.dimensions is not None:
            raise APIError(400, "dimensions is not supported", param="dimensions")
        vectors = await in_thread(s.embed, ids, req.pooling)
        data = []
        for i, v in enumerate(vectors):
            emb: Any = v
            if req.encoding_format == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(x) for x in ids)
        return {
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def run_task(s: ServedModel, inputs: Any, task: str) -> dict[str, Any]:
        def call():
            with s.lock:
                return s.pipeline(inputs)

        try:
            out = await in_thread(call)
        except ValueError as e:
            raise APIError(400, str(e), param="input") from None
        out = out if isinstance(out, list) else [out]
        return {
            "object": "list",
            "model": s.name,
            "task": task,
            "data": [{"index": i, "result": r} for i, r in enumerate(out)],
        }

    @app.post("/v1/classify", dependencies=auth)
    async def classify(req: P.TaskRequest):
        s = get_model(req.model, "classify")
        return await run_task(s, inputs_of(req.input, "input"), "classify")

    @app.post("/v1/ner", dependencies=auth)
    async def ner(req: P.TaskRequest):
        s = get_model(req.model, "ner")
        items = inputs_of(req.input, "input")
        if any(not x.strip() for x in items):
            raise APIError(400, "input must not contain empty strings", param="input")
        return await run_task(s, items, "ner")

    @app.post("/v1/qa", dependencies=auth)
    async def qa(req: P.QARequest):
        s = get_model(req.model, "qa")
        if req.input is not None:
            items = req.input if isinstance(req.input, list) else [req.input]
            items = [{"question": x.question, "context": x.context} for x in items]
        elif req.question is not None and req.context is not None:
            items = [{"question": req.question, "context": req.context}]
        else:
            raise APIError(
                400, "give question and context, or input: [{question, context}, ...]", param="input"
            )
        items = inputs_of(items, "input")
        return await run_task(s, items, "qa")

    @app.post("/v1/attention", dependencies=auth)
    async def attention(req: P.AttentionRequest):
        from zhixing.viz.attention import attention_maps

        s = get_model(req.model)
        if len(req.text) > 4000:
            raise APIError(400, "text is longer than 4000 characters", param="text")

        def call():
            with s.lock:
                return attention_maps(
                    s.model, s.tokenizer, req.text, req.target, max_tokens=min(128, s.context)
                )

        try:
            maps = await in_thread(call)
        except ValueError as e:
            raise APIError(400, str(e), param="text") from None
        return {"object": "attention", "model": req.model, **maps}

    @app.get("/v1/models", dependencies=auth)
    async def list_models():
        return {"object": "list", "data": [s.card(created) for s in served.values()]}

    @app.get("/v1/models/{name:path}", dependencies=auth)
    async def one_model(name: str):
        return get_model(name).card(created)

    # -- health, metrics, UI ---------------------------------------------------------------------------

    @app.get("/health")
    async def health():
        body = {
            "status": "draining" if state["draining"] else "ok",
            "models": {
                n: {"active": s.batcher.num_active, "waiting": s.batcher.num_waiting} if s.batcher else {}
                for n, s in served.items()
            },
        }
        return JSONResponse(body, status_code=503 if state["draining"] else 200)

    @app.get("/metrics")
    async def prometheus():
        for n, s in served.items():
            if s.batcher is not None:
                metrics.active.labels(n).set(s.batcher.num_active)
                metrics.queue.labels(n).set(s.batcher.num_waiting)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(Guard, settings=settings, metrics=metrics)
    return app
