"""The portable weights file and `charrnn export` (safetensors, ONNX, TFLite): every file
is run in its own runtime and must reproduce the model TensorFlow restores from the
checkpoint, teacher-forced along the greedy path; so must the snippets of docs/formats.md, run
verbatim without charrnn or TensorFlow."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clihelp import error_line, ok, run

from charrnn.export import formats as E
from charrnn.nn import tensors as nn_tensors
from charrnn.nn.cells import REGISTRY, get
from charrnn.store import weightsfile as W

README = Path(__file__).resolve().parent.parent / "README.md"
FORMATS_DOC = README.parent / "docs" / "formats.md"  # the snippets that use the files
FORMATS = ("safetensors", "onnx", "tflite")


def within(ref, got):
    """The issue's check, written out independently of charrnn.export.compare."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    assert np.all(np.abs(got - ref) <= 1e-4 + 1e-4 * np.abs(ref)), np.abs(got - ref).max()
    top2 = np.sort(ref, axis=-1)[..., -2:]
    decisive = top2[..., 1] - top2[..., 0] > 1e-3
    assert decisive.mean() > 0.5  # the argmax check has something to check
    assert (np.argmax(got, -1) == np.argmax(ref, -1))[decisive].all()


MODELS = ["lstm", "gru", "jamo", "mingru", "minlstm"]


@pytest.fixture(scope="module")
def models(english_run, gru_run, korean_run, mingru_run, minlstm_run, tmp_path_factory):
    """Each tiny model exported once to every format through the CLI, with the reference:
    the greedy path and the Keras logits along it (batch 2: the path and its reverse)."""
    from charrnn.backend import tensorflow
    from charrnn.store.loader import load_run

    out = tmp_path_factory.mktemp("exports")
    result = {}
    runs = {
        "lstm": english_run,
        "gru": gru_run,
        "jamo": korean_run,
        "mingru": mingru_run,
        "minlstm": minlstm_run,
    }  # minlstm: jamo too
    for name, path in runs.items():
        files = {}
        for fmt in FORMATS:
            target = out / f"{name}.{fmt}"
            info = json.loads(ok(run("export", path, "-o", target, "--json")).stdout)
            assert info["out"] == str(target) and info["format"] == fmt and target.is_file()
            assert info["check"]["steps"] == 200
            files[fmt] = target
        r = load_run(path)
        ids, _ = E.reference(r)
        batch = np.stack([ids, ids[::-1]])
        ref = tensorflow().function(r.model)(batch).numpy()
        result[name] = {
            "run": path,
            "files": files,
            "ids": batch,
            "ref": ref,
            "args": r.model_args,
            "vocab": r.vocab,
        }
    return result


def feed(step, ids, n_states, units):
    states = [np.zeros((ids.shape[0], units), np.float32) for _ in range(n_states)]
    out = []
    for t in range(ids.shape[1]):
        logits, states = step(ids[:, t].astype(np.int32), states)
        out.append(np.asarray(logits))
    return np.stack(out, 1)


@pytest.mark.parametrize("name", MODELS)
def test_every_format_reproduces_the_model(models, name):
    """onnxruntime, the LiteRT interpreter and the NumPy reader of the .safetensors file,
    each at batch 2, against the Keras model restored from the TF checkpoint."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    m = models[name]
    args, H = m["args"], m["args"]["rnn_size"]
    names = [f"state_{s}_{i}" for i in range(args["num_layers"]) for s in get(args["cell"]).states]

    sess = ort.InferenceSession(str(m["files"]["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["ids", *names]
    assert [o.name for o in sess.get_outputs()] == ["logits", *(f"new_{s}" for s in names)]
    assert sess.get_inputs()[0].shape == ["batch"]  # dynamic batch
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["vocab"]) == m["vocab"].symbols

    def onnx_step(ids, states):
        logits, *states = sess.run(None, {"ids": ids, **dict(zip(names, states))})
        return logits, states

    runner = Interpreter(model_path=str(m["files"]["tflite"])).get_signature_runner()
    # the same metadata, as JSON in the TFLite metadata table (read docs/formats.md's way)
    from ai_edge_litert.tools.flatbuffer_utils import read_model

    fb = read_model(str(m["files"]["tflite"]))
    entry = next(e for e in fb.metadata if e.name.decode() == "charrnn")
    assert json.loads(bytes(fb.buffers[entry.buffer].data)) == meta

    def tflite_step(ids, states):
        res = runner(ids=ids, **dict(zip(names, states)))
        return res["logits"], [res[f"new_{s}"] for s in names]

    wf = W.read(m["files"]["safetensors"])
    assert wf.vocab.symbols == m["vocab"].symbols and wf.vocab.jamo == m["vocab"].jamo
    from charrnn.nn.step import NumpyOps, cell_step

    weights = wf.weights
    for step in (onnx_step, tflite_step, lambda ids, st: cell_step(NumpyOps, weights, ids, st)):
        within(m["ref"], feed(step, m["ids"], len(names), H))


def test_the_same_run_exports_the_same_bytes(models, tmp_path):
    """Every format is a function of the weights: exported again (another process), each file
    is byte for byte the one before (safetensors' metadata is put in key order)."""
    m = models["lstm"]
    for fmt, first in m["files"].items():
        again = tmp_path / first.name
        cmd = [sys.executable, "-m", "charrnn", "export", str(m["run"]), "-o", str(again)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        assert again.read_bytes() == first.read_bytes(), fmt


def test_tflite_has_builtin_ops_only(models):
    from ai_edge_litert.interpreter import Interpreter

    for m in models.values():
        ops = {
            o["op_name"]
            for o in Interpreter(model_path=str(m["files"]["tflite"]))._get_ops_details()
        }
        assert ops and all(op.isupper() and not op.startswith(("FLEX", "CUSTOM")) for op in ops), (
            ops
        )


# --- docs/formats.md's snippets, verbatim, without charrnn or TensorFlow --------------------

HARNESS = """
import sys as _sys
import numpy as _np
_ids = _np.load(_sys.argv[2])
_state = zero_state(_ids.shape[0])
_out = []
for _t in range(_ids.shape[1]):
    _logits, _state = step(_ids[:, _t], _state)
    _out.append(_logits)
_np.save(_sys.argv[3], _np.stack(_out, 1))
_bad = {"tensorflow", "keras", "charrnn"} & {m.split(".")[0] for m in _sys.modules}
assert not _bad, _bad
"""


def doc_snippet(marker):
    section = FORMATS_DOC.read_text(encoding="utf-8").split("## Use the model elsewhere", 1)[1]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if marker in b]
    assert len(blocks) == 1, marker
    return blocks[0]


@pytest.mark.parametrize(
    "fmt,marker", [("safetensors", "def load_safetensors"), ("onnx", "import onnxruntime")]
)
def test_doc_snippets_run_verbatim(models, tmp_path, fmt, marker):
    code = doc_snippet(marker)
    for m in models.values():
        np.save(tmp_path / "ids.npy", m["ids"])
        p = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                code + HARNESS,
                str(m["files"][fmt]),
                str(tmp_path / "ids.npy"),
                str(tmp_path / "logits.npy"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert p.returncode == 0, p.stderr
        within(m["ref"], np.load(tmp_path / "logits.npy"))
        sample = p.stdout  # the snippet's own sampling loop ran (its __main__ block)
        if m["vocab"].jamo:  # 300 jamo, recomposed into syllables
            assert sum("\uac00" <= c <= "\ud7a3" for c in sample) > 30, sample
        else:
            assert sample.startswith("The ") and len(sample) > 300, sample


TORCH_HARNESS = """
import sys as _sys
import numpy as _np
_emb, _rnn, _head, _vocab = load_torch(_sys.argv[1])
with torch.no_grad():
    _out = _head(_rnn(_emb(torch.tensor(_np.load(_sys.argv[2]), dtype=torch.long)))[0])
_np.save(_sys.argv[3], _out.numpy())
"""


def test_doc_pytorch_snippet(models, tmp_path):
    pytest.importorskip("torch")
    code = doc_snippet("def load_torch") + TORCH_HARNESS
    for m in models.values():
        if get(m["args"]["cell"]).parallel:
            continue  # PyTorch has no layer of the parallel cells
        np.save(tmp_path / "ids.npy", m["ids"])
        p = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                code,
                str(m["files"]["safetensors"]),
                str(tmp_path / "ids.npy"),
                str(tmp_path / "logits.npy"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert p.returncode == 0, p.stderr
        within(m["ref"], np.load(tmp_path / "logits.npy"))


# --- one file is a model ----------------------------------------------------------------


def test_sample_from_the_file_before_tensorflow(models):
    """Same text as the run directory; a short sample never imports TensorFlow."""
    m = models["lstm"]
    code = (
        "import sys; from charrnn.cli import main; rc = main(sys.argv[1:]); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; sys.exit(rc)"
    )
    args = ["sample", str(m["files"]["safetensors"]), "-n", "40", "--seed", "3", "--prime", "We"]
    p = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == ok(run("sample", m["run"], *args[2:])).stdout
    # long enough for the XLA engine to take over, with top-p: still the same text
    for name in ("lstm", "jamo"):
        opts = ("-n", 700, "--seed", 5, "-t", 0.9, "--top-p", 0.95)
        a = ok(run("sample", models[name]["files"]["safetensors"], *opts)).stdout
        assert a == ok(run("sample", models[name]["run"], *opts)).stdout and len(a) >= 700


def test_evaluate_takes_the_file(models, tmp_path):
    from tests.conftest import ENGLISH

    text = tmp_path / "t.txt"
    text.write_text(ENGLISH[:600], encoding="utf-8")
    m = models["gru"]
    a = json.loads(ok(run("evaluate", m["files"]["safetensors"], text, "--json")).stdout)
    b = json.loads(ok(run("evaluate", m["run"], text, "--json")).stdout)
    assert abs(a["total"]["loss_nats"] - b["total"]["loss_nats"]) < 1e-5
    assert a["total"]["symbols"] == b["total"]["symbols"]


@pytest.mark.parametrize("cell", list(REGISTRY))
def test_weights_file_round_trip(cell, tmp_path):
    """Write, read, load into a fresh Keras model: every cell, the same logits."""
    from charrnn.backend import tensorflow
    from charrnn.nn.model import build_model, model_args
    from charrnn.nn.step import NumpyOps, cell_step
    from charrnn.text import Vocab

    tf = tensorflow()
    vocab = Vocab(list("\n abcdefghijk\ufffd"), list(range(14)), unk_id=13)
    model = build_model(len(vocab), cell, num_layers=2, rnn_size=8, embedding_size=4)
    rng = np.random.default_rng(1)
    for v in model.weights:
        v.assign(rng.normal(0, 0.4, v.shape).astype(np.float32))
    path = tmp_path / "m.safetensors"
    meta = W.metadata_for(
        model_args(model),
        vocab,
        {"newlines": "keep", "chars": 10, "symbols": 12},
        step=77,
        val_loss=1.5,
    )
    W.write(path, nn_tensors.tensors_from_model(model), meta)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left
    wf = W.read(path)
    assert (wf.step, wf.val_loss, wf.newlines, wf.vocab.unk_id) == (77, 1.5, "keep", 13)
    assert wf.model_args == model_args(model) and abs(wf.symbols_per_char - 1.2) < 1e-12
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata()["gate_order"] == get(cell).gate_order
    ids = rng.integers(0, len(vocab), (2, 9)).astype(np.int32)
    ref = model(tf.constant(ids)).numpy()
    w = wf.weights
    got = feed(lambda i, s: cell_step(NumpyOps, w, i, s), ids, 2 * w.states_per_layer, 8)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    fresh = build_model(len(vocab), cell, num_layers=2, rnn_size=8, embedding_size=4)
    nn_tensors.assign_to_model(fresh, wf.tensors)
    np.testing.assert_allclose(fresh(tf.constant(ids)).numpy(), ref, atol=1e-6)
    other = build_model(len(vocab), cell, num_layers=1, rnn_size=8, embedding_size=4)
    with pytest.raises(Exception, match="does not fit"):
        nn_tensors.assign_to_model(other, wf.tensors)


# --- bad files, failed checks, missing extras ---------------------------------------------


def _rewrite(src, dst, change_tensors=None, change_meta=None):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(src), "numpy") as f:
        meta, t = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    if change_tensors:
        change_tensors(t)
    if change_meta:
        change_meta(meta)
    save_file(t, str(dst), metadata=meta)
    return dst


def test_bad_weights_files_are_one_clear_error(models, tmp_path):
    good = models["lstm"]["files"]["safetensors"]
    raw = good.read_bytes()
    cases = {
        "garbage": b"\x00" * 3,
        "header": (40).to_bytes(8, "little") + b'{"a": 1' + b" " * 33 + b"\x00" * 8,
        "truncated": raw[: len(raw) // 2],
        "huge length": (10**15).to_bytes(8, "little") + raw[8:],
    }
    for name, data in cases.items():
        (tmp_path / f"{name}.safetensors").write_bytes(data)
    _rewrite(
        good,
        tmp_path / "shape.safetensors",
        lambda t: t.__setitem__("logits.bias", np.zeros(3, np.float32)),
    )
    _rewrite(
        good,
        tmp_path / "dtype.safetensors",
        lambda t: t.__setitem__("embedding", t["embedding"].astype(np.float16)),
    )
    _rewrite(good, tmp_path / "missing.safetensors", lambda t: t.pop("layers.1.bias"))
    _rewrite(
        good, tmp_path / "extra.safetensors", lambda t: t.__setitem__("x", np.zeros(1, np.float32))
    )
    _rewrite(good, tmp_path / "nan.safetensors", lambda t: t["logits.bias"].__setitem__(0, np.nan))
    _rewrite(
        good,
        tmp_path / "vocab.safetensors",
        change_meta=lambda m: m.__setitem__("vocab", json.dumps(json.loads(m["vocab"])[:-1])),
    )
    _rewrite(
        good,
        tmp_path / "repeated.safetensors",  # any order is fine, twice is not
        change_meta=lambda m: m.__setitem__(
            "vocab", json.dumps((lambda v: v[:-1] + v[:1])(json.loads(m["vocab"])))
        ),
    )
    _rewrite(
        good,
        tmp_path / "model.safetensors",
        change_meta=lambda m: m.__setitem__("model", "{not json"),
    )
    _rewrite(
        good,
        tmp_path / "version.safetensors",
        change_meta=lambda m: m.__setitem__("format_version", "9"),
    )
    _rewrite(
        good,
        tmp_path / "jamo.safetensors",
        change_meta=lambda m: m.__setitem__("jamo", "hangul/99"),
    )
    _rewrite(good, tmp_path / "foreign.safetensors", change_meta=lambda m: m.clear())
    _rewrite(
        good,
        tmp_path / "cell.safetensors",  # a cell this charrnn does not know
        change_meta=lambda m: m.update(cell="mamba", model=m["model"].replace('"lstm"', '"mamba"')),
    )
    for path in sorted(tmp_path.glob("*.safetensors")):
        err = error_line(run("sample", path, "-n", 5), only=True)
        assert str(path) in err, err
        if path.stem == "version":
            assert "upgrade charrnn" in err
        elif path.stem == "vocab":
            assert "symbols but the weights are for" in err
        elif path.stem == "cell":
            assert "is a model of cell 'mamba', which this charrnn does not know" in err
        else:
            assert "export it again" in err
    error_line(run("evaluate", tmp_path / "missing.safetensors", README), only=True)


def test_a_failed_check_leaves_nothing(models, tmp_path, monkeypatch):
    """A candidate off by 2e-4 in one logit is refused, and nothing is left at OUT."""
    real = E.numpy_step

    def off_by_a_little(path, args):
        step = real(path, args)

        def bad(ids, states):
            logits, states = step(ids, states)
            return logits + np.eye(logits.shape[1], dtype=np.float32)[3] * 2e-4 * (
                1 + abs(logits[0, 3])
            ), states

        return bad

    monkeypatch.setattr(E, "numpy_step", off_by_a_little)
    err = error_line(
        run("export", models["lstm"]["run"], "-o", tmp_path / "m.safetensors"), only=True
    )
    assert "does not reproduce the model" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_export_usage_errors(models, tmp_path):
    r = models["lstm"]["run"]
    bad_format = run("export", r, "-o", tmp_path / "m.bin")
    assert "cannot tell the format" in error_line(bad_format, only=True)
    assert "does not exist" in error_line(
        run("export", r, "-o", tmp_path / "no" / "m.onnx"), only=True
    )
    assert "checkpoint" in error_line(
        run("export", r, "-o", tmp_path / "m.onnx", "--checkpoint", tmp_path / "ckpt-7"), only=True
    )
    assert not list(tmp_path.iterdir())
    # a missing extra names it (onnx made unimportable in a real process)
    code = (
        "import sys; sys.modules['onnx'] = None; from charrnn.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, "export", str(r), "-o", str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1 and "pip install 'charrnn-lab[export]'" in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


# --- the weights file of every kept checkpoint -------------------------------------------


@pytest.mark.parametrize("which", ["english_run", "mingru_run"])
def test_every_kept_checkpoint_has_its_weights_file(which, request):
    """Training wrote weights.safetensors into each checkpoint it kept, in the manifest;
    rotation took the others away with their checkpoints.  Its arrays are those TensorFlow
    restores from the checkpoint (what exports are checked against)."""
    from charrnn.store import checkpoints
    from charrnn.store.loader import load_run

    run_dir = request.getfixturevalue(which)
    kept = [ck for d in ("checkpoints", "best") for ck in checkpoints.list_in(run_dir / d)]
    assert len(kept) >= 2 and not any(ck.legacy for ck in kept)
    assert len(checkpoints.list_in(run_dir / "best")) == 1  # best was saved more than once
    for ck in kept:
        checkpoints.verify(ck, need="all")  # size and crc32 of every file, this one included
        path = ck.file("weights.safetensors")
        assert path is not None, ck.name
        wf = W.read(path)
        assert wf.step == ck.step == ck.manifest["step"]
        if ck.dir.parent.name == "best":
            assert wf.val_loss == pytest.approx(ck.manifest["val_loss"])
        model = load_run(run_dir, str(ck.dir)).model
        for k, a in nn_tensors.tensors_from_model(model).items():
            np.testing.assert_array_equal(wf.tensors[k], a)
    files = sorted(p.parent for p in run_dir.rglob("*.safetensors"))
    assert files == sorted(ck.dir for ck in kept)  # none left behind by rotation


def _strip_weights(run_dir):
    """Make ``run_dir`` look like a run of the charrnn before weights files."""
    for manifest in run_dir.glob("*/ckpt-*/manifest.json"):
        m = json.loads(manifest.read_text())
        m["files"].pop("weights.safetensors")
        manifest.write_text(json.dumps(m))
        (manifest.parent / "weights.safetensors").unlink()


def _snapshot(run_dir):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*")}


def test_a_run_without_weights_files(english_run, tmp_path):
    """Samples through TensorFlow, the same text, saying once how to add the files and
    writing nothing; `charrnn export RUN` adds them (checked, in the manifests)."""
    import shutil

    from charrnn.store import checkpoints

    old = tmp_path / "old"
    shutil.copytree(english_run, old)
    _strip_weights(old)
    before = _snapshot(old)
    args = ("-n", 60, "--seed", 2, "--prime", "We")
    want = ok(run("sample", english_run, *args))
    assert want.stderr == ""
    got = ok(run("sample", old, *args))
    assert got.stdout == want.stdout
    assert got.stderr.count("\n") == 1 and f"charrnn export {old}" in got.stderr
    assert _snapshot(old) == before  # never writes into the run unasked

    info = json.loads(ok(run("export", old, "--json")).stdout)
    kept = [ck for d in ("checkpoints", "best") for ck in checkpoints.list_in(old / d)]
    assert sorted(info["added"]) == sorted(str(ck.dir / "weights.safetensors") for ck in kept)
    for ck in kept:
        checkpoints.verify(ck, need="all")
        assert ck.file("weights.safetensors") is not None
    again = ok(run("sample", old, *args))
    assert again.stdout == want.stdout and again.stderr == ""
    assert json.loads(ok(run("export", old, "--json")).stdout)["added"] == []


def test_a_killed_save_leaves_no_complete_looking_weights_file(killed_run):
    """SIGKILL a run that saves every step (conftest's killed_run, twice, at random moments):
    every checkpoint directory that exists is whole (its weights file in its manifest,
    checksums right); what a killed save left is in a temporary directory the readers never
    look at."""
    from charrnn.store import checkpoints

    for out in killed_run["snapshots"]:  # the run directory as each kill left it
        for folder in (out / "checkpoints", out / "best"):
            kept = checkpoints.list_in(folder)
            assert kept or folder.name == "best", "no checkpoint was written before the kill"
            for ck in kept:
                checkpoints.verify(ck, need="all")
                assert W.read(ck.file("weights.safetensors")).step == ck.step
            for leftover in folder.glob(".tmp-ckpt-*"):  # a save the kill interrupted, if any
                assert leftover.name not in {ck.dir.name for ck in kept}
                weights = leftover / "weights.safetensors"
                if weights.exists():  # under its final name only once written whole
                    W.read(weights)
        ok(run("sample", out, "-n", 20, "--checkpoint", "latest"))
