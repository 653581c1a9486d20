"""`charrnn export`: one model as a .safetensors, ONNX or TFLite (LiteRT) file, verified.

Every format is the same one-step function

    (ids[batch] int32, state...) -> (logits[batch, vocab] float32, new state...)

with the state as separate [batch, rnn_size] float32 tensors, per layer h (and c for
an LSTM): ``state_h_<i>``, ``state_c_<i>`` in, ``new_state_h_<i>``, ``new_state_c_<i>`` out.

ONNX is built directly from the weight arrays with the ``onnx`` package (the converters
from Keras are broken on Keras 3), TFLite by converting a tf.function written from the
same arrays with builtin ops only (nothing needs the Flex delegate).  Before a file is
kept it is run -- in onnxruntime, in the LiteRT interpreter, or read back by the NumPy
engine -- teacher-forced along the greedy path of the model that TensorFlow restores
from the checkpoint, and must reproduce its logits; otherwise nothing is written.

``--int8`` (charrnn.export.int8): every format holds the dequantized model instead, checked
the same way against it, and is kept only if that model's bits per character on a check text
are within a tolerance of the float model's (the caller's ``score``: charrnn.analysis'
scoring, which this layer may not import).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from charrnn import backend
from charrnn.errors import CharrnnError
from charrnn.export import int8, webpage
from charrnn.export.onnx_graph import need as _need
from charrnn.export.onnx_graph import onnx_model
from charrnn.generate.sampler import start_id
from charrnn.nn.cells import get
from charrnn.nn.step import NumpyOps, Weights, cell_step, tf_ops
from charrnn.nn.tensors import engine_weights, tensors_from_model
from charrnn.store import checkpoints, loader, weightsfile
from charrnn.store.checkpoints import BEST_DIR, CHECKPOINTS_DIR

if TYPE_CHECKING:
    from charrnn.atomic import StrPath
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

FORMATS = ("safetensors", "onnx", "tflite", "web")
SUFFIXES = {
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".tflite": "tflite",
    ".html": "web",
    ".htm": "web",
}
PRIME = "The "  # the fixed prime of the check (characters the vocabulary lacks are left out)
CHECK_STEPS = 200
ATOL = RTOL = 1e-4  # every logit within ATOL + RTOL * |reference|
MARGIN = 1e-3  # argmax must agree where the reference's top two differ by more
ONNX_DEQUANTIZE_AT_LOAD = "session.disable_quant_qdq"  # onnxruntime's session config key
INT8_TOLERANCE = 0.02  # bits/char an int8 export may lose against float on the check text
# bits per character of a model (its engines' arrangement) on the check text
Score = Callable[[Weights], float]
# A format's one-step function (above), run on NumPy arrays: (ids, states) -> (logits, states).
StepFn = Callable[[np.ndarray, list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]


def format_of(out: StrPath, fmt: str | None = None) -> str:
    if fmt:
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix not in SUFFIXES:
        raise CharrnnError(
            f"cannot tell the format from {str(out)!r}; give --format "
            f"({', '.join(FORMATS)}) or end OUT in .safetensors, .onnx or .tflite"
        )
    return SUFFIXES[suffix]


# --- the reference: the model TensorFlow restored, greedy from a fixed prime -----------------


def greedy_path(
    w: Weights, vocab: Vocab, steps: int = CHECK_STEPS
) -> tuple[np.ndarray, np.ndarray]:
    """(ids fed, NumPy logits after each): the greedy path of ``w`` from the fixed prime."""
    prime = [start_id(vocab), *vocab.encode(PRIME, unknown="skip")][:steps]
    states = w.zero_states(1)
    ids, out = list(prime), []
    with np.errstate(over="ignore", under="ignore"):
        for t in range(steps):
            logits, states = cell_step(NumpyOps, w, np.array([ids[t]], np.int32), states)
            out.append(logits[0])
            if t + 1 >= len(ids) and t + 1 < steps:
                ids.append(int(np.argmax(logits[0])))
    return np.array(ids, np.int32), np.stack(out).astype(np.float64)


def reference(run: LoadedModel, steps: int = CHECK_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """(ids fed, logits after each): charrnn's greedy path from the fixed prime, with the
    logits of ``run.model`` (the Keras model TensorFlow restored) along it, in one call."""
    tf = backend.tensorflow()
    ids, _ = greedy_path(run.weights, run.vocab, steps)
    # in a graph: eagerly, the recurrent loop runs op by op (seconds for 200 steps)
    logits = tf.function(lambda x: run.model(x))(tf.constant(ids[None]))
    return ids, logits.numpy()[0].astype(np.float64)


def teacher_forced(step: StepFn, ids: np.ndarray, n_states: int, units: int) -> np.ndarray:
    """Logits of a candidate ``step(ids[batch], states) -> (logits, states)`` fed ``ids``."""
    states = [np.zeros((1, units), np.float32) for _ in range(n_states)]
    out = []
    for tok in ids:
        logits, states = step(np.array([tok], np.int32), states)
        out.append(np.asarray(logits)[0])
    return np.stack(out)


def compare(ref: np.ndarray, got: np.ndarray, what: str) -> dict:
    """Raise unless ``got`` reproduces ``ref`` (steps x vocab) within the tolerance."""
    err = np.abs(got.astype(np.float64) - ref)
    bad = err > ATOL + RTOL * np.abs(ref)
    top2 = np.sort(ref, axis=1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > MARGIN
    wrong = decisive & (np.argmax(got, axis=1) != np.argmax(ref, axis=1))
    if bad.any() or wrong.any() or not np.isfinite(got).all():
        t = int(np.argmax(bad.any(axis=1) | wrong)) if (bad.any() or wrong.any()) else 0
        raise CharrnnError(
            f"the {what} export does not reproduce the model: at step {t} of "
            f"{len(ref)} the largest logit error is {float(np.nanmax(err[t])):.3g} "
            f"(allowed {ATOL:g} + {RTOL:g} x |logit|); nothing was written. "
            "Please report this with the model's settings"
        )
    return {
        "steps": int(len(ref)),
        "max_abs_error": float(err.max()),
        "argmax_checked": int(decisive.sum()),
    }


# --- formats ----------------------------------------------------------------------------------


def onnx_step(path: StrPath, args: dict) -> StepFn:
    ort = _need("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    # int8 weights (export --int8) dequantized once, at load: what the file says, at float
    # speed (by default onnxruntime fuses each DequantizeLinear + MatMul into MatMulNBits,
    # which quantizes the activations too and was 10x slower than float at batch 1)
    opts.add_session_config_entry(ONNX_DEQUANTIZE_AT_LOAD, "1")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    ins = [i.name for i in sess.get_inputs()][1:]
    outs = [o.name for o in sess.get_outputs()]

    def step(ids: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        res = sess.run(outs, {"ids": ids, **dict(zip(ins, states))})
        return res[0], res[1:]

    return step


def tflite_model(
    tensors: dict[str, np.ndarray] | None,
    args: dict,
    metadata: dict[str, str],
    weights: Weights | None = None,
) -> bytes:
    """The one-step function as a TFLite flatbuffer with builtin ops only, carrying ``metadata``,
    of the named ``tensors`` or of the engines' ``weights``."""
    tf, ops = tf_ops()
    w = weights if weights is not None else engine_weights(args["cell"], tensors)
    H = args["rnn_size"]
    names = _state_inputs(args)
    specs = [tf.TensorSpec([None], tf.int32, name="ids")]
    specs += [tf.TensorSpec([None, H], tf.float32, name=s) for s in names]

    class Step(tf.Module):
        @tf.function(input_signature=specs, autograph=False)
        def step(self, ids, *states):
            logits, new = cell_step(ops, w, ids, list(states))
            return {"logits": logits, **{f"new_{s}": v for s, v in zip(names, new)}}

    module = Step()
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.step.get_concrete_function()], module
    )
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return _with_metadata(conv.convert(), metadata)


def _with_metadata(flatbuffer: bytes, metadata: dict) -> bytes:
    """The TFLite model with ``metadata`` (the strings the .safetensors header and the ONNX
    metadata_props hold) as one JSON object in its metadata table, under "charrnn"."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    model.buffers.append(schema.BufferT(data=list(json.dumps(metadata).encode())))
    model.metadata = [*(model.metadata or []), schema.MetadataT("charrnn", len(model.buffers) - 1)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tflite_step(path: StrPath, args: dict) -> StepFn:
    interpreter = _need("ai_edge_litert.interpreter")
    with backend.quiet_fd2():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2
        runner = interpreter.Interpreter(model_path=str(path)).get_signature_runner()
        runner(**_zeros(args, 1))
    names = _state_inputs(args)

    def step(ids: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        res = runner(ids=ids, **dict(zip(names, states)))
        return res["logits"], [res[f"new_{s}"] for s in names]

    return step


def _state_inputs(args) -> list:
    """The state inputs of the one-step function, in the flat state order."""
    return [f"state_{s}_{i}" for i in range(args["num_layers"]) for s in get(args["cell"]).states]


def _zeros(args, batch):
    d = {"ids": np.zeros(batch, np.int32)}
    for name in _state_inputs(args):
        d[name] = np.zeros((batch, args["rnn_size"]), np.float32)
    return d


def numpy_step(path: StrPath, args: dict) -> StepFn:
    return numpy_step_of(weightsfile.read(path).weights)


def numpy_step_of(w: Weights) -> StepFn:
    def step(ids: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        with np.errstate(over="ignore", under="ignore"):
            return cell_step(NumpyOps, w, ids, states)

    return step


# --- export ------------------------------------------------------------------------------------


def _encode(fmt, run):
    meta = weightsfile.metadata_for(run.model_args, run.vocab, run.meta, run.step, run.val_loss)
    if fmt == "safetensors":
        return weightsfile.encode(run.tensors, meta), numpy_step
    if fmt == "onnx":
        return onnx_model(run.tensors, run.model_args, meta).SerializeToString(), onnx_step
    return tflite_model(run.tensors, run.model_args, meta), tflite_step


def add_weights(run_path: StrPath, on_info: Callable[[str], None] | None = None) -> dict:
    """Give every kept checkpoint of run ``run_path`` (checkpoints/ and best/) that lacks
    one its portable weights file, each checked like an export before its manifest lists
    it.  Returns {"run", "added": [paths], "present": n}."""
    if loader.is_weights_file(run_path):
        raise CharrnnError(f"{run_path} is already a weights file; give a run directory")
    header = loader.load(run_path, read_weights=False)
    args, vocab = header.model_args, header.vocab
    found = [
        ck for d in (CHECKPOINTS_DIR, BEST_DIR) for ck in checkpoints.list_in(Path(run_path) / d)
    ]
    if not found:
        raise CharrnnError(f"run {run_path} has no checkpoint yet; train it first")
    model, added, present = None, [], 0
    for ck in found:
        try:
            checkpoints.verify(ck, need=[])
            if weightsfile.read_beside(ck, args, vocab) is not None:
                present += 1
                continue
            if model is None:
                from charrnn.nn.model import build_model

                model = build_model(**args)
            loader.restore_weights(model, ck.prefix)
        except (checkpoints.Damaged, FileNotFoundError) as e:
            if on_info:
                on_info(f"skipped {ck.name}: {e}")  # damaged, or rotated away meanwhile
            continue
        run = dataclasses.replace(
            header, step=ck.step, checkpoint=ck.name, tensors=tensors_from_model(model)
        )
        run.model = model
        val_loss = (ck.manifest or {}).get("val_loss")
        meta = weightsfile.metadata_for(args, vocab, run.meta, ck.step, val_loss)
        ids, ref = reference(run)

        def check(path: StrPath, ref: np.ndarray = ref, ids: np.ndarray = ids) -> None:
            compare(
                ref,
                teacher_forced(numpy_step(path, args), ids, _n_states(args), args["rnn_size"]),
                "safetensors",
            )

        try:
            added.append(str(weightsfile.add_to_checkpoint(ck, run.tensors, meta, check)))
        except FileNotFoundError:
            continue
        if on_info:
            on_info(f"Added {added[-1]}")
    return {"run": str(run_path), "added": added, "present": present}


def _n_states(args):
    return len(get(args["cell"]).states) * args["num_layers"]


def export(
    run_path: StrPath,
    out: StrPath,
    checkpoint: StrPath = "best",
    fmt: str | None = None,
    on_warning: Callable[[str], None] | None = None,
    *,
    int8: bool = False,
    score: Score | None = None,
    tolerance: float = INT8_TOLERANCE,
) -> dict:
    """Write the model of ``run_path`` (a run directory or a weights file) to ``out``
    in ``fmt`` (default: from the extension), verified first.  Returns what was written.

    ``int8``: weight-only int8 (charrnn.export.int8), checked by ``score`` (bits per
    character of a model on the check text, charrnn's scoring definition): refused when
    the int8 model scores more than ``tolerance`` bits/char worse than the float one."""
    fmt = format_of(out, fmt)
    if fmt not in FORMATS:
        raise CharrnnError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise CharrnnError(f"directory {out.parent} does not exist; create it first")
    if int8:
        return _export_int8(run_path, out, checkpoint, fmt, on_warning, score, tolerance)
    if fmt == "web":
        loaded = loader.load(str(run_path), checkpoint, on_warning=on_warning)
        size = webpage.write_page(loaded, out)
        return {"out": str(out), "format": fmt, "bytes": size}
    if fmt in ("onnx", "tflite"):  # say what is missing before the slow part
        _need("onnx" if fmt == "onnx" else "ai_edge_litert.interpreter")
        if fmt == "onnx":
            _need("onnxruntime")
    t0 = time.perf_counter()
    run = loader.load_run(run_path, checkpoint, on_warning=on_warning)
    data, make_step = _encode(fmt, run)
    ids, ref = reference(run)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".tmp{out.suffix}", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        got = teacher_forced(
            make_step(tmp, run.model_args),
            ids,
            _n_states(run.model_args),
            run.model_args["rnn_size"],
        )
        check = compare(ref, got, fmt)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {
        "out": str(out),
        "format": fmt,
        "bytes": len(data),
        "run": str(run_path),
        "checkpoint": run.checkpoint,
        "step": run.step,
        "check": check,
        "seconds": round(time.perf_counter() - t0, 3),
    }


# --- int8 (charrnn.export.int8) ------------------------------------------------------------


def _encode_int8(fmt: str, run: LoadedModel) -> tuple[bytes, int, Weights]:
    """(the int8 file's bytes, the float file's size, the dequantized model it holds)."""
    args = run.model_args
    meta = weightsfile.metadata_for(args, run.vocab, run.meta, run.step, run.val_loss)
    if fmt in ("safetensors", "onnx"):  # the named tensors: embedding and kernels int8
        q = int8.quantize_all(run.tensors)
        w = engine_weights(args["cell"], int8.dequantized(run.tensors, q))
        qmeta = int8.metadata(meta, q)
        if fmt == "safetensors":
            float_size = len(weightsfile.encode(run.tensors, meta))
            return int8.safetensors_bytes(run.tensors, q, qmeta), float_size, w
        float_size = onnx_model(run.tensors, args, meta).ByteSize()
        model = onnx_model(run.tensors, args, qmeta)
        int8.onnx_int8(model, q)
        return model.SerializeToString(), float_size, w
    # the engines' arrays: the first layer's table itself int8
    arrays = int8.engine_arrays(run.weights.arrays())
    q = int8.quantize_all(arrays)
    w = Weights.from_arrays(args["cell"], int8.dequantized(arrays, q))
    if fmt == "web":
        page, float_size = webpage.int8_page(run, arrays, q), webpage.page_size(run)
        return page.encode("utf-8"), float_size, w
    flat = tflite_model(None, args, int8.metadata(meta, q), weights=w)
    return int8.tflite_int8(flat, q), len(flat), w


def _export_int8(run_path, out, checkpoint, fmt, on_warning, score, tolerance):
    """export(int8=True): quantize; the file must hold the dequantized model (its logits
    along that model's greedy path, as a float export's); the dequantized model must score
    within ``tolerance`` bits/char of the float one; else nothing is written."""
    if score is None:
        raise CharrnnError("an int8 export needs a check text to measure its quality")
    if fmt in ("onnx", "tflite"):
        _need("onnx" if fmt == "onnx" else "ai_edge_litert.interpreter")
    t0 = time.perf_counter()
    run = loader.load(str(run_path), checkpoint, on_warning=on_warning)
    data, float_size, w = _encode_int8(fmt, run)
    bits = {"float": score(run.weights), "int8": score(w)}
    loss = bits["int8"] - bits["float"]
    if not loss <= tolerance:  # NaN too
        raise CharrnnError(
            f"the int8 model scores {bits['int8']:.4f} bits/char on the check text against "
            f"the float model's {bits['float']:.4f} ({loss:+.4f}, allowed +{tolerance:g}); "
            "nothing was written"
        )
    check = None
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".tmp{out.suffix}", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if fmt != "web":  # the page's own step: tests/test_int8.py, in a browser
            ids, ref = greedy_path(w, run.vocab)
            step = {"safetensors": numpy_step, "onnx": onnx_step, "tflite": tflite_step}
            got = teacher_forced(
                step[fmt](tmp, run.model_args), ids, _n_states(run.model_args), w.units
            )
            check = compare(ref, got, f"{fmt} int8")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {
        "out": str(out),
        "format": fmt,
        "int8": True,
        "bytes": len(data),
        "float_bytes": float_size,
        "bits_per_char": bits["int8"],
        "float_bits_per_char": bits["float"],
        "tolerance": tolerance,
        "run": str(run_path),
        "checkpoint": run.checkpoint,
        "step": run.step,
        "check": check,
        "seconds": round(time.perf_counter() - t0, 3),
    }
