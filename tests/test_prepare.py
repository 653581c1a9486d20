"""`charrnn prepare` and `charrnn dump` through the real CLI, on real text in real encodings."""

import codecs
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from charrnn.store.dataset import load_dataset
from charrnn.errors import CharrnnError
from clihelp import ok, run

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
    assert ("jamo on (auto): Hangul syllables 69% of the characters, 12,996 of them, 355 "
            "distinct: jamo, for so little text\n") in r.stderr
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

    assert auto(KOREAN * 2) == (False, "jamo off (auto): Hangul syllables 69% of the characters, "
                                "25,992 of them, 355 distinct: whole syllables, which train "
                                "better on such text")
    jamo, why = auto(KOREAN * 2 + "The quick brown fox jumps over the lazy dog. " * 500)
    assert jamo and why.endswith("43% of the characters, 25,992 of them, 355 distinct: jamo, "
                                 "which train better on text this mixed")
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


@pytest.mark.parametrize("raw,expected_encoding", [
    (SAMPLE.encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF8 + SAMPLE.encode("utf-8"), "utf-8-sig"),
    ((SAMPLE + CP949_ONLY).encode("cp949"), "cp949"),
    (SAMPLE.encode("euc-kr"), "cp949"),  # an EUC-KR guess is decoded as CP949, its superset
    (codecs.BOM_UTF16_LE + SAMPLE.encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + SAMPLE.encode("utf-16-be"), "utf-16"),
    (SAMPLE.encode("utf-16-le"), "utf-16-le"),
    (SAMPLE.encode("utf-16-be"), "utf-16-be"),
], ids=["utf8", "utf8-bom", "cp949", "euc-kr", "utf16le-bom", "utf16be-bom", "utf16le", "utf16be"])
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
    assert (inp["encoding"], inp["confidence"], inp["encoding_source"]) == ("cp949", None, "override")
    assert dump(tmp_path / "e") == p.read_bytes().decode("cp949")


# --- inputs: stdin, directories, several files -------------------------------------

def test_stdin_through_a_real_pipe(tmp_path):
    src = DATA / "dahdi_drivers.c"
    out = tmp_path / "linux"
    with open(src, "rb") as f:
        p = subprocess.run([sys.executable, "-m", "charrnn", "prepare", "-", "-o", str(out)],
                           stdin=f, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert b"standard input" in p.stderr and p.stdout == b""
    assert meta(out)["inputs"][0]["path"] == "-"
    d = subprocess.run([sys.executable, "-m", "charrnn", "dump", str(out)], capture_output=True,
                       timeout=120)
    assert d.returncode == 0 and d.stdout == src.read_bytes()


def test_stdin_default_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepare("-", input="hello world\n" * 10)
    assert dump(tmp_path / "data" / "stdin") == "hello world\n" * 10


def test_directory_with_include_globs_sorted(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / ".git").mkdir()
    files = {"b.c": "int b;\n", "a.h": "#define A 1\n", "sub/c.c": "/* c */\n", "x.txt": "skip me\n",
             ".git/y.c": "hidden\n", "empty.c": ""}
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
    r = prepare(DATA / "dahdi_drivers.c", "-o", tmp_path / "d", "--json", "--val-fraction", "0.1",
                "--test-fraction", "0.1")
    s = json.loads(r.stdout)
    assert s == {"out": str(tmp_path / "d"), "vocab_size": len(load_dataset(tmp_path / "d").vocab),
                 **meta(tmp_path / "d")}
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
    fails(run("prepare", tmp_path / "src", "--include", "*.c", "-o", tmp_path / "d"), "*.c", "--include")
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
    err = fails(run("prepare", p, "-o", tmp_path / "d"), str(p), f"offset {len(good) + 3} ", "--errors replace")
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
