"""Shared fixtures.  Add yours with small edits; keep datasets tiny and session-scoped."""

import os

import pytest

# --- with pytest-xdist (setup.cfg: -n 2 --dist loadgroup): which worker runs what ---------

# The groups that take longest (seconds of one worker in a two-worker run on the 2-core test
# machine, 2026-12-07; "~": estimated from a one-worker run before and after a change), started
# first so that the workers end together; the rest follow in file order.
LONGEST_FIRST = [
    "tests/test_evaluate.py",  # parts, jamo, memory in a child: ~95 (173 before fewer compiles)
    "tests/test_distribute.py",  # a two-process cluster, three times: 91
    "tests/test_train_scale.py",  # big splits, Ctrl-C in evaluations: ~78
    "tests/test_train.py",  # real training, time budgets: 65
    "tests/test_serve.py",  # real servers, worst requests, children: 61
    "tests/test_export.py",  # 79 in the last run, killed_run's setup among it
    "tests/test_docs.py",  # README's and docs' blocks (python.md trains three times): 47
    "tests/test_parallel_cells.py",  # 44
    "tests/test_sample.py",  # sample processes and their XLA children: 39
    "tests/test_notebook.py",  # the tutorial on a Jupyter kernel, an interrupted cell: 25
    "killed_run",  # training processes killed: 25
    "tests/test_visualize.py",  # ~25
    "tests/test_api.py",  # the Python API against the CLI, trainings, the doctest: 21
    "tests/test_cells.py",  # every cell on every backend: 20
    "tests/test_reliability.py",  # 14
    "tests/test_finetune.py",
]  # 12


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Each test file runs on one worker (its module fixtures once), except the tests of
    killed_run, which go together wherever they are (its processes once, not once per
    worker).  xdist_group only matters under --dist loadgroup; under xdist the longest
    groups go first (--no-loadscope-reorder keeps this order)."""
    groups = {}
    for item in items:
        group = "killed_run" if "killed_run" in item.fixturenames else item.nodeid.split("::")[0]
        groups[item.nodeid] = group
        item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):  # an xdist worker: every worker sorts alike
        rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(groups[item.nodeid], len(rank)))


# --- real text, prepared with the real `charrnn prepare` (train-helper) -------------------

# Public-domain English: Lincoln's Gettysburg Address and the opening of the Declaration
# of Independence.
ENGLISH = """\
Four score and seven years ago our fathers brought forth on this continent, a new nation,
conceived in Liberty, and dedicated to the proposition that all men are created equal.

Now we are engaged in a great civil war, testing whether that nation, or any nation so
conceived and so dedicated, can long endure. We are met on a great battle-field of that war.
We have come to dedicate a portion of that field, as a final resting place for those who here
gave their lives that that nation might live. It is altogether fitting and proper that we
should do this.

But, in a larger sense, we can not dedicate -- we can not consecrate -- we can not hallow --
this ground. The brave men, living and dead, who struggled here, have consecrated it, far
above our poor power to add or detract. The world will little note, nor long remember what we
say here, but it can never forget what they did here. It is for us the living, rather, to be
dedicated here to the unfinished work which they who fought here have thus far so nobly
advanced. It is rather for us to be here dedicated to the great task remaining before us --
that from these honored dead we take increased devotion to that cause for which they gave the
last full measure of devotion -- that we here highly resolve that these dead shall not have
died in vain -- that this nation, under God, shall have a new birth of freedom -- and that
government of the people, by the people, for the people, shall not perish from the earth.

When in the Course of human events, it becomes necessary for one people to dissolve the
political bands which have connected them with another, and to assume among the powers of the
earth, the separate and equal station to which the Laws of Nature and of Nature's God entitle
them, a decent respect to the opinions of mankind requires that they should declare the causes
which impel them to the separation.

We hold these truths to be self-evident, that all men are created equal, that they are endowed
by their Creator with certain unalienable Rights, that among these are Life, Liberty and the
pursuit of Happiness. That to secure these rights, Governments are instituted among Men,
deriving their just powers from the consent of the governed, That whenever any Form of
Government becomes destructive of these ends, it is the Right of the People to alter or to
abolish it, and to institute new Government, laying its foundation on such principles and
organizing its powers in such form, as to them shall seem most likely to effect their Safety
and Happiness. Prudence, indeed, will dictate that Governments long established should not be
changed for light and transient causes; and accordingly all experience hath shewn, that
mankind are more disposed to suffer, while evils are sufferable, than to right themselves by
abolishing the forms to which they are accustomed. But when a long train of abuses and
usurpations, pursuing invariably the same Object evinces a design to reduce them under
absolute Despotism, it is their right, it is their duty, to throw off such Government, and to
provide new Guards for their future security.
"""

# The Constitution of the Republic of Korea, Articles 1-4 and 10-11 (statute text, not
# protected by copyright).
KOREAN = """\
제1조 ① 대한민국은 민주공화국이다.
② 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.
제2조 ① 대한민국의 국민이 되는 요건은 법률로 정한다.
② 국가는 법률이 정하는 바에 의하여 재외국민을 보호할 의무를 진다.
제3조 대한민국의 영토는 한반도와 그 부속도서로 한다.
제4조 대한민국은 통일을 지향하며, 자유민주적 기본질서에 입각한 평화적 통일 정책을 수립하고 이를 추진한다.
제10조 모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다. 국가는 개인이 가지는 불가침의 기본적 인권을 확인하고 이를 보장할 의무를 진다.
제11조 ① 모든 국민은 법 앞에 평등하다. 누구든지 성별·종교 또는 사회적 신분에 의하여 정치적·경제적·사회적·문화적 생활의 모든 영역에 있어서 차별을 받지 아니한다.
② 사회적 특수계급의 제도는 인정되지 아니하며, 어떠한 형태로도 이를 창설할 수 없다.
③ 훈장등의 영전은 이를 받은 자에게만 효력이 있고, 어떠한 특권도 이에 따르지 아니한다.
"""


def _once(tmp_path_factory, name, build):
    """``build(root)`` fills the new directory ``root`` and returns a path in it, for a
    session fixture.  Under pytest-xdist the workers share one ``root`` (beside their own
    temporary directories): the first to ask builds it, the others wait for it and then
    read the same files (no test writes into these).  Without xdist: a fresh directory."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    import fcntl
    import shutil

    shared = tmp_path_factory.getbasetemp().parent / "built-once"
    shared.mkdir(exist_ok=True)
    root, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # until the file is closed
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # what a failed build left
            root.mkdir()
            done.write_text(str(build(root).relative_to(root)))
        return root / done.read_text()


def _prepare(tmp_path_factory, name, text, *args):
    def build(root):
        from charrnn.cli import main

        src = root / f"{name}.txt"
        src.write_text(text, encoding="utf-8")
        out = root / name
        assert (
            main(["prepare", str(src), "-o", str(out), "--val-fraction", "0.1", "-q", *args]) == 0
        )
        return out

    return _once(tmp_path_factory, name, build)


@pytest.fixture(scope="session")
def english_data(tmp_path_factory):
    """A prepared dataset directory of ~4 KB of English (10% validation)."""
    return _prepare(tmp_path_factory, "english", ENGLISH * 2)


@pytest.fixture(scope="session")
def korean_data(tmp_path_factory):
    """A prepared dataset directory of Korean statute text, split into jamo."""
    return _prepare(tmp_path_factory, "korean", KOREAN * 3, "--jamo", "on")


# --- tiny trained runs, made with the real `charrnn train` (sample-helper) ---------------


def _train(tmp_path_factory, name, data, *sets, steps=150):
    sets = [
        "model.num_layers=2",
        "model.rnn_size=32",
        "model.embedding_size=16",
        "train.batch_size=16",
        "train.seq_length=32",
        "train.learning_rate=0.01",
        "train.eval_every=40",
        "train.save_every=40",
        "train.log_every=40",
        *sets,
    ]

    def build(root):
        from charrnn.cli import main

        out = root / "run"
        args = ["train", "--data", str(data), "--out", str(out), "--max-steps", str(steps)]
        assert main(args + [a for s in sets for a in ("--set", s)]) == 0
        return out

    return _once(tmp_path_factory, name, build)


@pytest.fixture(scope="session")
def english_run(tmp_path_factory, english_data):
    """A 2x32 LSTM run trained for 150 steps on english_data."""
    return _train(tmp_path_factory, "english_run", english_data)


@pytest.fixture(scope="session")
def korean_run(tmp_path_factory, korean_data):
    """A 2x32 LSTM jamo run trained for 150 steps on korean_data."""
    return _train(tmp_path_factory, "korean_run", korean_data)


# --- a GRU run (visualize/web helper) --------------------------------------------------


@pytest.fixture(scope="session")
def gru_run(tmp_path_factory, english_data):
    """A 2x32 GRU run trained for 150 steps on english_data."""
    return _train(tmp_path_factory, "gru_run", english_data, "model.cell=gru")


# --- the parallel cells (mingru, minlstm) ---------------------------------------------


@pytest.fixture(scope="session")
def mingru_run(tmp_path_factory, english_data):
    """A 2x32 minGRU run (residual blocks, embedding 32) trained for 150 steps."""
    return _train(tmp_path_factory, "mingru_run", english_data, "model.cell=mingru")


@pytest.fixture(scope="session")
def minlstm_run(tmp_path_factory, korean_data):
    """A 2x32 minLSTM jamo run trained for 150 steps on korean_data."""
    return _train(tmp_path_factory, "minlstm_run", korean_data, "model.cell=minlstm")


# --- one long training, read, refused and killed (reliability and export helper) ----------

TINY_SETS = [
    "model.num_layers=1",
    "model.rnn_size=16",
    "model.embedding_size=8",
    "train.batch_size=8",
    "train.seq_length=16",
    "train.learning_rate=0.01",
    "train.sample_length=0",
    "train.intra_op_threads=1",
]


def _wait_for(what, proc, timeout=180):
    import time

    deadline = time.monotonic() + timeout
    while not what():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended early (status {proc.returncode})")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def killed_run(tmp_path_factory, english_data):
    """Real `charrnn train` processes (a 1x16 LSTM that saves and evaluates every step and
    keeps one checkpoint in each folder, so both rotate at every step) put through what the
    reliability tests check, once for them all: each training is a TensorFlow process of
    its own, seconds to start.

    1. While the first process trains, a second training on the run is tried twice in
       this process (``refused``, CliRunner results; ``still_training`` after them), then
       `charrnn sample` runs at least 50 times, until 25 more checkpoints were saved
       (``samples``).  It is killed with SIGKILL at a random moment after that.
    2. A `--resume` process (its stderr: ``resumed``) is killed the same way once it has
       saved past what the first kill left.
    3. A last `--resume` process is stopped with Ctrl-C: ``final`` (exit status, stderr).

    After each kill (nothing running) the run directory is copied as it was to
    ``snapshots[i]``; ``records``: metrics.jsonl after the first kill; ``out``: the run
    directory at the end; ``pid``: the first process's."""
    import json
    import os
    import random
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from clihelp import run

    from charrnn.store import checkpoints

    root = tmp_path_factory.mktemp("killed")
    out = root / "run"
    tiny = [a for s in TINY_SETS for a in ("--set", s)]
    logs = []

    def spawn(*args):
        logs.append(root / f"stderr-{len(logs) + 1}.txt")
        with open(logs[-1], "w") as err:  # a file: no pipe to fill while nobody reads it
            return subprocess.Popen(
                [sys.executable, "-m", "charrnn", "train", *map(str, args)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

    def steps(folder="checkpoints"):
        return [c.step for c in checkpoints.list_in(out / folder)]

    def stop(proc, sig, timeout):
        """Send ``sig`` and wait; whatever happens, the process does not outlive the test."""
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    def kill_at_random(proc):
        try:
            time.sleep(rng.uniform(0.2, 2.0))
        finally:
            stop(proc, signal.SIGKILL, 30)
        snapshots.append(root / f"after-kill-{len(snapshots) + 1}")
        shutil.copytree(out, snapshots[-1], symlinks=True)

    rng = random.Random(9)
    snapshots, result = [], {}
    proc = spawn(
        "--data",
        english_data,
        "--out",
        out,
        "--max-steps",
        100000,
        *tiny,
        "--set",
        "train.save_every=1",
        "--set",
        "train.eval_every=1",
        "--set",
        "train.keep_checkpoints=1",
        "--set",
        "train.log_every=1",
    )
    result["pid"] = proc.pid
    try:
        _wait_for(lambda: steps() and steps("best"), proc)
        result["refused"] = [
            run(*args)
            for args in (
                ["train", "--resume", "--out", out],
                ["train", "--data", english_data, "--out", out, "--force", *tiny],
            )
        ]
        result["still_training"] = proc.poll() is None
        first = steps()[0]
        samples, deadline = [], time.monotonic() + 180
        while len(samples) < 50 or steps()[0] < first + 25:
            which = ["--checkpoint", "latest"] if len(samples) % 2 else []
            samples.append(run("sample", out, *which, "-n", 10, "--seed", len(samples)))
            assert time.monotonic() < deadline and proc.poll() is None
        result["samples"] = samples
    finally:
        kill_at_random(proc)
    result["records"] = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    kept = steps()[0]
    proc = spawn("--resume", "--out", out, "--max-steps", 100000)
    try:
        _wait_for(lambda: steps()[0] > kept, proc)
    finally:
        kill_at_random(proc)
    result["resumed"] = logs[-1].read_text()
    kept = steps()[0]
    proc = spawn("--resume", "--out", out, "--max-steps", 100000)
    try:
        _wait_for(lambda: steps()[0] > kept, proc)
    finally:
        stop(proc, signal.SIGINT, 60)  # Ctrl-C: saves and exits 130
    result.update(final=(proc.returncode, logs[-1].read_text()), snapshots=snapshots, out=out)
    return result
