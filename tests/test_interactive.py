"""`charrnn sample -i` through a real pseudo-terminal (pexpect): typing, letting the
model write, the : command line, undo, quitting; the candidates shown against the
Keras model's own probabilities; jamo syllables; stdout redirected; no terminal."""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pexpect
import pytest

from charrnn.generate.interactive import _shown

ROWS, COLS = 40, 200
DONE = r"\^D done"  # the keys line: the end of every redraw outside the : command line


def shows(text):
    """A pattern for a redraw whose text ends in ``text``."""
    return re.escape(text + "▌") + r"[\s\S]*?" + DONE


def spawn(run_dir, *args):
    return pexpect.spawn(
        sys.executable,
        ["-m", "charrnn", "sample", str(run_dir), "-i", *args],
        env=dict(os.environ),
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        timeout=120,
    )


def screen(c, wait=DONE):
    """The last full screen once the program has gone quiet: (header, text, candidates,
    message)."""
    c.expect(wait)
    buf = c.before + c.after
    while True:
        try:
            buf += c.read_nonblocking(1 << 16, timeout=0.5)
        except pexpect.TIMEOUT:
            break
    lines = buf.split("\x1b[2J")[-1].split("\r\n")
    at = max(i for i, x in enumerate(lines) if x.startswith("next: "))
    text = "\n".join(lines[2:at]).split("▌")[0]
    cands = [(label, float(p)) for label, p in re.findall(r"(\S+) (\d+\.\d)%", lines[at][6:])]
    return lines[0].replace("\x1b[H", ""), text, cands, lines[at + 1]


def model_probs(run_dir, text):
    """The next-symbol distribution after ``text`` (which follows a newline, as the
    session's text does), from the Keras model."""
    from charrnn.backend import tensorflow
    from charrnn.generate.sampler import start_id
    from charrnn.store.loader import load_run

    tf = tensorflow()
    run = load_run(run_dir)
    ids = [start_id(run.vocab)] + list(run.vocab.encode(text))
    z = run.model(tf.constant(np.asarray(ids, np.int32)[None])).numpy()[0, -1].astype(np.float64)
    p = np.exp(z - z.max())
    return run.vocab, p / p.sum()


def check_candidates(cands, vocab, p, label=None):
    """The candidates shown are the model's most likely symbols with its probabilities."""
    assert len(cands) == 10
    label = label or (lambda i: _shown(vocab.symbols[i]))
    by_label = {label(i): 100 * p[i] for i in range(len(p))}
    for name, pct in cands:
        assert abs(by_label[name] - pct) <= 0.051, (name, pct, by_label[name])
    shown = {name for name, _ in cands}
    assert (
        min(pct for _, pct in cands)
        >= max(v for k, v in by_label.items() if k not in shown) - 0.051
    )
    assert [pct for _, pct in cands] == sorted((pct for _, pct in cands), reverse=True)


def test_type_write_change_undo_quit(english_run):
    c = spawn(english_run, "--seed", "1")
    header, text, _, _ = screen(c)
    assert text == "" and "T 1 " in header and "k 40" in header
    c.send("We are")
    _, text, cands, _ = screen(c, shows("We are"))
    assert text == "We are"
    vocab, p = model_probs(english_run, "We are")
    check_candidates(cands, vocab, p)

    c.send("\t")  # the model writes k = 40 characters
    _, first, _, _ = screen(c)
    assert first.startswith("We are") and len(first) == 46
    # ... a real sample: the NumPy sampler from the same state and seed writes the same
    from charrnn.generate.choice import Options
    from charrnn.generate.sampler import Sampler, start_id
    from charrnn.store.loader import load

    s = Sampler(load(english_run).weights, 1, Options(seed=1), engine="numpy")
    s.prime([start_id(vocab)] + list(vocab.encode("We are")))
    assert first == "We are" + vocab.decode(s.generate(40)[0])

    c.send("\x1b")  # Esc: the : command line
    c.expect("commands: ")
    c.send("t 0.5\n")
    header, text, _, message = screen(c)
    assert "T 0.5 " in header and message == "temperature 0.5" and text == first
    c.send("\t")
    _, second, _, _ = screen(c)
    assert second.startswith(first) and len(second) == 86
    c.send("\x7f")  # undo the second write
    _, text, cands, _ = screen(c)
    assert text == first
    check_candidates(cands, *model_probs(english_run, first))
    c.send("\x7f")  # and the first
    _, text, _, _ = screen(c)
    assert text == "We are"
    c.send("\t")  # the same random numbers as the first write, at temperature 0.5 now
    _, again, _, _ = screen(c)
    assert again.startswith("We are") and len(again) == 46 and again != first
    c.send("\x04")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0
    # the final text, after leaving the screen
    assert c.before.replace("\r\n", "\n").endswith(again + "\n")


def test_bad_command_and_unknown_characters(english_run):
    c = spawn(english_run)
    screen(c)
    c.send("\x1b")
    c.expect("commands: ")
    c.send("top-p 2\n")
    _, _, _, message = screen(c)
    assert "top-p must be in (0, 1]" in message
    c.send("Liberty ☃")
    _, text, _, message = screen(c, r"not in the model's vocabulary[\s\S]*?" + DONE)
    assert text == "Liberty " and "'☃'" in message
    c.send("\x03")  # Ctrl-C belongs to the terminal: it interrupts
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 130 or c.signalstatus == 2


def test_jamo_syllables(korean_run):
    """A typed syllable is decomposed into jamo and shown composed; candidates are
    shown composed with the pending syllable; the final text round-trips."""
    c = spawn(korean_run, "--seed", "3")
    screen(c)
    c.send("대한민국의 국민이 되는 요건은 법률로 정하")
    _, text, cands, _ = screen(c, shows("정하"))
    assert text == "대한민국의 국민이 되는 요건은 법률로 정하"
    vocab, p = model_probs(korean_run, text)
    tail = list(vocab.encode(text))[-3:]

    def composed(i):  # what follows the shared part of decode(tail) and decode(tail + [i])
        a, b = vocab.decode(tail), vocab.decode(tail + [i])
        n = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
        return _shown(b[n:])

    check_candidates(cands, vocab, p, composed)
    assert any(len(name) == 1 and "\uac00" <= name <= "\ud7a3" for name, _ in cands), cands
    c.send("\x04")
    c.expect(pexpect.EOF)
    assert c.before.replace("\r\n", "\n").endswith(text + "\n")


def test_stdout_redirected_gets_only_the_final_text(english_run, tmp_path):
    out = tmp_path / "out.txt"
    q = shlex.quote
    cmd = f"{q(sys.executable)} -m charrnn sample {q(str(english_run))} -i --seed 4 > {q(str(out))}"
    c = pexpect.spawn(
        "bash",
        ["-c", cmd],
        env=dict(os.environ),
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        timeout=120,
    )
    screen(c)
    c.send("Liberty")
    screen(c, shows("Liberty"))
    c.send("\x0e")  # the model writes a line
    _, text, _, _ = screen(c)
    assert text.startswith("Liberty") and (text.endswith("\n") or len(text) == 7 + 2000)
    c.send("\x04")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0
    assert out.read_text(encoding="utf-8") == text


def test_no_terminal_is_a_clear_error(english_run):
    p = subprocess.run(
        [sys.executable, "-m", "charrnn", "sample", str(english_run), "-i"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        timeout=120,
    )
    assert p.returncode == 1 and p.stdout == b""
    err = p.stderr.decode()
    assert err.startswith("Error: interactive mode needs a terminal") and err.count("\n") == 1, err


@pytest.mark.parametrize("args", [["--num-samples", "2"], ["--stop", "x"]])
def test_options_that_do_not_apply(english_run, args):
    p = subprocess.run(
        [sys.executable, "-m", "charrnn", "sample", str(english_run), "-i", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 2 and b"Traceback" not in p.stderr
