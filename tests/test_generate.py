"""Constrained and beam generation (`sample --allow/--require/--beam`, `-i`'s allow and
beam): through the real CLI and the library, on the tiny trained runs."""

import io

import numpy as np
import pytest
from clihelp import error_line, ok, run
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.generate.choice import Options
from charrnn.generate.interactive import Session
from charrnn.generate.sampler import start_id
from charrnn.generate.write import SEPARATOR, Request, echoed_prime, write_samples
from charrnn.nn.step import NumpyOps, cell_step
from charrnn.store.loader import load

_loaded = {}


def loaded(path):
    if path not in _loaded:
        _loaded[path] = load(path)
    return _loaded[path]


def generated(m, request):
    """The request's samples without their echoed prime, through what `charrnn sample`
    runs (write_samples), which writes them as it returns them."""
    out = io.StringIO()
    texts = write_samples(out, m, request)
    assert out.getvalue() == SEPARATOR.join(texts)
    shown = len(echoed_prime(m.vocab, request))
    return [t[shown:] for t in texts]


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    temperature=st.sampled_from([0.0, 0.7, 1.0, 2.5]),
    top_k=st.sampled_from([0, 3]),
    top_p=st.sampled_from([1.0, 0.9]),
)
def test_no_disallowed_character_ever_appears(
    english_run, korean_run, seed, temperature, top_k, top_p
):
    options = Options(temperature, top_k, top_p, seed)
    en = loaded(english_run)
    for allow in ("aeiou ", "thn\n"):
        for text in generated(en, Request("We ", 60, 2, options, allow=allow)):
            assert set(text) <= set(allow), (allow, text)
    ko = loaded(korean_run)  # jamo: the constraint is on whole syllables
    allow = "대한민국의 "
    for text in generated(ko, Request("대한", 30, 2, options, allow=allow)):
        assert set(text) <= set(allow), text
        assert len(text) == 30


def test_allow_through_the_cli_is_the_library(english_run):
    out = ok(
        run("sample", english_run, "--prime", "We", "-n", 80, "--seed", 5, "--allow", "aeiou nrst")
    ).stdout
    assert out.startswith("We") and set(out[2:]) <= set("aeiou nrst") and len(out) == 82
    m = loaded(english_run)
    assert generated(m, Request("We", 80, 1, Options(seed=5), allow="aeiou nrst")) == [out[2:]]
    r = run("sample", english_run, "--allow", "\u00e9\u00e8", "-n", 5)
    assert "none of the --allow characters" in error_line(r, only=True)


def test_require_is_met_and_reproducible_or_one_error(english_run):
    args = ["-n", 40, "--seed", 11, "--require", "th", "--num-samples", 3, "--separator", "|"]
    out = ok(run("sample", english_run, *args)).stdout
    parts = out.split("|")
    assert len(parts) == 3 and all("th" in p for p in parts)
    assert ok(run("sample", english_run, *args)).stdout == out
    # sample 0 is the first candidate that has it: candidates are samples 3, 4, ... after 0-2
    m = loaded(english_run)
    firsts = generated(m, Request("", 40, 3, Options(seed=11)))
    kept = [t for t in firsts if "th" in t]
    assert parts[: len(kept)] == kept
    r = run("sample", english_run, "-n", 10, "--require", "qqqq", "--require-tries", 3)
    assert error_line(r, only=True) == (
        "Error: only 0 of 1 sample(s) contained 'qqqq' after 3 "
        "tries; raise --require-tries, generate more characters "
        "(-n), or put it in the prime"
    )


def _logprob(m, prime, continuation):
    """log P(continuation | prime) under the NumPy step (teacher forced)."""
    w, vocab = m.weights, m.vocab
    ids = (
        [*vocab.encode(prime), *vocab.encode(continuation)]
        if prime
        else [start_id(vocab), *vocab.encode(continuation)]
    )
    first = len(vocab.encode(prime)) - 1 if prime else 0
    states, total = w.zero_states(1), 0.0
    with np.errstate(over="ignore", under="ignore"):
        for t in range(len(ids) - 1):
            logits, states = cell_step(NumpyOps, w, np.array([ids[t]], np.int32), states)
            if t >= first:
                z = logits[0].astype(np.float64)
                total += z[ids[t + 1]] - z.max() - np.log(np.exp(z - z.max()).sum())
    return total


@pytest.mark.parametrize("prime", ["We ", "The na", "government "])
def test_beam_is_never_less_probable_than_greedy(english_run, prime):
    m = loaded(english_run)
    greedy = ok(run("sample", english_run, "--prime", prime, "-n", 50, "-t", 0)).stdout
    beam = ok(run("sample", english_run, "--prime", prime, "-n", 50, "--beam", 4)).stdout
    assert greedy.startswith(prime) and beam.startswith(prime) and len(beam) == len(greedy)
    lb, lg = _logprob(m, prime, beam[len(prime) :]), _logprob(m, prime, greedy[len(prime) :])
    assert lb >= lg - 1e-6, (beam, lb, greedy, lg)
    # deterministic, and the seed and temperature do not matter
    assert (
        ok(
            run(
                "sample",
                english_run,
                "--prime",
                prime,
                "-n",
                50,
                "--beam",
                4,
                "--seed",
                9,
                "-t",
                1.5,
            )
        ).stdout
        == beam
    )


def test_beam_with_stop_and_allow_and_on_jamo(english_run, korean_run):
    out = ok(
        run(
            "sample",
            english_run,
            "--prime",
            "We",
            "-n",
            200,
            "--beam",
            3,
            "--stop",
            ".",
            "--allow",
            "abcdefghijklmnopqrstuvwxyz .",
        )
    ).stdout
    assert set(out[2:]) <= set("abcdefghijklmnopqrstuvwxyz .")
    assert out.endswith(".") or len(out) == 202
    ko = ok(run("sample", korean_run, "--prime", "대한민국", "-n", 12, "--beam", 3)).stdout
    assert ko.startswith("대한민") and len(ko) == 4 + 12 - (0 if ko.startswith("대한민국") else 1)
    r = run("sample", english_run, "--beam", 2, "--num-samples", 2)
    assert "--beam gives the one most probable text" in error_line(r, only=True)


def test_interactive_session_allow_and_beam(english_run):
    m = loaded(english_run)
    s = Session(m.weights, m.vocab, Options(seed=1))
    s.type("We ")
    assert s.command("allow aeiou ") == "allowed: aeiou"
    s.write(30)
    assert set(s.text[3:]) <= set("aeiou ") and len(s.text) == 33
    s.undo()
    assert s.text == "We " and s.command("allow") == "all characters allowed"
    assert s.command("beam 3") == "beam 3"
    s.write(20)
    first = s.text
    s.undo()
    s.write(20)
    assert s.text == first and len(first) == 23  # deterministic
    assert "must be at least 0" in s.command("beam -1")
    assert "none of the allow characters" in s.command("allow \u00e9")
