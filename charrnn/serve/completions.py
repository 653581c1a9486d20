"""/v1/completions' replies and the OpenAI routes: the choices generated as one engine job
(prompt after prompt), cut at their stop, whole or streamed as OpenAI's chunks, with their
log probabilities when asked (charrnn.serve.logprobs)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charrnn.generate.write import Event, samples
from charrnn.serve.common import failure, json_body, wait_whole
from charrnn.serve.engine import CHUNK_SECONDS, Engine, Full, Job
from charrnn.serve.logprobs import prompt_logprobs
from charrnn.serve.openai import (
    BadParam,
    Completion,
    completion,
    data_line,
    error_chunk,
    model_id,
    openai_error,
)

if TYPE_CHECKING:
    from charrnn.serve.request import Limits
    from charrnn.store.loaded import LoadedModel


def chained(gens: list[Generator[Event, None, list[str]]], n: int) -> Generator:
    """The prompts' sample generators one after the other as one request, prompt i's
    sample j numbered i x n + j; returns every text."""
    texts: list[str] = []
    for i, gen in enumerate(gens):
        texts += yield from _numbered(gen, i * n)
    return texts


def _numbered(gen: Generator, offset: int) -> Generator:
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield (event[0] + offset, event[1]) if isinstance(event, tuple) else event
    finally:
        gen.close()  # a request cancelled mid-way ends its sampler (and child) now


def generator(c: Completion, loaded: LoadedModel, **run: object) -> Generator:
    """The request's engine job: the choices' texts, then their log probabilities if asked
    (or None); returns (texts, logprobs)."""
    texts = yield from chained([samples(loaded, r, **run) for r in c.requests], c.n)
    if c.logprobs is None:
        return texts, None
    found = []
    for i, prompt in enumerate(c.prompts):
        r = c.requests[i]
        cut = [finished(t, c.shown[i], c.stops)[0] for t in texts[i * c.n : (i + 1) * c.n]]
        ids = loaded.vocab.encode(prompt, unknown=r.unknown) if prompt else []
        found += yield from prompt_logprobs(
            loaded, ids, cut, c.echo, c.logprobs, 0 if c.echo else len(prompt), CHUNK_SECONDS
        )
    return texts, found


def finished(text: str, shown: str, stops_: tuple[str, ...]) -> tuple[str, str]:
    """(text without its stop, finish_reason) of a whole choice: `sample` ends a text just
    after the first stop to appear, so a generated part ending with one stopped there."""
    generated = text[len(shown) :]
    ends = [s for s in stops_ if generated.endswith(s)]
    if ends:
        return text[: len(text) - max(map(len, ends))], "stop"
    return text, "length"


def held_back(text: str, stops_: tuple[str, ...]) -> int:
    """How many characters at the end of ``text`` could begin a stop (not sent yet)."""
    most = 0
    for s in stops_:
        for k in range(min(len(s), len(text)), most, -1):
            if s.startswith(text[-k:]):
                most = k
                break
    return most


def usage(c: Completion, texts: list[str]) -> dict:
    prompt = sum(len(p) for p in c.prompts)
    done = sum(len(t) - len(c.shown[i // c.n]) for i, t in enumerate(texts))
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def reply(c: Completion, texts: list[str], logprobs: list[dict] | None, head: dict) -> dict:
    """The whole (not streamed) completion."""
    choices, cut = [], []
    for i, text in enumerate(texts):
        t, reason = finished(text, c.shown[i // c.n], c.stops)
        lp = logprobs[i] if logprobs else None
        choices.append({"text": t, "index": i, "logprobs": lp, "finish_reason": reason})
        cut.append(t)
    return {**head, "choices": choices, "usage": usage(c, cut)}


def head(name: str, fingerprint: str) -> dict:
    return {
        "id": "cmpl-" + os.urandom(12).hex(),
        "object": "text_completion",
        "created": int(time.time()),
        "model": name,
        "system_fingerprint": fingerprint,
    }


class Chunks:
    """A streamed completion's data lines: each choice's text as it comes, less what could
    still turn out to be a stop; its end (finish_reason) when the next begins or all end."""

    def __init__(self, c: Completion, head: dict) -> None:
        self.c, self.head = c, head
        self.texts: dict[int, str] = {}  # every choice's text so far
        self.sent: dict[int, int] = {}  # characters of it sent
        self.current: int | None = None

    def piece(self, index: int, text: str) -> list[str]:
        out = []
        if index != self.current:
            if self.current is not None:
                out.append(self._finish(self.current))
            self.current = index
            self.texts[index], self.sent[index] = "", 0
        self.texts[index] += text
        whole, shown = self.texts[index], self.c.shown[index // self.c.n]
        if len(whole) <= len(shown):
            end = len(whole)  # the echoed prompt: never a stop
        else:
            end = len(whole) - held_back(whole[len(shown) :], self.c.stops)
        if end > self.sent[index]:
            out.append(self._chunk(index, whole[self.sent[index] : end], None))
            self.sent[index] = end
        return out

    def done(self, texts: list[str]) -> list[str]:
        out = [self._finish(self.current)] if self.current is not None else []
        for i, text in enumerate(texts):  # choices that never streamed (beam, require)
            if i not in self.texts:
                self.texts[i], self.sent[i] = text, 0
                out.append(self._finish(i))
        if self.c.include_usage:
            c = self.c
            cut = [finished(t, c.shown[i // c.n], c.stops)[0] for i, t in enumerate(texts)]
            out.append(data_line({**self.head, "choices": [], "usage": usage(self.c, cut)}))
        return [*out, "data: [DONE]\n\n"]

    def _finish(self, index: int) -> str:
        cut, reason = finished(self.texts[index], self.c.shown[index // self.c.n], self.c.stops)
        return self._chunk(index, cut[self.sent[index] :], reason)

    def _chunk(self, index: int, text: str, reason: str | None) -> str:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": reason}
        extra = {"usage": None} if self.c.include_usage else {}
        return data_line({**self.head, "choices": [choice], **extra})


class Served(Protocol):
    """What the routes need of charrnn.serve.app.Served."""

    path: object
    loaded: LoadedModel


def openai_routes(served: Served, engine: Engine, limits: Limits, busy: str) -> list[Route]:
    """GET /v1/models (and /v1/models/ID), POST /v1/completions, and POST
    /v1/chat/completions saying where completions are."""
    name = model_id(served.path)

    def entry() -> dict:
        created = int(os.path.getmtime(served.path)) if os.path.exists(served.path) else 0
        return {"id": name, "object": "model", "created": created, "owned_by": "charrnn"}

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [entry()]})

    async def one_model(request: Request) -> Response:
        if request.path_params["model"] != name:
            raise BadParam(
                f"The model '{request.path_params['model']}' does not exist; this server "
                f"serves '{name}'",
                "model",
                404,
                "model_not_found",
            )
        return JSONResponse(entry())

    async def chat(request: Request) -> Response:
        raise BadParam(
            f"'{name}' is a completion model (a character model, no chat template): "
            "use POST /v1/completions with a prompt",
            None,
            400,
            "unsupported_endpoint",
        )

    async def completions(request: Request) -> Response:
        body = await json_body(request, limits.max_body)
        loaded = served.loaded
        c = completion(body, loaded, limits, name)
        events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def emit(kind: str, value: object) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        gen = generator(c, loaded, chunk_seconds=CHUNK_SECONDS, children=engine.children)
        try:
            job = engine.submit(gen, emit, limits.timeout)
        except Full:
            gen.close()
            return openai_error(503, busy, headers={"Retry-After": "1"})
        top = head(name, loaded.short_checkpoint)
        if c.stream:
            return StreamingResponse(
                _stream(job, events, Chunks(c, top)),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store"},
            )
        kind, value = await wait_whole(request, job, events)
        if kind == "gone":
            return openai_error(499, "the client went away")
        if kind == "error":
            status, message = failure(value)
            return openai_error(status, message, headers=_retry(status))
        return JSONResponse(reply(c, *value, top))

    return [
        Route("/v1/models", models),
        Route("/v1/models/{model:path}", one_model),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]


def _retry(status: int) -> dict | None:
    return {"x-should-retry": "false"} if status == 504 else None


async def _stream(job: Job, events: asyncio.Queue, chunks: Chunks) -> AsyncIterator[str]:
    """The data lines; a client that disconnects cancels this, which frees the slot."""
    try:
        while True:
            kind, value = await events.get()
            if kind == "piece":
                for line in chunks.piece(*value):
                    yield line
            elif kind == "done":
                for line in chunks.done(value[0]):
                    yield line
                return
            else:
                yield error_chunk(*failure(value))
                return
    finally:
        job.cancel()
