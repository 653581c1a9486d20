"""The Python API (issue 29) through its public names only (``import charrnn``), each
call compared with the command it mirrors: the real CLI in-process (CliRunner), and real
subprocesses where a fresh interpreter or a second process is the point.

Shared work is module-scoped: one load per tiny session run, one export, one set of
trainings (the API's, the CLI's, an interrupted and resumed one) of a 1x32 LSTM on
english_data for a few dozen steps.
"""

import doctest
import html
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from clihelp import error_line, ok, run
from conftest import ENGLISH

import charrnn

REPO = Path(__file__).resolve().parents[1]
# sample's default --separator: a blank line, 16 dashes, a blank line
SEPARATOR = "\n\n" + "-" * 16 + "\n\n"
PRIME, N, SEED = "We ", 80, 11


def sample(run_dir, *args):
    """`charrnn sample RUN ARGS`'s stdout (no newline is added off a terminal)."""
    return ok(run("sample", run_dir, *args)).stdout


def cli_error(*args):
    """The message of the CLI's one `Error: ...` line for `charrnn ARGS`."""
    return error_line(run(*args)).removeprefix("Error: ")


def usage_error(*args):
    """The CLI's `Error: ...` line for `charrnn ARGS` refused as a usage error (status 2)."""
    result = run(*args)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "Traceback" not in result.output
    return line


def python(code, timeout=120):
    """``code`` in a fresh interpreter that imports charrnn from this tree: its stdout."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def english(english_run):
    return charrnn.load(english_run)


@pytest.fixture(scope="module")
def korean(korean_run):
    return charrnn.load(korean_run)


# --- 1. generate = charrnn sample --------------------------------------------------------

CASES = {
    "plain": ({}, []),
    "temperature": ({"temperature": 0.5}, ["-t", 0.5]),
    "top_k": ({"top_k": 5}, ["--top-k", 5]),
    "top_p": ({"top_p": 0.7}, ["--top-p", 0.7]),
    "stop": ({"stop": "e "}, ["--stop", "e "]),
    "allow": ({"allow": "aeiou tnrs"}, ["--allow", "aeiou tnrs"]),
    "beam": ({"beam": 3}, ["--beam", 3]),
    "require": None,  # a common word the free text lacks (below)
}


@pytest.mark.parametrize("case", list(CASES))
def test_generate_equals_sample_with_the_same_seed_and_options(english, english_run, case):
    if case == "require":  # a word the free text lacks, so that the rejection must retry
        free = english.generate(PRIME, n=N, seed=SEED)[len(PRIME) :]
        word = next(
            w for w in ("the", "and", "of", "to", "in", "we", "on", "that") if w not in free
        )
        options, flags = {"require": word}, ["--require", word]
    else:
        options, flags = CASES[case]
    text = english.generate(PRIME, n=N, seed=SEED, **options)
    assert isinstance(text, str)
    assert text == sample(english_run, "--prime", PRIME, "-n", N, "--seed", SEED, *flags)
    assert text.startswith(PRIME)
    made = text[len(PRIME) :]
    if case == "stop":  # the text ends just after the stop string, before n characters
        assert made.endswith("e ") and made.count("e ") == 1 and len(made) < N
    else:
        assert len(made) == N
    if case == "allow":
        assert set(made) <= set("aeiou tnrs")
    if case == "require":
        assert word in made
    if case != "plain":  # the option changed the text
        assert text != english.generate(PRIME, n=N, seed=SEED)


def test_generate_equals_sample_for_a_jamo_model(korean, korean_run):
    prime = "대한민국은"
    text = korean.generate(prime, n=40, seed=3)
    assert text == sample(korean_run, "--prime", prime, "-n", 40, "--seed", 3)
    made = text[len(prime) :]
    assert text.startswith(prime) and len(made) == 40  # counted in syllables, not jamo
    assert any("가" <= c <= "힣" for c in made)  # whole syllables, recomposed
    assert korean.vocab.jamo and ", jamo, " in repr(korean)


def test_generate_many_equals_sample_num_samples_split_on_its_separator(english, english_run):
    texts = english.generate_many(PRIME, n=60, num_samples=3, seed=SEED)
    out = sample(english_run, "--prime", PRIME, "-n", 60, "--num-samples", 3, "--seed", SEED)
    assert texts == out.split(SEPARATOR)
    assert len(texts) == 3 and len(set(texts)) == 3
    assert english.generate_many(PRIME, n=60, num_samples=3, seed=SEED) == texts  # again


def test_generate_many_with_primes_follows_its_documented_rule(english, english_run):
    # text i * num_samples + j is sample j of `charrnn sample --prime PRIMES[i]
    # --num-samples NUM_SAMPLES --seed SEED`
    primes = ["We ", "The ", "Now"]
    texts = english.generate_many(primes, n=30, num_samples=2, seed=5)
    assert len(texts) == 6
    for i, prime in enumerate(primes):
        out = sample(english_run, "--prime", prime, "-n", 30, "--num-samples", 2, "--seed", 5)
        for j, expected in enumerate(out.split(SEPARATOR)):
            assert texts[i * 2 + j] == expected, (i, j)
            assert expected.startswith(prime)


def test_echo_prime_false_is_no_prime_echo(english, english_run):
    text = english.generate(PRIME, n=N, seed=SEED, echo_prime=False)
    assert text == sample(english_run, "--prime", PRIME, "-n", N, "--seed", SEED, "--no-prime-echo")
    assert len(text) == N and PRIME + text == english.generate(PRIME, n=N, seed=SEED)


# --- 2. stream ------------------------------------------------------------------------------


def test_stream_pieces_join_to_generates_text(english):
    pieces = list(english.stream(PRIME, n=500, seed=SEED))
    assert len(pieces) > 1 and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == english.generate(PRIME, n=500, seed=SEED)
    assert pieces[0] == PRIME  # the prime first
    options = {"top_p": 0.8, "stop": "e ", "echo_prime": False}
    assert "".join(english.stream(PRIME, n=500, seed=2, **options)) == english.generate(
        PRIME, n=500, seed=2, **options
    )


@pytest.mark.parametrize("options", [{"beam": 2}, {"require": "x"}])
def test_stream_refuses_beam_and_require_at_the_call(english, options):
    with pytest.raises(charrnn.CharrnnError, match="use generate"):
        english.stream(PRIME, n=20, seed=1, **options)  # before any next()


# --- 3. score = charrnn evaluate -------------------------------------------------------------

# in-vocabulary lines and one with characters the English run never saw (Z, digits, !)
SCORED = "We hold these truths to be self-evident,\nthat all men are created equal.\n\nZebras 42!\n"


@pytest.fixture(scope="module")
def scored_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("score") / "held_out.txt"
    path.write_text(SCORED, encoding="utf-8")
    return path


def test_score_equals_evaluate_json(english, english_run, scored_file):
    cli = json.loads(ok(run("evaluate", english_run, scored_file, "--json")).stdout)
    api = english.score(SCORED)
    assert api["total"] == cli["total"]
    assert api["total"]["oov_chars"] == 4 and api["total"]["bits_per_char"] > 0
    [mine], [theirs] = api["files"], cli["files"]
    assert mine["path"] == "<text>" and theirs["path"] == str(scored_file)
    assert mine["encoding"] is None and theirs["encoding"] == "utf-8"  # no bytes to decode
    figures = set(theirs) - {"path", "encoding"}
    assert figures >= {"chars", "nats", "bits_per_char", "oov_bits", "oov_distinct"}
    assert {k: mine[k] for k in figures} == {k: theirs[k] for k in figures}
    assert set(mine) == set(theirs)
    for key in set(cli) - {"files"}:  # run, checkpoint, step, jamo, unk, scoring
        assert api[key] == cli[key], key
    assert set(api) == set(cli)


def test_score_per_line_equals_evaluate_per_line(english, english_run, scored_file):
    records = [
        json.loads(line)
        for line in ok(run("evaluate", english_run, scored_file, "--per-line")).stdout.splitlines()
    ]
    lines = english.score(SCORED, per_line=True)["lines"]
    assert len(lines) == len(records) == 4
    assert {r["path"] for r in records} == {str(scored_file)}
    assert {r["path"] for r in lines} == {"<text>"}
    assert [dict(r, path=None) for r in lines] == [dict(r, path=None) for r in records]
    named = english.score(SCORED, per_line=True, name=str(scored_file))["lines"]
    assert named == records
    assert "lines" not in english.score(SCORED)


# --- 4. visualize = charrnn visualize ------------------------------------------------------


def test_visualize_page_is_the_clis_page_byte_for_byte(english, english_run, tmp_path):
    text = ENGLISH[:700]
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    ok(run("visualize", english_run, tmp_path / "text.txt", "-o", tmp_path / "page.html"))
    page = english.visualize(text)
    assert page.html.encode("utf-8") == (tmp_path / "page.html").read_bytes()
    assert page.data["text"] == text and page.data["run"]
    shown = page._repr_html_()
    assert shown.startswith('<iframe srcdoc="' + html.escape(page.html, quote=True) + '"')
    assert shown.endswith("</iframe>") and "<script" not in shown  # only inside srcdoc
    page.save(tmp_path / "saved.html")
    assert (tmp_path / "saved.html").read_bytes() == (tmp_path / "page.html").read_bytes()


def test_a_pages_repr_says_how_many_characters_it_shows(english):
    text = "We hold these truths"
    page = english.visualize(text)
    assert repr(page) == (
        f"<charrnn visualize page of run: {len(text)} characters, {len(page.html):,} bytes>"
    )


# --- 5. export = charrnn export ------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(english, english_run, tmp_path_factory):
    """The English run exported by the API and by the CLI: (api file, cli file, api result)."""
    root = tmp_path_factory.mktemp("export")
    result = english.export(root / "api.safetensors")
    ok(run("export", english_run, "-o", root / "cli.safetensors"))
    return root / "api.safetensors", root / "cli.safetensors", result


def test_export_writes_the_clis_file_byte_for_byte(exported):
    api, cli, result = exported
    assert api.read_bytes() == cli.read_bytes()
    assert result["format"] == "safetensors" and result["bytes"] == api.stat().st_size


@pytest.mark.parametrize("kind", [str, Path])
def test_export_with_a_bad_extension_has_the_clis_message(english, english_run, tmp_path, kind):
    bad = tmp_path / "model.bin"
    with pytest.raises(charrnn.CharrnnError) as e:
        english.export(kind(bad))
    assert str(e.value) == cli_error("export", english_run, "-o", bad)
    assert not bad.exists()


# --- 6. messages: logging and warnings, nothing on stdout -------------------------------------


def test_load_generate_and_score_print_nothing_on_stdout(english_run, capfd, caplog):
    with caplog.at_level(logging.INFO, logger="charrnn"):
        model = charrnn.load(english_run)
        model.generate(PRIME, n=50, seed=1)
        model.generate_many(["a", "b"], n=20, num_samples=2, seed=1)
        model.score(SCORED, per_line=True)
        text = model.generate(PRIME, n=50)  # a fresh seed, logged so the text can be made again
    out, _ = capfd.readouterr()
    assert out == ""
    notes = [r.getMessage() for r in caplog.records if r.name == "charrnn"]
    assert len(notes) == 1 and notes[0].startswith("seed ")
    assert text == model.generate(PRIME, n=50, seed=int(notes[0].removeprefix("seed ")))


@pytest.fixture(scope="module")
def damaged_run(english_run, tmp_path_factory):
    """A copy of english_run whose best checkpoint's weights file has a flipped bit."""
    dst = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(english_run, dst)
    (dst / "train.lock").unlink(missing_ok=True)
    [best] = (dst / "best").iterdir()
    data = bytearray((best / "weights.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x10
    (best / "weights.safetensors").write_bytes(bytes(data))
    return dst


def test_a_fallback_is_a_charrnn_warning_and_a_log_record_and_once_on_the_clis_stderr(
    damaged_run, caplog
):
    with caplog.at_level(logging.INFO, logger="charrnn"):
        with pytest.warns(charrnn.CharrnnWarning) as caught:
            model = charrnn.load(damaged_run)
    [warning] = [w for w in caught if issubclass(w.category, charrnn.CharrnnWarning)]
    message = str(warning.message)
    assert "damaged checkpoint" in message and str(damaged_run / "best") in message
    assert warning.filename == __file__  # it points at the caller's line
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "charrnn"]
    assert records == [("WARNING", message)]
    cli = ok(run("sample", damaged_run, "-n", 30, "--seed", 1))
    assert [ln for ln in cli.stderr.splitlines() if "Warning" in ln] == [f"Warning: {message}"]
    assert cli.stderr.count(message) == 1
    assert cli.stdout == model.generate("", n=30, seed=1)  # the same weights it fell back to


def test_prepare_logs_the_clis_summary_lines_at_info(tmp_path, caplog):
    src, out = tmp_path / "text.txt", tmp_path / "data"
    src.write_text(ENGLISH, encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="charrnn"):
        ds = charrnn.prepare(src, out=out)
    records = [r for r in caplog.records if r.name == "charrnn"]
    assert {r.levelname for r in records} == {"INFO"}
    cli = ok(run("prepare", src, "-o", out, "--force"))
    assert [r.getMessage() for r in records] == cli.stderr.splitlines()
    assert len(records) >= 4 and records[-1].getMessage().startswith(f"Wrote {out}")
    assert Path(ds.path) == out and len(ds.vocab) == ds.summary["vocab_size"]


# --- 7. what `import charrnn` imports ----------------------------------------------------------


def test_import_charrnn_imports_neither_tensorflow_nor_numpy():
    out = python(
        "import sys, charrnn\n"
        "assert callable(charrnn.load) and issubclass(charrnn.CharrnnWarning, Warning)\n"
        "print([m for m in ('tensorflow', 'numpy', 'keras') if m in sys.modules])"
    )
    assert out == "[]\n"


def test_load_and_generate_from_safetensors_leave_tensorflow_out(english, exported):
    api_file = exported[0]
    out = python(
        "import json, sys, charrnn\n"
        f"model = charrnn.load({str(api_file)!r})\n"
        f"text = model.generate({PRIME!r}, n={N}, seed={SEED})\n"
        "print(json.dumps([text, 'tensorflow' in sys.modules, 'keras' in sys.modules]))"
    )
    text, tf_loaded, keras_loaded = json.loads(out)
    assert text == english.generate(PRIME, n=N, seed=SEED)
    assert not tf_loaded and not keras_loaded


# --- 8. bad arguments: CharrnnError with the CLI's message -----------------------------------


def test_a_misspelt_option_names_the_nearest_one(english, english_run):
    with pytest.raises(charrnn.CharrnnError) as e:
        charrnn.load(english_run, chekpoint="best")
    assert isinstance(e.value, TypeError)
    assert "'chekpoint'" in str(e.value) and "did you mean 'checkpoint'?" in str(e.value)
    assert "'--checkpoint'" in usage_error("sample", english_run, "--chekpoint", "best")
    with pytest.raises(TypeError) as e:
        english.generate(temprature=1)
    assert isinstance(e.value, charrnn.CharrnnError)
    assert "did you mean 'temperature'?" in str(e.value)
    assert "'--temperature'" in usage_error("sample", english_run, "--temprature", 1)


def test_a_prime_outside_the_vocabulary_has_the_clis_message(english, english_run):
    with pytest.raises(charrnn.CharrnnError) as e:
        english.generate("café €", n=5, seed=1)
    assert "€" in str(e.value)
    assert str(e.value) == cli_error("sample", english_run, "--prime", "café €", "-n", 5)
    skipped = english.generate("café €", n=5, seed=1, unknown="skip")
    assert skipped == sample(
        english_run, "--prime", "café €", "-n", 5, "--seed", 1, "--unknown", "skip"
    )


def test_stream_refuses_a_prime_outside_the_vocabulary_at_the_call(english):
    # as it refuses beam and require: an error of the call, not of the first next()
    with pytest.raises(charrnn.CharrnnError) as e:
        english.stream("café €", n=5, seed=1)
    with pytest.raises(charrnn.CharrnnError) as generated:
        english.generate("café €", n=5, seed=1)
    assert str(e.value) == str(generated.value)


def test_a_missing_run_directory_has_the_clis_message(tmp_path):
    missing = tmp_path / "no-such-run"
    with pytest.raises(charrnn.CharrnnError) as e:
        charrnn.load(missing)
    assert str(missing) in str(e.value)
    assert str(e.value) == cli_error("sample", missing, "-n", 5)


def test_an_unknown_overrides_key_has_the_clis_message(english_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(charrnn.CharrnnError) as e:
        charrnn.train(
            "quick", data=english_data, out=out, overrides={"train.bach_size": 8}, progress=False
        )
    cli = cli_error(
        "train", "--config", "quick", "--data", english_data, "--out", out,
        "--set", "train.bach_size=8",
    )  # fmt: skip
    # the same message, naming where the key came from as each side was given it
    assert cli.startswith("--set train.bach_size: unknown key train.bach_size")
    assert str(e.value) == cli.replace("--set train.bach_size", "overrides['train.bach_size']", 1)
    assert "batch_size" in str(e.value) and not out.exists()


# --- 9, 10. train: the CLI's run, interrupted and resumed ----------------------------------------

# On "quick": a 1x32 LSTM, batch 8x32, 60 steps, a line per step (the interrupt watches
# for the first), evaluations and checkpoints every 20 steps.
TRAIN = {
    "model.num_layers": 1,
    "model.rnn_size": 32,
    "model.embedding_size": 16,
    "train.batch_size": 8,
    "train.seq_length": 32,
    "train.warmup_steps": 5,
    "train.max_steps": 60,
    "train.max_time": None,
    "train.log_every": 1,
    "train.eval_every": 20,
    "train.save_every": 20,
    "train.sample_length": 0,
}
STEPS = TRAIN["train.max_steps"]


def train_flags():
    return [a for k, v in TRAIN.items() for a in ("--set", f"{k}={'null' if v is None else v}")]


def final_weights(out):
    return charrnn.load(out, "latest").loaded.tensors


def assert_same_weights(a, b):
    assert a.keys() == b.keys() and len(a) >= 4
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


def records(out):
    return [json.loads(ln) for ln in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def files(out):
    """A run directory's files, TensorBoard's event files by their count (their names hold
    the time, host and PID) and the lock file aside."""
    names = sorted(str(p.relative_to(out)) for p in Path(out).rglob("*") if p.is_file())
    events = [n for n in names if "tfevents" in n]
    return [n for n in names if n not in events and n != "train.lock"], len(events)


@pytest.fixture(scope="module")
def trained(english_data, tmp_path_factory):
    """The same training by charrnn.train and by `charrnn train`, and Python's and NumPy's
    global random states around the call."""
    root = tmp_path_factory.mktemp("train")
    random.seed(1234)
    np.random.seed(4321)
    before = random.getstate(), np.random.get_state()
    result = charrnn.train(
        "quick", data=english_data, out=root / "api", overrides=TRAIN, progress=False
    )
    after = random.getstate(), np.random.get_state()
    ok(
        run(
            "train",
            "--config",
            "quick",
            "--data",
            english_data,
            "--out",
            root / "cli",
            *train_flags(),
        )
    )
    return {"result": result, "api": root / "api", "cli": root / "cli", "rng": (before, after)}


def test_train_writes_the_clis_run_directory_and_weights(trained):
    api, cli = trained["api"], trained["cli"]
    assert files(api) == files(cli) and files(api)[1] == 1
    listed, _ = files(api)
    assert "config.yaml" in listed and f"checkpoints/ckpt-{STEPS}/weights.safetensors" in listed
    for name in ("model.json", "vocab.json", "dataset_meta.json"):
        assert (api / name).read_bytes() == (cli / name).read_bytes(), name
    config = (api / "config.yaml").read_text().replace(str(api), "<out>")
    assert config == (cli / "config.yaml").read_text().replace(str(cli), "<out>")
    assert_same_weights(final_weights(api), final_weights(cli))
    figures = ("step", "loss", "grad_norm", "lr", "val_loss")
    mine, theirs = records(api), records(cli)
    assert [r["step"] for r in mine] == list(range(1, STEPS + 1))
    assert [{k: r.get(k) for k in figures} for r in mine] == [
        {k: r.get(k) for k in figures} for r in theirs
    ]


def test_train_result_says_how_the_run_ended_and_loads_it(trained):
    result, out = trained["result"], trained["api"]
    assert (result.status, result.step, result.interrupted, result.signal) == (
        "done",
        STEPS,
        False,
        None,
    )
    assert Path(result.out) == out and result.seconds > 0
    evaluated = [r["val_loss"] for r in records(out) if "val_loss" in r]
    assert len(evaluated) == STEPS // TRAIN["train.eval_every"]
    assert result.val_loss == evaluated[-1] and result.best_val_loss == min(evaluated)
    model = result.load()
    assert isinstance(model, charrnn.Model) and Path(model.path) == out
    assert (model.cell, model.num_layers, model.rnn_size) == ("lstm", 1, 32)
    assert model.val_loss == pytest.approx(min(evaluated))
    assert repr(model).startswith(f"Model({str(out)!r}, lstm 1x32, ")
    assert result.load("latest").step == STEPS


def test_train_gives_back_pythons_and_numpys_random_states(trained):
    (py_before, np_before), (py_after, np_after) = trained["rng"]
    assert py_before == py_after
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]


def test_training_a_run_that_another_process_trains_is_refused(english_data, tmp_path):
    out = tmp_path / "busy"
    args = ["--config", "quick", "--data", english_data, "--out", out, *train_flags()]
    args += ["--set", "train.max_steps=1000000"]
    with open(tmp_path / "stderr.txt", "w") as err:  # a file: no pipe to fill
        proc = subprocess.Popen(
            [sys.executable, "-m", "charrnn", "train", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists():  # written once it holds the lock
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)
        with pytest.raises(charrnn.CharrnnError) as e:
            charrnn.train(out=out, resume=True, progress=False)
        assert str(e.value) == cli_error("train", "--resume", "--out", out)
        assert str(proc.pid) in str(e.value)
        with pytest.raises(charrnn.CharrnnError) as forced:
            charrnn.train(
                "quick", data=english_data, out=out, overrides=TRAIN, force=True, progress=False
            )
        assert str(forced.value) == str(e.value)
        assert proc.poll() is None and (out / "metrics.jsonl").exists()  # still training
    finally:
        proc.kill()
        proc.wait(timeout=30)


def interrupt_once_logged(out, done):
    """A thread that sends SIGINT to this process once ``out``'s metrics.jsonl has a line
    (unless the call already returned: ``done`` is set)."""

    def watch():
        deadline = time.monotonic() + 120
        metrics = out / "metrics.jsonl"
        while not done.is_set() and time.monotonic() < deadline:
            if metrics.exists() and metrics.read_text().strip():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_interrupted_in_process_then_resumed_equals_an_uninterrupted_run(
    trained, english_data, tmp_path
):
    out = tmp_path / "interrupted"
    handler = signal.getsignal(signal.SIGINT)
    done = threading.Event()
    watcher = interrupt_once_logged(out, done)
    try:
        stopped = charrnn.train(
            "quick", data=english_data, out=out, overrides=TRAIN, progress=False
        )
    finally:
        done.set()
        watcher.join()
    assert stopped.status == "interrupted" and stopped.interrupted
    assert stopped.signal == signal.SIGINT and 1 <= stopped.step < STEPS
    assert (out / "checkpoints" / f"ckpt-{stopped.step}" / "weights.safetensors").is_file()
    assert charrnn.load(out, "latest").step == stopped.step
    assert records(out)[-1]["step"] == stopped.step
    assert signal.getsignal(signal.SIGINT) is handler  # given back

    resumed = charrnn.train(out=out, resume=True, progress=False)
    assert (resumed.status, resumed.step) == ("done", STEPS)
    assert [r["step"] for r in records(out)] == list(range(1, STEPS + 1))
    assert_same_weights(final_weights(out), final_weights(trained["api"]))
    assert resumed.val_loss == trained["result"].val_loss


# --- 11. the module's doctest ---------------------------------------------------------------


def test_the_api_modules_doctest_passes(monkeypatch, tmp_path):
    from charrnn import api

    monkeypatch.chdir(REPO)  # it reads data/shakespeare.txt
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its mkdtemp() lands here
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
