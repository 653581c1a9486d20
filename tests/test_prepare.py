"""`charrnn prepare` and `charrnn dump` through the real CLI, on real text in real encodings."""

import codecs
import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clihelp import ok, run

from charrnn.errors import CharrnnError
from charrnn.store.dataset import load_dataset

DATA = Path(__file__).resolve().parent.parent / "data"
KOREAN = (DATA / "korean_constitution.txt").read_text(encoding="utf-8").replace("\r\n", "\n")


def dump(path, split="all"):
    return ok(run("dump", path, "--split", split)).stdout_bytes.decode("utf-8")


def prepare(*args, input=None):
    return ok(run("prepare", *args, input=input))


def meta(path):
    return json.loads((Path(path) / "meta.json").read_text(encoding="utf-8"))


# --- round trips on the shipped corpora ----------------------------------------


@pytest.mark.parametrize("name", ["shakespeare.txt", "dahdi_drivers.c", "korean_constitution.txt"])
def test_round_trip_shipped_corpora(tmp_path, name):
    src = DATA / name
    out = tmp_path / "ds"
    prepare(src, "-o", out, "--test-fraction", "0.05")
    expected = src.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    assert dump(out) == expected
    # the three splits are contiguous and cut no character (or syllable) in two
    assert dump(out, "train") + dump(out, "val") + dump(out, "test") == expected
    m = meta(out)
    assert m["jamo"]["applied"] == (name == "korean_constitution.txt")  # --jamo auto
    assert m["chars"] == len(expected)
    assert sum(s["chars"] for s in m["splits"].values()) == len(expected)
    assert m["splits"]["val"]["chars"] == round(len(expected) * 0.05)
    ds = load_dataset(out)
    assert sum(len(ds.split(s)) for s in ("train", "val", "test")) == m["symbols"]
    assert ds.split("train").dtype == np.dtype(m["dtype"]) == np.uint8


def test_korean_jamo_auto(tmp_path):
    """--jamo auto: whole syllables only for mostly-Hangul text of at most 1,000 distinct
    syllables and 20,000 in all (where they were measured better); else jamo, saying why."""
    r = prepare(DATA / "korean_constitution.txt", "-o", tmp_path / "on")
    assert (
        "jamo on (auto): Hangul syllables 69% of the characters, 12,996 of them, 355 "
        "distinct: jamo, for so little text\n"
    ) in r.stderr
    prepare(DATA / "korean_constitution.txt", "-o", tmp_path / "off", "--jamo", "off")
    on, off = load_dataset(tmp_path / "on"), load_dataset(tmp_path / "off")
    assert on.meta["jamo"]["requested"] == "auto" and on.meta["jamo"]["applied"] is True
    assert "why" not in off.meta["jamo"]
    assert on.vocab.jamo and on.vocab.to_json()["jamo"] == "conjoining+escape/1"
    assert len(on.vocab) < 150 < 300 < len(off.vocab)
    assert on.meta["symbols"] > on.meta["chars"] == off.meta["symbols"] == len(KOREAN)
    assert off.split("train").dtype == np.uint16
    assert dump(tmp_path / "off") == KOREAN == dump(tmp_path / "on")

    def auto(text):
        r = prepare("-", "-o", tmp_path / "x", "--force", input=text.encode("utf-8"))
        return load_dataset(tmp_path / "x").vocab.jamo, r.stderr.splitlines()[-3]

    assert auto(KOREAN * 2) == (
        False,
        "jamo off (auto): Hangul syllables 69% of the characters, "
        "25,992 of them, 355 distinct: whole syllables, which train "
        "better on such text",
    )
    jamo, why = auto(KOREAN * 2 + "The quick brown fox jumps over the lazy dog. " * 500)
    assert jamo and why.endswith(
        "43% of the characters, 25,992 of them, 355 distinct: jamo, "
        "which train better on text this mixed"
    )
    jamo, why = auto("".join(chr(0xAC00 + i) for i in range(1001)) * 20)
    assert jamo and why.endswith("1,001 distinct: jamo, for so many distinct syllables")


def test_keep_newlines_exact_bytes(tmp_path):
    src = DATA / "korean_constitution.txt"
    prepare(src, "-o", tmp_path / "k", "--keep-newlines")
    assert dump(tmp_path / "k").encode("utf-8") == src.read_bytes()
    assert meta(tmp_path / "k")["newlines"] == "keep"


def test_mixed_newlines_normalised(tmp_path):
    p = tmp_path / "nl.txt"
    p.write_bytes(b"one\r\ntwo\rthree\nfour\r\n" * 5)
    prepare(p, "-o", tmp_path / "d", "--val-fraction", "0.2")
    assert dump(tmp_path / "d") == "one\ntwo\nthree\nfour\n" * 5
    assert meta(tmp_path / "d")["newlines"] == "lf"


# --- encodings ------------------------------------------------------------------

SAMPLE = KOREAN[:3000]
CP949_ONLY = "똠방각하 펲시콜라 쀍"  # not in EUC-KR (KS X 1001), only in CP949


@pytest.mark.parametrize(
    "raw,expected_encoding",
    [
        (SAMPLE.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + SAMPLE.encode("utf-8"), "utf-8-sig"),
        ((SAMPLE + CP949_ONLY).encode("cp949"), "cp949"),
        (SAMPLE.encode("euc-kr"), "cp949"),  # an EUC-KR guess is decoded as CP949, its superset
        (codecs.BOM_UTF16_LE + SAMPLE.encode("utf-16-le"), "utf-16"),
        (codecs.BOM_UTF16_BE + SAMPLE.encode("utf-16-be"), "utf-16"),
        (SAMPLE.encode("utf-16-le"), "utf-16-le"),
        (SAMPLE.encode("utf-16-be"), "utf-16-be"),
    ],
    ids=["utf8", "utf8-bom", "cp949", "euc-kr", "utf16le-bom", "utf16be-bom", "utf16le", "utf16be"],
)
def test_encodings_detected_and_exact(tmp_path, raw, expected_encoding):
    p = tmp_path / "in.txt"
    p.write_bytes(raw)
    r = prepare(p, "-o", tmp_path / "d")
    text = raw.decode(expected_encoding)
    assert dump(tmp_path / "d") == text
    inp = meta(tmp_path / "d")["inputs"][0]
    assert inp["encoding"] == expected_encoding and inp["encoding_source"] == "detected"
    assert inp["confidence"] >= 0.5 and inp["bytes"] == len(raw)
    assert expected_encoding in r.stderr and "confidence" in r.stderr


def test_cp949_only_syllable_after_euc_kr_looking_start(tmp_path):
    # The first 64 KB chardet sees are plain EUC-KR; the CP949-only syllables come later.
    text = (KOREAN * 3) + CP949_ONLY + "\n"
    raw = text.encode("cp949")
    assert len(KOREAN.encode("cp949")) * 2 < 1 << 16 < len(raw) - len(CP949_ONLY) * 2
    p = tmp_path / "late.txt"
    p.write_bytes(raw)
    prepare(p, "-o", tmp_path / "d")
    assert dump(tmp_path / "d") == text
    assert meta(tmp_path / "d")["inputs"][0]["encoding"] == "cp949"


def test_short_cp949_text_low_confidence_warning_and_override(tmp_path):
    p = tmp_path / "short.txt"
    p.write_bytes(("안녕하세요 반갑습니다.\n" + CP949_ONLY + "\n").encode("cp949") * 2)
    r = prepare(p, "-o", tmp_path / "d", "--val-fraction", "0.1")
    assert "Warning:" in r.stderr and "low confidence" in r.stderr and "--encoding" in r.stderr
    r = prepare(p, "-o", tmp_path / "e", "--val-fraction", "0.1", "--encoding", "cp949")
    assert "Warning" not in r.stderr
    inp = meta(tmp_path / "e")["inputs"][0]
    assert (inp["encoding"], inp["confidence"], inp["encoding_source"]) == (
        "cp949",
        None,
        "override",
    )
    assert dump(tmp_path / "e") == p.read_bytes().decode("cp949")


# --- inputs: stdin, directories, several files -------------------------------------


def test_stdin_through_a_real_pipe(tmp_path):
    src = DATA / "dahdi_drivers.c"
    out = tmp_path / "linux"
    with open(src, "rb") as f:
        p = subprocess.run(
            [sys.executable, "-m", "charrnn", "prepare", "-", "-o", str(out)],
            stdin=f,
            capture_output=True,
            timeout=120,
        )
    assert p.returncode == 0, p.stderr.decode()
    assert b"standard input" in p.stderr and p.stdout == b""
    assert meta(out)["inputs"][0]["path"] == "-"
    d = subprocess.run(
        [sys.executable, "-m", "charrnn", "dump", str(out)], capture_output=True, timeout=120
    )
    assert d.returncode == 0 and d.stdout == src.read_bytes()


def test_stdin_default_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepare("-", input="hello world\n" * 10)
    assert dump(tmp_path / "data" / "stdin") == "hello world\n" * 10


def test_directory_with_include_globs_sorted(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / ".git").mkdir()
    files = {
        "b.c": "int b;\n",
        "a.h": "#define A 1\n",
        "sub/c.c": "/* c */\n",
        "x.txt": "skip me\n",
        ".git/y.c": "hidden\n",
        "empty.c": "",
    }
    for name, body in files.items():
        (src / name).write_text(body * 5)
    monkeypatch.chdir(tmp_path)
    r = prepare("src", "--include", "*.c", "--include", "*.h", "--json")
    assert dump(tmp_path / "data" / "src") == "#define A 1\n" * 5 + "int b;\n" * 5 + "/* c */\n" * 5
    s = json.loads(r.stdout)
    assert [os.path.relpath(i["path"], "src") for i in s["inputs"]] == ["a.h", "b.c", "sub/c.c"]


def test_several_inputs_concatenated(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first file\n" * 5, encoding="utf-8")
    b.write_bytes(("둘째 파일\n" * 5).encode("utf-16"))
    prepare(a, b, "-o", tmp_path / "d")
    assert dump(tmp_path / "d") == "first file\n" * 5 + "둘째 파일\n" * 5
    assert [i["encoding"] for i in meta(tmp_path / "d")["inputs"]] == ["utf-8", "utf-16"]


# --- options ----------------------------------------------------------------------


def test_min_count_maps_rare_symbols_to_unknown(tmp_path):
    p = tmp_path / "rare.txt"
    p.write_text("abab\n" * 20 + "zq\n" + "abab\n" * 20, encoding="utf-8")
    r = prepare(p, "-o", tmp_path / "d", "--min-count", "2", "--json")
    s = json.loads(r.stdout)
    assert s["unk_replaced"] == 2 and s["min_count"] == 2
    ds = load_dataset(tmp_path / "d")
    assert ds.vocab.symbols == ["\n", "a", "b", "\ufffd"] and ds.vocab.unk_id == 3
    assert ds.vocab.counts[3] == 2
    assert dump(tmp_path / "d") == "abab\n" * 20 + "\ufffd\ufffd\n" + "abab\n" * 20
    prepare(p, "-o", tmp_path / "all")
    assert load_dataset(tmp_path / "all").vocab.unk_id is None  # the default keeps everything


def test_json_summary_and_quiet(tmp_path):
    r = prepare(
        DATA / "dahdi_drivers.c",
        "-o",
        tmp_path / "d",
        "--json",
        "--val-fraction",
        "0.1",
        "--test-fraction",
        "0.1",
    )
    s = json.loads(r.stdout)
    assert s == {
        "out": str(tmp_path / "d"),
        "vocab_size": len(load_dataset(tmp_path / "d").vocab),
        **meta(tmp_path / "d"),
    }
    assert s["split"] == {"method": "contiguous", "val_fraction": 0.1, "test_fraction": 0.1}
    assert "Wrote" in r.stderr and "vocabulary" in r.stderr
    r = prepare(DATA / "dahdi_drivers.c", "-o", tmp_path / "q", "--quiet")
    assert r.stdout == "" and r.stderr == ""


# --- bad input: one Error line, non-zero exit, nothing left behind --------------------


def fails(result, *words):
    assert result.exit_code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def leftovers(parent):
    return sorted(p.name for p in Path(parent).iterdir())


def test_missing_path(tmp_path):
    fails(run("prepare", tmp_path / "nope.txt", "-o", tmp_path / "d"), "does not exist")
    assert leftovers(tmp_path) == []


def test_directory_without_matching_files(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("text\n")
    fails(
        run("prepare", tmp_path / "src", "--include", "*.c", "-o", tmp_path / "d"),
        "*.c",
        "--include",
    )
    assert leftovers(tmp_path) == ["src"]


def test_empty_inputs(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    fails(run("prepare", tmp_path / "empty.txt", "-o", tmp_path / "d"), "empty")
    fails(run("prepare", "-", "-o", tmp_path / "d", input=""), "standard input is empty")
    (tmp_path / "bom.txt").write_bytes(codecs.BOM_UTF8)
    fails(run("prepare", tmp_path / "bom.txt", "-o", tmp_path / "d"), "no text")
    assert leftovers(tmp_path) == ["bom.txt", "empty.txt"]


def test_binary_files(tmp_path):
    exe = os.path.realpath(sys.executable)
    fails(run("prepare", exe, "-o", tmp_path / "d"), "binary", exe)
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"looks like text\n" * 5000 + b"\0\1\2 and then not\n")
    fails(run("prepare", nul, "-o", tmp_path / "d"), "binary", "offset 80000")
    assert leftovers(tmp_path) == ["nul.txt"]


def test_undecodable_bytes(tmp_path):
    p = tmp_path / "bad.txt"
    good = "plain text, then a stray byte\n" * 4000  # beyond chardet's sample, so utf-8 is detected
    p.write_bytes(good.encode() + b"caf\xe9\n")
    err = fails(
        run("prepare", p, "-o", tmp_path / "d"),
        str(p),
        f"offset {len(good) + 3} ",
        "--errors replace",
    )
    assert "utf-8" in err
    assert leftovers(tmp_path) == ["bad.txt"]
    prepare(p, "-o", tmp_path / "d", "--errors", "replace")
    assert dump(tmp_path / "d") == good + "caf\ufffd\n"


def test_existing_output_refused_and_force_replaces_only_when_complete(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("old corpus text\n" * 10)
    out = tmp_path / "d"
    prepare(src, "-o", out)
    fails(run("prepare", src, "-o", out), "already exists", "--force")
    src.write_text("new corpus text\n" * 10)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\0" * 100)
    fails(run("prepare", src, bad, "-o", out, "--force"), "binary")
    assert dump(out) == "old corpus text\n" * 10  # the old dataset survived the failed --force
    assert leftovers(tmp_path) == ["a.txt", "bad.bin", "d"]
    prepare(src, "-o", out, "--force")
    assert dump(out) == "new corpus text\n" * 10
    assert leftovers(tmp_path) == ["a.txt", "bad.bin", "d"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    fails(run("prepare", src, "-o", tmp_path / "mine", "--force"), "not a prepared dataset")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_corpus_too_small_for_split(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text("hi there\n")
    fails(run("prepare", p, "-o", tmp_path / "sub" / "d"), "too small", "val", "--val-fraction")
    assert leftovers(tmp_path) == ["tiny.txt"]  # not even the parent directory is left
    prepare(p, "-o", tmp_path / "d", "--val-fraction", "0")
    assert dump(tmp_path / "d") == "hi there\n"


def test_bad_encoding_name_and_bad_dataset(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("text\n" * 20)
    fails(run("prepare", p, "-o", tmp_path / "d", "--encoding", "klingon"), "unknown encoding")
    fails(run("dump", tmp_path / "nothing"), "not a prepared dataset", "charrnn prepare")
    with pytest.raises(CharrnnError, match="not a prepared dataset"):
        load_dataset(tmp_path)


# --- rare symbols -------------------------------------------------------------------


def test_rare_symbols_note_says_what_min_count_would_give(tmp_path):
    """A long tail of rare symbols (300 ideographs once each beside the plays): the summary
    says how many, their share of the text, and offers --min-count 10 (0.065% of the text
    unknown) but not 100 (0.13%, over the 0.1% an option may cost)."""
    rare = tmp_path / "rare.txt"
    rare.write_text("".join(chr(0x4E00 + i) for i in range(300)) + "\n", encoding="utf-8")
    r = prepare(DATA / "shakespeare.txt", rare, "-o", tmp_path / "d")
    lines = r.stderr.splitlines()
    i = lines.index(
        "Rare symbols: 315 of the 375 symbols are seen fewer than 100 times (0.13% of "
        "the text), but each costs the output layer as much as a common one: "
        "training time grows with the vocabulary"
    )
    assert lines[i + 1] == "  --min-count 10 would give 69 symbols (0.065% of the text -> U+FFFD)"
    counts = collections.Counter(
        (DATA / "shakespeare.txt").read_text(encoding="utf-8") + rare.read_text(encoding="utf-8")
    )
    chars = sum(counts.values())
    below = {n: sum(c for c in counts.values() if c < n) for n in (10, 100)}
    assert (below[10], sum(c < 10 for c in counts.values())) == (307, 307)  # each seen once
    m = meta(tmp_path / "d")
    assert m["rare_symbols"] == {
        "below": 100,
        "symbols": 315,
        "share": below[100] / chars,
        "note": True,
        "options": [
            {"min_count": 10, "vocab_size": 69, "unk_share": 307 / chars, "offered": True},
            {"min_count": 100, "vocab_size": 61, "unk_share": below[100] / chars, "offered": False},
        ],
    }
    # taking the offer: exactly the symbols seen fewer than 10 times become U+FFFD
    prepare(DATA / "shakespeare.txt", rare, "-o", tmp_path / "f", "--min-count", "10")
    folded = load_dataset(tmp_path / "f")
    assert len(folded.vocab) == 69 and folded.meta["unk_replaced"] == 307
    assert folded.meta["rare_symbols"]["options"] == [
        {"min_count": 100, "vocab_size": 61, "unk_share": below[100] / chars, "offered": False}
    ]
    assert (
        "Rare symbols"
        not in ok(
            run(
                "prepare", DATA / "shakespeare.txt", rare, "-o", tmp_path / "g", "--min-count", "10"
            )
        ).stderr
    )


def test_no_rare_symbols_note_where_folding_would_cost_text_or_the_vocabulary_is_small(tmp_path):
    # Korean syllables: 339 of 380 are rare, but folding them would lose 3% (10) or 33% (100)
    r = prepare(DATA / "korean_constitution.txt", "-o", tmp_path / "k", "--jamo", "off")
    assert "Rare symbols" not in r.stderr
    k = meta(tmp_path / "k")["rare_symbols"]
    assert (k["symbols"], k["note"]) == (339, False)
    assert [(o["min_count"], o["vocab_size"], o["offered"]) for o in k["options"]] == [
        (10, 206, False),
        (100, 42, False),
    ]
    # a small vocabulary: the output layer costs little whatever the counts
    p = tmp_path / "small.txt"
    rare = "".join(chr(0x4E00 + i) for i in range(40))
    p.write_text("the quick brown fox\n" * 2000 + rare + "\n", encoding="utf-8")
    r = prepare(p, "-o", tmp_path / "s")
    s = meta(tmp_path / "s")["rare_symbols"]
    assert "Rare symbols" not in r.stderr and s["symbols"] == 40 and s["note"] is False
    assert s["options"][0]["offered"] is True  # cheap, yet not worth a note at 57 symbols
    # --vocab-from keeps the run's symbols whatever their counts: no report
    prepare(p, "-o", tmp_path / "v", "--vocab-from", tmp_path / "s")
    assert "rare_symbols" not in meta(tmp_path / "v")


# --- many small files ---------------------------------------------------------------

SITE = Path(np.__file__).resolve().parent.parent  # the installed packages' directory


def installed_sources(n):
    """``n`` real .py files of installed packages (deterministic: sorted, evenly spaced)."""
    files = sorted(
        p
        for pkg in ("numpy", "click", "chardet", "tqdm", "yaml")
        if (SITE / pkg).is_dir()
        for p in (SITE / pkg).rglob("*.py")
        if p.stat().st_size and not any(d.startswith(".") for d in p.relative_to(SITE).parts)
    )
    assert len(files) >= n
    return files[:: len(files) // n][:n]


def test_plain_ascii_fast_path_answers_as_chardet_does():
    """detect_encoding answers plain ASCII without chardet (fast=True); it must say what
    chardet says, on real files and on the ASCII texts chardet reads as something else."""
    from charrnn.text.decode import detect_encoding, plain_ascii

    samples = [p.read_bytes()[: 1 << 16] for p in installed_sources(400)]
    samples += [(DATA / n).read_bytes() for n in ("shakespeare.txt", "dahdi_drivers.c")]
    fast = [s for s in samples if plain_ascii(s)]
    assert len(fast) > len(samples) // 2  # the fast path does its job on source code
    for s in samples:
        assert detect_encoding(s) == detect_encoding(s, fast=False)
    for s in fast:
        assert detect_encoding(s, fast=False) == ("utf-8", 1.0)  # chardet: ascii, certain

    tricky = {  # plain ASCII bytes that chardet reads otherwise, and what it reads
        b"# -*- coding: latin-1 -*-\nx = 1\n": ("iso8859-1", 0.95),  # PEP 263
        b'<?xml version="1.0" encoding="iso-8859-1"?>\n<a/>\n': ("iso8859-1", 0.95),
        b'<html><head><meta charset="windows-1252"></head></html>\n': ("cp1252", 0.95),
        b"~{<:Ky2;S{#,NpJ)l6HK!#~}\n": ("hz", 0.95),  # HZ-GB-2312
        b"Hi Mom -+Jjo--!\n": ("utf-7", 0.95),  # RFC 2152
        b"a\x0cb\n": ("cp1252", 0.1),  # a form feed
    }
    for s, expected in tricky.items():
        assert not plain_ascii(s)
        assert detect_encoding(s) == detect_encoding(s, fast=False) == expected, s
    for s in (
        b"%PDF-1.4\ntext\n",
        b"GIF89a text\n",
        b"BM text\n",
        b"MZ text\n",
        b"ID3 text\n",
        b"x" * 257 + b"ustar  text\n",
    ):  # binary signatures
        assert not plain_ascii(s)
        with pytest.raises(CharrnnError, match="looks like a binary file"):
            detect_encoding(s)
    assert plain_ascii(b"x = a+b + c\n") and plain_ascii(b"plain text\n")


def test_many_small_files_make_the_same_dataset_as_their_concatenation(tmp_path):
    """Small files' text is gathered into large chunks (and detected by the fast path):
    the dataset is the one their concatenation gives, and every file is recorded."""
    import hashlib

    files = installed_sources(300)
    tree = tmp_path / "tree"
    for i, p in enumerate(files):
        dst = tree / f"{i // 100:02d}" / f"{i % 100:02d}_{p.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    cat = tmp_path / "all.py"
    cat.write_bytes(b"".join(p.read_bytes() for p in files))
    r = prepare(tree, "-o", tmp_path / "many", "--include", "*.py", "--json")
    prepare(cat, "-o", tmp_path / "one")
    many, one = load_dataset(tmp_path / "many"), load_dataset(tmp_path / "one")
    assert many.vocab.symbols == one.vocab.symbols and many.vocab.counts == one.vocab.counts
    for split in ("train", "val"):
        assert np.array_equal(many.split(split), one.split(split))
    inputs = json.loads(r.stdout)["inputs"]
    assert len(inputs) == 300
    for i, p in zip(inputs, files):
        raw = p.read_bytes()
        assert (i["bytes"], i["sha256"]) == (len(raw), hashlib.sha256(raw).hexdigest())
        assert i["encoding"] == "utf-8"
