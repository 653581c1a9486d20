"""What a client may ask for, checked before anything runs: one 4xx with what to fix.

Every option whose cost grows with its value is bounded (``Limits``), so the work and
the memory of one request are bounded, and so the server's, its TensorFlow children
included: see ``Limits.memory_bound``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from charrnn.errors import CharrnnError
from charrnn.generate.beam import max_steps
from charrnn.generate.choice import PAIRWISE_MAX, Options
from charrnn.generate.constraints import Allowed
from charrnn.generate.write import MAX_ASK, REQUIRE_TRIES, Request
from charrnn.generate.xla_process import child_memory

if TYPE_CHECKING:
    from charrnn.store.loaded import LoadedModel

MAX_SAMPLES = 64
MAX_BEAM = 64  # and at most the vocabulary size
MAX_REQUIRE_TRIES = 64
MAX_STRING = 256  # characters of stop and of require
MAX_STOPS = 4  # stop strings in a request (OpenAI's limit)
INT_LIMIT = 2**63  # integers beyond +-this are refused (NumPy's int64)

# name: (type, default); the same options as `charrnn sample` (n is -n/--length)
GENERATE = {
    "prime": (str, ""),
    "n": (int, 1000),
    "temperature": (float, 1.0),
    "top_k": (int, 0),
    "top_p": (float, 1.0),
    "seed": (int, None),
    "stop": (object, None),  # a string or a list of up to MAX_STOPS (stops())
    "num_samples": (int, 1),
    "allow": (str, None),
    "require": (str, None),
    "require_tries": (int, REQUIRE_TRIES),
    "beam": (int, 0),
    "unknown": (str, "error"),
    "echo_prime": (bool, True),
    "stream": (bool, False),
    "novelty": (bool, False),
}
SCORE = {"text": (str, None)}


@dataclass(frozen=True)
class Limits:
    """The server's limits: its options and the fixed ones above."""

    max_chars: int = 10_000
    max_body: int = 65_536
    max_streams: int = 16
    timeout: float = 300.0
    max_children: int = 2

    @property
    def connections(self) -> int:
        """Connections served at once (uvicorn answers 503 above): every stream, as many
        again waiting for a slot or reading their reply, and 32 for /healthz and the like."""
        return 2 * self.max_streams + 32

    def max_beam(self, vocab_size: int) -> int:
        return min(MAX_BEAM, vocab_size)

    def child_memory(self, loaded: LoadedModel) -> int:
        """Bytes one TensorFlow child may hold for this model: see
        charrnn.generate.xla_process.child_memory (per model size: its weights count)."""
        return child_memory(loaded.weights, MAX_SAMPLES, MAX_ASK)

    def memory_bound(self, loaded: LoadedModel) -> int:
        """Bytes above the idle server's resident memory that requests in flight can hold
        at most, the server's TensorFlow children included (docs/serving.md).
        Per stream, the larger of
          sampled text: num_samples x (prime + n) characters, 4 bytes a character, in 4
            copies at most (the texts, the events not yet sent, the reply, its JSON);
          beam: one (parent, symbol) pair of 2 bytes each per kept text per step;
        then one engine step's working set (top_p's pairwise nucleus: PAIRWISE_MAX
        x 16 bytes), one /v1/score at a time (2 KiB per character of text: its arrays,
        a line's dict per newline, the JSON), every connection's body read and parsed
        (6 bytes per byte), and max_children x one child's memory (the processes that
        long samples past NumPy's share hand over to)."""
        vocab_size = len(loaded.vocab.symbols)
        sampled = 4 * 4 * MAX_SAMPLES * 2 * self.max_chars
        beam = 2 * 2 * self.max_beam(vocab_size) * max_steps(self.max_chars)
        return (
            self.max_streams * max(sampled, beam)
            + 16 * PAIRWISE_MAX
            + 2048 * self.max_body
            + self.connections * 6 * self.max_body
            + self.max_children * self.child_memory(loaded)
        )

    def describe(self, loaded: LoadedModel) -> dict:
        """The limits as /v1/model gives them."""
        vocab_size = len(loaded.vocab.symbols)
        return {
            "max_chars": self.max_chars,
            "max_prime_chars": self.max_chars,
            "max_samples": MAX_SAMPLES,
            "max_beam": self.max_beam(vocab_size),
            "max_require_tries": MAX_REQUIRE_TRIES,
            "max_stop_chars": MAX_STRING,
            "max_require_chars": MAX_STRING,
            "max_body": self.max_body,
            "max_score_chars": self.max_body,
            "max_streams": self.max_streams,
            "max_connections": self.connections,
            "timeout": self.timeout,
            "max_children": self.max_children,
            "child_memory_mb": round(self.child_memory(loaded) / 2**20),
            "memory_bound_mb": round(self.memory_bound(loaded) / 2**20),
        }


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def fields(body: object, spec: dict[str, tuple[type, object]]) -> dict:
    """The body's values for ``spec``, typed, defaults filled in."""
    if not isinstance(body, dict):
        raise BadRequest(400, 'the body must be a JSON object, e.g. {"prime": "The ", "n": 200}')
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise BadRequest(400, f"unknown option {unknown[0]!r}; the options are: {', '.join(spec)}")
    out = {}
    for name, (kind, default) in spec.items():
        value = body.get(name, default)
        if value is None:
            if default is None and name in body:
                raise BadRequest(400, f"{name} must be a {kind.__name__}, not null")
            out[name] = default
            continue
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok or (kind is float and not math.isfinite(value)):
            raise BadRequest(
                400,
                f"{name} must be a {'number' if kind is float else kind.__name__}"
                f", not {_short(value)}",
            )
        if kind is int and not -INT_LIMIT < value < INT_LIMIT:
            raise BadRequest(400, f"{name} must be between {-INT_LIMIT + 1} and {INT_LIMIT - 1}")
        if kind is str:
            _unicode(name, value)
        out[name] = value
    return out


def generate_request(
    body: object, loaded: LoadedModel, limits: Limits
) -> tuple[Request, bool, bool, int]:
    """(charrnn.generate.write.Request, stream?, novelty?, seed) for a /v1/generate body."""
    f = fields(body, GENERATE)
    _within(f, "n", 0, limits.max_chars, "the server's --max-chars")
    _within(f, "num_samples", 1, MAX_SAMPLES)
    _within(f, "require_tries", 1, MAX_REQUIRE_TRIES)
    vocab_size = len(loaded.vocab.symbols)
    _within(
        f,
        "beam",
        0,
        limits.max_beam(vocab_size),
        f"at most {MAX_BEAM} and the vocabulary's {vocab_size} symbols",
    )
    if len(f["prime"]) > limits.max_chars:
        raise BadRequest(
            400, f"the prime is over {limits.max_chars} characters (the server's --max-chars)"
        )
    f["stop"] = stops(f["stop"])
    for name in ("require", "allow"):
        if f[name] == "":
            raise BadRequest(400, f"{name} must not be empty; leave it out instead")
    if f["require"] is not None and len(f["require"]) > MAX_STRING:
        raise BadRequest(400, f"require is over {MAX_STRING} characters")
    seed = f["seed"] if f["seed"] is not None else int.from_bytes(os.urandom(4), "little")
    if seed < 0:
        raise BadRequest(400, "seed must be 0 or more")
    request = Request(
        f["prime"],
        f["n"],
        f["num_samples"],
        Options(f["temperature"], f["top_k"], f["top_p"], seed),
        f["stop"],
        f["allow"],
        f["require"],
        f["require_tries"],
        f["beam"],
        f["echo_prime"],
        f["unknown"],
    )
    try:
        request.check()
        if f["prime"]:
            loaded.vocab.encode(f["prime"], unknown=f["unknown"])
        if request.allow:
            Allowed(loaded.vocab, request.allow)
    except CharrnnError as e:
        raise BadRequest(400, _options(str(e))) from None
    if f["stream"] and not request.streams:
        raise BadRequest(
            400,
            "beam and require give whole samples at the end: they cannot "
            "stream; leave out stream (or set it to false)",
        )
    return request, f["stream"], f["novelty"], seed


def stops(value: object) -> tuple[str, ...] | None:
    """A request's stop: a string or a list of up to MAX_STOPS strings, each non-empty and
    up to MAX_STRING characters."""
    if value is None:
        return None
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
        raise BadRequest(400, f"stop must be a string or a list of strings, not {_short(value)}")
    if not 1 <= len(listed) <= MAX_STOPS:
        raise BadRequest(400, f"stop must be a list of 1 to {MAX_STOPS} strings")
    for s in listed:
        if s == "":
            raise BadRequest(400, "stop must not be empty; leave it out instead")
        if len(s) > MAX_STRING:
            raise BadRequest(400, f"stop is over {MAX_STRING} characters")
        _unicode("stop", s)
    return tuple(listed)


def _unicode(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            400, f"{name} is not valid Unicode (a lone surrogate escape such as \\ud800)"
        ) from None


def _within(f: dict, name: str, low: int, high: int, why: str | None = None) -> None:
    if not low <= f[name] <= high:
        raise BadRequest(
            400, f"{name} must be between {low} and {high}" + (f" ({why})" if why else "")
        )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _options(message: str) -> str:
    """A CLI message in the API's words (--top-k -> top_k, -n -> n)."""
    for flag in (
        "--num-samples",
        "--require-tries",
        "--top-k",
        "--top-p",
        "--temperature",
        "--require",
        "--allow",
        "--beam",
        "--unknown",
        "--length",
        "--prime",
    ):
        message = message.replace(flag, flag[2:].replace("-", "_"))
    return message.replace("-n)", "n)").replace("skip unknown characters", 'set "unknown": "skip"')
