"""`charrnn export --int8`: every format and cell exports through the real CLI, loads in its
runtime and generates; its logits are the dequantized model's (charrnn.export.int8, NumPy);
a damaged quantization is refused with both bits/char figures and nothing written.

Each format is converted once per module (the ``exported`` fixture); the rnn cell, which has
no trained fixture, goes through the same ONNX rewrite on random weights.
"""

import json
import re

import numpy as np
import pytest
from clihelp import error_line, ok, run

import charrnn
from charrnn.export import formats as E
from charrnn.export import int8

FORMATS = ("onnx", "safetensors", "tflite", "web")
SUFFIX = {"onnx": "onnx", "safetensors": "safetensors", "tflite": "tflite", "web": "html"}


def _int8_reference(path, fmt):
    """The dequantized model a format's int8 file must hold, and its greedy path."""
    from charrnn.nn.step import Weights
    from charrnn.nn.tensors import engine_weights
    from charrnn.store.loader import load

    loaded = load(path)
    if fmt in ("onnx", "safetensors"):
        q = int8.quantize_all(loaded.tensors)
        w = engine_weights(loaded.cell, int8.dequantized(loaded.tensors, q))
    else:
        arrays = int8.engine_arrays(loaded.weights.arrays())
        w = Weights.from_arrays(loaded.cell, int8.dequantized(arrays, int8.quantize_all(arrays)))
    return loaded, w


@pytest.fixture(scope="module")
def exported(english_run, gru_run, mingru_run, minlstm_run, tmp_path_factory):
    """Each run through `charrnn export --int8 --json` once per format."""
    out = tmp_path_factory.mktemp("int8")
    runs = {"lstm": english_run, "gru": gru_run, "mingru": mingru_run, "minlstm": minlstm_run}
    result = {}
    for name, path in runs.items():
        for fmt in FORMATS:
            target = out / f"{name}.int8.{SUFFIX[fmt]}"
            info = json.loads(ok(run("export", path, "-o", target, "--int8", "--json")).stdout)
            assert info["int8"] and info["format"] == fmt and target.is_file()
            assert info["bytes"] == target.stat().st_size < info["float_bytes"]
            assert info["bits_per_char"] - info["float_bits_per_char"] <= 0.02
            result[name, fmt] = {"run": path, "file": target, "info": info}
    return result


def _generate(step, w, loaded, n=60):
    """Greedy text from the file's own step, from the fixed prime's start symbol."""
    from charrnn.generate.sampler import start_id

    tok, states, out = start_id(loaded.vocab), w.zero_states(1), []
    for _ in range(n):
        logits, states = step(np.array([tok], np.int32), states)
        tok = int(np.argmax(logits[0]))
        out.append(tok)
    return loaded.vocab.decode(np.array(out))


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "safetensors"])
@pytest.mark.parametrize("name", ["lstm", "gru", "mingru", "minlstm"])
def test_int8_file_runs_the_dequantized_model(exported, name, fmt):
    """In its runtime, along the dequantized model's greedy path, and generating its text."""
    e = exported[name, fmt]
    loaded, w = _int8_reference(e["run"], fmt)
    ids, ref = E.greedy_path(w, loaded.vocab)
    args = loaded.model_args
    make = {"onnx": E.onnx_step, "tflite": E.tflite_step, "safetensors": E.numpy_step}
    step = make[fmt](e["file"], args)
    got = E.teacher_forced(step, ids, E._n_states(args), w.units)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    text = _generate(step, w, loaded)
    assert len(text) > 20 and text == _generate(E.numpy_step_of(w), w, loaded)


def test_int8_files_hold_int8(exported):
    import onnx
    from ai_edge_litert.tools import flatbuffer_utils

    model = onnx.load(str(exported["lstm", "onnx"]["file"]))
    init = {i.name: i.data_type for i in model.graph.initializer}
    for k in ("embedding", "layers.0.kernel", "layers.0.recurrent_kernel", "logits.kernel"):
        assert init[k + ".q"] == onnx.TensorProto.INT8 and k not in init  # no float copy
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["int8"])["embedding"] == 0 and meta["format"] == "charrnn-weights"
    for name in ("lstm", "mingru"):
        flat = exported[name, "tflite"]["file"].read_bytes()
        m = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
        big = [t for t in m.subgraphs[0].tensors if len(t.shape) == 2 and t.shape.prod() >= 512]
        const = [t for t in big if m.buffers[t.buffer].data is not None]
        assert const and all(t.type == 9 for t in const), [(t.name, t.type) for t in const]  # INT8


def test_int8_onnx_in_onnxruntime_defaults(exported):
    """onnxruntime's default session fuses DequantizeLinear + MatMul into MatMulNBits,
    which quantizes the activations too (docs/formats.md): close to the dequantized model."""
    import onnxruntime as ort

    e = exported["lstm", "onnx"]
    loaded, w = _int8_reference(e["run"], "onnx")
    ids, ref = E.greedy_path(w, loaded.vocab)
    sess = ort.InferenceSession(str(e["file"]), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()][1:]

    def default_step(x, states):
        res = sess.run(None, {"ids": x, **dict(zip(names, states))})
        return res[0], res[1:]

    loose = E.teacher_forced(default_step, ids, E._n_states(loaded.model_args), w.units)
    assert np.abs(loose - ref).max() < 0.5
    assert (loose.argmax(1) == ref.argmax(1)).mean() > 0.9


@pytest.mark.parametrize("name", ["lstm", "mingru"])
def test_int8_safetensors_holds_int8_and_scales(exported, name):
    from safetensors import safe_open

    e = exported[name, "safetensors"]
    with safe_open(str(e["file"]), framework="numpy") as f:
        meta = f.metadata()
        axes = json.loads(meta["int8"])
        assert {"embedding", "layers.0.kernel", "logits.kernel"} <= set(axes)
        for k, axis in axes.items():
            q, scale = f.get_tensor(k), f.get_tensor(k + ".scale")
            assert q.dtype == np.int8 and scale.dtype == np.float32
            assert scale.shape == (q.shape[axis],) and np.abs(q).max() == 127
        assert f.get_tensor("logits.bias").dtype == np.float32
    loaded, w = _int8_reference(e["run"], "safetensors")
    tensors = charrnn.load(e["file"]).loaded.tensors  # what sample, evaluate and the API read
    ref = int8.dequantized(loaded.tensors, int8.quantize_all(loaded.tensors))
    assert tensors.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(tensors[k], ref[k])


def test_rnn_cell_int8_onnx_and_tflite_match_numpy(tmp_path):
    """The rewrites on the cell no fixture trains: random weights, one step, exact."""
    import onnxruntime as ort

    from charrnn.export.onnx_graph import onnx_model
    from charrnn.nn.step import NumpyOps, Weights, cell_step
    from charrnn.nn.tensors import engine_weights, expected_shapes

    args = {"cell": "rnn", "num_layers": 2, "rnn_size": 32, "embedding_size": 16, "vocab_size": 40}
    rng = np.random.default_rng(0)
    t = {k: rng.normal(0, 0.3, s).astype(np.float32) for k, s in expected_shapes(args).items()}
    model, q = onnx_model(t, args), int8.quantize_all(t)
    int8.onnx_int8(model, q)
    w = engine_weights("rnn", int8.dequantized(t, q))
    opts = ort.SessionOptions()
    opts.add_session_config_entry(E.ONNX_DEQUANTIZE_AT_LOAD, "1")
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ids, states = np.array([3, 7], np.int32), w.zero_states(2)
    got = sess.run(None, {"ids": ids, "state_h_0": states[0], "state_h_1": states[1]})[0]
    ref, _ = cell_step(NumpyOps, w, ids, states)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # TFLite: the engines' arrays, the [vocab, H] table int8 too
    arrays = int8.engine_arrays(engine_weights("rnn", t).arrays())
    q = int8.quantize_all(arrays)
    w = Weights.from_arrays("rnn", int8.dequantized(arrays, q))
    path = tmp_path / "rnn.tflite"
    path.write_bytes(int8.tflite_int8(E.tflite_model(None, args, {}, weights=w), q))
    got, _ = E.tflite_step(path, args)(ids, states)
    np.testing.assert_allclose(got, cell_step(NumpyOps, w, ids, states)[0], atol=1e-5)


def test_quantize_is_symmetric_per_channel():
    w = np.array([[1.0, -0.5, 0.0], [-2.0, 0.25, 0.0]], np.float32)
    q, s = int8.quantize(w, 1)
    np.testing.assert_allclose(s, [2 / 127, 0.5 / 127, 1.0])
    assert q.dtype == np.int8 and q[1, 0] == -127 and q[0, 1] == -127 and (q[:, 2] == 0).all()
    assert np.abs(int8.dequantize(q, s, 1) - w).max() <= s.max() / 2


def test_damaged_quantization_is_refused(english_run, tmp_path, monkeypatch):
    """A planted scale error (every scale x10) fails the quality check: both figures in
    the one error line, nothing written."""
    real = int8.quantize

    def damaged(w, axis):
        q, scale = real(w, axis)
        return q, scale * 10

    monkeypatch.setattr(int8, "quantize", damaged)
    out = tmp_path / "bad.onnx"
    line = error_line(run("export", english_run, "-o", out, "--int8"))
    assert "bits/char" in line and "nothing was written" in line
    figures = [float(x) for x in re.findall(r"\d+\.\d{4}", line)]
    assert len(figures) >= 2 and figures[0] - figures[1] > 0.02
    assert list(tmp_path.iterdir()) == []


def test_int8_needs_a_check_text_for_a_weights_file(english_run, tmp_path):
    wf = next((english_run / "best").glob("ckpt-*/weights.safetensors"))
    line = error_line(run("export", wf, "-o", tmp_path / "m.onnx", "--int8"), only=True)
    assert "--check-text" in line
    text = tmp_path / "check.txt"
    text.write_text("We hold these truths to be self-evident, that all men are created equal.\n")
    info = json.loads(
        ok(
            run("export", wf, "-o", tmp_path / "m.onnx", "--int8", "--check-text", text, "--json")
        ).stdout
    )
    assert info["float_bits_per_char"] > 0 and (tmp_path / "m.onnx").is_file()
    alone = run("export", wf, "-o", tmp_path / "n.onnx", "--check-text", text)
    assert alone.exit_code == 2 and "go with --int8" in alone.stderr


@pytest.fixture(scope="module")
def driver():
    import browser

    yield from browser.browser_session()


@pytest.mark.parametrize("name", ["lstm", "gru", "mingru", "minlstm"])
def test_int8_page_matches_the_dequantized_model(exported, driver, name):
    """The page stores int8 weights and scales, dequantizes them on load, and its logits
    along the dequantized NumPy model's greedy path are that model's."""
    import base64

    import browser

    e = exported[name, "web"]
    page = e["file"].read_text("utf-8")
    data = json.loads(page.split('id="model">', 1)[1].split("</script>", 1)[0])
    table = data["arrays"]["table"]
    assert table["axis"] == 0 and "scale" in table  # the first layer's table is int8 too
    assert len(base64.b64decode(data["weights_int8"])) >= 0.75 * sum(
        np.prod(a["shape"]) for a in data["arrays"].values()
    )
    loaded, w = _int8_reference(e["run"], "web")
    ids, ref = E.greedy_path(w, loaded.vocab)
    url = browser.open_page(driver, e["file"])
    got = np.array(
        driver.execute_script("return window.charrnn.logits(arguments[0])", ids.tolist())
    )
    np.testing.assert_array_less(np.abs(got - ref), 1e-4 + 1e-4 * np.abs(ref))
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.95
    browser.assert_offline(driver, url)


def test_model_export_int8_writes_the_clis_file(exported, tmp_path):
    """Model.export(int8=True) is `charrnn export --int8`: the same bytes and figures; its
    int8 options without int8 are the command's usage error, as a CharrnnError."""
    done = exported["lstm", "safetensors"]
    model = charrnn.load(done["run"])
    info = model.export(tmp_path / "m.safetensors", int8=True)
    assert (tmp_path / "m.safetensors").read_bytes() == done["file"].read_bytes()
    for key in ("bytes", "float_bytes", "bits_per_char", "float_bits_per_char"):
        assert info[key] == done["info"][key], key
    with pytest.raises(charrnn.CharrnnError, match="go with --int8"):
        model.export(tmp_path / "n.safetensors", int8_tolerance=0.1)


def test_int8_safetensors_is_read_by_sample_and_the_api(exported):
    """An int8 .safetensors file is a model like any other: `charrnn sample` and
    charrnn.load read it (its matrices dequantized) and write the same text."""
    e = exported["gru", "safetensors"]
    text = charrnn.load(e["file"]).generate("We ", n=80, seed=3)
    assert ok(run("sample", e["file"], "--prime", "We ", "-n", "80", "--seed", "3")).stdout == text


def test_a_damaged_int8_header_is_one_error(exported, tmp_path):
    """The int8 metadata is checked like the rest: a name that is no matrix, or a scale of
    the wrong length, is one error line naming it."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    src = exported["lstm", "safetensors"]["file"]
    with safe_open(str(src), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(src))
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), {**meta, "int8": '{"logits.bias": 1}'})
    line = error_line(run("sample", bad, "-n", "5"), only=True)
    assert "int8 metadata names 'logits.bias'" in line
    tensors["embedding.scale"] = tensors["embedding.scale"][:-1]
    save_file(tensors, str(bad), meta)
    line = error_line(run("sample", bad, "-n", "5"), only=True)
    assert "tensor embedding.scale is F32" in line and "expected F32" in line
