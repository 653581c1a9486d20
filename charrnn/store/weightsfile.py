"""A model as one portable file: float32 weights and metadata in the .safetensors format.

A .safetensors file is an 8-byte little-endian header length, a JSON header
(names, dtypes, shapes, offsets, and a ``__metadata__`` map of strings), then raw
little-endian arrays: no code, no pickle, readable from NumPy, PyTorch, JAX, Rust
and JavaScript.  Nothing in the reader executes data; every name, shape, dtype
and metadata field is checked against the model arguments before use.

Tensors: float32, under the names and shapes of charrnn.nn.tensors (Keras layout).

Gate order along G*H: lstm i, f, c, o (input, forget, cell candidate, output);
gru z, r, h (update, reset, candidate) with reset_after=True, i.e.
h' = z * h + (1 - z) * tanh(x W_h + b_h + r * (h U_h + br_h)); rnn: h' = tanh(x W + h U + b).

Metadata (all strings; JSON where nested): format ("charrnn-weights"), format_version
("1"), charrnn_version, cell, gate_order, model (JSON: the arguments of
charrnn.nn.model.build_model), vocab (JSON list: the symbols in id order), vocab_counts
(JSON list), unknown (the unknown symbol, "" when there is none), jamo (the jamo scheme
the symbols use, "" when off), newlines ("lf" or "keep": how text was normalised),
symbols_per_char (decimal), step, val_loss ("" when unknown).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from charrnn import __version__
from charrnn.atomic import StrPath, write_bytes_atomic
from charrnn.errors import CharrnnError, first_line
from charrnn.nn import quant
from charrnn.nn.cells import CELLS, get
from charrnn.nn.tensors import SHAPE_KEYS, expected_shapes, tensors_from_model
from charrnn.store import checkpoints
from charrnn.store.loaded import LoadedModel
from charrnn.text import JAMO_SCHEME, Vocab

if TYPE_CHECKING:
    import keras

    from charrnn.store.checkpoints import Checkpoint, Extra

FORMAT = "charrnn-weights"
CHECKPOINT_FILE = "weights.safetensors"  # inside each checkpoint directory, in its manifest
FORMAT_VERSION = "1"


def is_weights_file(path: StrPath | None) -> bool:
    """True when ``path`` names a file (not a run directory): read it as a weights file."""
    return path is not None and str(path) != "-" and Path(path).is_file()


# --- writing -------------------------------------------------------------------------------


def metadata_for(
    args: dict,
    vocab: Vocab,
    dataset_meta: dict | None = None,
    step: int = 0,
    val_loss: float | None = None,
) -> dict[str, str]:
    dataset_meta = dataset_meta or {}
    chars, symbols = dataset_meta.get("chars"), dataset_meta.get("symbols")
    per_char = symbols / chars if chars and symbols else 1.0
    unk = vocab.symbols[vocab.unk_id] if vocab.unk_id is not None else ""
    ok_loss = val_loss is not None and math.isfinite(float(val_loss))
    model = {k: args[k] for k in SHAPE_KEYS}
    model["dropout"] = float(args.get("dropout", 0.0))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "charrnn_version": __version__,
        "cell": args["cell"],
        "gate_order": get(args["cell"]).gate_order,
        "model": json.dumps(model, sort_keys=True),
        "vocab": json.dumps(vocab.symbols, ensure_ascii=False),
        "vocab_counts": json.dumps([int(c) for c in vocab.counts]),
        "unknown": unk,
        "jamo": JAMO_SCHEME if vocab.jamo else "",
        "newlines": dataset_meta.get("newlines", "lf"),
        "symbols_per_char": repr(float(per_char)),
        "step": str(int(step)),
        "val_loss": repr(float(val_loss)) if ok_loss else "",
    }


def write(path: StrPath, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write a weights file atomically (a temporary name in the same directory, then rename)."""
    write_bytes_atomic(path, encode(tensors, metadata), fsync=True)


def encode(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The file's bytes: the same weights and metadata give the same bytes.  (safetensors
    writes its metadata map in a random order each process; it is put in key order here.)
    Float tensors are written as float32, others (an int8 export's) as they are."""
    from safetensors.numpy import save

    def stored(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, np.float32 if a.dtype.kind == "f" else a.dtype)

    data = save({k: stored(np.asarray(v)) for k, v in tensors.items()}, metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the header is padded with spaces to 8 bytes, as written
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


# --- reading --------------------------------------------------------------------------------


def _bad(path, why):
    return CharrnnError(
        f"{path} is not a usable charrnn weights file: {why}; export it again "
        "with `charrnn export RUN -o model.safetensors`"
    )


def _json(path, meta, key, kind):
    try:
        value = json.loads(meta[key])
    except (KeyError, ValueError, TypeError):
        raise _bad(path, f"metadata {key!r} is missing or not JSON") from None
    if not isinstance(value, kind):
        raise _bad(path, f"metadata {key!r} is not a {kind.__name__}")
    return value


def _model_args(path, meta):
    args = _json(path, meta, "model", dict)
    for k in SHAPE_KEYS:
        if k not in args:
            raise _bad(path, f"metadata 'model' lacks {k!r}")
    if args["cell"] != meta.get("cell"):
        raise _bad(path, f"inconsistent cell {args['cell']!r}")
    if args["cell"] not in CELLS:  # from a newer charrnn, most likely
        raise CharrnnError(
            f"{path} is a model of cell {args['cell']!r}, which this charrnn does "
            f"not know ({', '.join(CELLS)}); upgrade charrnn"
        )
    for k in ("vocab_size", "num_layers", "rnn_size", "embedding_size"):
        if not isinstance(args[k], int) or isinstance(args[k], bool) or not 0 < args[k] < 1 << 24:
            raise _bad(path, f"model {k} is {args[k]!r}")
    dropout = args.get("dropout", 0.0)
    args["dropout"] = float(dropout) if isinstance(dropout, (int, float)) else 0.0
    return args


def _vocab(path, meta, size):
    symbols = _json(path, meta, "vocab", list)
    counts = _json(path, meta, "vocab_counts", list) if "vocab_counts" in meta else None
    if len(symbols) != size:
        raise _bad(
            path, f"the vocabulary has {len(symbols)} symbols but the weights are for {size}"
        )
    if not all(isinstance(s, str) and len(s) == 1 for s in symbols):
        raise _bad(path, "the vocabulary holds something other than single characters")
    if counts is not None and (len(counts) != size or not all(isinstance(c, int) for c in counts)):
        raise _bad(path, "vocab_counts does not match the vocabulary")
    unk = meta.get("unknown", "")
    if unk and unk not in symbols:
        raise _bad(path, f"the unknown symbol {unk!r} is not in the vocabulary")
    jamo = meta.get("jamo", "")
    if jamo not in ("", JAMO_SCHEME):
        raise _bad(
            path,
            f"jamo scheme {jamo!r} is unknown to this charrnn (knows {JAMO_SCHEME}); "
            "upgrade charrnn",
        )
    try:
        return Vocab(symbols, counts, symbols.index(unk) if unk else None, bool(jamo))
    except CharrnnError:
        raise _bad(path, "the vocabulary repeats a symbol") from None


def _open(path):
    from safetensors import SafetensorError, safe_open

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or int.from_bytes(head, "little") + 8 > size:
            raise _bad(
                path, "the header length does not fit the file (truncated or not .safetensors)"
            )
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            specs = {
                k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()
            }
        return meta, specs
    except SafetensorError as e:
        raise _bad(path, f"bad header ({first_line(e, 160)})") from None
    except OSError as e:
        raise CharrnnError(f"cannot read {path}: {e.strerror or e}") from None


def _int8_axes(path: StrPath, meta: dict, want: dict) -> dict[str, int]:
    """An int8 file's {matrix: channel axis} (``charrnn export --int8``; {} for float)."""
    if quant.META_KEY not in meta:
        return {}
    axes = _json(path, meta, quant.META_KEY, dict)
    for k, axis in axes.items():
        if k not in want or len(want[k]) != 2 or axis not in (0, 1):
            raise _bad(path, f"its int8 metadata names {k!r} with axis {axis!r}")
    return axes


def read(path: StrPath) -> LoadedModel:
    """Read and check a weights file (float32, or int8 from ``charrnn export --int8``, whose
    matrices are dequantized here); any problem is one CharrnnError."""
    from safetensors import SafetensorError, safe_open

    meta, specs = _open(path)
    if meta.get("format") != FORMAT:
        raise _bad(path, f"its metadata does not say format {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CharrnnError(
            f"{path} is a charrnn weights file of format version "
            f"{meta.get('format_version')!r}; this charrnn reads version "
            f"{FORMAT_VERSION}: upgrade charrnn"
        )
    args = _model_args(path, meta)
    want = expected_shapes(args)
    axes = _int8_axes(path, meta, want)
    stored = {k: ("I8" if k in axes else "F32", shape) for k, shape in want.items()}
    stored |= {k + quant.SCALE: ("F32", (want[k][axis],)) for k, axis in axes.items()}
    missing = sorted(set(stored) - set(specs))
    extra = sorted(set(specs) - set(stored))
    if missing or extra:
        raise _bad(
            path,
            "missing tensor(s) " + ", ".join(missing)
            if missing
            else "unexpected tensor(s) " + ", ".join(extra[:5]),
        )
    for k, (dtype, shape) in stored.items():
        if specs[k] != (dtype, shape):
            raise _bad(
                path,
                f"tensor {k} is {specs[k][0]} {list(specs[k][1])}, expected {dtype} {list(shape)}",
            )
    vocab = _vocab(path, meta, args["vocab_size"])
    if meta.get("newlines", "lf") not in ("lf", "keep"):
        raise _bad(path, f"newline policy {meta.get('newlines')!r}")
    try:
        per_char = float(meta.get("symbols_per_char") or 1.0)
        step = int(meta.get("step") or 0)
        val_loss = float(meta["val_loss"]) if meta.get("val_loss") else None
    except ValueError:
        raise _bad(path, "step, val_loss or symbols_per_char is not a number") from None
    if not 0 < per_char < 100:
        raise _bad(path, f"symbols_per_char {per_char}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            tensors = {k: np.ascontiguousarray(f.get_tensor(k), np.float32) for k in want}
            for k, axis in axes.items():  # int8: dequantized once, as the runtimes compute
                tensors[k] = quant.dequantize(f.get_tensor(k), f.get_tensor(k + quant.SCALE), axis)
    except (SafetensorError, OSError, ValueError) as e:
        raise _bad(path, f"cannot read its arrays ({first_line(e, 160)})") from None
    for k, a in tensors.items():
        if not np.isfinite(a).all():
            raise _bad(path, f"tensor {k} holds NaN or infinite values")
    # symbols / chars is what sampling and evaluation read of a dataset's counts
    dataset_meta = {"newlines": meta.get("newlines", "lf"), "chars": 1, "symbols": per_char}
    return LoadedModel(str(path), args, vocab, dataset_meta, {}, step, str(path), tensors, val_loss)


# --- beside the checkpoints of a run ------------------------------------------------------
# Every checkpoint training keeps holds CHECKPOINT_FILE, listed in its manifest and removed
# with it (charrnn.store.checkpoints).  A checkpoint of the old layout (ckpt-N.index + data, no
# directory) gets ckpt-N.safetensors beside it from `charrnn export RUN`.


def checkpoint_path(ck: Checkpoint) -> Path:
    """Where checkpoint ``ck`` (charrnn.store.checkpoints.Checkpoint) keeps its weights file."""
    return ck.dir / CHECKPOINT_FILE if ck.dir is not None else Path(f"{ck.prefix}.safetensors")


def read_beside(ck: Checkpoint, args: dict, vocab: Vocab) -> LoadedModel | None:
    """The weights file of checkpoint ``ck`` if it has a usable one that fits the run's
    model arguments and vocabulary, else None."""
    path = ck.file(CHECKPOINT_FILE) if ck.dir is not None else checkpoint_path(ck)
    if path is None or not path.is_file():
        return None
    wf = read(path)
    same = all(wf.model_args[k] == args.get(k) for k in SHAPE_KEYS)
    if not same or wf.vocab.symbols != vocab.symbols or wf.vocab.jamo != vocab.jamo:
        return None  # not this run's: TensorFlow reads the checkpoint itself
    return wf


def checkpoint_extra(model: keras.Model, vocab: Vocab, dataset_meta: dict) -> Extra:
    """The ``extra`` hook of charrnn.store.checkpoints.save for training: writes
    CHECKPOINT_FILE into the checkpoint being assembled, from the model's current
    weights (a best/ checkpoint records its validation loss)."""
    from charrnn.nn.model import model_args

    def extra(tmpdir: Path, step: int, val_loss: float | None) -> None:
        meta = metadata_for(model_args(model), vocab, dataset_meta, step, val_loss)
        write(Path(tmpdir) / CHECKPOINT_FILE, tensors_from_model(model), meta)

    return extra


def add_to_checkpoint(
    ck: Checkpoint,
    tensors: dict[str, np.ndarray],
    metadata: dict[str, str],
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Add a weights file to an existing checkpoint: the file is renamed into place first,
    then the manifest that lists it replaces the old one, so a crash in between leaves an
    unlisted file (ignored, overwritten next time), never a listed file that is missing."""
    path = checkpoint_path(ck)
    write(path, tensors, metadata)
    try:
        if check is not None:
            check(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if ck.dir is not None:
        checkpoints.list_file(ck, CHECKPOINT_FILE)
    return path
