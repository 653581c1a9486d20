"""`charrnn serve`'s OpenAI-compatible routes, driven by the official `openai` client
against one real server process with an API key (and one more over HTTPS)."""

import datetime
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest
from conftest import KOREAN
from test_serve import BIG, Server, cli_sample

KEY = "sk-test-" + "k" * 24


@pytest.fixture(scope="module")
def served(english_run, tmp_path_factory):
    s = Server(
        english_run,
        "--max-streams",
        "1",
        "--max-chars",
        str(BIG),
        "--cors-origin",
        "https://app.example",
        cache=tmp_path_factory.mktemp("cache"),
        env={"CHARRNN_API_KEY": KEY},
    )
    yield s
    rc, err = s.stop()
    assert rc == 0 and "Traceback" not in err, err


def client(server, key=KEY, **kw):
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=key, **kw)


def raw(server, method, path, body=None, headers=None):
    """(status, headers, parsed JSON) of a request with the key."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    data = json.dumps(body).encode() if body is not None else None
    h = {"Authorization": f"Bearer {KEY}"}
    h |= {"Content-Type": "application/json"} if data is not None else {}
    c.request(method, path, body=data, headers={**h, **(headers or {})})
    r = c.getresponse()
    out = r.status, dict(r.getheaders()), json.loads(r.read() or b"null")
    c.close()
    return out


def test_models_and_a_completion(served, english_run):
    oa = client(served)
    models = oa.models.list().data
    assert [m.id for m in models] == [english_run.name] and models[0].owned_by == "charrnn"
    c = oa.completions.create(model=english_run.name, prompt="The ", seed=5)
    choice = c.choices[0]
    assert c.object == "text_completion" and choice.finish_reason == "length"
    assert len(choice.text) == 16  # OpenAI's default max_tokens, in characters
    assert c.usage.prompt_tokens == 4 and c.usage.completion_tokens == 16
    assert c.usage.total_tokens == 20
    assert "The " + choice.text == cli_sample(english_run, "--prime", "The ", "-n", 16, "--seed", 5)
    # echo: the prompt starts the text
    e = oa.completions.create(model=english_run.name, prompt="The ", seed=5, echo=True)
    assert e.choices[0].text == "The " + choice.text


def test_the_readmes_openai_example_runs(served, english_run):
    """README's client example, pointed at this server, prints `charrnn sample`'s text after
    the prime and before the stop."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(import os\n\nfrom openai import .*?)```", readme, re.S)
    code = code.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{served.port}")
    code = code.replace('model="quick"', f'model="{english_run.name}"')
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, CHARRNN_API_KEY=KEY),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    text = cli_sample(english_run, "--prime", "We ", "-n", 100, "--seed", 1, "--stop", "\n\n")
    assert p.stdout == text.removeprefix("We ").removesuffix("\n\n") + "\n"


def test_stream_matches_the_whole_reply_and_usage_is_said(served, english_run):
    oa = client(served)
    body = dict(model=english_run.name, prompt="We ", max_tokens=200, seed=3, temperature=0.8)
    whole = oa.completions.create(**body).choices[0].text
    chunks = list(
        oa.completions.create(**body, stream=True, stream_options={"include_usage": True})
    )
    pieces = [ch.choices[0].text for ch in chunks if ch.choices]
    assert len(pieces) > 2 and "".join(pieces) == whole
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 200


def test_n_choices_per_prompt_with_a_list_of_stops(served, english_run):
    oa = client(served)
    stops = ["e ", "th", "\n"]
    prompts = ["The ", "and "]
    c = oa.completions.create(
        model=english_run.name,
        prompt=prompts,
        n=3,
        max_tokens=300,
        seed=11,
        stop=stops,
        extra_body={"top_k": 8},
    )
    assert [ch.index for ch in c.choices] == list(range(6))
    assert "stop" in {ch.finish_reason for ch in c.choices}
    for i, prompt in enumerate(prompts):
        # each prompt's choices: `charrnn sample`'s samples, which end just after a stop
        cli = ["--prime", prompt, "-n", 300, "--seed", 11, "--num-samples", 3, "--top-k", 8]
        cli += [a for s in stops for a in ("--stop", s)] + [
            "--separator",
            "\x1e",
            "--no-prime-echo",
        ]
        texts = cli_sample(english_run, *cli).split("\x1e")
        for j, text in enumerate(texts):
            choice = c.choices[i * 3 + j]
            ends = [s for s in stops if text.endswith(s)]
            assert choice.finish_reason == ("stop" if ends else "length")
            assert choice.text == (text[: -max(map(len, ends))] if ends else text)
            assert not any(s in choice.text for s in stops)
    # streamed, the stop text is held back and never sent
    streamed = oa.completions.create(
        model=english_run.name, prompt=prompts, n=3, max_tokens=300, seed=11, stop=stops,
        extra_body={"top_k": 8}, stream=True,
    )  # fmt: skip
    got = [""] * 6
    reasons = {}
    for chunk in streamed:
        for ch in chunk.choices:
            got[ch.index] += ch.text
            if ch.finish_reason:
                reasons[ch.index] = ch.finish_reason
    assert got == [ch.text for ch in c.choices]
    assert reasons == {ch.index: ch.finish_reason for ch in c.choices}


def test_the_same_seed_gives_the_same_text(served, english_run):
    oa = client(served)
    body = dict(model=english_run.name, prompt="a", max_tokens=80, seed=9, top_p=0.9)
    first, second = (oa.completions.create(**body).choices[0].text for _ in range(2))
    assert first == second
    assert "a" + first == cli_sample(
        english_run, "--prime", "a", "-n", 80, "--seed", 9, "--top-p", 0.9
    )
    other = oa.completions.create(**{**body, "seed": 10}).choices[0].text
    assert other != first


def test_the_python_api_takes_several_stops_too(english_run):
    import charrnn

    model = charrnn.load(english_run)
    stops = ["e ", "th"]
    cli = cli_sample(english_run, "-n", 200, "--seed", 4, "--stop", "e ", "--stop", "th")
    assert model.generate("", 200, seed=4, stop=stops) == cli
    assert "".join(model.stream("", 200, seed=4, stop=stops)) == cli
    assert cli.endswith(("e ", "th")) and len(cli) < 200


def test_logprobs_are_the_models_before_temperature(served, english_run):
    oa = client(served)
    # greedy (temperature 0) takes each step's most probable character of the model's own
    # distribution: its log probability is the top candidate's
    c = oa.completions.create(
        model=english_run.name, prompt="the ", max_tokens=30, temperature=0, logprobs=3
    ).choices[0]
    lp = c.logprobs
    assert "".join(lp.tokens) == c.text and lp.text_offset == list(range(4, 34))
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 3 and max(top.values()) == pytest.approx(value) == top[token]
    # sampled hot, the log probabilities stay the model's: the same text scores the same
    hot = oa.completions.create(
        model=english_run.name, prompt="the ", max_tokens=30, temperature=1.5, seed=2, logprobs=0
    ).choices[0]
    assert all(v <= 0 for v in hot.logprobs.token_logprobs)
    again = oa.completions.create(
        model=english_run.name, prompt="the " + hot.text, max_tokens=0, echo=True, logprobs=0
    ).choices[0]
    assert again.text == "the " + hot.text and again.logprobs.token_logprobs[0] is None
    assert again.logprobs.token_logprobs[4:] == pytest.approx(hot.logprobs.token_logprobs)
    for too_much in ({"stream": True}, {"n": 3, "max_tokens": BIG}, {"logprobs": 6}):
        with pytest.raises(openai.BadRequestError) as e:
            oa.completions.create(
                **{"model": english_run.name, "prompt": "a", "logprobs": 2, **too_much}
            )
        assert e.value.body["param"] == "logprobs"


def test_jamo_logprobs_sum_over_a_syllables_symbols(korean_run):
    """A jamo model's character is several symbols: its log probability is theirs summed,
    as `charrnn evaluate` (TensorFlow, the one scoring definition) charges a character."""
    from charrnn.analysis.scoring import score_text
    from charrnn.serve.logprobs import prompt_logprobs
    from charrnn.store.loader import load

    loaded = load(korean_run, "best")
    vocab = loaded.vocab
    text = vocab.decode(vocab.encode(KOREAN[:60], unknown="skip"))
    gen = prompt_logprobs(loaded, vocab.encode(text), [text], True, 2, 0, 1.0)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            (lp,) = stop.value
            break
    assert lp["tokens"] == list(text) and len(vocab.encode(text)) > len(text)
    scored = score_text(loaded.model, vocab, text)
    assert lp["token_logprobs"][0] is None
    assert lp["token_logprobs"][1:] == pytest.approx(-scored.char_nats[1:], abs=1e-4)


def test_keys_and_errors_in_openai_shape(served, english_run):
    with pytest.raises(openai.AuthenticationError) as e:
        client(served, key="sk-wrong").completions.create(model=english_run.name, prompt="a")
    assert e.value.status_code == 401 and e.value.body["type"] == "authentication_error"
    with pytest.raises(openai.BadRequestError) as e:
        client(served).completions.create(model=english_run.name, prompt="a", suffix="!")
    assert e.value.body["param"] == "suffix"
    with pytest.raises(openai.BadRequestError) as e:
        client(served).completions.create(model=english_run.name, prompt="a", max_tokens=-1)
    assert e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client(served).completions.create(model=english_run.name, prompt="a\u4e00b")
    assert e.value.body["param"] == "prompt" and "not in the vocabulary" in e.value.message
    skipped = client(served).completions.create(
        model=english_run.name, prompt="a\u4e00b", extra_body={"unknown": "skip"}, seed=1
    )
    assert len(skipped.choices[0].text) == 16
    with pytest.raises(openai.BadRequestError) as e:
        client(served).completions.create(model=english_run.name, prompt=[[1, 2]])
    assert e.value.body["param"] == "prompt"
    with pytest.raises(openai.NotFoundError) as e:
        client(served).completions.create(model="gpt-4", prompt="a")
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client(served).chat.completions.create(
            model=english_run.name, messages=[{"role": "user", "content": "hi"}]
        )
    assert "/v1/completions" in e.value.message
    # the guard's refusals and 405 in OpenAI's shape on its routes ...
    for method, path, body, headers, status in (
        ("GET", "/v1/completions", None, {}, 405),
        ("POST", "/v1/completions", {"prompt": "a"}, {"Origin": "http://evil.example"}, 403),
        ("POST", "/v1/completions", {"prompt": "a"}, {"Authorization": "Bearer x"}, 401),
        ("GET", "/v1/models", None, {"Host": "evil.example"}, 403),
    ):
        got, _, reply = raw(served, method, path, body, headers)
        assert got == status and set(reply["error"]) == {"message", "type", "param", "code"}
    # ... charrnn's own on its own routes, which keep working with the key
    got, _, reply = raw(served, "POST", "/v1/generate", {"n": 5}, {"Authorization": "Bearer x"})
    assert got == 401 and isinstance(reply["error"], str)
    got, _, reply = raw(served, "POST", "/v1/generate", {"n": 5, "seed": 2, "stop": ["e", "a"]})
    assert got == 200 and reply["samples"][0] == cli_sample(
        english_run, "-n", 5, "--seed", 2, "--stop", "e", "--stop", "a"
    )
    got, _, reply = raw(served, "GET", "/healthz", None, {"Authorization": ""})
    assert got == 200


def test_cors_origin_with_its_preflight(served):
    c = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    c.request(
        "OPTIONS",
        "/v1/completions",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    r = c.getresponse()
    r.read()
    assert r.status == 204 and r.getheader("Access-Control-Allow-Origin") == "https://app.example"
    assert "Authorization" in r.getheader("Access-Control-Allow-Headers")
    got, headers, _ = raw(served, "GET", "/v1/models", None, {"Origin": "https://app.example"})
    assert got == 200 and headers["access-control-allow-origin"] == "https://app.example"


def test_a_full_server_says_when_to_retry_without_a_storm(served, english_run):
    held, done = threading.Event(), threading.Event()

    def hold():  # top_p's nucleus makes these 100,000 characters last ~10 s: time to test
        with client(served) as oa:
            stream = oa.completions.create(
                model=english_run.name, prompt="a", max_tokens=BIG, stream=True, top_p=0.5
            )
            next(iter(stream))
            held.set()
            done.wait(60)
            stream.close()  # the server frees the slot

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        # the client's own retries wait as told (Retry-After: 1): one retry takes a second
        t0 = time.monotonic()
        with pytest.raises(openai.InternalServerError), client(served, max_retries=1) as oa:
            oa.completions.create(model=english_run.name, prompt="a")
        assert time.monotonic() - t0 >= 1
        with pytest.raises(openai.InternalServerError) as e, client(served) as oa:
            oa.completions.create(model=english_run.name, prompt="a")
        assert e.value.status_code == 503 and e.value.response.headers["retry-after"] == "1"
        assert "--max-streams" in e.value.message
    finally:
        done.set()
        t.join()
    with client(served) as oa:  # the slot is free again
        assert oa.completions.create(model=english_run.name, prompt="a", max_tokens=3)


def serve_process(run_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "charrnn", "serve", str(run_dir), *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "CHARRNN_API_KEY"},
        timeout=60,
    )


def test_a_key_is_required_with_cors_and_a_network_host_warns(english_run):
    p = serve_process(english_run, "--cors-origin", "https://app.example")
    assert p.returncode == 1 and p.stderr.startswith("Error: --cors-origin"), p.stderr
    # (the checkpoint is missing, so it stops after the warning, having served nothing)
    p = serve_process(english_run, "--host", "0.0.0.0", "--port", "0", "--checkpoint", "nope")
    assert p.returncode == 1 and "has no API key" in p.stderr.splitlines()[0], p.stderr


def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_with_a_self_signed_certificate_and_timeouts(english_run, tmp_path):
    cert, key = self_signed(tmp_path)
    s = Server(
        english_run,
        "--ssl-certfile",
        cert,
        "--ssl-keyfile",
        key,
        "--api-key",
        KEY,
        "--timeout",
        "1",
        "--max-chars",
        str(BIG),
    )
    try:
        assert "https://127.0.0.1:" in s.first_line and "an API key is needed" in s.first_line
        trusted = ssl.create_default_context(cafile=str(cert))
        with openai.OpenAI(
            base_url=f"https://127.0.0.1:{s.port}/v1",
            api_key=KEY,
            max_retries=2,
            http_client=openai.DefaultHttpxClient(verify=trusted),
        ) as oa:
            c = oa.completions.create(model=english_run.name, prompt="The ", seed=5)
            assert "The " + c.choices[0].text == cli_sample(
                english_run, "--prime", "The ", "-n", 16, "--seed", 5
            )
            # past --timeout: 504, which the client does not retry (x-should-retry: false)
            slow = dict(model=english_run.name, prompt="a", max_tokens=BIG, top_p=0.5)
            t0 = time.monotonic()
            with pytest.raises(openai.InternalServerError) as e:
                oa.completions.create(**slow)
            assert e.value.status_code == 504 and e.value.body["type"] == "timeout"
            assert e.value.response.headers["x-should-retry"] == "false"
            assert time.monotonic() - t0 < 5  # one try of ~1 s, not three
            # once streaming began, the error is a data line the client raises
            with pytest.raises(openai.APIError) as e:
                for _ in oa.completions.create(**slow, stream=True):
                    pass
            assert "--timeout" in e.value.message
        with (
            pytest.raises(openai.APIConnectionError),  # the default trust store refuses it
            openai.OpenAI(
                base_url=f"https://127.0.0.1:{s.port}/v1", api_key=KEY, max_retries=0
            ) as untrusted,
        ):
            untrusted.models.list()
    finally:
        rc, err = s.stop()
    assert rc == 0 and "Traceback" not in err, err
