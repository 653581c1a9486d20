"""The novelty report: what a sample shares with the training text, and where."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from clihelp import error_line, ok, run
from conftest import ENGLISH, KOREAN

from charrnn.analysis.novelty import RUN, NoveltyIndex, cache_root, dataset_index, index_for
from charrnn.analysis.suffixes import PEAK_PER_SYMBOL
from charrnn.store.dataset import iter_dump, load_dataset
from charrnn.store.loader import load


def longest_common(a, b):
    """(length, start in a, start in b) of the longest common substring, by brute force."""
    best = (0, 0, 0)
    prev = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        cur = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best[0]:
                    best = (cur[j], i - cur[j], j - cur[j])
        prev = cur
    return best


def test_a_planted_training_line_is_found_at_its_exact_position():
    text = ENGLISH
    index = NoveltyIndex.build(text)
    lines = text.split("\n")
    k = 4  # "conceived and so dedicated, can long endure. ..."
    line = lines[k]
    offset = text.index(line)
    sample = "qz" + line + "zq" + "xy" * 20
    r = index.report(sample)
    assert (r["longest"], r["longest_text"]) == (len(line), line)
    assert (r["offset"], r["line"], r["column"]) == (offset, k + 1, 1)
    assert r[f"copied_{RUN}"] == pytest.approx(len(line) / len(sample), abs=1e-4)
    # in the middle of a line: its column
    r = index.report("qz" + line[10:50] + "zq")
    assert (r["offset"], r["line"], r["column"]) == (offset + 10, k + 1, 11)
    assert index.report("\u00e9\u00e8")["longest"] == 0


def check_against_brute_force(index, text, sample):
    """Every position's longest match is in ``text`` where the index says, and one
    character longer is not in ``text`` at all."""
    lengths, where = index.matches(sample)
    for i in range(len(sample)):
        n = int(lengths[i])
        if n:
            assert text[where[i] : where[i] + n] == sample[i : i + n], (i, n, where[i])
        else:
            assert where[i] == -1
        assert i + n == len(sample) or sample[i : i + n + 1] not in text, (i, n)


@pytest.mark.parametrize(
    "alphabet",
    [
        "abcab \n",
        "".join(map(chr, range(32, 127)))
        + "".join(map(chr, range(0x391, 0x3C9)))
        + "".join(map(chr, range(0x4E00, 0x4F00))),
    ],
)
def test_matching_statistics_agree_with_brute_force(alphabet):
    # the second alphabet has 470 characters: most two-byte codes, ranked by count
    rng = np.random.default_rng(0)
    weights = 1 / np.arange(1, len(alphabet) + 1)
    text = "".join(rng.choice(list(alphabet), 3000, p=weights / weights.sum()))
    index = NoveltyIndex.build(text)
    for _ in range(5):
        at = int(rng.integers(0, 2900))
        sample = text[at : at + 40] + "".join(rng.choice(list(alphabet[:5] + "\u00e9"), 80))
        check_against_brute_force(index, text, sample)


def prepared(tmp_path, name, text, *args):
    src = tmp_path / f"{name}.txt"
    src.write_text(text, encoding="utf-8")
    ok(run("prepare", src, "-o", tmp_path / name, "-q", "--val-fraction", "0.1", *args))
    return tmp_path / name


@pytest.mark.parametrize("kind", ["bytes", "wide", "jamo"])
def test_the_cached_index_agrees_with_brute_force(kind, tmp_path, monkeypatch):
    """Random texts prepared by the CLI; the index built, cached and read from its files."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng({"bytes": 1, "wide": 2, "jamo": 3}[kind])
    alphabet = {
        "bytes": list("ab \n"),
        "wide": list("ab \n") + [chr(c) for c in range(0x400, 0x530)],  # 300 symbols
        "jamo": list("\uac00\uac01\ud55c\uad6d \n") + list(KOREAN[:40]),
    }[kind]
    words = ["".join(rng.choice(alphabet, int(rng.integers(1, 6)))) for _ in range(400)]
    text = "".join(rng.choice(words, 3000))
    data = prepared(tmp_path, kind, text, *(("--jamo", "on") if kind == "jamo" else ()))
    ds = load_dataset(data)
    assert ds.vocab.jamo == (kind == "jamo")
    assert len(ds.vocab) > 256 or kind != "wide"
    train = "".join(iter_dump(ds, "train"))
    dataset_index(data)  # builds and caches
    index = dataset_index(data)  # reads the cache
    assert not isinstance(index.suffixes.sa, np.ndarray)  # from the file, not in memory
    for _ in range(6):
        at = int(rng.integers(0, len(train) - 60))
        sample = (
            "".join(rng.choice(words, 5))
            + train[at : at + 60]
            + "\u00e9"
            + "".join(rng.choice(alphabet, 30))
        )
        check_against_brute_force(index, train, sample)
        r = index.report(sample)
        before = train[: r["offset"]].split("\n")
        assert (r["line"], r["column"]) == (len(before), len(before[-1]) + 1)
        assert train[r["offset"] : r["offset"] + r["longest"]] == r["longest_text"]


def test_sample_novelty_through_the_cli(english_run, english_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = ("sample", english_run, "-n", 300, "--seed", 2, "-t", 0.5, "--novelty")
    r = ok(run(*args))
    # what takes time is said beforehand (size, time and memory) and timed after, on stderr
    assert re.search(
        r"Indexing the training text of .* for the novelty report \(once; cached "
        r"in .*\): [\d,]+ characters, ~\d+ s and ~[\d.]+ GB of memory",
        r.stderr,
    )
    assert re.search(r"Sorting the suffixes of [\d,]+ characters .*: one call", r.stderr)
    assert re.search(r"Novelty index ready in [\d.]+ s", r.stderr)
    assert "Indexing" not in r.stdout and "Novelty" not in r.stdout
    line = r.stderr.strip().splitlines()[-1]
    m = re.match(
        r"Novelty, sample 1: longest shared substring (\d+) characters, at line (\d+), "
        r"column (\d+) of the training text: .*; ([\d.]+)% of its 300 characters lie in "
        r"shared runs of 20 or more$",
        line,
    )
    assert m, line
    train = "".join(
        load_dataset(english_data).vocab.decode(load_dataset(english_data).split("train"))
    )
    n, at_sample, at_train = longest_common(r.stdout, train)
    assert int(m.group(1)) == n
    # where it occurs in the training text (a shared run may occur there more than once)
    shared, places = r.stdout[at_sample : at_sample + n], set()
    at = train.find(shared)
    while at >= 0:
        lines_before = train[:at].split("\n")
        places.add((len(lines_before), len(lines_before[-1]) + 1))
        at = train.find(shared, at + 1)
    assert (int(m.group(2)), int(m.group(3))) in places
    # cached: the second report reads the index, and the cache is plain .npy files
    r2 = ok(run(*args))
    assert "Indexing" not in r2.stderr and r2.stderr.strip().splitlines()[-1] == line
    (folder,) = (tmp_path / "cache" / "charrnn" / "novelty").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "alphabet.npy",
        "index.json",
        "lines.npy",
        "rank.npy",
        "sa.npy",
    ]
    for f in folder.glob("*.npy"):
        np.load(f, allow_pickle=False)
    assert index_for(load(english_run)).report(r.stdout)["longest"] == n
    # a damaged cache is said, built again, and the report is the same
    sa = folder / "sa.npy"
    sa.write_bytes(sa.read_bytes()[:-4])
    r3 = ok(run(*args))
    assert (
        f"The cached novelty index in {folder} does not match its dataset (sa.npy is not "
        "the array it should be); building it again"
    ) in r3.stderr
    assert "Indexing" in r3.stderr and r3.stderr.strip().splitlines()[-1] == line


def test_novelty_needs_the_training_text(english_run, tmp_path):
    weights = tmp_path / "m.safetensors"
    ok(run("export", english_run, "-o", weights))
    r = run("sample", weights, "-n", 10, "--novelty")
    assert "a .safetensors file carries none" in error_line(r, only=True)
    moved = tmp_path / "run"
    shutil.copytree(english_run, moved)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["data"] = str(tmp_path / "gone")
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    r = run("sample", moved, "-n", 10, "--novelty")
    assert error_line(r, only=True) == (
        f"Error: the novelty report needs the run's training "
        f"text, but its dataset {tmp_path / 'gone'} "
        "(config.yaml's data) is gone; prepare it again there, "
        "or sample without --novelty"
    )
    assert r.stdout == ""  # nothing generated before the error


class Unpickled:
    """Leaves a file behind if anything ever unpickles it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _truncate(folder, name):
    (folder / name).write_bytes((folder / name).read_bytes()[:-8])


def _resave(folder, name, change):
    np.save(folder / name, change(np.load(folder / name)), allow_pickle=True)


DAMAGE = {
    "sa truncated": (lambda f: _truncate(f, "sa.npy"), "sa.npy is not the array it should be"),
    "lines truncated": (lambda f: _truncate(f, "lines.npy"), "lines.npy is not the array"),
    "sa 64-bit": (lambda f: _resave(f, "sa.npy", lambda a: a.astype(np.int64)), "sa.npy is not"),
    "sa shuffled": (
        lambda f: _resave(f, "sa.npy", np.random.default_rng(0).permutation),
        "its suffix array is out of order",
    ),
    "rank not a numbering": (
        lambda f: _resave(f, "rank.npy", np.zeros_like),
        "rank.npy or alphabet.npy is not a numbering",
    ),
    "pickle in place of sa": (
        lambda f: _resave(
            f,
            "sa.npy",
            lambda a: np.array([Unpickled(str(f.parent.parent / "unpickled"))] * len(a), object),
        ),
        "sa.npy",
    ),
    "index.json not JSON": (lambda f: (f / "index.json").write_text("{"), "index.json: "),
    "index.json of another format": (
        lambda f: (f / "index.json").write_text(json.dumps({"format": "charrnn-novelty/1"})),
        "index.json is not charrnn-novelty/2",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_is_never_trusted(damage, english_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sample = ENGLISH[200:300] + "qzx" + ENGLISH[:50]
    expected = dataset_index(english_data).report(sample)
    (folder,) = cache_root().iterdir()
    spoil, why = DAMAGE[damage]
    spoil(folder)
    said = []
    assert dataset_index(english_data, on_info=said.append).report(sample) == expected
    assert said[0].startswith(f"The cached novelty index in {folder} does not match its dataset (")
    assert why in said[0] and said[0].endswith("); building it again")
    assert said[1].startswith("Indexing the training text")
    assert not (tmp_path / "cache" / "charrnn" / "unpickled").exists()
    said.clear()
    assert dataset_index(english_data, on_info=said.append).report(sample) == expected
    assert said == []  # rebuilt whole: trusted again


def test_another_train_split_under_the_same_meta_is_noticed(english_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "copy"
    shutil.copytree(english_data, data)
    dataset_index(data)
    ids = np.load(data / "train.npy")
    np.save(data / "train.npy", ids[::-1].copy())  # same symbols, same size, another text
    said = []
    text = "".join(iter_dump(load_dataset(data), "train"))
    index = dataset_index(data, on_info=said.append)
    assert "its train.npy is not the one the index was built from" in said[0]
    check_against_brute_force(index, text, text[100:180] + "zq" + text[:30])


def test_building_stays_within_its_memory_bound(tmp_path, monkeypatch):
    """A 20-million-character text of 300-odd symbols, indexed in a real subprocess whose
    peak resident memory is measured: within PEAK_PER_SYMBOL bytes a character and 32 MB
    for the passes' chunks and the interpreter's own growth (the old index took ~47)."""
    rng = np.random.default_rng(5)
    symbols = np.array(list("abcdefghijklmnopqrstuvwxyz") + [chr(c) for c in range(0x400, 0x530)])
    weights = np.r_[np.full(26, 1.0), np.full(len(symbols) - 26, 0.002)]
    words = [
        "".join(rng.choice(symbols, int(rng.integers(1, 9)), p=weights / weights.sum()))
        for _ in range(20000)
    ]
    picks = rng.integers(0, len(words), 4_000_000)
    text = " ".join(np.array(words)[picks].tolist())[:20_000_000]
    data = prepared(tmp_path, "big", text.replace(" ", "\n", 1))
    chars = load_dataset(data).meta["splits"]["train"]["chars"]
    assert chars > 17_000_000 and len(load_dataset(data).vocab) > 256
    # the child's own high-water mark (VmHWM): getrusage's ru_maxrss would also count
    # this big pytest process, which a vfork'ed child inherits until it execs
    child = (
        "import json, sys\n"
        "from charrnn.analysis.novelty import dataset_index\n"
        "def hwm():\n"
        "    return [int(line.split()[1]) for line in open('/proc/self/status')\n"
        "            if line.startswith('VmHWM')][0]\n"
        "base = hwm()\n"
        "index = dataset_index(sys.argv[1])\n"
        "print(json.dumps({'base': base, 'peak': hwm()}))\n"
    )
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", child, str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    kb = json.loads(out.stdout)
    grown = (kb["peak"] - kb["base"]) * 1024
    assert grown < PEAK_PER_SYMBOL * chars + 32e6, (grown / chars, time.perf_counter() - t)
    assert (tmp_path / "cache" / "charrnn" / "novelty").is_dir()
