"""What a client may ask for, checked before anything runs: one 4xx with what to fix."""

import math
import os

from charrnn.errors import CharrnnError
from charrnn.generate.choice import Options
from charrnn.generate.constraints import Allowed
from charrnn.generate.write import REQUIRE_TRIES, Request

MAX_SAMPLES = 64

# name: (type, default); the same options as `charrnn sample` (n is -n/--length)
GENERATE = {
    "prime": (str, ""), "n": (int, 1000), "temperature": (float, 1.0), "top_k": (int, 0),
    "top_p": (float, 1.0), "seed": (int, None), "stop": (str, None), "num_samples": (int, 1),
    "allow": (str, None), "require": (str, None), "require_tries": (int, REQUIRE_TRIES),
    "beam": (int, 0), "unknown": (str, "error"), "echo_prime": (bool, True),
    "stream": (bool, False), "novelty": (bool, False),
}
SCORE = {"text": (str, None)}


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def fields(body, spec) -> dict:
    """The body's values for ``spec``, typed, defaults filled in."""
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object, e.g. {\"prime\": \"The \", \"n\": 200}")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise BadRequest(400, f"unknown option {unknown[0]!r}; the options are: "
                              f"{', '.join(spec)}")
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
            raise BadRequest(400, f"{name} must be a {'number' if kind is float else kind.__name__}"
                                  f", not {value!r}")
        out[name] = value
    return out


def generate_request(body, loaded, max_chars) -> tuple:
    """(charrnn.generate.write.Request, stream?, novelty?, seed) for a /v1/generate body."""
    f = fields(body, GENERATE)
    if not 0 <= f["n"] <= max_chars:
        raise BadRequest(400, f"n must be between 0 and {max_chars} (the server's --max-chars)")
    if not 1 <= f["num_samples"] <= MAX_SAMPLES:
        raise BadRequest(400, f"num_samples must be between 1 and {MAX_SAMPLES}")
    seed = f["seed"] if f["seed"] is not None else int.from_bytes(os.urandom(4), "little")
    if seed < 0:
        raise BadRequest(400, "seed must be 0 or more")
    request = Request(f["prime"], f["n"], f["num_samples"],
                      Options(f["temperature"], f["top_k"], f["top_p"], seed), f["stop"] or None,
                      f["allow"] or None, f["require"], f["require_tries"], f["beam"],
                      f["echo_prime"], f["unknown"])
    try:
        request.check()
        if f["prime"]:
            loaded.vocab.encode(f["prime"], unknown=f["unknown"])
        if request.allow:
            Allowed(loaded.vocab, request.allow)
    except CharrnnError as e:
        raise BadRequest(400, _options(str(e))) from None
    if f["stream"] and not request.streams:
        raise BadRequest(400, "beam and require give whole samples at the end: they cannot "
                              "stream; leave out stream (or set it to false)")
    return request, f["stream"], f["novelty"], seed


def _options(message):
    """A CLI message in the API's words (--top-k -> top_k, -n -> n)."""
    for flag in ("--num-samples", "--require-tries", "--top-k", "--top-p", "--temperature",
                 "--require", "--allow", "--beam", "--unknown", "--length", "--prime"):
        message = message.replace(flag, flag[2:].replace("-", "_"))
    return message.replace("-n)", "n)").replace("skip unknown characters",
                                                 'set "unknown": "skip"')
