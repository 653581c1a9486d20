"""OpenAI's Completions API over the server's engine: GET /v1/models, POST /v1/completions.

A completion is a /v1/generate request in OpenAI's words, run by the same generator
(charrnn.generate.write.samples) on the same engine under the same limits, so the same
seed and options give `charrnn sample`'s text -- up to the stop, which OpenAI leaves out
(``finish_reason`` "stop"; else "length").  A token is a character: ``max_tokens`` and
``usage`` count characters.  Choices come prompt by prompt, ``index`` = prompt i x n + j,
each prompt's n choices being ``charrnn sample --prime PROMPT --num-samples N --seed
SEED``'s samples.  charrnn's own options (top_k, allow, require, require_tries, beam,
unknown) are extra fields, as vLLM takes them.  Every error is in OpenAI's shape
({"error": {"message", "type", "param", "code"}}) so its clients raise their usual
exceptions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse

from charrnn.generate.write import echoed_prime
from charrnn.serve.logprobs import MAX_TOP
from charrnn.serve.request import MAX_SAMPLES, BadRequest, fields, generate_request, stops

if TYPE_CHECKING:
    from charrnn.generate.write import Request as SampleRequest
    from charrnn.serve.request import Limits
    from charrnn.store.loaded import LoadedModel

ROUTES = ("/v1/models", "/v1/completions", "/v1/chat/completions")
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    503: "server_error",
    504: "timeout",
}
CODES = {401: "invalid_api_key", 503: "server_busy", 504: "timeout"}

# OpenAI's fields that apply to a character model, then charrnn's own (name: type, default)
COMPLETION = {
    "model": (str, None),
    "prompt": (object, ""),
    "max_tokens": (int, 16),
    "temperature": (float, 1.0),
    "top_p": (float, 1.0),
    "n": (int, 1),
    "stop": (object, None),
    "seed": (int, None),
    "stream": (bool, False),
    "stream_options": (dict, None),
    "echo": (bool, False),
    "logprobs": (int, None),
    "user": (str, None),
    "top_k": (int, 0),
    "allow": (str, None),
    "require": (str, None),
    "require_tries": (int, 16),
    "beam": (int, 0),
    "unknown": (str, "error"),
}
# OpenAI's fields that do not apply: accepted only at their neutral values
NEUTRAL = {
    "suffix": (None, ""),
    "logit_bias": (None, {}),
    "best_of": (None, 1),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
}
# charrnn's option names (in its messages) -> OpenAI's
RENAMED = {"prime": "prompt", "num_samples": "n"}


def openai_error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    body = {
        "message": message,
        "type": TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": code or CODES.get(status),
    }
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def error_chunk(status: int, message: str) -> str:
    """An error after a stream began: one more data line in OpenAI's error shape."""
    body = {"message": message, "type": TYPES.get(status, "server_error"), "param": None}
    return data_line({"error": {**body, "code": CODES.get(status)}})


def is_openai(path: str) -> bool:
    return path in ROUTES or path.startswith("/v1/models/")


def model_id(path: object) -> str:
    """The served model's id: its run directory's or file's name (never a local path)."""
    return Path(os.path.normpath(str(path))).name or "charrnn"


@dataclass
class Completion:
    """A checked /v1/completions body."""

    prompts: list[str]
    requests: list[SampleRequest]
    n: int
    stops: tuple[str, ...]
    stream: bool
    include_usage: bool
    shown: list[str]  # each prompt's text as echoed ("" without echo)
    echo: bool = False
    logprobs: int | None = None  # top candidates per character; None: no logprobs


def completion(body: object, loaded: LoadedModel, limits: Limits, served_id: str) -> Completion:
    """A /v1/completions body, checked before anything runs (BadRequest naming the param)."""
    if isinstance(body, dict):
        for name, neutral in NEUTRAL.items():
            if name in body and body[name] not in neutral:
                raise BadParam(f"{name} does not apply to a character model; leave it out", name)
        body = {k: v for k, v in body.items() if k not in NEUTRAL}
    try:
        f = fields(body, COMPLETION)
    except BadRequest as e:
        raise BadParam(str(e), _param(str(e))) from None
    if f["model"] is not None and f["model"] != served_id:
        raise BadParam(
            f"The model '{f['model']}' does not exist; this server serves '{served_id}'",
            "model",
            404,
            "model_not_found",
        )
    prompts = _prompts(f["prompt"])
    if f["logprobs"] is not None and not 0 <= f["logprobs"] <= MAX_TOP:
        raise BadParam(f"logprobs must be between 0 and {MAX_TOP}", "logprobs")
    if f["logprobs"] is not None and f["stream"]:
        raise BadParam(
            "logprobs come with the whole reply: leave out stream (or logprobs)", "logprobs"
        )
    if not 1 <= f["n"] <= MAX_SAMPLES // len(prompts):
        raise BadParam(
            f"n must be between 1 and {MAX_SAMPLES // len(prompts)} (at most {MAX_SAMPLES} "
            "choices in all)",
            "n",
        )
    max_tokens = 16 if f["max_tokens"] is None else f["max_tokens"]
    options = f["stream_options"] or {}
    if set(options) - {"include_usage"} or not isinstance(
        options.get("include_usage", False), bool
    ):
        raise BadParam(
            'stream_options takes only {"include_usage": true or false}', "stream_options"
        )
    try:
        stop = stops(f["stop"]) or ()
    except BadRequest as e:
        raise BadParam(str(e), "stop") from None
    seed = f["seed"] if f["seed"] is not None else int.from_bytes(os.urandom(4), "little")
    requests = []
    for prompt in prompts:
        generate = {
            "prime": prompt,
            "n": max_tokens,
            "num_samples": f["n"],
            "echo_prime": f["echo"],
            "stop": list(stop) or None,
            "seed": seed,
            "stream": f["stream"],
        }
        generate |= {k: f[k] for k in ("temperature", "top_p", "top_k", "allow", "require")}
        generate |= {k: f[k] for k in ("require_tries", "beam", "unknown")}
        generate = {k: v for k, v in generate.items() if v is not None}
        try:
            requests.append(generate_request(generate, loaded, limits)[0])
        except BadRequest as e:
            message = _renamed(str(e))
            raise BadParam(message, _param(message), e.status) from None
    scored = f["n"] * sum(max_tokens + (len(p) if f["echo"] else 0) for p in prompts)
    if f["logprobs"] is not None and scored > 2 * limits.max_chars:
        raise BadParam(
            f"logprobs are kept for at most {2 * limits.max_chars} characters a request (twice "
            f"the server's --max-chars); this asks for {scored} (n x (max_tokens + the "
            "prompt with echo), prompt by prompt)",
            "logprobs",
        )
    return Completion(
        prompts,
        requests,
        f["n"],
        stop,
        f["stream"],
        bool(options.get("include_usage")) and f["stream"],
        [echoed_prime(loaded.vocab, r) for r in requests],
        f["echo"],
        f["logprobs"],
    )


class BadParam(BadRequest):
    """A BadRequest naming the OpenAI param at fault (and its code)."""

    def __init__(
        self, message: str, param: str | None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(status, message)
        self.param, self.code = param, code


def _prompts(prompt: object) -> list[str]:
    listed = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(listed, list) or not listed:
        raise BadParam("prompt must be a string or a non-empty list of strings", "prompt")
    if not all(isinstance(p, str) for p in listed):
        raise BadParam(
            "prompt must be text: token-id prompts do not apply to a character model", "prompt"
        )
    if len(listed) > MAX_SAMPLES:
        raise BadParam(f"at most {MAX_SAMPLES} prompts", "prompt")
    return listed


def _renamed(message: str) -> str:
    for old, new in RENAMED.items():
        message = message.replace(f"{old} ", f"{new} ").replace(f"the {new} is", "a prompt is")
    message = message.replace("n must be between 0 and", "max_tokens must be between 0 and")
    return message.replace("echo_prime", "echo")


def _param(message: str) -> str | None:
    """The field a message from the checks names first (a vocabulary's: the prompt)."""
    words = message.replace("'", " ").split()
    if "unknown option" in message and len(words) > 2:
        return words[2]
    for word in words[:3]:
        if word in COMPLETION:
            return word
    if "vocabulary" in message or "prompt" in message:
        return "prompt"
    return None


def data_line(value: dict) -> str:
    return f"data: {json.dumps(value, ensure_ascii=False)}\n\n"
