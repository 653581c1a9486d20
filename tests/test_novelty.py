"""The novelty report: what a sample shares with the training text, and where."""

import re
import shutil

import numpy as np
import pytest
import yaml

from clihelp import error_line, ok, run
from conftest import ENGLISH
from charrnn.analysis.novelty import RUN, NoveltyIndex, index_for
from charrnn.store.dataset import load_dataset
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


def test_matching_statistics_agree_with_brute_force():
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcab \n"), 3000))
    index = NoveltyIndex.build(text)
    for _ in range(5):
        sample = "".join(rng.choice(list("abc \n"), 80))
        lengths, where = index.matches(sample)
        for i in range(len(sample)):
            n = int(lengths[i])
            assert text[where[i]:where[i] + n] == sample[i:i + n] if n else where[i] == -1
            assert sample[i:i + n + 1] not in text or i + n == len(sample)


def test_sample_novelty_through_the_cli(english_run, english_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = ("sample", english_run, "-n", 300, "--seed", 2, "-t", 0.5, "--novelty")
    r = ok(run(*args))
    assert "Indexing the training text" in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    m = re.match(r"Novelty, sample 1: longest shared substring (\d+) characters, at line (\d+), "
                 r"column (\d+) of the training text: .*; ([\d.]+)% of its 300 characters lie in "
                 r"shared runs of 20 or more$", line)
    assert m, line
    train = "".join(load_dataset(english_data).vocab.decode(load_dataset(english_data).split("train")))
    n, at_sample, at_train = longest_common(r.stdout, train)
    assert int(m.group(1)) == n
    # where it occurs in the training text (a shared run may occur there more than once)
    shared, places = r.stdout[at_sample:at_sample + n], set()
    at = train.find(shared)
    while at >= 0:
        lines_before = train[:at].split("\n")
        places.add((len(lines_before), len(lines_before[-1]) + 1))
        at = train.find(shared, at + 1)
    assert (int(m.group(2)), int(m.group(3))) in places
    # cached: the second report reads the index, and the cache is plain .npy files
    r2 = ok(run(*args))
    assert "Indexing" not in r2.stderr and r2.stderr.strip().splitlines()[-1] == line
    files = sorted(p.name for p in (tmp_path / "cache" / "charrnn" / "novelty").rglob("*"))
    assert [f for f in files if not f.startswith(".")][-2:] == ["sa.npy", "text.npy"]
    for f in (tmp_path / "cache").rglob("*.npy"):
        np.load(f, allow_pickle=False)
    assert index_for(load(english_run)).report(r.stdout)["longest"] == n


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
    assert error_line(r, only=True) == (f"Error: the novelty report needs the run's training "
                                        f"text, but its dataset {tmp_path / 'gone'} "
                                        "(config.yaml's data) is gone; prepare it again there, "
                                        "or sample without --novelty")
    assert r.stdout == ""  # nothing generated before the error
