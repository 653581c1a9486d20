"""`charrnn serve`: a real server process on a loopback port, driven by real HTTP clients
(http.client, curl, a client process killed mid-stream)."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from clihelp import error_line, ok, run

from charrnn.generate.sampler import NUMPY_STEPS_ENV
from charrnn.store.loader import load

README = Path(__file__).resolve().parent.parent / "README.md"
BIG = 100_000  # characters: a stream that lasts seconds with the tiny test model


class Server:
    def __init__(self, run_dir, *args, cache=None, env=None):
        env = dict(os.environ, **({"XDG_CACHE_HOME": str(cache)} if cache else {}), **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "charrnn", "serve", str(run_dir), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.proc.stderr.readline()
        m = re.search(r"https?://127\.0\.0\.1:(\d+)", line)
        assert m, line + self.proc.stderr.read()
        self.port, self.first_line = int(m.group(1)), line

    def request(self, method, path, body=None, headers=None, raw=None):
        """(status, parsed JSON reply)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json"} if data is not None else {}
        c.request(method, path, body=data, headers={**h, **(headers or {})})
        r = c.getresponse()
        out = r.status, json.loads(r.read() or b"null")
        c.close()
        return out

    def generate(self, **body):
        return self.request("POST", "/v1/generate", body)

    def stream(self, **body):
        """The server-sent events of a streaming generate: [(event, data)]."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request(
            "POST",
            "/v1/generate",
            body=json.dumps({**body, "stream": True}),
            headers={"Content-Type": "application/json"},
        )
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
        events, name = [], None
        for line in r:
            line = line.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
        c.close()
        return events

    def active(self):
        return self.request("GET", "/healthz")[1]["active_streams"]

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


@pytest.fixture(scope="module")
def server(english_run, tmp_path_factory):
    s = Server(
        english_run,
        "--max-chars",
        str(BIG),
        "--max-body",
        "4096",
        "--max-streams",
        "8",
        cache=tmp_path_factory.mktemp("cache"),
    )
    yield s
    rc, err = s.stop()
    assert rc == 0 and "Traceback" not in err, err


def cli_sample(run_dir, *args):
    return ok(run("sample", run_dir, *args)).stdout


def cli_process(run_dir, *args, env=None):
    """The stdout of a real `charrnn sample` process (test hooks in ``env``)."""
    p = subprocess.run(
        [sys.executable, "-m", "charrnn", "sample", str(run_dir), *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def wait_until(test, seconds=20):
    deadline = time.monotonic() + seconds
    while not test():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_start_up_line_and_descriptions(server, english_run):
    assert "(this machine only; --host 0.0.0.0 opens it to others)" in server.first_line
    assert server.request("GET", "/healthz") == (
        200,
        {"status": "ok", "active_streams": 0, "max_streams": 8},
    )
    status, m = server.request("GET", "/v1/model")
    assert status == 200
    assert (m["cell"], m["num_layers"], m["rnn_size"]) == ("lstm", 2, 32)
    assert m["checkpoint"].startswith("best/ckpt-") and m["step"] == int(m["checkpoint"][10:])
    assert m["vocab_size"] == len(m["vocab"]) and isinstance(m["val_loss"], float)


def test_same_seed_same_text_as_charrnn_sample(server, english_run):
    for args in (
        {"prime": "We ", "n": 300, "seed": 7, "temperature": 0.8},
        {"n": 200, "seed": 3, "num_samples": 3, "top_k": 5, "stop": "."},
        {"prime": "The ", "n": 120, "seed": 1, "allow": "aeiou nrst"},
    ):
        status, reply = server.generate(**args)
        assert status == 200, reply
        cli = ["-n", args["n"], "--seed", args["seed"], "--separator", "\x1e"]
        for key, flag in (
            ("prime", "--prime"),
            ("temperature", "-t"),
            ("num_samples", "--num-samples"),
            ("top_k", "--top-k"),
            ("stop", "--stop"),
            ("allow", "--allow"),
        ):
            if key in args:
                cli += [flag, args[key]]
        assert reply["samples"] == cli_sample(english_run, *cli).split("\x1e")
        assert reply["seed"] == args["seed"]
    # streamed: the same text, sample by sample, in whole pieces
    events = server.stream(n=200, seed=3, num_samples=3, top_k=5, stop=".")
    assert events[0][0] == "start" and events[-1][0] == "done"
    pieces = [d for e, d in events if e == "piece"]
    assert [p["sample"] for p in pieces] == sorted(p["sample"] for p in pieces)
    texts = ["".join(p["text"] for p in pieces if p["sample"] == i) for i in range(3)]
    assert (
        texts
        == events[-1][1]["samples"]
        == server.generate(n=200, seed=3, num_samples=3, top_k=5, stop=".")[1]["samples"]
    )


def test_concurrent_streams_do_not_depend_on_each_other(server):
    solo = {
        seed: server.generate(n=500, seed=seed, temperature=0.9)[1]["samples"][0]
        for seed in range(4)
    }
    got, first = {}, {}

    def client(seed):
        t0 = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        c.request(
            "POST",
            "/v1/generate",
            json.dumps({"n": 500, "seed": seed, "stream": True, "temperature": 0.9}),
            {"Content-Type": "application/json"},
        )
        text = ""
        for line in c.getresponse():
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
                if "text" in data:
                    first.setdefault(seed, time.perf_counter() - t0)
                    text += data["text"]
        got[seed] = text

    threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == solo
    assert len(first) == 4


def test_a_client_killed_mid_stream_frees_its_slot(server):
    code = (
        "import http.client, json, sys; c = http.client.HTTPConnection('127.0.0.1', "
        f"{server.port}); c.request('POST', '/v1/generate', json.dumps({{'n': {BIG}, "
        "'stream': True}), {'Content-Type': 'application/json'}); r = c.getresponse(); "
        "[print(line, flush=True) for line in r]"
    )
    client = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert "event: start" in client.stdout.readline()
        assert server.active() == 1
        client.kill()
        client.wait()
        wait_until(lambda: server.active() == 0)
    finally:
        if client.poll() is None:
            client.kill()
    assert server.generate(n=20, seed=1)[0] == 200


BAD = [  # (body or raw bytes, headers, status, words the error must say)
    ({"n": 20, "bogus": 1}, {}, 400, "unknown option 'bogus'"),
    ({"prime": "We \u00e9", "n": 20}, {}, 400, "not in the vocabulary"),
    ({"n": BIG + 1}, {}, 400, f"between 0 and {BIG}"),
    ({"n": "20"}, {}, 400, "n must be a int"),
    ({"temperature": -1}, {}, 400, "temperature must be 0"),
    ({"top_p": 0}, {}, 400, "top_p must be in (0, 1]"),
    ({"allow": "\u00e9\u00e8"}, {}, 400, "none of the allow characters"),
    ({"beam": 3, "stream": True}, {}, 400, "cannot stream"),
    ({"beam": 3, "num_samples": 2}, {}, 400, "neither"),
    ({"prime": "x" * 5000}, {}, 413, "over 4,096 bytes"),
    (b"{not json", {}, 400, "not valid JSON"),
    (b"[1, 2]", {}, 400, "must be a JSON object"),
    ({"n": 5}, {"Content-Type": "text/plain"}, 415, "application/json"),
    ({"n": 5}, {"Host": "attacker.example:80"}, 403, "not this server's address"),
    ({"n": 5}, {"Origin": "http://attacker.example"}, 403, "are refused"),
    ({"require": "zqzqzq", "n": 10, "require_tries": 2}, {}, 422, "after 2 tries"),
    # bounds on every option whose cost grows with its value, and hostile bodies
    ({"n": 5, "beam": 1_000_000}, {}, 400, "beam must be between 0 and "),
    ({"n": 5, "num_samples": 65}, {}, 400, "num_samples must be between 1 and 64"),
    (
        {"n": 5, "require": "e", "require_tries": 65},
        {},
        400,
        "require_tries must be between 1 and 64",
    ),
    ({"n": 5, "stop": "x" * 257}, {}, 400, "stop is over 256 characters"),
    ({"n": 5, "require": "x" * 257}, {}, 400, "require is over 256 characters"),
    ({"n": 5, "allow": ""}, {}, 400, "allow must not be empty"),
    ({"n": 5, "stop": ""}, {}, 400, "stop must not be empty"),
    ({"n": 5, "seed": 10**30}, {}, 400, "seed must be between"),
    ({"n": 5, "top_k": -(10**30)}, {}, 400, "top_k must be between"),
    (b'{"n": 1e999}', {}, 400, "n must be a int, not inf"),
    (b'{"n": 5, "temperature": NaN}', {}, 400, "temperature must be a number"),
    (b"[" * 20_000 + b"]" * 20_000, {}, 413, "over 4,096 bytes"),
    (b"[" * 2_000 + b"]" * 2_000, {}, 400, "nested too deeply"),
    (b'{"n": 5, "prime": "\\ud800"}', {}, 400, "prime is not valid Unicode"),
    (b'{"n": 5, "prime": "\xff"}', {}, 400, "not valid JSON"),
]


@pytest.mark.parametrize("body, headers, status, words", BAD, ids=[b[3] for b in BAD])
def test_bad_requests_get_a_json_error_and_the_server_goes_on(server, body, headers, status, words):
    raw = body if isinstance(body, bytes) else None
    got, reply = server.request("POST", "/v1/generate", None if raw else body, headers, raw=raw)
    assert (got, words in reply["error"]) == (status, True), reply
    assert server.generate(n=10, seed=2)[0] == 200


def test_unknown_paths_and_methods_are_json_errors(server):
    assert server.request("GET", "/v2/nothing")[0] == 404
    status, reply = server.request("GET", "/v1/generate")
    assert status == 405 and "GET is not allowed" in reply["error"]


def test_score_is_evaluate_per_line(server, english_run, tmp_path):
    text = "We hold these truths\nto be self-evident.\n"
    status, reply = server.request("POST", "/v1/score", {"text": text})
    assert status == 200, reply
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    cli = [
        json.loads(line)
        for line in ok(run("evaluate", english_run, path, "--per-line")).stdout.splitlines()
    ]
    assert [dict(r, path=None) for r in reply["lines"]] == [dict(r, path=None) for r in cli]
    assert server.request("POST", "/v1/score", {"text": "W"})[0] == 400  # nothing to predict


def test_beam_require_and_novelty_over_http(server, english_run):
    status, beam = server.generate(prime="We ", n=40, beam=3)
    assert beam["samples"] == [cli_sample(english_run, "--prime", "We ", "-n", 40, "--beam", 3)]
    status, reply = server.generate(n=60, seed=5, require="e", novelty=True)
    assert status == 200 and "e" in reply["samples"][0]
    nov = reply["novelty"][0]
    assert nov["chars"] == 60 and 0 < nov["longest"] <= 60 and 0 <= nov["copied_20"] <= 1


def test_max_streams_is_503_and_sigterm_drains_the_stream_in_flight(english_run):
    s = Server(english_run, "--max-streams", "1", "--max-chars", str(BIG))
    try:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        c.request(
            "POST",
            "/v1/generate",
            json.dumps({"n": BIG // 4, "stream": True, "seed": 4}),
            {"Content-Type": "application/json"},
        )
        r = c.getresponse()
        assert r.readline().startswith(b"event: start")
        status, reply = s.generate(n=5)
        assert status == 503 and "--max-streams" in reply["error"]
        s.proc.send_signal(signal.SIGTERM)  # mid-stream: the stream still ends whole
        body = r.read().decode()
        assert "event: done" in body
        rc, err = s.stop()
        assert rc == 0 and "Stopping: finishing 1 request(s) in flight" in err and "Stopped." in err
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    text = "".join(
        json.loads(line[6:])["text"]
        for line in body.splitlines()
        if line.startswith("data: ") and '"text"' in line
    )
    assert text == cli_sample(english_run, "-n", BIG // 4, "--seed", 4)


def test_readme_curl_examples_run(server):
    """Every `curl` line in README's serve section runs against the server as written
    (its port replaced) and answers 2xx with JSON or events."""
    section = README.read_text(encoding="utf-8").split("## Serving a model: `charrnn serve`", 1)[1]
    section = section.split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("curl ")]
    assert len(lines) >= 4, lines
    for line in lines:
        cmd = line.replace("localhost:8000", f"localhost:{server.port}")
        p = subprocess.run(
            ["bash", "-c", cmd + " -w '\\n%{http_code}' --fail-with-body"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, (line, p.stdout, p.stderr)
        *body, code = p.stdout.rstrip("\n").split("\n")
        assert code.startswith("2") and body, (line, p.stdout)


def test_a_missing_model_or_a_taken_port_is_one_error_line(server, tmp_path):
    r = run("serve", tmp_path / "nowhere")
    assert r.exit_code == 1 and "is not a charrnn run" in error_line(r, only=True)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "charrnn",
            "serve",
            str(server.proc.args[4]),
            "--port",
            str(server.port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert (
        p.stderr.strip()
        .splitlines()[-1]
        .startswith(f"Error: cannot listen on 127.0.0.1:{server.port}")
    )


def test_reload_takes_the_newest_checkpoint_and_timeouts_are_504(english_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(english_run, copy)
    newest = max((copy / "checkpoints").glob("ckpt-*"), key=lambda p: int(p.name[5:]))
    shutil.move(newest, tmp_path / newest.name)  # as if training had not got there yet
    s = Server(copy, "--checkpoint", "latest", "--timeout", "1", "--max-chars", str(BIG * 10))
    try:
        before = s.request("GET", "/v1/model")[1]["step"]
        assert before < int(newest.name[5:])
        shutil.move(tmp_path / newest.name, newest)  # training wrote its next checkpoint
        status, reply = s.request("POST", "/v1/reload", {})
        assert status == 200 and reply["step"] == int(newest.name[5:]), reply
        assert s.request("GET", "/v1/model")[1]["checkpoint"] == f"checkpoints/{newest.name}"
        status, reply = s.generate(n=BIG * 10)
        assert status == 504 and "--timeout" in reply["error"]
        assert s.generate(n=10, seed=1)[0] == 200
        # every kind of request: the widest beam, and a score (TensorFlow's import alone
        # takes longer than the second), each 504 with its slot freed
        width = s.request("GET", "/v1/model")[1]["limits"]["max_beam"]
        t = time.perf_counter()
        status, reply = s.generate(n=BIG * 10, beam=width)
        assert status == 504 and "--timeout" in reply["error"]
        assert time.perf_counter() - t < 3
        status, reply = s.request("POST", "/v1/score", {"text": "We hold these truths\n" * 100})
        assert status == 504 and "--timeout" in reply["error"]
        assert s.active() == 0
    finally:
        rc, err = s.stop()
    assert rc == 0, err


# --- no request can hold the server (issue 27) -----------------------------------------


def post(port, body):
    """A request left in flight: its open connection (close it to leave)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/generate", json.dumps(body), {"Content-Type": "application/json"})
    return c


def leave(conn):
    """The client goes away: its socket closes at once."""
    conn.sock.shutdown(2)
    conn.close()


def served_within(s, seconds):
    """/healthz and a small generate, each answered within ``seconds`` (5 rounds)."""
    for seed in range(5):
        t = time.perf_counter()
        assert s.request("GET", "/healthz")[0] == 200
        assert time.perf_counter() - t < seconds
        t = time.perf_counter()
        status, reply = s.generate(n=20, seed=seed)
        assert status == 200 and len(reply["samples"][0]) == 20, reply
        assert time.perf_counter() - t < seconds


def test_the_limits_are_said(server, english_run):
    m = server.request("GET", "/v1/model")[1]
    width = min(64, m["vocab_size"])
    limits = m["limits"]
    assert limits == {
        "max_chars": BIG,
        "max_prime_chars": BIG,
        "max_samples": 64,
        "max_beam": width,
        "max_require_tries": 64,
        "max_stop_chars": 256,
        "max_require_chars": 256,
        "max_body": 4096,
        "max_score_chars": 4096,
        "max_streams": 8,
        "max_connections": 48,
        "timeout": 300.0,
        "max_children": 2,
        "child_memory_mb": limits["child_memory_mb"],
        "memory_bound_mb": limits["memory_bound_mb"],
    }
    assert m["active_children"] == 0
    # the bound as README states it: streams x (64 samples x 2 x max_chars x 16 bytes,
    # or beam x steps x 4 bytes) + 64 MiB + 2 KiB x max_body + connections x 6 x max_body
    # + children x (800 MiB + 3.1 x the weights' bytes + 64 samples' states x 16 bytes
    # + 64 x 4096 ids x 16 bytes)
    w = load(english_run).weights
    weights = sum(a.nbytes for a in w.arrays().values())
    child = int(
        800 * 2**20 + 3.1 * weights + 16 * 64 * w.units * 2 * len(w.layers) + 16 * 64 * 4096
    )
    assert limits["child_memory_mb"] == round(child / 2**20)
    per_stream = max(64 * 2 * BIG * 16, width * (8 * BIG + 64) * 4)
    bound = 8 * per_stream + 16 * (1 << 22) + 2048 * 4096 + 48 * 6 * 4096 + 2 * child
    assert limits["memory_bound_mb"] == round(bound / 2**20)
    assert (
        f"memory at most {limits['memory_bound_mb']:,} MB above idle (up to 2 TensorFlow "
        f"child process(es) of {limits['child_memory_mb']:,} MB included)"
    ) in server.first_line
    status, reply = server.generate(n=5, beam=width + 1)
    assert status == 400 and f"beam must be between 0 and {width}" in reply["error"]


def test_the_largest_beam_holds_no_one_and_its_client_leaving_ends_it(server):
    """The widest beam the limits allow, over the longest text, runs in turns: /healthz
    and another client are answered within a second while it runs; when its client goes
    its slot is free at once."""
    width = server.request("GET", "/v1/model")[1]["limits"]["max_beam"]
    beam = post(server.port, {"n": BIG, "beam": width, "prime": "We "})
    try:
        wait_until(lambda: server.active() == 1)
        time.sleep(0.5)  # well into the search
        served_within(server, 1.0)
        assert server.active() == 1  # still searching
    finally:
        leave(beam)
    wait_until(lambda: server.active() == 0, 2)


def test_clients_that_leave_free_their_slots_while_the_engine_is_busy(english_run):
    """Two slots: the largest beam in one, a long sample in the other, a third request
    503.  The sample's client leaves: its slot is free within a second though the beam
    keeps the engine busy, and the next request is served."""
    s = Server(english_run, "--max-streams", "2", "--max-chars", str(BIG))
    try:
        width = s.request("GET", "/v1/model")[1]["limits"]["max_beam"]
        beam = post(s.port, {"n": BIG, "beam": width})
        waiting = post(s.port, {"n": BIG, "num_samples": 64})
        wait_until(lambda: s.active() == 2)
        assert s.generate(n=5)[0] == 503
        leave(waiting)
        t = time.perf_counter()
        wait_until(lambda: s.active() == 1, 2)
        assert time.perf_counter() - t < 1.0
        assert s.generate(n=5, seed=1)[0] == 200
        leave(beam)
        wait_until(lambda: s.active() == 0, 2)
    finally:
        rc, err = s.stop()
    assert rc == 0 and "Traceback" not in err, err


def test_hostile_bodies_at_a_larger_max_body(english_run):
    """With --max-body 65536: 20,000 nested brackets, a streamed (chunked) body over the
    limit, a prime over --max-chars, a hostile /v1/score: each a 4xx JSON error."""
    s = Server(english_run, "--max-chars", "100")
    try:
        for raw, status, words in (
            (b"[" * 20_000 + b"]" * 20_000, 400, "nested too deeply"),
            (b'{"n": 5, "seed": 1' + b"0" * 5000 + b"}", 400, "not valid JSON"),
            (b'{"text": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400, "nested too deeply"),
            (
                json.dumps({"n": 5, "prime": "e" * 101}).encode(),
                400,
                "prime is over 100 characters",
            ),
        ):
            for path in ("/v1/generate", "/v1/score"):
                if path == "/v1/score" and b"prime" in raw:
                    continue
                got, reply = s.request("POST", path, raw=raw)
                assert (got, words in reply["error"]) == (status, True), reply
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        c.request(
            "POST",
            "/v1/generate",
            body=(b"[" * 8192 for _ in range(9)),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        r = c.getresponse()
        assert (r.status, "over 65,536 bytes" in json.loads(r.read())["error"]) == (413, True)
        c.close()
        assert s.generate(n=10, seed=2)[0] == 200
    finally:
        rc, err = s.stop()
    assert rc == 0 and "Traceback" not in err, err


def memory(pid):
    """(resident, peak resident) bytes of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    return tuple(
        int(re.search(rf"{k}:\s+(\d+) kB", status).group(1)) * 1024 for k in ("VmRSS", "VmHWM")
    )


WORST = [  # the costliest requests these limits allow, of each kind
    {"n": 100, "prime": "e" * 100, "num_samples": 64, "stop": "z" * 256},
    {"n": 100, "prime": "e" * 100, "beam": 64, "stop": "z" * 256},
    {"n": 100, "prime": "e" * 100, "num_samples": 64, "require": "zqzq", "require_tries": 2},
    {"n": 100, "prime": "e" * 100, "num_samples": 64, "top_p": 0.9},  # top_p's nucleus:
]  # the largest step (run in the first round only: slow)


def test_memory_stays_under_the_stated_bound_through_200_worst_requests(english_run):
    """200 requests of the worst kinds the limits allow, 4 at a time: the server's peak
    resident memory stays within the bound /v1/model states above the idle server's, and
    what is left after them is what was left after the first round (nothing kept per
    request)."""
    s = Server(english_run, "--max-chars", "100", "--max-streams", "4", "--max-body", "8192")
    try:
        limits = s.request("GET", "/v1/model")[1]["limits"]
        idle = memory(s.proc.pid)[0]

        def requests(first, count):
            """``count`` requests from 4 clients at once."""

            def client(k):
                for i in range(first + k, first + count, 4):
                    body = dict(WORST[i % (4 if i < 12 else 3)], seed=i)
                    body["beam"] = min(body.get("beam", 0), limits["max_beam"])
                    status, reply = s.generate(**body)
                    assert status == (422 if "require" in body else 200), reply

            threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)

        requests(0, 12)  # every client has run every kind
        after_first = memory(s.proc.pid)[0]
        requests(12, 200)
        rss, peak = memory(s.proc.pid)
    finally:
        rc, err = s.stop()
    assert rc == 0 and "Traceback" not in err, err
    bound = limits["memory_bound_mb"] * 2**20
    print(
        f"memory: idle {idle / 2**20:.0f} MB, peak +{(peak - idle) / 2**20:.1f} MB of "
        f"+{bound / 2**20:.0f} MB allowed; after 200 {(rss - after_first) / 2**20:+.1f} MB"
    )
    assert peak - idle <= bound, (peak - idle, bound)
    assert rss - after_first <= 8 * 2**20, (rss - after_first) / 2**20


# --- TensorFlow children: never waited for, capped, killed with their request ---------


def children(pid):
    """The live TensorFlow child processes of process ``pid`` (from /proc): {pid: peak
    resident bytes}."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"charrnn.generate.xla_process" in (d / "cmdline").read_bytes():
                found[int(d.name)] = memory(int(d.name))[1]
        except (OSError, AttributeError):
            continue  # gone meanwhile
    return found


class Watch(threading.Thread):
    """Every 50 ms: the most TensorFlow children a server had at once, and the most
    memory it and they held above the idle server (its resident memory, their peaks)."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.idle = server, memory(server.proc.pid)[0]
        self.most = self.most_memory = 0
        self.running = True
        self.start()

    def run(self):
        while self.running:
            kids = children(self.server.proc.pid)
            held = memory(self.server.proc.pid)[0] - self.idle + sum(kids.values())
            self.most, self.most_memory = max(self.most, len(kids)), max(self.most_memory, held)
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.join()


HANDOVER = {NUMPY_STEPS_ENV: "200"}  # NumPy hands over to a child at step 200


@pytest.fixture(scope="module")
def child_server(english_run, tmp_path_factory):
    s = Server(
        english_run,
        "--max-chars",
        str(BIG),
        "--max-streams",
        "6",
        "--max-children",
        "2",
        cache=tmp_path_factory.mktemp("cache"),
        env=HANDOVER,
    )
    yield s
    rc, err = s.stop()
    assert rc == 0 and "Traceback" not in err, err


def test_children_start_and_compute_while_the_server_answers_within_a_second(
    child_server, english_run
):
    """Three requests of 8 samples past NumPy's share (their children start, compute,
    and the third waits for room under --max-children 2): /healthz and a small generate
    are answered within a second all along, never more than 2 children live, memory
    stays within the bound, and every reply is `charrnn sample`'s text."""
    s = child_server
    bound = s.request("GET", "/v1/model")[1]["limits"]["memory_bound_mb"] * 2**20
    body = {"n": 3000, "num_samples": 8, "seed": 5, "prime": "We "}
    cli = {}
    reference = threading.Thread(
        target=lambda: cli.setdefault(
            "text",
            cli_process(
                english_run,
                "-n",
                3000,
                "--num-samples",
                8,
                "--seed",
                5,
                "--prime",
                "We ",
                "--separator",
                "\x1e",
                env=HANDOVER,
            ),
        )
    )
    reference.start()
    watch = Watch(s)
    replies = []

    def client():
        replies.append(s.generate(**body))

    clients = [threading.Thread(target=client) for _ in range(3)]
    try:
        for c in clients:
            c.start()
        wait_until(lambda: s.active() == 3)
        wait_until(lambda: watch.most == 2)
        rounds = 0
        while any(c.is_alive() for c in clients):
            served_within(s, 1.0)
            rounds += 1
        for c in clients:
            c.join()
    finally:
        watch.stop()
    reference.join()
    assert rounds >= 3  # the probes ran while the children started and computed
    assert watch.most == 2, watch.most
    assert [r[0] for r in replies] == [200] * 3, replies
    assert all(r[1]["samples"] == cli["text"].split("\x1e") for r in replies)
    assert watch.most_memory <= bound, (watch.most_memory / 2**20, bound / 2**20)
    wait_until(lambda: not children(s.proc.pid), 5)  # each ended with its request


def test_a_request_that_goes_kills_its_child_starting_or_computing(child_server):
    """One client leaves while its child starts, another once its child computes (its
    text is past the handover): both children are gone within 2 seconds, the slots free."""
    s = child_server
    starting = post(s.port, {"n": BIG, "num_samples": 8})
    wait_until(lambda: len(children(s.proc.pid)) == 1)
    leave(starting)
    t = time.perf_counter()
    wait_until(lambda: not children(s.proc.pid) and s.active() == 0, 2)
    gone_starting = time.perf_counter() - t
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.request(
        "POST",
        "/v1/generate",
        json.dumps({"n": BIG, "num_samples": 2, "stream": True}),
        {"Content-Type": "application/json"},
    )
    r = c.getresponse()
    text = ""
    for line in r:
        if line.startswith(b"data: ") and b'"text"' in line:
            text += json.loads(line[6:])["text"]
        if len(text) > 1000:  # well past step 200: the child computes it
            break
    assert len(children(s.proc.pid)) == 1
    leave(c)
    t = time.perf_counter()
    wait_until(lambda: not children(s.proc.pid) and s.active() == 0, 2)
    print(
        f"children gone {gone_starting:.2f} s after their client left while starting, "
        f"{time.perf_counter() - t:.2f} s while computing"
    )
