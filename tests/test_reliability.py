"""Faults lose nothing: damaged checkpoints, a full disk, two trainings on one run, kill -9.

Everything through the real CLI on real files; processes that must die are real
subprocesses (conftest's killed_run, whose kills test_export reads too), and the full disk
is a real tmpfs in a private mount namespace.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import TINY_SETS

from charrnn.cli import main
from charrnn.store import checkpoints

TINY = [a for s in TINY_SETS for a in ("--set", s)]  # a 1x16 LSTM, batch 8x16
LIMIT_S = 180


def cli(capsys, *args):
    """Run the CLI in-process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def steps(folder):
    return [c.step for c in checkpoints.list_in(folder)]


# --- damaged checkpoints ---------------------------------------------------------------


@pytest.fixture(scope="module")
def run5(english_data, tmp_path_factory):
    """A run with 3 checkpoints (steps 20, 30, 40) in checkpoints/ and one in best/."""
    out = tmp_path_factory.mktemp("rel") / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(english_data),
                "--out",
                str(out),
                *TINY,
                "--max-steps",
                "40",
                "--set",
                "train.save_every=10",
                "--set",
                "train.eval_every=10",
                "--set",
                "train.keep_checkpoints=3",
            ]
        )
        == 0
    )
    assert steps(out / "checkpoints") == [40, 30, 20]
    return out


def copy_run(run5, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run5, dst)
    (dst / "train.lock").unlink()
    return dst


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated data": lambda d: truncate(d / "tf.data-00000-of-00001"),
    "flipped bit in data": lambda d: flip(d / "tf.data-00000-of-00001"),
    "truncated index": lambda d: truncate(d / "tf.index", 0.3),
    "missing shard": lambda d: (d / "tf.data-00000-of-00001").unlink(),
    "manifest mismatch": lambda d: (d / "manifest.json").write_text(
        (d / "manifest.json").read_text().replace('"size": ', '"size": 1')
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_with_one_warning(run5, tmp_path, capsys, damage):
    run = copy_run(run5, tmp_path)
    DAMAGE[damage](run / "checkpoints" / "ckpt-40")
    code, out, err = cli(capsys, "sample", run, "--checkpoint", "latest", "-n", 30, "--seed", 1)
    assert code == 0 and len(out) >= 30, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("Warning:")]
    assert len(warnings) == 1 and "Traceback" not in err, err
    assert "ckpt-40" in warnings[0] and "ckpt-30" in warnings[0] and "damaged" in warnings[0]
    # the same text as sampling the checkpoint it fell back to
    code, same, _ = cli(
        capsys,
        "sample",
        run,
        "--checkpoint",
        run / "checkpoints" / "ckpt-30",
        "-n",
        30,
        "--seed",
        1,
    )
    assert code == 0 and same == out
    # an explicit damaged checkpoint is one clear error
    code, _, err = cli(capsys, "sample", run, "--checkpoint", run / "checkpoints" / "ckpt-40")
    assert code == 1 and "ckpt-40" in error_line(err) and "damaged" in error_line(err)


def test_evaluate_and_resume_fall_back_too(run5, tmp_path, capsys, english_data):
    run = copy_run(run5, tmp_path)
    truncate(run / "checkpoints" / "ckpt-40" / "tf.data-00000-of-00001")
    text = tmp_path / "t.txt"
    text.write_text("We hold these truths to be self-evident.\n")
    code, out, err = cli(capsys, "evaluate", run, text, "--checkpoint", "latest", "--json")
    assert code == 0 and json.loads(out)["step"] == 30 and "ckpt-30" in err, err
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--max-steps", 32)
    assert code == 0 and "ckpt-40" in err and "resuming" in err and "Traceback" not in err, err
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()][
        -1
    ] == 32
    # the damaged ckpt-40 is older than the new save at 32?  no: it is newer, but not
    # intact, so it never counts towards keep_checkpoints and the intact ones stay
    assert 30 in steps(run / "checkpoints") and 32 in steps(run / "checkpoints")


def test_a_damaged_best_falls_back_to_the_newest_intact_checkpoint(run5, tmp_path, capsys):
    run = copy_run(run5, tmp_path)
    (best,) = (run / "best").iterdir()
    flip(best / "tf.data-00000-of-00001")
    code, out, err = cli(capsys, "sample", run, "-n", 20)
    assert code == 0 and out, err
    (warning,) = [ln for ln in err.splitlines() if ln.startswith("Warning:")]
    assert best.name in warning and "ckpt-40" in warning and "not the best" in warning


def test_a_run_whose_checkpoints_are_all_damaged_is_one_clear_error(run5, tmp_path, capsys):
    run = copy_run(run5, tmp_path)
    for d in [*(run / "checkpoints").iterdir(), *(run / "best").iterdir()]:
        truncate(d / "tf.data-00000-of-00001")
    for args in (["sample", run], ["train", "--resume", "--out", run]):
        code, out, err = cli(capsys, *args)
        line = error_line(err)
        assert code == 1 and out == "" and "no intact checkpoint" in line, err


def test_a_run_from_before_manifests_still_loads(run5, tmp_path, capsys):
    """The old layout (tf.train.CheckpointManager files, no manifest): used after a size
    check, TensorFlow's own checks catch the rest, and resume writes the new layout."""
    import keras

    from charrnn.backend import tensorflow
    from charrnn.nn.model import build_model
    from charrnn.store.rundir import read_model_args
    from charrnn.training.state import TrainState

    tf = tensorflow()
    run = copy_run(run5, tmp_path)
    old = tmp_path / "old"
    model = build_model(**read_model_args(run))
    opt = keras.optimizers.Adam()
    opt.build(model.trainable_variables)
    state = TrainState(tf, model, opt, 8, run, run, 3)
    for step in (30, 40):
        state.ckpt.read(str(run / "checkpoints" / f"ckpt-{step}" / "tf"))
        tf.train.CheckpointManager(state.ckpt, str(old), 3).save(checkpoint_number=step)
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "best")
    shutil.copytree(old, run / "checkpoints")
    assert not list((run / "checkpoints").glob("*/manifest.json"))
    code, out, err = cli(capsys, "sample", run, "-n", 20, "--seed", 3)
    assert code == 0 and out and "Warning" not in err, err
    truncate(run / "checkpoints" / "ckpt-40.data-00000-of-00001")
    code, out, err = cli(capsys, "sample", run, "-n", 20, "--seed", 3)
    assert code == 0 and "ckpt-40" in err and "ckpt-30" in err, err
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--max-steps", 33)
    assert code == 0 and "resuming" in err, err
    assert (run / "checkpoints" / "ckpt-33" / "manifest.json").is_file()


# --- one writer per run directory -------------------------------------------------------------


def test_a_second_training_on_the_same_run_is_refused_and_kill_9_frees_the_lock(killed_run):
    """conftest's killed_run: tried while its first process trains, then resumed by a
    new process after that one was killed with SIGKILL."""
    for r in killed_run["refused"]:
        line = error_line(r.stderr)
        assert (
            r.exit_code == 1 and f"pid {killed_run['pid']} on host {socket.gethostname()}" in line
        )
    assert killed_run["still_training"]  # untouched, still training
    err = killed_run["resumed"]  # the next process, started after the SIGKILL
    assert "resuming" in err and "Error:" not in err and "Traceback" not in err, err


def test_force_starts_a_run_over_so_the_quickstart_runs_twice(english_data, tmp_path, capsys):
    out = tmp_path / "quick"
    args = ["train", "--data", english_data, "--out", out, *TINY, "--max-steps", 3]
    assert cli(capsys, *args)[0] == 0
    code, _, err = cli(capsys, *args)
    assert code == 1 and "--force" in error_line(err)
    code, _, err = cli(capsys, *args, "--max-steps", 2, "--force")
    assert code == 0, err
    assert steps(out / "checkpoints") == [2]
    assert [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [
        2
    ]


# --- readers while training rotates ------------------------------------------------------------


def test_sampling_while_the_run_trains_and_rotates_never_fails(killed_run):
    """conftest's killed_run: `charrnn sample` while its first process trains and rotates."""
    assert len(killed_run["samples"]) >= 50
    for r in killed_run["samples"]:
        assert r.exit_code == 0 and len(r.stdout) >= 10 and "Warning" not in r.stderr, r.stderr
    records = killed_run["records"]
    assert sum(r.get("best", False) for r in records) >= 20  # best/ rotated as often


def test_a_listing_during_rotation_never_finds_no_checkpoint(tmp_path):
    """The writer keeps one checkpoint at every moment (the new one is renamed in before the
    old is rotated away), so a reader listing meanwhile must always find one: a name it listed
    that has gone by the time it looks means a newer one is there."""
    import tensorflow as tf

    folder = tmp_path / "checkpoints"
    ckpt = tf.train.Checkpoint(v=tf.Variable([1.0]))
    checkpoints.save(ckpt, folder, 0, keep=1)
    done = threading.Event()

    def writer():
        step = 0
        while not done.is_set():
            step += 1
            checkpoints.save(ckpt, folder, step, keep=1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        empty = sum(not checkpoints.list_in(folder) for _ in range(20000))
    finally:
        done.set()
        thread.join()
    assert empty == 0
    assert len(checkpoints.list_in(folder)) == 1


# --- kill -9 at random moments ------------------------------------------------------------------


def test_kill_9_at_random_moments_then_resume_continues_from_an_intact_checkpoint(killed_run):
    """The processes are conftest's killed_run (test_export reads the same kills): killed
    twice at random moments, resumed after each kill, then stopped with Ctrl-C."""
    assert len(killed_run["snapshots"]) == 2
    for run in killed_run["snapshots"]:  # the run directory as each kill left it
        assert steps(run / "checkpoints")  # something to resume from
        for folder in (run / "checkpoints", run / "best"):
            for ck in checkpoints.list_in(folder):
                checkpoints.verify(ck)  # every visible checkpoint is complete and intact
    code, err = killed_run["final"]
    assert code == 130 and "Traceback" not in err, err
    assert "resuming" in err
    assert not list(killed_run["out"].glob("*/.tmp-ckpt-*"))


# --- a real full disk ----------------------------------------------------------------------

# Fills the disk once the training has saved a checkpoint: another program (no charrnn).
FILLER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    run, filler = Path(sys.argv[1]), Path(sys.argv[2])
    deadline = time.monotonic() + 120
    while not list((run / "checkpoints").glob("ckpt-*/manifest.json")):
        assert time.monotonic() < deadline, "no checkpoint to wait for"
        time.sleep(0.05)
    time.sleep(0.5)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
""")

# Runs inside the private mount namespace: the commands through the CLI in this process
# (one TensorFlow import for them all), the filler beside the training.
DRIVER = textwrap.dedent("""
    import json, os, subprocess, sys
    from pathlib import Path
    from click.testing import CliRunner
    from charrnn.cli import cli
    mnt, data, filler_code = Path(sys.argv[1]), sys.argv[2], sys.argv[4]
    tiny = json.loads(sys.argv[3])
    run = mnt / "run"
    result = {}

    def charrnn(*args):
        r = CliRunner().invoke(cli, [str(a) for a in args])
        crash = r.exception is not None and not isinstance(r.exception, SystemExit)
        return r.exit_code, r.stdout, r.stderr + (repr(r.exception) if crash else "")

    filler = subprocess.Popen([sys.executable, "-c", filler_code, str(run), str(mnt / "filler")])
    code, _, err = charrnn("train", "--data", data, "--out", run, *tiny, "--max-steps", 100000,
                           "--set", "train.save_every=2", "--set", "train.eval_every=2",
                           "--set", "train.keep_checkpoints=2")
    filler.wait(timeout=150)
    result["train"] = [code, err]
    result["left"] = sorted(str(p.relative_to(run)) for p in run.rglob("*")
                            if ".tmp" in p.name or "_temp" in p.name or ".trash" in p.name)
    # the disk is still full: starting again is refused before anything is written
    code, _, err = charrnn("train", "--resume", "--out", run)
    result["again"] = [code, err]
    result["sample_full"] = list(charrnn("sample", run, "-n", 20))
    os.unlink(mnt / "filler")
    latest = max(int(p.name[5:]) for p in (run / "checkpoints").glob("ckpt-*"))
    code, _, err = charrnn("train", "--resume", "--out", run, "--max-steps", latest + 2)
    result["resume"] = [code, err, latest]
    print(json.dumps(result))
""")


def test_a_full_disk_stops_training_cleanly_and_the_run_resumes_after(english_data, tmp_path):
    if not shutil.which("unshare") or os.geteuid() != 0:
        reason = "a private tmpfs needs root and unshare(1)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run this test")
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    script = (
        f"mount -t tmpfs -o size=3m tmpfs {mnt} && exec {sys.executable} {driver} {mnt} "
        f'{english_data} "$0" "$1"'
    )
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, json.dumps(TINY), FILLER],
        capture_output=True,
        text=True,
        timeout=LIMIT_S * 2,
    )
    if p.returncode != 0 and "mount" in p.stderr and "permission denied" in p.stderr.lower():
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs here: {p.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    code, err = r["train"]
    line = error_line(err)
    assert code == 1 and "could not write" in line and "charrnn train --resume --out" in line
    assert "No space left on device" in line or "not enough free space" in line, line
    assert r["left"] == [], r["left"]  # no half-written checkpoint or temp folder
    code, err = r["again"]
    assert code == 1 and "not enough free space" in error_line(err)
    code, out, err = r["sample_full"]
    assert code == 0 and out, err
    code, err, latest = r["resume"]
    assert code == 0 and f"ckpt-{latest}" in err and "Traceback" not in err, err


# --- GPU defaults --------------------------------------------------------------------------


def test_deterministic_auto_is_on_without_a_gpu_and_off_with_one():
    from charrnn.training.distribute import resolve_deterministic

    assert resolve_deterministic("auto", gpus=[])[0] is True
    assert resolve_deterministic("auto", gpus=["/physical_device:GPU:0"])[0] is False
    assert resolve_deterministic(True, gpus=["/physical_device:GPU:0"])[0] is True
    assert resolve_deterministic(False, gpus=[])[0] is False
