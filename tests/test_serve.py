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

README = Path(__file__).resolve().parent.parent / "README.md"
BIG = 100_000  # characters: a stream that lasts seconds with the tiny test model


class Server:
    def __init__(self, run_dir, *args, cache=None):
        env = dict(os.environ, **({"XDG_CACHE_HOME": str(cache)} if cache else {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "charrnn", "serve", str(run_dir), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
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
        c.request("POST", "/v1/generate", body=json.dumps({**body, "stream": True}),
                  headers={"Content-Type": "application/json"})
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
    s = Server(english_run, "--max-chars", str(BIG), "--max-body", "4096", "--max-streams", "8",
               cache=tmp_path_factory.mktemp("cache"))
    yield s
    rc, err = s.stop()
    assert rc == 0 and "Traceback" not in err, err


def cli_sample(run_dir, *args):
    return ok(run("sample", run_dir, *args)).stdout


def wait_until(test, seconds=20):
    deadline = time.monotonic() + seconds
    while not test():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_start_up_line_and_descriptions(server, english_run):
    assert "(this machine only; --host 0.0.0.0 opens it to others)" in server.first_line
    assert server.request("GET", "/healthz") == (200, {"status": "ok", "active_streams": 0,
                                                       "max_streams": 8})
    status, m = server.request("GET", "/v1/model")
    assert status == 200
    assert (m["cell"], m["num_layers"], m["rnn_size"]) == ("lstm", 2, 32)
    assert m["checkpoint"].startswith("best/ckpt-") and m["step"] == int(m["checkpoint"][10:])
    assert m["vocab_size"] == len(m["vocab"]) and isinstance(m["val_loss"], float)


def test_same_seed_same_text_as_charrnn_sample(server, english_run):
    for args in ({"prime": "We ", "n": 300, "seed": 7, "temperature": 0.8},
                 {"n": 200, "seed": 3, "num_samples": 3, "top_k": 5, "stop": "."},
                 {"prime": "The ", "n": 120, "seed": 1, "allow": "aeiou nrst"}):
        status, reply = server.generate(**args)
        assert status == 200, reply
        cli = ["-n", args["n"], "--seed", args["seed"], "--separator", "\x1e"]
        for key, flag in (("prime", "--prime"), ("temperature", "-t"), ("num_samples",
                          "--num-samples"), ("top_k", "--top-k"), ("stop", "--stop"),
                          ("allow", "--allow")):
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
    assert texts == events[-1][1]["samples"] == server.generate(
        n=200, seed=3, num_samples=3, top_k=5, stop=".")[1]["samples"]


def test_concurrent_streams_do_not_depend_on_each_other(server):
    solo = {seed: server.generate(n=500, seed=seed, temperature=0.9)[1]["samples"][0]
            for seed in range(4)}
    got, first = {}, {}

    def client(seed):
        t0 = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        c.request("POST", "/v1/generate", json.dumps({"n": 500, "seed": seed, "stream": True,
                                                      "temperature": 0.9}),
                  {"Content-Type": "application/json"})
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
    code = ("import http.client, json, sys; c = http.client.HTTPConnection('127.0.0.1', "
            f"{server.port}); c.request('POST', '/v1/generate', json.dumps({{'n': {BIG}, "
            "'stream': True}), {'Content-Type': 'application/json'}); r = c.getresponse(); "
            "[print(line, flush=True) for line in r]")
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
]


@pytest.mark.parametrize("body, headers, status, words", BAD)
def test_bad_requests_get_a_json_error_and_the_server_goes_on(server, body, headers, status,
                                                              words):
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
    cli = [json.loads(line) for line in
           ok(run("evaluate", english_run, path, "--per-line")).stdout.splitlines()]
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
        c.request("POST", "/v1/generate", json.dumps({"n": BIG // 4, "stream": True, "seed": 4}),
                  {"Content-Type": "application/json"})
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
    text = "".join(json.loads(line[6:])["text"] for line in body.splitlines()
                   if line.startswith("data: ") and '"text"' in line)
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
        p = subprocess.run(["bash", "-c", cmd + " -w '\\n%{http_code}' --fail-with-body"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, (line, p.stdout, p.stderr)
        *body, code = p.stdout.rstrip("\n").split("\n")
        assert code.startswith("2") and body, (line, p.stdout)


def test_a_missing_model_or_a_taken_port_is_one_error_line(server, tmp_path):
    r = run("serve", tmp_path / "nowhere")
    assert r.exit_code == 1 and "is not a charrnn run" in error_line(r, only=True)
    p = subprocess.run([sys.executable, "-m", "charrnn", "serve", str(server.proc.args[4]),
                        "--port", str(server.port)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith(f"Error: cannot listen on 127.0.0.1:{server.port}")


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
    finally:
        rc, err = s.stop()
    assert rc == 0, err
