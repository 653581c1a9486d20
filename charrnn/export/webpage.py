"""`charrnn export --format web`: one HTML page that runs the model in the browser.

The page holds the weights (float32, base64, one buffer), the vocabulary, and a
small plain-JavaScript step of every cell (charrnn.nn.cells) and sampler: no
framework, no build step, nothing fetched, so it works when opened straight from
disk (file://, where browsers refuse to fetch side files).  The step computes in float32 like
charrnn: Float32Array buffers, every stored result rounded to float32 (the
product of two float32 is exact in a double, so each multiply-add rounds once,
like a float32 FMA); the arrays are charrnn.nn.step.Weights', whose first-layer
table is the embedding times the input kernel plus the bias (a parallel cell's: the
embedding itself).

``window.charrnn.logits(ids)`` (teacher-forced logits from the zero state, the
first id as the first input) is there for tests and for anyone checking the page
against charrnn.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from charrnn.atomic import write_text_atomic
from charrnn.generate.sampler import start_id
from charrnn.nn.cells import get
from charrnn.nn.cells.minimal import RMS_EPS
from charrnn.text import JAMO_SCHEME
from charrnn.web import fill, script_json, template

if TYPE_CHECKING:
    from charrnn.atomic import StrPath
    from charrnn.store.loaded import LoadedModel

FORMAT = "charrnn-web/1"


def page_data(
    loaded: LoadedModel,
    arrays: dict[str, np.ndarray] | None = None,
    quantized: dict[str, tuple[np.ndarray, np.ndarray, int]] | None = None,
) -> dict:
    """The page's model: the engines' arrays (charrnn.nn.step.Weights.arrays, but the
    stacked WU the page does not use) in one float32 buffer, and the vocabulary.

    int8 (``quantized``: name -> (q, scale, axis), charrnn.export.int8, of ``arrays``): those
    arrays' int8 values in a second buffer (``weights_int8``, at ``offset``), their scales in
    the float32 one (at ``scale``, one per row for ``axis`` 0, per column for 1); the page
    dequantizes them when it loads."""
    w, vocab = loaded.weights, loaded.vocab
    cell = get(w.cell)  # what the page's step needs of it
    quantized = quantized or {}
    index, parts, offset, qparts, qoffset = {}, [], 0, [], 0
    for name, a in (arrays if arrays is not None else w.arrays()).items():
        if name.endswith("/WU"):
            continue
        entry = {"offset": offset, "shape": list(np.shape(a))}
        if name in quantized:  # int8 values there, the scales in the float32 buffer
            q, a, axis = quantized[name]
            entry.update(offset=qoffset, scale=offset, axis=axis)
            qparts.append(np.ascontiguousarray(q, np.int8).tobytes())
            qoffset += q.size
        a = np.ascontiguousarray(a, "<f4")
        index[name] = entry
        parts.append(a.tobytes())
        offset += a.size
    int8 = {"weights_int8": base64.b64encode(b"".join(qparts)).decode("ascii")} if qparts else {}
    return {
        "format": FORMAT,
        "cell": w.cell,
        "gates": cell.gates,
        "layers": len(w.layers),
        "parallel": cell.parallel,
        "states": list(cell.states),
        "js_step": cell.js_step,
        "rms_eps": RMS_EPS,
        "units": w.units,
        "vocab": vocab.symbols,
        "jamo": JAMO_SCHEME if vocab.jamo else None,
        "unk": vocab.unk_id,
        "start_id": start_id(vocab),
        "checkpoint": loaded.short_checkpoint,
        "arrays": index,
        "weights": base64.b64encode(b"".join(parts)).decode("ascii"),
        **int8,
    }


def sampler_page(loaded: LoadedModel, title: str = "charrnn", data: dict | None = None) -> str:
    data = data if data is not None else page_data(loaded)
    return fill(template("sampler.html"), TITLE=html.escape(title), DATA=script_json(data))


def _title(loaded: LoadedModel, int8: bool = False) -> str:
    w = loaded.weights
    return f"charrnn \u00b7 {w.cell.upper()} {len(w.layers)}x{w.units}" + (" int8" if int8 else "")


def page_size(loaded: LoadedModel) -> int:
    """The float32 page's size in bytes."""
    return len(sampler_page(loaded, _title(loaded)).encode("utf-8"))


def int8_page(loaded: LoadedModel, arrays: dict, quantized: dict) -> str:
    """The page of the int8 model: ``arrays`` (charrnn.export.int8.engine_arrays) with
    ``quantized``'s matrices stored as int8 and their scales."""
    return sampler_page(loaded, _title(loaded, True), page_data(loaded, arrays, quantized))


def write_page(loaded: LoadedModel, out_path: StrPath, title: str | None = None) -> int:
    """Write the page for ``loaded`` (a charrnn.store.loaded.LoadedModel) to ``out_path``
    atomically; returns its size in bytes."""
    page = sampler_page(loaded, title or _title(loaded))
    write_text_atomic(Path(out_path), page)
    return len(page.encode("utf-8"))
