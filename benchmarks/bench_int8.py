"""int8 exports against float: file size, bits/char on held-out text, step latency.

    python benchmarks/bench_int8.py                     # 2x256 LSTM and minGRU, shakespeare
    python benchmarks/bench_int8.py --steps 2000 --cells lstm
    python benchmarks/bench_int8.py --smoke             # 1x32, a few steps: does it run

For each cell: `charrnn prepare` (5% validation, 5% test) and `charrnn train --max-steps`
of a LAYERSxUNITS model on --data; then `charrnn export --int8 --json` (its own check on the
validation split) and the float export of every format (safetensors, onnx, tflite, web).
Figures per format:

- size: the int8 file against the float one (issue 30's target: at most 30%);
- bits/char on the test split (held out from training and from the export's check; its
  first --chars characters) under charrnn's scoring definition, of the float model and of
  the dequantized int8 model the file holds (safetensors and ONNX quantize the named
  tensors; TFLite and the page the engines' arrays: the same numbers for each pair), and
  for ONNX also through onnxruntime's default session (which runs DequantizeLinear +
  MatMul as MatMulNBits with int8 activations), target: within 0.01 of float;
- latency: one step at batch 1 (median of --repeat x 200 steps, state carried) of the float
  and int8 ONNX files in onnxruntime (default session, and with session.disable_quant_qdq=1:
  the int8 weights dequantized once at load) and of the TFLite files in LiteRT.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
FORMATS = {"safetensors": "safetensors", "onnx": "onnx", "tflite": "tflite", "web": "html"}


def charrnn(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(HERE))
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *map(str, args)],
        env=env,
        check=True,
        cwd="/",
        capture_output=True,
        text=True,
        **kw,
    )


def make_run(root: Path, data: Path, cell: str, layers: int, units: int, steps: int) -> Path:
    charrnn(
        "prepare", data, "-o", root / "data", "--val-fraction", "0.05", "--test-fraction", "0.05"
    )
    sets = [
        f"model.cell={cell}",
        f"model.num_layers={layers}",
        f"model.rnn_size={units}",
        "model.embedding_size=64",
        "train.batch_size=32",
        "train.seq_length=64",
        f"train.eval_every={max(steps // 4, 1)}",
        f"train.save_every={max(steps // 4, 1)}",
        "train.sample_length=0",
    ]
    args = ["train", "--data", root / "data", "--out", root / "run", "--max-steps", steps]
    charrnn(*args, *[a for s in sets for a in ("--set", s)])
    return root / "run"


def test_text(root: Path, chars: int) -> Path:
    from charrnn.store.dataset import iter_dump, load_dataset

    text = "".join(iter_dump(load_dataset(root / "data"), "test"))[:chars]
    path = root / "test.txt"
    path.write_text(text, encoding="utf-8")
    return path


def dequantized_weights(run: Path):
    """The dequantized model of each quantization: named tensors, engines' arrays."""
    from charrnn.export import int8
    from charrnn.nn.step import Weights
    from charrnn.nn.tensors import engine_weights
    from charrnn.store.loader import load

    loaded = load(str(run))
    q = int8.quantize_all(loaded.tensors)
    named = engine_weights(loaded.cell, int8.dequantized(loaded.tensors, q))
    arrays = int8.engine_arrays(loaded.weights.arrays())
    engine = Weights.from_arrays(loaded.cell, int8.dequantized(arrays, int8.quantize_all(arrays)))
    return loaded, named, engine


def onnx_session(path: Path, exact: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if exact:  # the int8 weights dequantized once at load (charrnn's own check does this)
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_bits(path: Path, loaded, text: str) -> float:
    """bits/char of the ONNX file in onnxruntime's default session, scoring's definition."""
    from charrnn.analysis import scoring

    sess = onnx_session(path, exact=False)
    names = [i.name for i in sess.get_inputs()][1:]
    units = loaded.model_args["rnn_size"]

    def nats_of(ids):
        out = np.full(len(ids), np.nan)
        states = [np.zeros((1, units), np.float32) for _ in names]
        for t in range(len(ids) - 1):
            res = sess.run(
                None, {"ids": ids[t : t + 1].astype(np.int32), **dict(zip(names, states))}
            )
            z, states = res[0][0].astype(np.float64), res[1:]
            out[t + 1] = z.max() + np.log(np.exp(z - z.max()).sum()) - z[ids[t + 1]]
        return out

    scored = scoring.score_text(None, loaded.vocab, text, nats_of=nats_of)
    return scored.figures()["bits_per_char"]


def step_latency(step, names, units, repeat: int) -> float:
    """Median microseconds of one batch-1 step, state carried, over repeat x 200 steps."""
    times = []
    for _ in range(repeat):
        states = [np.zeros((1, units), np.float32) for _ in names]
        tok = np.array([1], np.int32)
        t = time.perf_counter()
        for _ in range(200):
            logits, states = step(tok, states)
        times.append((time.perf_counter() - t) / 200 * 1e6)
    return statistics.median(times)


def latencies(files: dict, args: dict, repeat: int) -> dict:
    from charrnn.export.formats import _state_inputs, tflite_step

    names, units, out = _state_inputs(args), args["rnn_size"], {}
    for kind in ("float", "int8"):
        for label, exact in (("onnx", False), ("onnx_dequantized_at_load", True)):
            sess = onnx_session(files[kind]["onnx"], exact)
            ins = [i.name for i in sess.get_inputs()][1:]

            def step(tok, states, sess=sess, ins=ins):
                res = sess.run(None, {"ids": tok, **dict(zip(ins, states))})
                return res[0], res[1:]

            out[f"{label}_{kind}_us"] = step_latency(step, names, units, repeat)
        out[f"tflite_{kind}_us"] = step_latency(
            tflite_step(files[kind]["tflite"], args), names, units, repeat
        )
    return out


def bench_cell(root: Path, cell: str, a) -> dict:
    run = make_run(root, Path(a.data).resolve(), cell, a.layers, a.units, a.steps)
    held_out = test_text(root, a.chars)
    files, report = {"float": {}, "int8": {}}, {"cell": cell, "formats": {}}
    for fmt, suffix in FORMATS.items():
        f, q = root / f"float.{suffix}", root / f"int8.{suffix}"
        charrnn("export", run, "-o", f, "--format", fmt)
        info = json.loads(
            charrnn("export", run, "-o", q, "--format", fmt, "--int8", "--json").stdout
        )
        files["float"][fmt], files["int8"][fmt] = f, q
        report["formats"][fmt] = {
            "float_bytes": f.stat().st_size,
            "int8_bytes": q.stat().st_size,
            "ratio": round(q.stat().st_size / f.stat().st_size, 4),
            "val_bits_float": info["float_bits_per_char"],
            "val_bits_int8": info["bits_per_char"],
        }
    from charrnn.analysis.quality import int8_scorer

    loaded, named, engine = dequantized_weights(run)
    score = int8_scorer(str(run), str(held_out))
    text = held_out.read_text(encoding="utf-8")
    report["test_chars"] = len(text)
    report["test_bits"] = {
        "float": score(loaded.weights),
        "int8_named (safetensors, onnx)": score(named),
        "int8_engine (tflite, web)": score(engine),
        "onnx_int8_onnxruntime_default": onnx_bits(files["int8"]["onnx"], loaded, text),
    }
    report["latency_us"] = latencies(files, loaded.model_args, a.repeat)
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(HERE / "data" / "shakespeare.txt"))
    p.add_argument("--cells", default="lstm,mingru")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--steps", type=int, default=1500, help="training steps")
    p.add_argument("--chars", type=int, default=100_000, help="held-out characters scored")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--smoke", action="store_true", help="1x32, 20 steps: does it run")
    a = p.parse_args()
    if a.smoke:
        a.layers, a.units, a.steps, a.chars, a.repeat = 1, 32, 20, 2000, 1
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", flush=True)
    for cell in a.cells.split(","):
        with tempfile.TemporaryDirectory(prefix="bench_int8.") as tmp:
            t = time.perf_counter()
            report = bench_cell(Path(tmp), cell, a)
            report["model"] = f"{a.layers}x{a.units}, {a.steps} steps"
            report["seconds"] = round(time.perf_counter() - t, 1)
            print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
