"""Scaling out on this CPU machine: MirroredStrategy over two logical CPUs, a real
two-process MultiWorkerMirroredStrategy cluster on 127.0.0.1, and mixed precision.

Runs that need the CPU split into logical devices, or TF_CONFIG, run `charrnn
train` in subprocesses (devices are fixed once TensorFlow starts); the rest runs in this
process.  The commands that need two logical CPUs share one process (each TensorFlow
import costs seconds).  Every model is tiny (2x16 LSTM, batch 8, 30 steps) so the module
stays well under a minute of CPU per run.
"""

import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charrnn.backend import tensorflow
from charrnn.cli import main
from charrnn.training import distribute

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly "
    "hex each jovial king of pack my box with five dozen liquor jugs"
).split()
STEPS = 30
TRAIN = [
    "--set",
    "model.cell=lstm",
    "--set",
    "model.num_layers=2",
    "--set",
    "model.rnn_size=16",
    "--set",
    "model.embedding_size=8",
    "--set",
    "model.dropout=0.0",
    "--set",
    "train.batch_size=8",
    "--set",
    "train.seq_length=16",
    # a clip this low is active on most steps: replicas must clip the summed gradient
    "--set",
    "train.learning_rate=0.03",
    "--set",
    "train.grad_clip=0.2",
    "--set",
    "train.eval_every=10",
    "--set",
    "train.save_every=10",
    "--set",
    "train.log_every=10",
    "--set",
    "train.sample_length=0",
    "--set",
    "train.seed=0",
    "--set",
    "train.jit_compile=false",
    "--set",
    "train.max_epochs=null",
    "--set",
    "train.precision=float32",  # auto would pick bfloat16 on a CPU that has it
]
# Same data and seed: the sums differ only in float order, so the losses agree far
# more closely than this; a wrong loss average, gradient sum or state split is off
# by several per cent.
MIRRORED_RTOL = 1e-4
# 16-bit compute, float32 weights/logits/loss: measured within 4e-4 nats of float32
# after 30 steps on this model; lost loss scaling or float16 logits drift far more.
MIXED_ATOL = 0.02
LIMIT_S = 240  # the most a subprocess run may take before the test kills it


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.pop(distribute.CPU_DEVICES_ENV, None)
    env.update(extra)
    return env


def _train_args(data, out, *args, steps=STEPS):
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        *TRAIN,
        "--set",
        f"train.max_steps={steps}",
        *args,
    ]


def _train_cmd(data, out, *args, steps=STEPS):
    return [sys.executable, "-m", "charrnn", *_train_args(data, out, *args, steps=steps)]


def _metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def _val(run, step):
    return next(r["val_loss"] for r in _metrics(run) if r["step"] == step and "val_loss" in r)


@pytest.fixture(scope="session")
def dist_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(700)]
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = root / "data"
    assert main(["prepare", str(corpus), "-o", str(data), "--val-fraction", "0.1", "-q"]) == 0
    return data


@pytest.fixture(scope="session")
def reference_run(dist_data, tmp_path_factory):
    """Single device, float32, the default strategy: what the others must match.  It needs
    no device split and no TF_CONFIG, so it trains in this process."""
    out = tmp_path_factory.mktemp("ref") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TF_CONFIG", raising=False)
        mp.delenv(distribute.CPU_DEVICES_ENV, raising=False)
        assert main(_train_args(dist_data, out, "--strategy", "default")) == 0
    return out


# The CLI, several commands in one process (click's CliRunner there): for commands that
# need the same environment before TensorFlow starts (two logical CPUs), one import.
ONE_PROCESS = """
import json, sys
from click.testing import CliRunner
from charrnn.cli import cli
results = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(cli, args)
    crash = r.exception is not None and not isinstance(r.exception, SystemExit)
    results.append([r.exit_code, r.stderr, repr(r.exception) if crash else None])
print(json.dumps(results))
"""


def _run_in_one_process(commands, env):
    """[(exit status, stderr)] of ``charrnn ARGS`` for each ARGS, in order, in one process."""
    p = subprocess.run(
        [sys.executable, "-c", ONE_PROCESS, json.dumps(commands)],
        env=env,
        capture_output=True,
        text=True,
        timeout=2 * LIMIT_S,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout.splitlines()[-1])
    for code, err, crash in results:
        assert crash is None, (code, crash, err[-3000:])  # an exception, not a clean exit
    return [(code, err) for code, err, _ in results]


MINGRU = ["--set", "model.cell=mingru"]  # a parallel cell: residual blocks, no recurrent kernel


@pytest.fixture(scope="module")
def two_cpus(dist_data, tmp_path_factory):
    """One process with the CPU split in two: a batch that does not split evenly (refused),
    then the mirrored run (trained); beside it a process of its own trains a mirrored
    minGRU (a second MirroredStrategy run in one process collides with the first's
    collective ops)."""
    root = tmp_path_factory.mktemp("two_cpus")
    odd, mirrored, mingru = root / "odd", root / "mirrored", root / "mingru"
    env = _env(**{distribute.CPU_DEVICES_ENV: "2"})
    proc = subprocess.Popen(
        _train_cmd(dist_data, mingru, "--strategy", "mirrored", *MINGRU),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        (odd_code, odd_err), (code, err) = _run_in_one_process(
            [
                _train_args(
                    dist_data, odd, "--strategy", "mirrored", "--set", "train.batch_size=5"
                ),
                _train_args(dist_data, mirrored, "--strategy", "mirrored"),
            ],
            env,
        )
        _, mingru_err = proc.communicate(timeout=LIMIT_S)
    finally:
        _kill([proc])
    assert code == 0, err[-3000:]
    assert proc.returncode == 0, mingru_err[-3000:]
    return {
        "odd": (odd, odd_code, odd_err),
        "mirrored": (mirrored, err),
        "mingru": (mingru, mingru_err),
    }


# --- roles and paths (TF_CONFIG parsing; no TensorFlow) -----------------------------------


def _tf_config(monkeypatch, task_type, index, chief=False):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    if chief:
        cluster["chief"] = ["127.0.0.1:3"]
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
    )


def test_worker_zero_is_chief_without_a_chief_task(monkeypatch, tmp_path):
    _tf_config(monkeypatch, "worker", 0)
    role = distribute.worker_role("auto")
    assert role.chief and role.num_workers == 2
    assert distribute.write_path(tmp_path / "run", role) == tmp_path / "run"
    _tf_config(monkeypatch, "worker", 1)
    role = distribute.worker_role("auto")
    assert not role.chief
    temp = distribute.write_path(tmp_path / "run", role)
    assert temp == tmp_path / ".workertemp_1" / "run"
    temp.mkdir(parents=True)
    distribute.discard(temp, role)
    assert not temp.parent.exists()


def test_chief_task_outranks_worker_zero(monkeypatch):
    _tf_config(monkeypatch, "worker", 0, chief=True)
    assert not distribute.worker_role("multiworker").chief
    _tf_config(monkeypatch, "chief", 0, chief=True)
    role = distribute.worker_role("multiworker")
    assert role.chief and role.num_workers == 3
    # single-machine strategies ignore TF_CONFIG: always the chief
    _tf_config(monkeypatch, "worker", 1)
    assert distribute.worker_role("mirrored").chief


def test_bad_tf_config_is_one_clear_error(dist_data, tmp_path):
    one = '"cluster": {"worker": ["a:1"]}'
    for value, words in (
        ("{not json", "TF_CONFIG is not valid JSON"),
        ("{" + one + ', "task": {"type": "ps", "index": 0}}', "not a chief or worker"),
        ("{" + one + ', "task": {"type": "worker", "index": 3}}', "index 3 is not in"),
    ):
        p = subprocess.run(
            _train_cmd(dist_data, tmp_path / "bad"),
            env=_env(TF_CONFIG=value),
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
        )
        assert p.returncode == 1, p.stderr
        assert words in p.stderr and "Traceback" not in p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_multiworker_without_tf_config_and_odd_batch(dist_data, two_cpus, tmp_path, monkeypatch):
    from clihelp import run

    # no cluster to describe, no devices to split: this process will do
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv(distribute.CPU_DEVICES_ENV, raising=False)
    r = run(*_train_args(dist_data, tmp_path / "a", "--strategy", "multiworker"))
    assert r.exit_code == 1 and "needs TF_CONFIG" in r.stderr and "Traceback" not in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)
    out, code, err = two_cpus["odd"]  # 2 logical CPUs: batch 5 in the shared process
    assert code == 1 and "does not split evenly among 2 replicas" in err
    assert not (out / "checkpoints").exists()


# --- MirroredStrategy over two logical CPUs ------------------------------------------------


def test_mirrored_two_cpus_matches_default(reference_run, two_cpus):
    _assert_mirrored_matches(reference_run, *two_cpus["mirrored"])


def test_mirrored_parallel_cell_matches_default(dist_data, two_cpus, tmp_path):
    """The minGRU's carried state splits between the replicas like a LSTM's."""
    reference = tmp_path / "reference"
    assert main(_train_args(dist_data, reference, "--strategy", "default", *MINGRU)) == 0
    _assert_mirrored_matches(reference, *two_cpus["mingru"])


def _assert_mirrored_matches(reference_run, out, err):
    assert "2 replicas" in err
    for step in (10, 20, STEPS):
        ref, got = _val(reference_run, step), _val(out, step)
        assert math.isclose(got, ref, rel_tol=MIRRORED_RTOL), (step, got, ref)
    train_ref = [r["loss"] for r in _metrics(reference_run)]
    train_got = [r["loss"] for r in _metrics(out)]
    assert train_got == pytest.approx(train_ref, rel=MIRRORED_RTOL)
    assert _val(out, STEPS) < _metrics(out)[0]["loss"]  # it learned something


# --- a real two-process MultiWorkerMirroredStrategy cluster --------------------------------


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_cluster(cmd):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    return [
        subprocess.Popen(
            cmd,
            env=_env(
                TF_CONFIG=json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
                )
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]


def _kill(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _cluster(cmd, limit=LIMIT_S):
    """Run ``cmd`` as worker 0 (the chief) and worker 1; kill both if either hangs."""
    procs = _start_cluster(cmd)
    try:
        deadline = time.monotonic() + limit
        errs = [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[1] for p in procs]
        return [(p.returncode, err) for p, err in zip(procs, errs)]
    finally:
        _kill(procs)


def test_two_worker_cluster_trains_resumes_and_survives_a_dead_worker(
    dist_data, reference_run, tmp_path
):
    from charrnn.store import loader as runs

    # --- 20 steps: only the chief writes; the worker's temporary copies are gone
    out = tmp_path / "runs" / "cluster"
    results = _cluster(_train_cmd(dist_data, out, steps=20))
    for rc, err in results:
        assert rc == 0, err[-3000:]
    assert "2 replicas" in results[0][1]
    ckpts = sorted(p.parent.name for p in (out / "checkpoints").glob("ckpt-*/manifest.json"))
    assert ckpts == ["ckpt-10", "ckpt-20"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["cluster"]

    # --- resumed without a limit, worker 1 dies mid-run with no chance to clean up
    procs = _start_cluster(_train_cmd(dist_data, out, "--resume", steps=10**6))
    try:
        deadline = time.monotonic() + LIMIT_S
        while not (out / "checkpoints" / f"ckpt-{STEPS}" / "manifest.json").exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, "no checkpoint"
            time.sleep(0.2)
        procs[1].kill()
        _, err = procs[0].communicate(timeout=LIMIT_S)
        assert procs[0].returncode == 1
        assert "Error: the cluster lost a worker" in err and "--resume" in err
        assert "Traceback" not in err
    finally:
        _kill(procs)
    run = runs.load_run(out, checkpoint="latest")  # the chief's last checkpoint loads
    assert run.step >= STEPS and run.step % 10 == 0
    assert (tmp_path / "runs" / ".workertemp_1").exists()  # what the dead worker left

    # --- a restarted cluster resumes from it and clears the dead worker's leftovers
    results = _cluster(_train_cmd(dist_data, out, "--resume", steps=run.step + 10))
    for rc, err in results:
        assert rc == 0, err[-3000:]
    assert "resuming" in results[0][1]
    assert (out / "checkpoints" / f"ckpt-{run.step + 10}" / "manifest.json").exists()
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["cluster"]
    # two workers, stopped, killed and resumed, end where one process that never stopped ends
    for step in (10, 20, STEPS):
        assert math.isclose(_val(out, step), _val(reference_run, step), rel_tol=MIRRORED_RTOL)


# --- mixed precision ------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_is_finite_and_close_to_float32(
    dist_data, reference_run, tmp_path, precision
):
    out = tmp_path / precision
    assert (
        main(
            [
                "train",
                "--data",
                str(dist_data),
                "--out",
                str(out),
                *TRAIN,
                "--set",
                f"train.max_steps={STEPS}",
                "--strategy",
                "default",
                "--set",
                f"train.precision={precision}",
            ]
        )
        == 0
    )
    vals = {step: (_val(out, step), _val(reference_run, step)) for step in (10, 20, STEPS)}
    for step, (got, ref) in vals.items():
        assert math.isfinite(got)
        assert abs(got - ref) < MIXED_ATOL, (step, got, ref)
    assert any(got != ref for got, ref in vals.values())  # it really computed in 16 bits
    assert all(math.isfinite(r["loss"]) for r in _metrics(out))
    # the policy does not leak into whatever this process builds next
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"


# --- threads ----------------------------------------------------------------------------------


def test_intra_op_threads_auto_is_one_only_for_small_steps_on_small_cpus(monkeypatch):
    monkeypatch.setattr(distribute, "cpu_count", lambda: 2)
    monkeypatch.setattr(distribute, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert distribute.intra_op_threads("auto", 64, 128, "lstm") == 1  # 4M multiply-adds
    assert distribute.intra_op_threads("auto", 64, 256, "lstm") == 1  # 16M
    assert distribute.intra_op_threads("auto", 50, 512, "lstm") == 0  # 52M: TF's default
    assert distribute.intra_op_threads("auto", 50, 512, "rnn") == 1  # one gate: 13M
    assert distribute.intra_op_threads(3, 64, 128, "lstm") == 3  # explicit wins
    # AVX2 only: one thread does these matmuls at half the speed, so the bound is lower
    monkeypatch.setattr(distribute, "cpu_flags", lambda: {"avx2", "fma"})
    assert distribute.intra_op_threads("auto", 64, 128, "lstm") == 1  # 4M
    assert distribute.intra_op_threads("auto", 64, 256, "lstm") == 0  # 16M: TF's default
    assert distribute.intra_op_threads("auto", 64, 256, "gru") == 0  # 12M
    assert distribute.intra_op_threads("auto", 64, 256, "rnn") == 1  # 4M
    monkeypatch.setattr(distribute, "cpu_count", lambda: 16)
    assert distribute.intra_op_threads("auto", 64, 128, "lstm") == 0  # not measured there


@pytest.mark.parametrize(
    "cap, kept",
    [
        (None, {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
        ("AVX2", {"avx2"}),
        ("avx2_vnni", {"avx2"}),
        ("SSE41", {"avx2"}),
        ("AVX512_CORE", {"avx2", "avx512f"}),
        ("AVX512_CORE_BF16", {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
    ],
)
def test_onednn_max_cpu_isa_withholds_flags_from_the_auto_settings(
    monkeypatch, tmp_path, cap, kept
):
    """ONEDNN_MAX_CPU_ISA makes train's auto settings see the CPU its kernels emulate."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n\n")
    monkeypatch.setattr(distribute, "CPUINFO", str(info))
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert distribute.cpu_flags() == {"fpu"} | kept
    bf16 = "mixed_bfloat16" if "avx512_bf16" in kept else "float32"
    assert distribute.resolve_precision("auto") == bf16


def test_embedding_rows_of_one_symbol_are_one_adam_update():
    """A symbol read k times in a batch gives its embedding k gradient rows (IndexedSlices);
    Keras 3's Adam squared them before summing, so the second moment was too small and a
    row moved ~2.5x past Adam's bound of one learning rate per step.  reduce_and_clip hands
    the optimizer their sum, and the norm it clips by is that sum's."""
    tf = tensorflow()
    import keras

    rng = np.random.default_rng(0)

    def train(to_grad):
        var = keras.Variable(np.zeros((4, 2), np.float32))
        adam = keras.optimizers.Adam(0.002)
        adam.build([var])
        for _ in range(50):
            rows = tf.constant(rng.normal(0.001, 0.01, (600, 2)), tf.float32)
            grads, norm = to_grad(
                tf.IndexedSlices(rows, tf.zeros(600, tf.int32), tf.constant([4, 2]))
            )
            np.testing.assert_allclose(float(norm), np.linalg.norm(rows.numpy().sum(0)), rtol=1e-5)
            adam.apply_gradients(zip(grads, [var]))
        return var.numpy()

    moved = train(lambda g: distribute.reduce_and_clip([g]))
    assert np.abs(moved[0]).max() <= 50 * 0.002 * 1.001  # Adam's bound held
    rng = np.random.default_rng(0)
    dense = train(lambda g: ([tf.convert_to_tensor(g)], tf.norm(tf.convert_to_tensor(g))))
    np.testing.assert_allclose(moved, dense, atol=1e-6)
    assert not moved[1:].any()  # rows of symbols not read stay put
