"""`charrnn evaluate` through the real CLI, checked against a hand computation with the
Keras model and NumPy log-softmax."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.cli import cli

from conftest import ENGLISH, KOREAN


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def evaluate_json(*args):
    return json.loads(ok(run("evaluate", *args, "--json")).stdout)


@pytest.fixture(scope="module")
def english(english_run):
    from charrnn.runs import load_run

    return load_run(english_run)


@pytest.fixture(scope="module")
def korean(korean_run):
    from charrnn.runs import load_run

    return load_run(korean_run)


def hand_nats(model, ids, streams=1):
    """Sum of -log p(ids[t+1] | ids[..t]) over every prediction, the text cut into
    ``streams`` contiguous pieces each read from the zero state, as evaluate documents."""
    from charrnn.backend import tensorflow

    tf = tensorflow()
    forward = tf.function(lambda x: model(x))  # the plain Keras forward pass, traced (eager is slow)
    m = len(ids) - 1
    per = -(-m // streams)
    total = 0.0
    for lo in range(0, m, per):
        hi = min(m, lo + per)
        logits = forward(tf.constant(ids[None, lo:hi])).numpy()[0].astype(np.float64)
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        total -= logp[np.arange(hi - lo), ids[lo + 1:hi + 1]].sum()
    return total


def test_figures_match_a_hand_computation(english, english_run, tmp_path):
    text = ENGLISH[:3000]  # > one 256-symbol window: the state is carried across windows
    (tmp_path / "held.txt").write_text(text, encoding="utf-8")
    ids = english.vocab.encode(text)
    for streams in (1, 3):
        r = evaluate_json(english_run, tmp_path / "held.txt", "--streams", streams)
        f = r["files"][0]
        want = hand_nats(english.model, ids, streams) / (len(ids) - 1)
        assert f["predictions"] == len(ids) - 1 and f["symbols"] == len(ids) == len(text)
        assert f["loss_nats"] == pytest.approx(want, rel=1e-5)
        assert f["bits_per_symbol"] == pytest.approx(want / math.log(2), rel=1e-5)
        assert f["bits_per_char"] == pytest.approx(f["bits_per_symbol"])  # one symbol per char
        assert f["oov_chars"] == 0 and r["total"]["loss_nats"] == f["loss_nats"]
    # the default (one stream per 1,024 symbols) is close to reading it whole
    default = evaluate_json(english_run, tmp_path / "held.txt")["files"][0]["loss_nats"]
    assert default == pytest.approx(hand_nats(english.model, ids) / (len(ids) - 1), rel=0.05)


def test_jamo_bits_per_character(korean, korean_run, tmp_path):
    """A jamo model is scored per symbol (jamo) and per original character (syllable)."""
    text = KOREAN
    (tmp_path / "ko.txt").write_text(text, encoding="utf-8")
    (tmp_path / "ko949.txt").write_bytes(text.replace("\n", "\r\n").encode("cp949"))
    ids = korean.vocab.encode(text)
    assert len(ids) > len(text) * 1.5  # really split into jamo
    f = evaluate_json(korean_run, tmp_path / "ko.txt", "--streams", 1)["files"][0]
    assert f["chars"] == len(text) and f["symbols"] == len(ids)
    loss = hand_nats(korean.model, ids) / (len(ids) - 1)
    assert f["loss_nats"] == pytest.approx(loss, rel=1e-5)
    assert f["bits_per_char"] == pytest.approx(loss / math.log(2) * len(ids) / len(text), rel=1e-5)
    # same pipeline as prepare: cp949 detected, CRLF -> LF, same figures
    g = evaluate_json(korean_run, tmp_path / "ko949.txt", "--streams", 1)["files"][0]
    assert g["encoding"] == "cp949" and g["chars"] == f["chars"]
    assert g["loss_nats"] == pytest.approx(f["loss_nats"], rel=1e-9)


def test_characters_outside_the_vocabulary(english, english_run, tmp_path):
    text = ENGLISH[:1000]
    odd = text[:300] + "∑∑☃" + text[300:]
    (tmp_path / "odd.txt").write_text(odd, encoding="utf-8")
    f = evaluate_json(english_run, tmp_path / "odd.txt", "--streams", 1)["files"][0]
    assert f["oov_chars"] == 3 and f["oov_distinct"] == "∑☃"
    assert f["chars"] == len(odd) and f["scored_chars"] == len(text)
    ids = english.vocab.encode(text)  # no unknown symbol in this vocabulary: left out
    assert f["loss_nats"] == pytest.approx(hand_nats(english.model, ids) / (len(ids) - 1), rel=1e-5)
    human = ok(run("evaluate", english_run, tmp_path / "odd.txt"))
    assert human.stdout == "" and "3 outside the vocabulary" in human.stderr


def test_several_files_and_stdin(english_run, tmp_path):
    (tmp_path / "a.txt").write_text(ENGLISH[:800], encoding="utf-8")
    (tmp_path / "b.txt").write_text(ENGLISH[800:2000], encoding="utf-8")
    r = evaluate_json(english_run, tmp_path / "a.txt", tmp_path / "b.txt", "--streams", 1)
    a, b = r["files"]
    nats = a["loss_nats"] * a["predictions"] + b["loss_nats"] * b["predictions"]
    assert r["total"]["predictions"] == a["predictions"] + b["predictions"]
    assert r["total"]["loss_nats"] == pytest.approx(nats / r["total"]["predictions"])
    piped = json.loads(ok(run("evaluate", english_run, "-", "--json", "--streams", 1,
                              input=ENGLISH[:800])).stdout)
    assert piped["files"][0]["loss_nats"] == pytest.approx(a["loss_nats"], rel=1e-9)
    human = ok(run("evaluate", english_run, tmp_path / "a.txt", tmp_path / "b.txt"))
    assert human.stdout == "" and "total:" in human.stderr and "bits/char" in human.stderr


def test_evaluate_errors(english_run, tmp_path):
    r = run("evaluate", english_run, tmp_path / "missing.txt")
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and "does not exist" in r.stderr
    (tmp_path / "one.txt").write_text("a", encoding="utf-8")
    r = run("evaluate", english_run, tmp_path / "one.txt")
    assert r.exit_code == 1 and "at least 2" in r.stderr
    r = run("evaluate", tmp_path, tmp_path / "one.txt")
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
