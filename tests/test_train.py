"""`charrnn train` through the real CLI on tiny real datasets and tiny models."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clihelp import error_line, ok, run

TINY = """\
model: {cell: lstm, num_layers: 1, rnn_size: 16, embedding_size: 8, dropout: 0.0}
train: {batch_size: 8, seq_length: 16, learning_rate: 0.01, warmup_steps: 0, max_epochs: 100,
        eval_every: 10, save_every: 10, log_every: 5, keep_checkpoints: 2, seed: 1,
        sample_length: 20}
"""
SCALARS = {"train/loss", "val/loss", "val/bpc", "lr", "grad_norm", "chars_per_s"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY)
    return path


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def checkpoint_values(prefix):
    from charrnn.backend import tensorflow

    reader = tensorflow().train.load_checkpoint(str(prefix))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and "save_counter" not in name
    }


@pytest.fixture(scope="module")
def lstm_run(tiny, english_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lstm"
    result = ok(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            english_data,
            "--out",
            out,
            "--max-steps",
            30,
            "--set",
            "model.rnn_size=32",
        )
    )
    return out, result


def same_metrics(whole_run, split_run, steps):
    """The logged losses, gradient norms, LRs and epochs of two runs agree at every step."""
    whole, split = metrics(whole_run), metrics(split_run)
    assert [r["step"] for r in whole] == [r["step"] for r in split] == steps
    for a, b in zip(whole, split):
        for key in ("loss", "grad_norm", "lr", "val_loss", "epoch"):
            if key in a or key in b:
                assert f"{a[key]:.4g}" == f"{b[key]:.4g}", (a, b)
    return whole


def test_short_lstm_run_writes_a_complete_run_directory(lstm_run, english_data):
    out, result = lstm_run
    for name in (
        "config.yaml",
        "model.json",
        "vocab.json",
        "dataset_meta.json",
        "metrics.jsonl",
        "train.lock",
        "checkpoints/ckpt-30/manifest.json",
        "checkpoints/ckpt-30/tf.index",
    ):
        assert (out / name).is_file(), name
    assert len(list((out / "best").glob("ckpt-*/manifest.json"))) == 1
    # keep_checkpoints (tiny.yaml: 2) intact checkpoints, and nothing half-written
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-20", "ckpt-30"]
    assert result.stdout == ""  # progress and summaries go to stderr only
    assert "parameters" in result.stderr and "batches of 8x16" in result.stderr
    assert json.loads((out / "vocab.json").read_text()) == json.loads(
        (english_data / "vocab.json").read_text()
    )
    model = json.loads((out / "model.json").read_text())
    assert model["cell"] == "lstm" and model["rnn_size"] == 32

    lines = metrics(out)
    assert [r["step"] for r in lines] == [5, 10, 15, 20, 25, 30]
    for r in lines:
        assert {"step", "epoch", "loss", "lr", "grad_norm", "chars_per_s"} <= set(r)
    evals = [r for r in lines if "val_loss" in r]
    assert [r["step"] for r in evals] == [10, 20, 30]
    for r in evals:
        assert r["val_bpc"] == pytest.approx(r["val_loss"] / math.log(2))
    vocab_size = model["vocab_size"]
    assert lines[-1]["loss"] < lines[0]["loss"] < math.log(vocab_size) + 0.5
    assert evals[-1]["val_loss"] < math.log(vocab_size)


def test_load_run_restores_the_trained_weights(lstm_run, english_data):
    from charrnn.backend import tensorflow
    from charrnn.store.loader import load_run
    from charrnn.store.rundir import find_latest_run

    tf = tensorflow()
    out, _ = lstm_run
    assert find_latest_run(out.parent) == str(out)
    run_ = load_run(out, "latest")
    assert run_.step == 30 and run_.config["train"]["max_steps"] == 30
    # The best checkpoint holds exactly the weights whose validation loss was logged.
    from charrnn.analysis.scoring import mean_nats
    from charrnn.store.dataset import load_dataset

    best = load_run(out)
    logged = {r["step"]: r["val_loss"] for r in metrics(out) if "val_loss" in r}
    assert best.step == min(logged, key=logged.get)
    val = load_dataset(english_data).split("val")
    # Logged with the run's matmul precision (auto: bfloat16 on CPUs that have it), evaluated in
    # float32: they agree to ~1e-5, checkpoints 10 steps apart differ by > 1e-3.
    assert mean_nats(best.model, val) == pytest.approx(logged[best.step], rel=1e-4)
    assert mean_nats(run_.model, val) == pytest.approx(logged[30], rel=1e-4)
    ids = run_.vocab.encode("We hold these truths to be self-evident, that all men are")
    logits = run_.model(tf.constant(ids[None, :-1]))
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(ids[None, 1:]), logits=logits
        )
    )
    assert float(loss) < math.log(len(run_.vocab)) - 0.3


def test_a_new_model_starts_from_the_symbol_frequencies(tiny, english_data, tmp_path):
    """The output bias starts at each symbol's log frequency in the train split (add-one
    smoothed): the untrained model predicts the unigram distribution, so the first step's
    loss is the text's unigram cross-entropy, far below log(vocabulary)."""
    from charrnn.store.dataset import load_dataset
    from charrnn.store.loader import load_run

    out = tmp_path / "run"
    ok(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            english_data,
            "--out",
            out,
            "--max-steps",
            1,
            "--set",
            "train.learning_rate=1e-12",
            "--set",
            "train.log_every=1",
        )
    )
    ids = np.asarray(load_dataset(english_data).split("train"))
    model = load_run(out, "latest").model
    counts = np.bincount(ids, minlength=model.vocab_size)
    p = (counts + 1) / (counts.sum() + model.vocab_size)
    np.testing.assert_allclose(model.dense.bias.numpy(), np.log(p), atol=1e-5)
    unigram = -(counts / counts.sum() * np.log(p)).sum()
    first = metrics(out)[0]["loss"]
    assert first == pytest.approx(unigram, abs=0.25) and first < math.log(model.vocab_size) - 0.5


def test_run_lookup_errors_say_what_to_do(lstm_run, tmp_path):
    import shutil

    from charrnn.errors import CharrnnError
    from charrnn.store.loader import load_run
    from charrnn.store.rundir import find_latest_run

    out, _ = lstm_run
    with pytest.raises(CharrnnError, match="not a charrnn run"):
        load_run(tmp_path)
    with pytest.raises(CharrnnError, match="no training run found.*charrnn train"):
        find_latest_run(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.json", "vocab.json", "config.yaml"):
        shutil.copy(out / name, bare / name)
    with pytest.raises(CharrnnError, match="no checkpoint yet.*--resume"):
        load_run(bare)
    with pytest.raises(CharrnnError, match="not found"):
        load_run(out, str(out / "checkpoints" / "ckpt-999"))
    assert load_run(out, str(out / "checkpoints" / "ckpt-20")).step == 20
    assert load_run(out, str(out / "best")).step == load_run(out).step


def test_tensorboard_reader_finds_scalars_sample_and_config(lstm_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    out, _ = lstm_run
    acc = EventAccumulator(str(out / "logs"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    assert SCALARS <= tags, tags
    assert {"sample", "config", "_hparams_/session_start_info"} <= tags
    losses = acc.Tensors("val/loss")
    assert [e.step for e in losses] == [10, 20, 30]
    jsonl = {r["step"]: r["val_loss"] for r in metrics(out) if "val_loss" in r}
    for e in losses:
        assert float(make_ndarray(e.tensor_proto)) == pytest.approx(jsonl[e.step], rel=1e-6)
    sample = make_ndarray(acc.Tensors("sample")[-1].tensor_proto).item().decode()
    assert len(sample) == 20


def test_gru_on_jamo_reports_bits_per_original_character(tiny, korean_data, tmp_path):
    out = tmp_path / "gru"
    ok(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            korean_data,
            "--out",
            out,
            "--max-steps",
            10,
            "--set",
            "model.cell=gru",
            "--set",
            "model.num_layers=2",
            "--set",
            "train.jit_compile=true",  # the XLA path
            "--logdir",
            tmp_path / "tb",
        )
    )
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert not (out / "logs").exists()
    assert json.loads((out / "model.json").read_text())["cell"] == "gru"
    meta = json.loads((korean_data / "meta.json").read_text())
    ratio = meta["splits"]["val"]["symbols"] / meta["splits"]["val"]["chars"]
    assert ratio > 1.5  # jamo: several symbols per syllable
    last = metrics(out)[-1]
    assert last["val_bpc_char"] == pytest.approx(last["val_bpc"] * ratio)


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(tiny, english_data, tmp_path):
    # 10 batches per epoch, so the resume at step 12 lands mid-epoch and both halves
    # cross an epoch boundary (state reset); dropout exercises the restored RNG.
    common = [
        "--config",
        tiny,
        "--data",
        english_data,
        "--seed",
        7,
        "--set",
        "train.batch_size=16",
        "--set",
        "train.seq_length=32",
        "--set",
        "model.dropout=0.3",
        "--set",
        "model.num_layers=2",
        "--set",
        "train.log_every=2",
        "--set",
        "train.eval_every=6",
        "--set",
        "train.save_every=100",
        "--set",
        "train.decay_every=7",
    ]
    ok(run("train", *common, "--out", tmp_path / "whole", "--max-steps", 24))
    half = ok(run("train", *common, "--out", tmp_path / "split", "--max-steps", 12))
    assert "batches of 16x32 per epoch" in half.stderr
    ok(run("train", "--resume", "--out", tmp_path / "split", "--max-steps", 24))

    same_metrics(tmp_path / "whole", tmp_path / "split", list(range(2, 25, 2)))
    # Everything else in the final checkpoints matches too: weights, Adam slots,
    # carried state, step/epoch/position, dropout RNG.
    from charrnn.store.checkpoints import list_in

    va = checkpoint_values(list_in(tmp_path / "whole" / "checkpoints")[0].prefix)
    vb = checkpoint_values(list_in(tmp_path / "split" / "checkpoints")[0].prefix)
    assert va.keys() == vb.keys()
    assert any(k.startswith("optimizer/_variables/") for k in va)
    assert any(k.startswith("rng/") for k in va) and any(k.startswith("state/") for k in va)
    for k in va:
        np.testing.assert_allclose(va[k], vb[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert int(va["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 24
    assert int(va["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == 2
    assert int(va["position/.ATTRIBUTES/VARIABLE_VALUE"]) == 4


def test_resume_refuses_changed_architecture_vocabulary_or_batch_shape(
    lstm_run, korean_data, tmp_path
):
    out, _ = lstm_run
    before = (out / "metrics.jsonl").read_text()
    assert "different architecture" in error_line(
        run("train", "--resume", "--out", out, "--set", "model.rnn_size=64")
    )
    assert "different vocabulary" in error_line(
        run("train", "--resume", "--out", out, "--data", korean_data)
    )
    assert "train.batch_size" in error_line(
        run("train", "--resume", "--out", out, "--set", "train.batch_size=4")
    )
    line = error_line(run("train", "--config", out / "config.yaml", "--out", out))
    assert "already holds a training run" in line and "--resume" in line
    assert (out / "metrics.jsonl").read_text() == before
    # Already at max_steps: nothing to do, and nothing changes.
    result = ok(run("train", "--resume", "--out", out))
    assert "nothing to do" in result.stderr


def test_init_from_copies_weights_when_the_vocabulary_matches(
    lstm_run, tiny, english_data, korean_data, tmp_path
):
    from charrnn.store.loader import load_run

    src, _ = lstm_run
    out = tmp_path / "finetune"
    ok(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            english_data,
            "--out",
            out,
            "--init-from",
            src,
            "--set",
            "model.rnn_size=32",
            "--max-steps",
            1,
            "--set",
            "train.learning_rate=1e-12",
        )
    )
    new, old = load_run(out, "latest"), load_run(src)
    assert new.step == 1
    for a, b in zip(new.model.weights, old.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert "jamo off (source) vs on" in error_line(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            korean_data,
            "--out",
            tmp_path / "ko",
            "--init-from",
            src,
            "--set",
            "model.rnn_size=32",
        )
    )
    assert "architecture differs" in error_line(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            english_data,
            "--out",
            tmp_path / "big",
            "--init-from",
            src,
            "--set",
            "model.rnn_size=48",
        )
    )


def test_diverging_run_stops_with_a_clear_error_and_keeps_a_good_checkpoint(
    tiny, english_data, tmp_path
):
    from charrnn.store.checkpoints import list_in
    from charrnn.store.loader import load_run

    out = tmp_path / "nan"
    # A few sane steps first, so a good checkpoint exists whatever step the blow-up
    # comes at on this CPU (it depends on the matmul precision in effect).
    ok(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            english_data,
            "--out",
            out,
            "--set",
            "train.save_every=2",
            "--max-steps",
            4,
        )
    )
    result = run(
        "train",
        "--resume",
        "--out",
        out,
        "--set",
        "train.learning_rate=1e38",
        "--set",
        "train.save_every=2",
        "--max-steps",
        1000,
    )
    line = error_line(result)
    assert "diverged" in line and "learning_rate" in line and "grad_clip" in line
    kept = list_in(out / "checkpoints")[0].name
    assert kept in line
    restored = load_run(out, "latest")
    assert all(np.isfinite(w.numpy()).all() for w in restored.model.weights)
    # Lines logged after the kept checkpoint are dropped when the run continues from it
    # with a saner learning rate.
    assert metrics(out)[-1]["step"] > restored.step
    ok(
        run(
            "train",
            "--resume",
            "--out",
            out,
            "--set",
            "train.learning_rate=0.01",
            "--max-steps",
            restored.step + 2,
            "--set",
            "train.log_every=1",
        )
    )
    steps = [r["step"] for r in metrics(out)]
    assert steps == sorted(set(steps)) and steps[-1] == restored.step + 2


def test_ctrl_c_saves_and_exits_130_then_resumes(tiny, english_data, tmp_path):
    out = tmp_path / "sigint"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "charrnn",
            "train",
            "--config",
            str(tiny),
            "--data",
            str(english_data),
            "--out",
            str(out),
            "--max-steps",
            "1000000",
            "--set",
            "train.log_every=1",
            "--set",
            "train.eval_every=100000",
            "--set",
            "train.save_every=100000",
            "--set",
            "train.intra_op_threads=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert f"charrnn train --resume --out {out}" in stderr
    assert "Traceback" not in stderr
    assert "; 1 intra-op thread\n" in stderr  # a fresh process takes the setting
    from charrnn.store.checkpoints import step_of

    step = step_of(out)
    assert step >= 1 and metrics(out)[-1]["step"] == step
    ok(run("train", "--resume", "--out", out, "--max-steps", step + 3))
    assert metrics(out)[-1]["step"] == step + 3


# --- time-planned training ----------------------------------------------------------------


def test_a_planned_run_ends_its_schedule_at_the_plan_and_resumes_exactly(
    tiny, english_data, tmp_path
):
    from charrnn.store.checkpoints import list_in

    common = [
        "--config",
        tiny,
        "--data",
        english_data,
        "--seed",
        3,
        "--set",
        "train.lr_schedule=cosine",
        "--set",
        "train.final_lr_fraction=0.1",
        "--set",
        "train.planned_steps=12",
        "--set",
        "train.log_every=1",
        "--set",
        "train.eval_every=4",
        "--set",
        "train.save_every=100",
    ]
    whole = ok(run("train", *common, "--out", tmp_path / "whole"))
    assert "reached the planned step 12" in whole.stderr and "\nstep 12/12 epoch" in whole.stderr
    ok(run("train", *common, "--out", tmp_path / "split", "--max-steps", 5))
    ok(run("train", "--resume", "--out", tmp_path / "split", "--max-steps", 100))
    a, b = metrics(tmp_path / "whole"), metrics(tmp_path / "split")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))
    for x, y in zip(a, b):  # (the split run also evaluated where it stopped, at step 5)
        for key in ("loss", "lr", "val_loss"):
            if key in x and key in y:
                assert f"{x[key]:.4g}" == f"{y[key]:.4g}", (x, y)
    # cosine from 0.01 down to 0.1 x 0.01, ending at the plan: the last step's LR
    assert a[-1]["lr"] == pytest.approx(0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 11 / 12)))
    manifest = json.loads(
        (list_in(tmp_path / "whole" / "checkpoints")[0].dir / "manifest.json").read_text()
    )
    assert manifest["train"]["plan"]["steps"] == 12


def test_max_time_plans_the_step_count_and_keeps_the_plan_on_resume(tiny, english_data, tmp_path):
    from charrnn.store.checkpoints import list_in

    out = tmp_path / "timed"
    args = [
        "--config",
        tiny,
        "--data",
        english_data,
        "--out",
        out,
        "--max-time",
        "5s",
        "--set",
        "train.lr_schedule=cosine",
        "--set",
        "train.eval_every=1000",
        "--set",
        "train.save_every=1000",
        "--set",
        "train.log_every=1000",
    ]
    first = ok(run("train", *args))
    line = next(ln for ln in first.stderr.splitlines() if ln.startswith("planned "))
    planned = int(line.split()[1].replace(",", ""))
    assert "max_time 5s" in line and planned >= 21
    # timed over about 5% of the budget (0.25 s; as many steps as that takes at the pace of the
    # first 20, so later steps may take less), never fewer than 20 steps
    per, timed = re.search(r"\(([0-9.e-]+) s/step measured over ([0-9,]+) steps", line).groups()
    timed = int(timed.replace(",", ""))
    assert timed >= 20 and float(per) * timed >= 0.1, line
    assert timed > 20 or float(per) * 20 >= 0.25, line  # this tiny model: 20 steps are too few
    assert f"reached the planned step {planned}" in first.stderr
    ck = list_in(out / "checkpoints")[0]
    plan = json.loads((ck.dir / "manifest.json").read_text())["train"]["plan"]
    assert ck.step == plan["steps"] == planned and plan["budget"] == 5.0 and plan["step_time"] > 0
    # the same budget: the plan stands, nothing to do; a larger one plans again
    assert "nothing to do" in ok(run("train", "--resume", "--out", out)).stderr
    # (a few seconds past the training the run has had: time to start, time 20 steps, plan)
    larger = int(json.loads((ck.dir / "manifest.json").read_text())["train"]["elapsed"]) + 5
    more = ok(run("train", "--resume", "--out", out, "--max-time", f"{larger}s"))
    assert "planned " in more.stderr and list_in(out / "checkpoints")[0].step > planned


# --- train.seq_unit and model: auto -----------------------------------------------------------


def test_seq_unit_chars_makes_a_jamo_window_cover_seq_length_characters(
    tiny, korean_data, english_data, tmp_path
):
    meta = json.loads((korean_data / "meta.json").read_text())["splits"]["train"]
    symbols = round(12 * meta["symbols"] / meta["chars"])
    assert symbols >= 20  # jamo: about two symbols per character
    out = tmp_path / "chars"
    result = ok(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            korean_data,
            "--out",
            out,
            "--max-steps",
            3,
            "--set",
            "train.seq_length=12",
            "--set",
            "train.seq_unit=chars",
        )
    )
    assert (
        f"batches of 8x{symbols} per epoch (seq_length 12 characters, about {symbols} jamo "
        "symbols)" in result.stderr
    )
    # what seq_length counts is part of the data position: a resume may not change it
    line = error_line(
        run("train", "--resume", "--out", out, "--max-steps", 6, "--set", "train.seq_unit=symbols")
    )
    assert "train.seq_unit symbols (the run used chars)" in line
    # on character data the unit changes nothing
    plain = ok(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            english_data,
            "--out",
            tmp_path / "plain",
            "--max-steps",
            1,
            "--set",
            "train.seq_unit=chars",
        )
    )
    assert "batches of 8x16 per epoch\n" in plain.stderr


def test_model_auto_chooses_for_the_budget_prints_stores_and_keeps_it_on_resume(
    english_data, tmp_path
):
    from charrnn.training import autosize

    config = tmp_path / "auto.yaml"
    config.write_text(
        "model: auto\ntrain: {batch_size: 8, seq_length: 16, eval_every: 1000, "
        "save_every: 1000, log_every: 1000, max_epochs: null}\n"
    )
    out = tmp_path / "auto"
    vocab = len(json.loads((english_data / "vocab.json").read_text())["symbols"])
    train_symbols = len(np.load(english_data / "train.npy", mmap_mode="r"))
    speed = autosize.machine_speed(vocab, 3000.0)
    cell = autosize.choose_cell(vocab, train_symbols, 2.0, speed)
    expect, _ = autosize.choose(vocab, train_symbols, 2.0, cell, throughput=3000.0)
    expect["cell"] = cell
    first = ok(
        run(
            "train",
            "--config",
            config,
            "--data",
            english_data,
            "--out",
            out,
            "--max-time",
            "2s",
            "--set",
            "model.auto_throughput=3000",
        )
    )
    lines = [ln for ln in first.stderr.splitlines() if ln.startswith("model auto: ")]
    assert lines[0].startswith(f"model auto: {cell}: {vocab} symbols (under 256); a ")
    assert " LSTM would read the train split " in lines[0]
    size = f"{expect['num_layers']}x{expect['rnn_size']}"
    assert lines[1].startswith(
        f"model auto: {size} {cell}, embedding "
        f"{expect['embedding_size']}, dropout {expect['dropout']:g} ("
    )
    assert "given throughput 3,000 symbols/s at 2x256" in lines[1]
    stored = json.loads((out / "model.json").read_text())
    assert {k: stored[k] for k in expect} == expect
    assert f"model: {size} {cell}" in first.stderr
    # resumed with a budget and a speed that would choose otherwise: the choice stands
    assert autosize.choose(vocab, train_symbols, 3600.0, throughput=1e6)[0] != expect
    more = ok(
        run(
            "train",
            "--resume",
            "--out",
            out,
            "--max-time",
            "1h",
            "--max-steps",
            40,
            "--set",
            "model.auto_throughput=1e6",
        )
    )
    assert f"keeping the choice made when the run started, {size} {cell}" in more.stderr
    assert json.loads((out / "model.json").read_text()) == stored
    # the command-line spelling, and no budget to plan for
    line = error_line(
        run("train", "--data", english_data, "--out", tmp_path / "nobudget", "--model-size", "auto")
    )
    assert "model auto chooses the model for a time budget" in line
    assert not (tmp_path / "nobudget" / "model.json").exists()


def test_model_auto_measures_this_machine_and_sizes_for_what_max_steps_lets_it_read(
    english_data, tmp_path
):
    """No model.auto_throughput: the probe measures this machine (a child process); a run
    that max_steps ends long before its hour reads few symbols, so the smallest size, and
    a parallel cell, since the LSTM would read the split under 8 times."""
    from charrnn.training import autosize

    out = tmp_path / "measured"
    result = ok(
        run(
            "train",
            "--data",
            english_data,
            "--out",
            out,
            "--model-size",
            "auto",
            "--max-time",
            "1h",
            "--max-steps",
            2,
            "--set",
            "model.cell=auto",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.seq_length=16",
        )
    )
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("model auto: ")]
    assert lines[0].startswith("model auto: mingru: ")
    assert lines[0].endswith("times in 60 min (under 8)")
    layers, units = autosize.LADDER[0]
    assert lines[1].startswith(f"model auto: {layers}x{units} mingru, ")
    assert " symbols/s reads 0.0M symbols (max_epochs / max_steps end it first), " in lines[1]
    measured = re.search(
        r"\(measured: about ([\d,]+) (float32|bfloat16) symbols/s at 2x256 here\)$", lines[1]
    )
    assert measured and int(measured[1].replace(",", "")) > 0, lines[1]
    stored = json.loads((out / "model.json").read_text())
    assert (stored["cell"], stored["num_layers"], stored["rnn_size"]) == ("mingru", layers, units)


def test_a_plan_the_machine_cannot_keep_warns_once_and_stops_at_twice_the_budget(
    tiny, english_data, tmp_path
):
    # the plan (given: 100,000 steps) is far beyond what 2 s can train: after 100 steps at
    # the pace since the plan, it says so once, then stops at 2 x max_time with a checkpoint
    out = tmp_path / "slow"
    result = ok(
        run(
            "train",
            "--config",
            tiny,
            "--data",
            english_data,
            "--out",
            out,
            "--max-time",
            "2s",
            "--set",
            "train.planned_steps=100000",
            "--set",
            "train.eval_every=100000",
            "--set",
            "train.save_every=100000",
            "--set",
            "train.log_every=100000",
        )
    )
    assert (
        result.stderr.count(
            "Warning: this machine is slower now than when the run was "
            "planned; it will reach its planned step 100000"
        )
        == 1
    )
    assert "reached 2x max_time before the planned step 100000" in result.stderr
    from charrnn.store.checkpoints import list_in

    assert list_in(out / "checkpoints")[0].step > 100


def test_weight_decay_is_decoupled_scales_the_matrices_and_spares_the_biases(
    tiny, english_data, tmp_path
):
    # One step from the same start: Adam's update u is the same with and without decay, so
    # w(wd) = w0 (1 - wd lr) - u for every matrix and the biases are untouched by it.
    from charrnn.store.loader import load_run

    lr, after = 0.01, {}
    for wd in (0.0, 0.5, 0.9):
        out = tmp_path / f"wd{wd}"
        ok(
            run(
                "train",
                "--config",
                tiny,
                "--data",
                english_data,
                "--out",
                out,
                "--max-steps",
                1,
                "--set",
                f"train.learning_rate={lr}",
                "--set",
                f"train.weight_decay={wd}",
            )
        )
        variables = load_run(out, "latest").model.trainable_variables  # the same order each time
        after[wd] = {f"{i}:{v.path.split('/', 1)[1]}": v.numpy() for i, v in enumerate(variables)}
    plain, half, most = after[0.0], after[0.5], after[0.9]
    matrices = [k for k, v in plain.items() if v.ndim == 2]
    biases = [k for k, v in plain.items() if v.ndim == 1]
    assert len(matrices) >= 4 and biases  # embedding, 2 LSTM kernels, output; their biases
    for k in biases:
        np.testing.assert_array_equal(plain[k], half[k], err_msg=k)
    for k in matrices:
        w0 = (plain[k] - half[k]) / (0.5 * lr)  # the start, recovered
        assert np.abs(w0).max() > 1e-3, k
        np.testing.assert_allclose(most[k], plain[k] - 0.9 * lr * w0, atol=2e-6, err_msg=k)
