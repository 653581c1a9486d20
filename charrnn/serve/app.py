"""The HTTP/JSON API of `charrnn serve` (Starlette; uvicorn runs it).

  GET  /healthz       {"status": "ok", "active_streams", "max_streams"}
  GET  /v1/model      the model: cell, sizes, vocabulary, checkpoint, step, val_loss, the
                      streams and TensorFlow children active, the limits and memory bound
  POST /v1/generate   `charrnn sample`'s options as JSON; the samples as JSON, or with
                      "stream": true as server-sent events ("piece" events
                      {"sample", "text"}, then one "done" event, or an "error" event)
  POST /v1/score      {"text"}: what `charrnn evaluate --per-line` gives for it
  POST /v1/reload     load the --checkpoint again (the newest one of a run still training)
  GET  /v1/models, POST /v1/completions: OpenAI's Completions API on the same engine
                      (charrnn.serve.completions), its errors in OpenAI's shape

Requests must come from this machine's own pages or tools: the Host header must name the
address served (so a web page cannot reach it through DNS rebinding), and a request a
browser marks with another Origin (but --cors-origin's) is refused, as is a POST that is
not application/json (what a cross-site form could send); with --api-key every route but
/healthz needs ``Authorization: Bearer KEY``.  Errors are JSON {"error": "..."} with a
4xx/5xx (OpenAI's shape on its routes).

No request can hold the server: every option whose cost grows is bounded
(charrnn.serve.request.Limits, said by /v1/model), a body is read only up to --max-body,
every request holds one of --max-streams slots and gives it up after --timeout or as
soon as its client goes, and generation runs in ~20 ms turns on one engine thread
(/v1/score, which needs TensorFlow, in a thread of its own, one window of symbols at a
time, checking the timeout and the client between windows).  Long samples past NumPy's
share hand over to TensorFlow child processes, at most --max-children at once, which the
engine thread never waits for (charrnn.serve.engine).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from charrnn.analysis.novelty import sample_reports
from charrnn.errors import CharrnnError
from charrnn.generate.write import samples
from charrnn.serve.common import error, failure, headers_for, json_body, wait_whole
from charrnn.serve.completions import openai_routes
from charrnn.serve.engine import CHUNK_SECONDS, Engine, Full, Job
from charrnn.serve.openai import is_openai, openai_error
from charrnn.serve.request import SCORE, BadRequest, Limits, fields, generate_request

if TYPE_CHECKING:
    from charrnn.analysis.novelty import NoveltyIndex
    from charrnn.analysis.scoring import Step
    from charrnn.atomic import StrPath
    from charrnn.generate.write import Request as SampleRequest
    from charrnn.store.loaded import LoadedModel

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class Served:
    """The model behind the API, and how to load it again."""

    def __init__(
        self,
        path: StrPath,
        checkpoint: StrPath,
        load: Callable[[StrPath, StrPath], LoadedModel],
    ) -> None:
        self.path, self.checkpoint, self._load = path, checkpoint, load
        self.lock = threading.Lock()
        self.loaded = load(path, checkpoint)
        self.novelty = self.step = None

    def reload(self) -> LoadedModel:
        loaded = self._load(self.path, self.checkpoint)
        with self.lock:
            self.loaded, self.novelty, self.step = loaded, None, None
        return loaded

    def score_step(self, loaded: LoadedModel) -> Step:
        """The compiled scoring step of ``loaded``'s Keras model (imports TensorFlow)."""
        from charrnn.analysis.scoring import make_step

        with self.lock:
            if self.step is None or self.step[0] is not loaded:
                self.step = (loaded, make_step(loaded.model))
            return self.step[1]

    def novelty_index(self) -> NoveltyIndex:
        from charrnn.analysis.novelty import index_for

        with self.lock:
            if self.novelty is None:
                self.novelty = index_for(self.loaded)
            return self.novelty


def error_for(path: str, status: int, message: str) -> JSONResponse:
    """An error in the shape of the route asked: OpenAI's on its routes, else charrnn's."""
    if is_openai(path):
        return openai_error(status, message, headers=headers_for(status))
    return error(status, message, headers_for(status))


def make_app(
    served: Served,
    *,
    host: str,
    port: int,
    limits: Limits = Limits(),
    api_key: str | None = None,
    cors_origin: str | None = None,
    scheme: str = "http",
) -> tuple[ASGIApp, Engine]:
    """The app and its engine.  ``api_key``: every route but /healthz needs
    ``Authorization: Bearer KEY``; ``cors_origin``: that browser origin may call it."""
    engine = Engine(limits.max_streams, limits.max_children)
    hosts = _allowed_hosts(host, port)
    scorer = ThreadPoolExecutor(1, thread_name_prefix="charrnn-score")
    busy = f"all {limits.max_streams} streams are busy (--max-streams); try again in a moment"

    def describe() -> dict:
        loaded = served.loaded
        return {
            "path": str(served.path),
            **loaded.model_args,
            "jamo": loaded.vocab.jamo,
            "vocab": loaded.vocab.symbols,
            "checkpoint": loaded.short_checkpoint,
            "step": loaded.step,
            "val_loss": loaded.val_loss,
            "active_streams": engine.active,
            "max_streams": limits.max_streams,
            "max_chars": limits.max_chars,
            "active_children": engine.children.running,
            "limits": limits.describe(loaded),
        }

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "active_streams": engine.active, "max_streams": limits.max_streams}
        )

    async def model(request: Request) -> Response:
        return JSONResponse(describe())

    async def reload(request: Request) -> Response:
        try:
            await asyncio.to_thread(served.reload)
        except CharrnnError as e:
            return error(409, f"reloading failed, the old model goes on serving: {e}")
        return JSONResponse(describe())

    async def generate(request: Request) -> Response:
        body = await json_body(request, limits.max_body)
        loaded = served.loaded
        req, stream, novelty, seed = generate_request(body, loaded, limits)
        index = await asyncio.to_thread(served.novelty_index) if novelty else None
        if await request.is_disconnected():
            return error(499, "the client went away")
        events = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def emit(kind: str, value: object) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        gen = samples(loaded, req, chunk_seconds=CHUNK_SECONDS, children=engine.children)
        try:
            job = engine.submit(gen, emit, limits.timeout)
        except Full:
            gen.close()
            return error(503, busy, headers_for(503))
        meta = {"seed": seed, "checkpoint": loaded.short_checkpoint, "step": loaded.step}
        if stream:
            return StreamingResponse(
                _sse(job, events, meta, req, index, loaded),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store"},
            )
        return await _whole(request, job, events, meta, req, index, loaded)

    async def score(request: Request) -> Response:
        text = fields(await json_body(request, limits.max_body), SCORE)["text"]
        if text is None:
            raise BadRequest(400, 'give the text to score as {"text": "..."}')
        loaded = served.loaded
        try:
            job = engine.hold(limits.timeout)
        except Full:
            return error(503, busy, headers_for(503))
        try:
            work = asyncio.get_running_loop().run_in_executor(
                scorer, _score, served, loaded, text, job
            )
            work.add_done_callback(
                lambda f: f.cancelled() or f.exception()
            )  # _Gone: no one to tell
            while not (await asyncio.wait({work}, timeout=0.25))[0]:
                if await request.is_disconnected():
                    return error(499, "the client went away")
            return JSONResponse(work.result())
        except TimeoutError as e:
            return error(*failure(e), headers_for(504))
        except CharrnnError as e:
            return error(400, str(e))
        finally:
            job.cancel()

    routes = [
        Route("/healthz", healthz),
        Route("/v1/model", model),
        Route("/v1/generate", generate, methods=["POST"]),
        Route("/v1/score", score, methods=["POST"]),
        Route("/v1/reload", reload, methods=["POST"]),
        *openai_routes(served, engine, limits, busy),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            BadRequest: lambda request, e: _bad(request.url.path, e),
            CharrnnError: lambda request, e: error_for(request.url.path, 400, str(e)),
            404: lambda request, e: error_for(
                request.url.path,
                404,
                f"no such endpoint {request.url.path}; see "
                "GET /v1/model, POST /v1/generate, POST /v1/score, POST /v1/completions",
            ),
            405: lambda request, e: error_for(
                request.url.path, 405, f"{request.method} is not allowed on {request.url.path}"
            ),
        },
    )
    return _Guard(app, hosts, api_key, cors_origin, scheme), engine


def _bad(path: str, e: BadRequest) -> Response:
    if is_openai(path):
        return openai_error(e.status, str(e), getattr(e, "param", None), getattr(e, "code", None))
    return error(e.status, str(e))


def _allowed_hosts(host: str, port: int) -> set[str] | None:
    if host in ("0.0.0.0", "::"):
        return None  # every interface: the user's explicit choice; Origin is still checked
    names = set(LOOPBACK) if host in LOOPBACK else {host}
    return {f"{h}:{port}" for h in names} | ({f"[{host}]:{port}"} if ":" in host else set())


class _Guard:
    """Before routing: refuse other Hosts (DNS rebinding), other Origins than
    ``cors_origin``, non-JSON POSTs and, with an ``api_key``, requests without it (every
    route but /healthz); answer ``cors_origin``'s preflights and mark its replies."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: set[str] | None,
        api_key: str | None = None,
        cors_origin: str | None = None,
        scheme: str = "http",
    ) -> None:
        self.app, self.hosts, self.scheme = app, hosts, scheme
        self.key = f"Bearer {api_key}".encode() if api_key else None
        self.cors = cors_origin.rstrip("/") if cors_origin else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        cors = self.cors is not None and headers.get("origin") == self.cors
        if cors and scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await Response(status_code=204, headers=self._cors(preflight=True))(
                scope, receive, send
            )
            return
        why = self._refusal(scope, headers, cors)
        if why:
            reply = error_for(path, *why)
            if why[0] == 401:
                reply.headers["WWW-Authenticate"] = "Bearer"
            if cors:
                reply.headers.update(self._cors())
            await reply(scope, receive, send)
            return
        if cors:
            await self.app(scope, receive, self._marked(send))
        else:
            await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str], cors: bool) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.hosts is not None and host not in self.hosts:
            return 403, (
                f"Host {host!r} is not this server's address; use "
                f"{self.scheme}://{sorted(self.hosts)[0]}"
            )
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != host and not cors:
            return 403, f"requests from pages of {origin} are refused"
        if self.key is not None and scope["path"] != "/healthz":
            given = headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, self.key):
                return 401, (
                    "the API key is wrong (send Authorization: Bearer KEY)"
                    if given
                    else "this server needs an API key: send Authorization: Bearer KEY"
                )
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["method"] == "POST" and kind != "application/json":
            return 415, "send the body as JSON with Content-Type: application/json"
        return None

    def _cors(self, preflight: bool = False) -> dict[str, str]:
        out = {"Access-Control-Allow-Origin": self.cors, "Vary": "Origin"}
        if preflight:
            out |= {
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600",
            }
        return out

    def _marked(self, send: Send) -> Send:
        extra = [(k.lower().encode(), v.encode()) for k, v in self._cors().items()]

        async def marked(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return marked


class _Gone(Exception):
    """The client of a /v1/score went away."""


def _score(served: Served, loaded: LoadedModel, text: str, job: Job) -> dict:
    """/v1/score's work, on the scoring thread: what `evaluate --per-line` gives, stopping
    between windows of symbols once the client is gone or --timeout has passed."""
    from charrnn.analysis import scoring
    from charrnn.analysis.evaluate import per_line

    def check() -> None:
        if job.cancelled:
            raise _Gone
        if job.expired:
            raise TimeoutError

    check()  # it may have waited for the thread
    step = served.score_step(loaded)

    def checked_step(*args: Any) -> Any:
        check()
        return step(*args)

    t = text.replace("\r\n", "\n").replace("\r", "\n") if loaded.newlines == "lf" else text
    scored = scoring.score_text(loaded.model, loaded.vocab, t, step=checked_step, name="the text")
    return {"lines": list(per_line("request", scored)), "total": scored.figures()}


async def _whole(
    request: Request,
    job: Job,
    events: asyncio.Queue,
    meta: dict,
    req: SampleRequest,
    index: NoveltyIndex | None,
    loaded: LoadedModel,
) -> Response:
    kind, value = await wait_whole(request, job, events)
    if kind == "gone":
        return error(499, "the client went away")
    if kind == "error":
        status, message = failure(value)
        return error(status, message, headers_for(status))
    reply = {"samples": value, **meta}
    if index is not None:
        reply["novelty"] = await asyncio.to_thread(sample_reports, index, loaded.vocab, req, value)
    return JSONResponse(reply)


async def _sse(
    job: Job,
    events: asyncio.Queue,
    meta: dict,
    req: SampleRequest,
    index: NoveltyIndex | None,
    loaded: LoadedModel,
) -> AsyncIterator[str]:
    """Server-sent events; a client that disconnects cancels this, which frees the slot."""
    try:
        yield _event("start", meta)
        while True:
            kind, value = await events.get()
            if kind == "piece":
                yield _event("piece", {"sample": value[0], "text": value[1]})
            elif kind == "done":
                done = {"samples": value, **meta}
                if index is not None:
                    done["novelty"] = await asyncio.to_thread(
                        sample_reports, index, loaded.vocab, req, value
                    )
                yield _event("done", done)
                return
            else:
                status, message = failure(value)
                yield _event("error", {"error": message, "status": status})
                return
    finally:
        job.cancel()


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
