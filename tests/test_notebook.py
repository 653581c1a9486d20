"""The tutorial notebook (examples/tutorial.ipynb) executed top to bottom on a real Jupyter
kernel, and a training cell interrupted through the kernel manager, resumed in the next
cell and compared bit for bit with an uninterrupted run.

The kernel runs this test's Python (sys.executable) with this checkout first on its
PYTHONPATH, in a temporary folder holding a copy of the notebook's data, so nothing is
written into the checkout.
"""

import json
import os
import queue
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "tutorial.ipynb"


# --- a kernel running this Python and this checkout --------------------------------------


def _runs_this_python(argv0: str) -> bool:
    """Whether a kernelspec's argv[0] starts sys.executable: jupyter_client runs "python",
    "python3" and "python3.X" as sys.executable (KernelManager.format_kernel_cmd)."""
    major, minor = sys.version_info[:2]
    if argv0 in {"python", f"python{major}", f"python{major}.{minor}"}:
        return True
    found = shutil.which(argv0)
    return found is not None and os.path.samefile(found, sys.executable)


@pytest.fixture
def kernel(tmp_path_factory, monkeypatch):
    """The name of a kernelspec that runs sys.executable ("python3", installed into a
    temporary JUPYTER_PATH when the machine's runs another Python), with the environment
    its kernels inherit: this checkout importable, the tutorial's budget a few seconds."""
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        ours = _runs_this_python(spec.argv[0])
    except NoSuchKernel:
        ours = False
    if not ours:
        from ipykernel.kernelspec import install

        prefix = tmp_path_factory.mktemp("kernelspec")
        install(kernel_name="python3", prefix=str(prefix))  # argv: sys.executable
        monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *([path] if path else [])]))
    monkeypatch.setenv("CHARRNN_TUTORIAL_SECONDS", "2")
    return "python3"


# --- the tutorial, top to bottom -------------------------------------------------------

# The last cell, added here: what the notebook computed, for the checks below.
PROBE = """
import json as _json
print(_json.dumps({
    "executable": sys.executable,
    "charrnn": charrnn.__file__,
    "texts": texts,
    "again": again,
    "streamed": "".join(pieces),
    "stream_as_generated": model.generate("PROSPERO.\\n", n=400, seed=4),
    "bits": bits,
    "run": str(Path(model.path).resolve()),
}))
"""


def _streams(cell, name):
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


def _result(cell, mime="text/plain"):
    """The cell's value (its last expression's) as ``mime``."""
    (result,) = [o for o in cell.outputs if o.output_type == "execute_result"]
    return result.data[mime]


def test_tutorial_notebook_runs(tmp_path, kernel):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "stored with outputs"
    (tmp_path / "data").mkdir()
    for name in ("shakespeare.txt", "korean_constitution.txt"):
        shutil.copy(ROOT / "data" / name, tmp_path / "data")
    examples = tmp_path / "examples"
    examples.mkdir()
    nb.cells.append(nbformat.v4.new_code_cell(PROBE, id="probe"))

    client = NotebookClient(
        nb, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(examples)}}
    )
    client.execute()  # CellExecutionError on the first cell that fails

    cells = {c.id: c for c in nb.cells}
    probe = json.loads(_streams(cells["probe"], "stdout"))
    assert os.path.samefile(probe["executable"], sys.executable)
    assert Path(probe["charrnn"]).resolve().parent == ROOT / "charrnn"
    assert probe["run"] == str((examples / "tutorial-out" / "quick").resolve())

    # The seeds: three texts, the same again under seed 1, the same in this process.
    texts = probe["texts"]
    assert len(set(texts)) == 3 and all(t.startswith("MACBETH.\n") for t in texts)
    assert probe["again"] == texts[0]
    assert _result(cells["same-seed"]) == "True"
    import charrnn

    model = charrnn.load(probe["run"])
    for seed, text in zip((1, 2, 3), texts):
        assert model.generate("MACBETH.\n", n=200, temperature=0.8, seed=seed) == text
    # what the cells print and nothing else
    printed = "".join(f"--- seed {seed}\n{text}\n" for seed, text in zip((1, 2, 3), texts))
    assert _streams(cells["seeds"], "stdout") == printed
    assert probe["streamed"] == probe["stream_as_generated"]
    assert _streams(cells["stream"], "stdout").startswith(probe["streamed"] + "\n--- ")
    bits = probe["bits"]
    assert bits["English"] < bits["gibberish"]
    assert _streams(cells["score"], "stdout") == "".join(
        f"{name:>9}: {b:.2f} bits per character\n" for name, b in bits.items()
    )
    assert _streams(cells["jamo"], "stdout").endswith("back: 대한민국 True\n")

    # The library prints nothing: a cell without print() has nothing on stdout, and no
    # logged line (the charrnn logger's records, shown on stderr) is on stdout too.
    logged = {
        line.removeprefix("charrnn: ")
        for c in code
        for line in _streams(c, "stderr").splitlines()
        if line.startswith("charrnn: ")
    }
    assert any(line.startswith("done at step") for line in logged)  # the logger is shown
    for c in code:
        if "print(" not in c.source:
            assert _streams(c, "stdout") == "", c.id
        for line in _streams(c, "stdout").splitlines():
            assert line.removeprefix("charrnn: ") not in logged, (c.id, line)

    assert _result(cells["visualize"], "text/html").startswith("<iframe srcdoc=")
    assert (examples / "tutorial-out" / "shakespeare.html").stat().st_size > 10_000
    assert ", jamo, " in _result(cells["korean-train"])  # Model(..., 75 symbols, jamo, ...)


# --- interrupt a training cell, resume it, compare with a run never interrupted ------------


def _execute(kc, code, timeout=120.0, waiting=None):
    """Run ``code`` in the kernel; returns its stdout, its stderr and the error it raised
    (None: none).  ``waiting()`` is called at least every 50 ms until the cell ends."""
    msg_id = kc.execute(code)
    streams, error = {"stdout": "", "stderr": ""}, None
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"timed out: {code}"
        if waiting:
            waiting()
        try:
            msg = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            streams[content["name"]] += content["text"]
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
        elif kind == "status" and content["execution_state"] == "idle":
            return streams["stdout"], streams["stderr"], error


SETTINGS = """
import logging
import charrnn
logging.basicConfig(format="%(message)s", force=True)
logging.getLogger("charrnn").setLevel(logging.INFO)
settings = dict(
    data={data!r},
    overrides={{
        "model.num_layers": 1, "model.rnn_size": 32, "model.embedding_size": 16,
        "train.batch_size": 16, "train.seq_length": 32, "train.learning_rate": 0.01,
        "train.max_steps": 400, "train.log_every": 5, "train.eval_every": 100,
        "train.save_every": 100, "train.sample_length": 0, "train.seed": 3,
    }},
)
"""


def test_interrupted_cell_resumes_exactly(tmp_path, kernel, english_data):
    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    km = KernelManager(kernel_name=kernel)
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out, _, error = _execute(kc, SETTINGS.format(data=str(english_data)))
        assert error is None, error
        out, _, error = _execute(
            kc, "import threading; print(threading.current_thread() is threading.main_thread())"
        )
        assert out == "True\n"  # ipykernel runs cells in the main thread: charrnn's handler

        metrics, sent = interrupted / "metrics.jsonl", []

        def interrupt_once_logged():
            if not sent and metrics.exists() and metrics.stat().st_size > 0:
                km.interrupt_kernel()  # SIGINT, as the notebook's stop button sends it
                sent.append(time.monotonic())

        out, log, error = _execute(
            kc,
            f"first = charrnn.train(out={str(interrupted)!r}, progress=True, **settings)\n"
            "print(first.status, first.step, first.signal, charrnn.load(first.out, 'latest').step)",
            waiting=interrupt_once_logged,
        )
        assert sent, "the run ended before it wrote a metrics line"
        assert error is None, error  # not a KeyboardInterrupt: train returned
        status, step, signal, saved = out.split()
        assert (status, signal) == ("interrupted", "2") and 0 < int(step) < 400
        assert int(saved) == int(step)  # the checkpoint of the step it stopped at
        assert f"interrupted at step {step}" in log  # the logger's line, in the cell's output

        out, _, error = _execute(
            kc,
            f"second = charrnn.train(out={str(interrupted)!r}, resume=True, progress=False, "
            "**settings)\nprint(second.status, second.step)",
        )
        assert (error, out) == (None, "done 400\n")
        out, _, error = _execute(
            kc,
            f"third = charrnn.train(out={str(whole)!r}, progress=False, **settings)\n"
            "print(third.status, third.step)",
        )
        assert (error, out) == (None, "done 400\n")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    import charrnn

    resumed = charrnn.load(interrupted, "latest").loaded.tensors
    straight = charrnn.load(whole, "latest").loaded.tensors
    assert resumed.keys() == straight.keys()
    for name, tensor in straight.items():
        assert (resumed[name].dtype, resumed[name].shape) == (tensor.dtype, tensor.shape)
        assert resumed[name].tobytes() == tensor.tobytes(), name  # bit for bit
