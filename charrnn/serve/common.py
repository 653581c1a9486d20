"""What the server's routes share: charrnn's error shape, reading a body, waiting for a
request's whole reply."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from charrnn.errors import CharrnnError
from charrnn.serve.engine import Job
from charrnn.serve.request import BadRequest


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def headers_for(status: int) -> dict | None:
    """503: when to try again; 504: do not (OpenAI's clients retry 5xx otherwise)."""
    return {503: {"Retry-After": "1"}, 504: {"x-should-retry": "false"}}.get(status)


async def json_body(request: Request, max_body: int) -> Any:
    """The body as JSON, read only up to ``max_body`` bytes whether it says its length
    (Content-Length) or streams (chunked); 400 for whatever the parser cannot take."""
    too_big = BadRequest(413, f"the body is over {max_body:,} bytes (the server's --max-body)")
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > max_body:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise too_big
    try:
        return json.loads(bytes(body) or b"{}")
    except RecursionError:
        raise BadRequest(
            400, "the body is not valid JSON for this server (nested too deeply)"
        ) from None
    except (ValueError, UnicodeDecodeError) as e:  # huge numbers are ValueErrors too
        raise BadRequest(400, f"the body is not valid JSON ({str(e)[:200]})") from None


def failure(value: BaseException) -> tuple[int, str]:
    if isinstance(value, TimeoutError):
        return 504, "the request took longer than the server's --timeout"
    if isinstance(value, CharrnnError):
        return 422, str(value)
    return 500, f"internal error: {value}"


async def wait_whole(request: Request, job: Job, events: asyncio.Queue) -> tuple[str, Any]:
    """("done", the texts), ("error", the exception) or ("gone", None): the job's end,
    giving up its slot if the client goes away (asked every quarter second, whether
    pieces are coming or not)."""
    loop = asyncio.get_running_loop()
    try:
        ask = loop.time() + 0.25
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), max(0.0, ask - loop.time()))
            except asyncio.TimeoutError:
                kind = None
            if loop.time() >= ask:
                if await request.is_disconnected():
                    return "gone", None
                ask = loop.time() + 0.25
            if kind in ("done", "error"):
                return kind, value
    finally:
        job.cancel()
