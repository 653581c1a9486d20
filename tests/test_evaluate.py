"""`charrnn evaluate` through the real CLI, checked against a hand computation with the
Keras model and NumPy log-softmax, under the scoring definition of charrnn/scoring.py:
state carried (pieces read 256 symbols of warm-up first), the first character context
only, characters outside the vocabulary charged -log2 P(escape) + log2 |class|."""

import json
import math
import random

import numpy as np
import pytest
from clihelp import ok, run
from conftest import ENGLISH, KOREAN

LOG2 = math.log(2)
OTHER_BMP = 65536 - 2048 - 11172 - 20992  # U+0800..U+FFFF without syllables and ideographs


def evaluate_json(*args):
    return json.loads(ok(run("evaluate", *args, "--json")).stdout)


def per_line(*args):
    r = ok(run("evaluate", *args, "--per-line"))
    return [json.loads(line) for line in r.stdout.splitlines()], r


@pytest.fixture(scope="module")
def english(english_run):
    from charrnn.store.loader import load_run

    return load_run(english_run)


@pytest.fixture(scope="module")
def korean(korean_run):
    from charrnn.store.loader import load_run

    return load_run(korean_run)


@pytest.fixture(scope="module")
def unk_run(tmp_path_factory):
    """A run whose vocabulary has the unknown symbol: prepared with --min-count 3, so the
    8 characters seen twice in ENGLISH * 2 (M z S ; x O D ') are read as U+FFFD."""
    from charrnn.cli import main

    root = tmp_path_factory.mktemp("unk")
    (root / "en.txt").write_text(ENGLISH * 2, encoding="utf-8")
    assert (
        main(
            [
                "prepare",
                str(root / "en.txt"),
                "-o",
                str(root / "data"),
                "-q",
                "--min-count",
                "3",
                "--val-fraction",
                "0.1",
            ]
        )
        == 0
    )
    sets = [
        "model.num_layers=1",
        "model.rnn_size=32",
        "model.embedding_size=16",
        "train.batch_size=16",
        "train.seq_length=32",
        "train.learning_rate=0.01",
        "train.eval_every=30",
        "train.save_every=30",
        "train.log_every=30",
    ]
    assert (
        main(
            [
                "train",
                "--data",
                str(root / "data"),
                "--out",
                str(root / "run"),
                "--max-steps",
                "30",
                *[a for s in sets for a in ("--set", s)],
            ]
        )
        == 0
    )
    return root / "run"


# Every `charrnn evaluate` builds its scoring step afresh and XLA-compiles it once per window
# width it reads (about half a second each on the test machine): one pass (--streams 1)
# reads full 256-symbol windows, then the rest in power-of-two windows.  So the texts below
# have lengths whose one pass needs few widths, and results several tests compare against
# are made once.
HELD = ENGLISH[:2306]  # 2,305 predictions: 9 windows of 256 and one of 1 in one pass


@pytest.fixture(scope="module")
def held(english_run, tmp_path_factory):
    """HELD in a file, and what `charrnn evaluate --streams 1` says of it with --json
    (``whole``, the file's figures: ``json``, all of it) and with --per-line (``lines``)."""
    path = tmp_path_factory.mktemp("held") / "held.txt"
    path.write_text(HELD, encoding="utf-8")
    r = evaluate_json(english_run, path, "--streams", 1)
    lines, _ = per_line(english_run, path, "--streams", 1)
    return {"path": path, "json": r, "whole": r["files"][0], "lines": lines}


_FORWARD = {}  # id(model) -> (model, its traced forward pass), kept for the module


def hand_nats(model, ids, pieces=1, warmup=256, firsts=None):
    """-ln p(ids[t] | ids[..t]) for every target t >= 1 (index t-1 of the result), from the
    plain Keras forward pass: ``pieces`` contiguous pieces (or pieces starting at the
    targets ``firsts``), each after the first reading ``warmup`` symbols before it from the
    zero state, unscored.  The pieces are the rows of one batch, padded at their ends (a
    row's padding comes after all it is scored on), so one trace serves them all."""
    from charrnn.backend import tensorflow

    tf = tensorflow()
    if id(model) not in _FORWARD:
        _FORWARD[id(model)] = model, tf.function(lambda x: model(x))  # traced (eager is slow)
    forward = _FORWARD[id(model)][1]
    m = len(ids) - 1
    per = -(-m // pieces)
    firsts = firsts or list(range(1, m + 1, per))
    rows = [(max(0, a - 1 - warmup), a, e) for a, e in zip(firsts, firsts[1:] + [m + 1])]
    x = np.zeros((len(rows), max(e - 1 - s for s, _, e in rows)), ids.dtype)
    for i, (s, _, e) in enumerate(rows):
        x[i, : e - 1 - s] = ids[s : e - 1]
    batch = forward(tf.constant(x)).numpy().astype(np.float64)
    out = np.full(m, np.nan)
    for (s, a, e), logits in zip(rows, batch):  # targets a .. e-1
        logits = logits[: e - 1 - s]
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        nll = -logp[np.arange(e - 1 - s), ids[s + 1 : e]]
        out[a - 1 : e - 1] = nll[a - 1 - s :]
    assert not np.isnan(out).any()
    return out


def test_figures_match_a_hand_computation(english, english_run, held):
    text = HELD  # > one 256-symbol window: the state is carried across windows
    ids = english.vocab.encode(text)
    loss = {}
    for streams in (1, 3):
        r = (
            held["json"]
            if streams == 1
            else evaluate_json(english_run, held["path"], "--streams", 3)
        )
        f = r["files"][0]
        want = loss[streams] = hand_nats(english.model, ids, streams).mean()
        assert f["predictions"] == len(ids) - 1 and f["symbols"] == len(ids) == len(text)
        assert f["scored_chars"] == len(text) - 1 and f["oov_chars"] == 0 and f["oov_bits"] == 0
        assert f["loss_nats"] == pytest.approx(want, rel=1e-5)
        assert f["bits_per_symbol"] == pytest.approx(want / LOG2, rel=1e-5)
        assert f["bits_per_char"] == pytest.approx(f["bits_per_symbol"])  # one symbol per char
        assert f["bits_per_char_in_vocab"] == pytest.approx(f["bits_per_char"])
        assert r["total"]["loss_nats"] == f["loss_nats"]
        assert r["scoring"] == {
            "pieces": streams,
            "warmup": 256,
            "part_chars": 1 << 20,
            "escape": "witten-bell",
            "p_escape": pytest.approx(49 / (len(ENGLISH) * 2 + 49)),
        }
    # Pieces with warm-up agree closely with one pass; pieces read from a cold state do not.
    cold = hand_nats(english.model, ids, 3, warmup=0).mean()
    assert loss[3] == pytest.approx(loss[1], rel=1e-3)
    assert abs(loss[3] - loss[1]) < abs(cold - loss[1]) / 3
    # the default (one piece per 1,024 symbols: 2 here)
    default = evaluate_json(english_run, held["path"])
    assert default["scoring"]["pieces"] == "auto"
    assert default["total"]["loss_nats"] == pytest.approx(
        hand_nats(english.model, ids, 2).mean(), rel=1e-5
    )


def test_validation_is_the_same_definition(english_run, english_data, tmp_path):
    """The last logged validation loss is what `charrnn evaluate` says of the val split."""
    val = ok(run("dump", english_data, "--split", "val")).stdout
    (tmp_path / "val.txt").write_text(val, encoding="utf-8")
    f = evaluate_json(english_run, tmp_path / "val.txt", "--checkpoint", "latest")["total"]
    logged = [json.loads(x) for x in (english_run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in logged if "val_loss" in r][-1]
    assert last["step"] == 150 and f["predictions"] == len(val) - 1
    assert f["loss_nats"] == pytest.approx(last["val_loss"], rel=1e-4)


def test_jamo_bits_per_character(korean, korean_run, tmp_path):
    """A jamo model is scored per symbol (jamo) and per original character (syllable);
    all the jamo of the first syllable are context."""
    text = KOREAN
    (tmp_path / "ko.txt").write_text(text, encoding="utf-8")
    (tmp_path / "ko949.txt").write_bytes(text.replace("\n", "\r\n").encode("cp949"))
    ids = korean.vocab.encode(text)
    assert len(ids) > len(text) * 1.5  # really split into jamo
    first = len(korean.vocab.encode(text[0]))
    assert first == 2  # 제 = ㅈ ㅔ
    # both files in one call (each file is scored on its own; one scoring step compiled)
    f, g = evaluate_json(korean_run, tmp_path / "ko.txt", tmp_path / "ko949.txt", "--streams", 1)[
        "files"
    ]
    assert f["chars"] == len(text) and f["symbols"] == len(ids)
    assert f["predictions"] == len(ids) - first and f["scored_chars"] == len(text) - 1
    nats = hand_nats(korean.model, ids)[first - 1 :].sum()
    assert f["loss_nats"] == pytest.approx(nats / (len(ids) - first), rel=1e-5)
    assert f["bits_per_char"] == pytest.approx(nats / LOG2 / (len(text) - 1), rel=1e-5)
    # same pipeline as prepare: cp949 detected, CRLF -> LF, same figures
    assert g["encoding"] == "cp949" and g["chars"] == f["chars"]
    assert g["loss_nats"] == pytest.approx(f["loss_nats"], rel=1e-9)


def witten_bell_bits(vocab):
    return math.log2((sum(vocab.counts) + len(vocab)) / len(vocab))


def test_outside_the_vocabulary_is_charged(english, english_run, tmp_path):
    """No unknown symbol: left out of what the model reads, charged
    log2((N + V) / V) + log2 |class| bits each (Witten-Bell escape, uniform in the class)."""
    text = ENGLISH[:1025]  # 1,024 predictions: 4 windows in one pass
    odd = text[:300] + "∑∑é" + text[300:]
    (tmp_path / "odd.txt").write_text(odd, encoding="utf-8")
    f = evaluate_json(english_run, tmp_path / "odd.txt", "--streams", 1)["files"][0]
    assert f["oov_chars"] == 3 and f["oov_distinct"] == "∑é"
    assert f["chars"] == len(odd) and f["scored_chars"] == len(odd) - 1
    assert f["in_vocab_chars"] == len(text) - 1 and f["symbols"] == len(text)
    ids = english.vocab.encode(text)
    bits = hand_nats(english.model, ids).sum() / LOG2
    escape = math.log2((len(ENGLISH) * 2 + 49) / 49)  # 49 symbols in 2 x ENGLISH
    assert escape == pytest.approx(witten_bell_bits(english.vocab))
    charge = 3 * escape + 2 * math.log2(OTHER_BMP) + math.log2(1920)  # ∑ U+2211, é U+00E9
    assert f["oov_bits"] == pytest.approx(charge, rel=1e-9)
    assert f["bits_per_char_in_vocab"] == pytest.approx(bits / (len(text) - 1), rel=1e-5)
    assert f["bits_per_char"] == pytest.approx((bits + charge) / (len(odd) - 1), rel=1e-5)
    assert f["bits_per_symbol"] == pytest.approx(bits / (len(text) - 1), rel=1e-5)
    human = ok(run("evaluate", english_run, tmp_path / "odd.txt", "--streams", 1))
    assert human.stdout == ""
    assert human.stderr == (
        f"{tmp_path / 'odd.txt'}: {len(odd):,} chars (3 outside the vocabulary, charged "
        f"{charge:.1f} bits), {len(text):,} symbols: loss "
        f"{f['loss_nats']:.4f} nats/symbol, {f['bits_per_symbol']:.4f} bits/symbol, "
        f"{f['bits_per_char']:.4f} bits/char ({f['bits_per_char_in_vocab']:.4f} without the "
        "outside characters)\n"
    )


def test_unknown_symbol_pays_its_probability_and_the_class(unk_run, tmp_path):
    """With an unknown symbol, an outside character is read as it: the model's own
    -log2 P(unknown) at that position plus log2 |class|."""
    from charrnn.store.loader import load_run

    model = load_run(unk_run)
    vocab = model.vocab
    assert vocab.unk_id is not None and vocab.unknown_chars("Mz∑") == list("Mz∑")
    text = ENGLISH[1700:2300] + "∑" + ENGLISH[2300:2800]  # ' M z S ; x read as U+FFFD
    (tmp_path / "u.txt").write_text(text, encoding="utf-8")
    r = evaluate_json(unk_run, tmp_path / "u.txt", "--streams", 1)
    f = r["files"][0]
    assert r["unk"] and r["scoring"]["escape"] == "unknown symbol"
    ids = vocab.encode(text, unknown="unk")
    unk = np.flatnonzero(ids == vocab.unk_id)
    nll = hand_nats(model.model, ids) / LOG2  # target t at index t - 1
    classes = {"∑": OTHER_BMP}
    charge = sum(nll[t - 1] + math.log2(classes.get(text[t], 128)) for t in unk)
    assert f["oov_chars"] == len(unk) == 7 and f["symbols"] == len(text)
    assert f["oov_bits"] == pytest.approx(charge, rel=1e-5)
    assert f["bits_per_char"] == pytest.approx(
        (nll.sum() + 7 * len(unk) + math.log2(OTHER_BMP / 128)) / (len(text) - 1), rel=1e-5
    )
    inside = np.setdiff1d(np.arange(1, len(ids)), unk)
    assert f["predictions"] == len(inside)
    assert f["loss_nats"] == pytest.approx(nll[inside - 1].mean() * LOG2, rel=1e-5)
    human = ok(run("evaluate", unk_run, tmp_path / "u.txt"))
    assert f"7 outside the vocabulary, charged {charge:.1f} bits)" in human.stderr


def test_jamo_and_syllable_characters_alike(korean, korean_run, tmp_path):
    """A syllable a jamo model cannot spell (final ㅋ never seen) is charged as a Hangul
    syllable, like one missing from a syllable model's vocabulary; € as a BMP character."""
    assert korean.vocab.unknown_chars("닼€가") == ["닼", "€"]
    text = KOREAN[:100] + "닼" + KOREAN[100:200] + "€" + KOREAN[200:300]
    (tmp_path / "k.txt").write_text(text, encoding="utf-8")
    rest = KOREAN[:300]
    (tmp_path / "rest.txt").write_text(rest, encoding="utf-8")
    # both in one call (each file is scored on its own; one scoring step compiled)
    f, g = evaluate_json(korean_run, tmp_path / "k.txt", tmp_path / "rest.txt", "--streams", 1)[
        "files"
    ]
    escape = witten_bell_bits(korean.vocab)
    assert f["oov_chars"] == 2 and f["oov_distinct"] == "닼€"
    assert f["oov_bits"] == pytest.approx(2 * escape + math.log2(11172) + math.log2(OTHER_BMP))
    assert f["symbols"] == g["symbols"] and f["predictions"] == g["predictions"]
    assert f["loss_nats"] == pytest.approx(g["loss_nats"], rel=1e-5)  # the model read the same
    assert f["bits_per_char"] * (len(text) - 1) == pytest.approx(
        g["bits_per_char"] * (len(rest) - 1) + f["oov_bits"], rel=1e-5
    )
    # per line: a character's bits are its jamo's (mapped back by hand) or its charge
    lines, _ = per_line(korean_run, tmp_path / "k.txt", "--streams", 1)
    assert sum(x["bits"] for x in lines) == pytest.approx(f["nats"] / LOG2, rel=1e-9)
    ids = korean.vocab.encode(text, unknown="skip")
    nll = np.concatenate([[np.nan], hand_nats(korean.model, ids)]) / LOG2
    char_bits, at = [], 0
    for ch in text:
        n = len(korean.vocab.encode(ch, unknown="skip"))
        char_bits.append(
            nll[at : at + n].sum()
            if n
            else {"닼": math.log2(11172)}.get(ch, math.log2(OTHER_BMP)) + escape
        )
        at += n
    start = 0
    for x in lines[1:4]:
        start = text.index(x["text"] + "\n", start)
        mine = char_bits[start : start + x["chars"]]
        assert x["bits"] == pytest.approx(sum(mine), rel=1e-5)
        assert x["worst_bits"] == pytest.approx(max(mine), rel=1e-5)
        assert x["worst_char"] == text[start + int(np.argmax(mine))]
    assert any(x["worst_char"] == "닼" for x in lines)


def test_per_line_scores(english, english_run, tmp_path):
    """One JSON line per input line; the newline belongs to the line it ends; the totals
    equal an independent `evaluate --streams 1`; the default pieces agree closely."""
    # > 2,048 symbols: 2 pieces by default; 2,072 predictions: widths 256, 16 and 8 in one pass
    text = ENGLISH[: ENGLISH.index("\n", 2000) + 1]
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "b.txt").write_text("Four score and seven\nyears ago", encoding="utf-8")
    lines, r = per_line(english_run, tmp_path / "a.txt", tmp_path / "b.txt", "--streams", 1)
    whole = evaluate_json(english_run, tmp_path / "a.txt", tmp_path / "b.txt", "--streams", 1)
    assert r.stderr.startswith(f"{tmp_path / 'a.txt'}: ") and "total: " in r.stderr
    a = [x for x in lines if x["path"] == str(tmp_path / "a.txt")]
    b = [x for x in lines if x["path"] == str(tmp_path / "b.txt")]
    assert len(a) + len(b) == len(lines) and [x["line"] for x in a] == list(
        range(1, len(text.splitlines()) + 1)
    )
    assert [x["text"] + "\n" for x in a] == text.splitlines(keepends=True)
    assert [x["chars"] for x in a] == [len(x) for x in text.splitlines(keepends=True)]
    assert set(b[0]) == {
        "path",
        "line",
        "text",
        "chars",
        "bits",
        "bits_per_char",
        "oov_chars",
        "worst_char",
        "worst_column",
        "worst_prob",
        "worst_bits",
    }
    assert [(x["text"], x["chars"]) for x in b] == [("Four score and seven", 21), ("years ago", 9)]
    for f, mine in zip(whole["files"], (a, b)):
        assert sum(x["chars"] for x in mine) == f["chars"]
        assert sum(x["bits"] for x in mine) == pytest.approx(f["nats"] / LOG2, rel=1e-9)
        assert mine[0]["bits"] / (mine[0]["chars"] - 1) == pytest.approx(mine[0]["bits_per_char"])
    assert sum(x["bits"] for x in lines) / (sum(x["chars"] for x in lines) - 2) == pytest.approx(
        whole["total"]["bits_per_char"], rel=1e-9
    )
    # the most surprising character, checked against the hand computation
    ids = english.vocab.encode(text)
    nll = np.concatenate([[np.nan], hand_nats(english.model, ids)]) / LOG2
    x = a[3]
    start = sum(len(t) for t in text.splitlines(keepends=True)[:3])
    j = int(np.argmax(nll[start : start + x["chars"]]))
    assert (x["worst_column"], x["worst_char"]) == (j + 1, text[start + j])
    assert x["worst_bits"] == pytest.approx(nll[start + j], rel=1e-5)
    assert x["worst_prob"] == pytest.approx(2 ** -nll[start + j], rel=1e-5)
    assert x["bits"] == pytest.approx(nll[start : start + x["chars"]].sum(), rel=1e-5)
    # default pieces (2, with warm-up): every line close to the one-pass figure
    default, _ = per_line(english_run, tmp_path / "a.txt")
    assert sum(x["bits"] for x in default) == pytest.approx(sum(x["bits"] for x in a), rel=2e-3)


def test_a_planted_line_ranks_most_surprising(english, english_run, tmp_path):
    lines = ENGLISH.splitlines(keepends=True)[:26]
    rng = random.Random(0)  # in-vocabulary characters, no charge: only the model ranks it
    shuffled = "".join(rng.choices([s for s in english.vocab.symbols if s != "\n"], k=60))
    planted = lines[:13] + [shuffled + "\n"] + lines[13:]
    (tmp_path / "p.txt").write_text("".join(planted), encoding="utf-8")
    out, _ = per_line(english_run, tmp_path / "p.txt")
    ranked = sorted(out, key=lambda x: -(x["bits_per_char"] or 0))
    assert ranked[0]["line"] == 14 and ranked[0]["text"] == shuffled
    assert ranked[0]["bits_per_char"] > 2 * ranked[len(ranked) // 2]["bits_per_char"]  # median
    assert ranked[0]["worst_prob"] < 1e-3


def test_several_files_and_stdin(english_run, tmp_path):
    # 768 and 1,024 predictions: full windows only in one pass
    (tmp_path / "a.txt").write_text(ENGLISH[:769], encoding="utf-8")
    (tmp_path / "b.txt").write_text(ENGLISH[769:1794], encoding="utf-8")
    r = evaluate_json(english_run, tmp_path / "a.txt", tmp_path / "b.txt", "--streams", 1)
    a, b = r["files"]
    nats = a["loss_nats"] * a["predictions"] + b["loss_nats"] * b["predictions"]
    assert r["total"]["predictions"] == a["predictions"] + b["predictions"]
    assert r["total"]["loss_nats"] == pytest.approx(nats / r["total"]["predictions"])
    assert r["total"]["bits_per_char"] == pytest.approx(
        (a["nats"] + b["nats"]) / LOG2 / (a["chars"] + b["chars"] - 2)
    )
    piped = json.loads(
        ok(run("evaluate", english_run, "-", "--json", "--streams", 1, input=ENGLISH[:769])).stdout
    )
    assert piped["files"][0]["loss_nats"] == pytest.approx(a["loss_nats"], rel=1e-9)
    human = ok(run("evaluate", english_run, tmp_path / "a.txt", tmp_path / "b.txt"))
    assert human.stdout == "" and "total:" in human.stderr and "bits/char" in human.stderr


def test_evaluate_errors(english_run, tmp_path):
    r = run("evaluate", english_run, tmp_path / "missing.txt")
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and "does not exist" in r.stderr
    (tmp_path / "one.txt").write_text("a", encoding="utf-8")
    r = run("evaluate", english_run, tmp_path / "one.txt")
    assert r.exit_code == 1 and r.stderr == (
        f"Error: {tmp_path / 'one.txt'} has 1 character(s) of which the model can read 1; "
        "scoring needs at least 2 (the first is only context)\n"
    )
    (tmp_path / "odd.txt").write_text("a∑∑", encoding="utf-8")
    r = run("evaluate", english_run, tmp_path / "odd.txt", "--per-line")
    assert r.exit_code == 1 and r.stdout == "" and "can read 1;" in r.stderr
    r = run("evaluate", english_run, tmp_path / "one.txt", "--per-line", "--json")
    assert r.exit_code == 2 and "give --json or --per-line, not both" in r.stderr
    r = run("evaluate", tmp_path, tmp_path / "one.txt")
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1


# --- big files: read and scored in parts of scoring.CHUNK characters -----------------------


@pytest.fixture
def chunk(monkeypatch):
    """Set scoring.CHUNK (characters per part) for the CLI in this process."""
    from charrnn.analysis import scoring

    return lambda n: monkeypatch.setattr(scoring, "CHUNK", n)


def test_parts_follow_the_definition(english, english_run, held, chunk):
    """A file longer than a part: each part is cut into its own pieces, each warming up on
    the 256 symbols before it (in the previous part); --streams 1 carries the state from
    part to part, so it is one pass exactly; lines crossing parts are whole."""
    text, path, whole, lines = HELD, held["path"], held["whole"], held["lines"]
    ids = english.vocab.encode(text)
    chunk(1025)  # a one-pass part reads 1,024, 1,025 or 256 symbols: widths 256 and 1
    # parts of 1,025 symbols: targets 1-1024, 1025-2049, 2050-2305, one piece each (auto) ...
    f = evaluate_json(english_run, path)["files"][0]
    want = hand_nats(english.model, ids, firsts=[1, 1025, 2050])
    assert f["predictions"] == len(ids) - 1 and f["chars"] == len(text)
    assert f["loss_nats"] == pytest.approx(want.mean(), rel=1e-5)
    assert f["loss_nats"] == pytest.approx(whole["loss_nats"], rel=1e-3)  # warm-up: close
    # ... or two pieces each
    f = evaluate_json(english_run, path, "--streams", 2)["files"][0]
    want = hand_nats(english.model, ids, firsts=[1, 513, 1025, 1538, 2050, 2178])
    assert f["loss_nats"] == pytest.approx(want.mean(), rel=1e-5)
    # one pass, state carried: the same figures and lines as a file of one part
    f = evaluate_json(english_run, path, "--streams", 1)["files"][0]
    for k, v in whole.items():
        assert f[k] == (pytest.approx(v, rel=1e-6) if isinstance(v, float) else v), k
    mine, _ = per_line(english_run, path, "--streams", 1)
    assert len(mine) == len(lines) == len(text.splitlines())
    crossing = [
        i
        for i, x in enumerate(lines)
        if sum(y["chars"] for y in lines[:i]) // 1025
        != (sum(y["chars"] for y in lines[: i + 1]) - 1) // 1025
    ]
    assert len(crossing) == 2  # characters 1,025 and 2,050 fall in
    for a, b in zip(mine, lines):
        approx = ("bits", "bits_per_char", "worst_prob", "worst_bits")
        assert {k: v for k, v in a.items() if k not in approx} == {
            k: v for k, v in b.items() if k not in approx
        }
        assert [a[k] for k in approx] == pytest.approx([b[k] for k in approx], rel=1e-6)


def test_parts_with_jamo_and_outside_characters(korean_run, tmp_path, chunk):
    """Parts of 37 characters cut syllables' jamo runs and lines apart; characters outside
    the vocabulary (one starts the file: context with the first readable one) are charged
    alike; one pass gives the figures and lines of the whole file."""
    text = "€" + KOREAN[:100] + "닼" + KOREAN[100:200] + "€" + KOREAN[200:300]
    (tmp_path / "k.txt").write_text(text, encoding="utf-8")
    whole = evaluate_json(korean_run, tmp_path / "k.txt", "--streams", 1)["files"][0]
    lines, _ = per_line(korean_run, tmp_path / "k.txt", "--streams", 1)
    assert whole["oov_chars"] == 3 and whole["scored_chars"] == len(text) - 2
    chunk(37)
    f = evaluate_json(korean_run, tmp_path / "k.txt", "--streams", 1)["files"][0]
    for k, v in whole.items():
        assert f[k] == (pytest.approx(v, rel=1e-6) if isinstance(v, float) else v), k
    mine, _ = per_line(korean_run, tmp_path / "k.txt", "--streams", 1)
    assert [(x["text"], x["chars"], x["oov_chars"], x["worst_char"]) for x in mine] == [
        (x["text"], x["chars"], x["oov_chars"], x["worst_char"]) for x in lines
    ]
    assert [x["bits"] for x in mine] == pytest.approx([x["bits"] for x in lines], rel=1e-6)


def test_a_file_the_model_cannot_read_across_parts(english_run, tmp_path, chunk):
    """Nothing readable in the first parts: they are all context, no line is printed
    before the error a file without two readable characters gets."""
    chunk(100)
    (tmp_path / "odd.txt").write_text("∑" * 250 + "a" + "∑" * 250, encoding="utf-8")
    r = run("evaluate", english_run, tmp_path / "odd.txt", "--per-line")
    assert (
        r.exit_code == 1
        and r.stdout == ""
        and r.stderr
        == (
            f"Error: {tmp_path / 'odd.txt'} has 501 character(s) of which the model can read 1; "
            "scoring needs at least 2 (the first is only context)\n"
        )
    )
    (tmp_path / "late.txt").write_text("∑" * 250 + ENGLISH[:500], encoding="utf-8")
    f = evaluate_json(english_run, tmp_path / "late.txt", "--streams", 1)["files"][0]
    assert f["scored_chars"] == 750 - 251 and f["oov_chars"] == 250 and f["oov_bits"] == 0
    assert f["predictions"] == 499


def test_memory_is_flat_in_the_file_size(english_run, tmp_path):
    """`charrnn evaluate` in a child process, on a 250,000-character file and then on a
    4,000,000-character one: its peak RSS after the second is within 2 bytes a character
    of its peak after the first (the whole-file path took ~140 bytes a character; holding
    the file's ids alone would take 4).  One child for both (a second would start
    TensorFlow again); the first peak is the child's own getrusage, the second the one
    wait4 reports.  Parts of 65,536 characters, read 65,536 bytes at a time, so the test
    takes seconds; benchmarks/bench_evaluate.py measures the shipped sizes."""
    import os
    import subprocess
    import sys

    code = (
        "import resource, sys; from charrnn.analysis import scoring; "
        "import charrnn.text.decode as d; scoring.CHUNK = d.CHUNK_BYTES = 65536; "
        "from charrnn.cli import main; run, first, then, peak = sys.argv[1:]; "
        "status = main(['evaluate', run, first, '--json']); "
        "open(peak, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); "
        "sys.exit(status or main(['evaluate', run, then, '--json']))"
    )
    big = (ENGLISH * (4_000_000 // len(ENGLISH) + 1))[:4_000_000]
    sizes = (250_000, 4_000_000)
    for n in sizes:
        (tmp_path / f"{n}.txt").write_text(big[:n], encoding="utf-8")
    with open(tmp_path / "out", "w+") as out, open(tmp_path / "err", "w+") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(english_run)]
            + [str(tmp_path / f"{n}.txt") for n in sizes]
            + [str(tmp_path / "peak")],
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        assert child.returncode == 0, err.read()
        assert [json.loads(line)["total"]["chars"] for line in out] == list(sizes)
    peak = {250_000: int((tmp_path / "peak").read_text()) * 1024}
    peak[4_000_000] = usage.ru_maxrss * 1024
    assert peak[4_000_000] - peak[250_000] < 2 * 3_750_000, peak
