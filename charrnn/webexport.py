"""`charrnn export --format web`: one HTML page that runs the model in the browser.

The page holds the weights (float32, base64, one buffer), the vocabulary and a
small plain-JavaScript LSTM/GRU/RNN step and sampler: no framework, no build
step, nothing fetched, so it works when opened straight from disk (file://,
where browsers refuse to fetch side files).  The step computes in float32 like
charrnn: Float32Array buffers, every stored result rounded to float32 (the
product of two float32 is exact in a double, so each multiply-add rounds once,
like a float32 FMA); the arrays are charrnn.stepmath.Weights', whose first-layer
table is the embedding times the input kernel plus the bias.

``window.charrnn.logits(ids)`` (teacher-forced logits from the zero state, the
first id as the first input) is there for tests and for anyone checking the page
against charrnn.
"""

import base64

import numpy as np

from charrnn.text import JAMO_SCHEME

FORMAT = "charrnn-web/1"


def _arrays(w):
    """name -> float32 array, in the order they go into the buffer."""
    out = {"table": w.table}
    for i, layer in enumerate(w.layers):
        for name in ("W", "U", "b", "br"):
            if layer.get(name) is not None:
                out[f"{i}/{name}"] = layer[name]
    out["dense"], out["dense_b"] = w.dense, w.dense_b
    return out


def short_checkpoint(loaded) -> str:
    """``best/ckpt-1200``: what a reader needs, without the local path (pages get shared)."""
    from pathlib import Path

    return "/".join(Path(str(loaded.checkpoint)).parts[-2:])


def page_data(loaded) -> dict:
    from charrnn.sample import start_id

    w, vocab = loaded.weights, loaded.vocab
    arrays = _arrays(w)
    index, parts, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a, "<f4")
        index[name] = {"offset": offset, "shape": list(a.shape)}
        parts.append(a.tobytes())
        offset += a.size
    return {
        "format": FORMAT, "cell": w.cell, "layers": len(w.layers), "units": w.units,
        "vocab": vocab.symbols, "jamo": JAMO_SCHEME if vocab.jamo else None,
        "unk": vocab.unk_id, "start_id": start_id(vocab), "checkpoint": short_checkpoint(loaded),
        "arrays": index, "weights": base64.b64encode(b"".join(parts)).decode("ascii"),
    }


def page_html(loaded, title="charrnn") -> str:
    import html

    from charrnn.visualize import fill, script_json, template

    return fill(template("sampler.html"), TITLE=html.escape(title), DATA=script_json(page_data(loaded)))


def write_page(loaded, out_path, title=None) -> int:
    """Write the page for ``loaded`` (a charrnn.sample.Loaded) to ``out_path`` atomically;
    returns its size in bytes."""
    from pathlib import Path

    from charrnn.runs import write_text_atomic

    title = title or f"charrnn \u00b7 {loaded.weights.cell.upper()} {len(loaded.weights.layers)}x{loaded.weights.units}"
    page = page_html(loaded, title)
    write_text_atomic(Path(out_path), page)
    return len(page.encode("utf-8"))
