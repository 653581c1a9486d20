"""Time `charrnn visualize` pages: written (analysis + HTML) and opened in Chromium.

    python3 benchmarks/bench_visualize.py [--layers 3 --units 512 --chars 5000 --repeat 3]

Targets (issue 11): a page for 5,000 characters of a 3x512 model written in under 15 s,
opened in under 1 s.  The model has random weights (the timing does not depend on them)
and the vocabulary of data/shakespeare.txt, which also gives the text.  "Opened" is
navigation start to the end of the load event plus the first frame after it, in a
headless Chromium with a warm browser (the same as tests/browser.py).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def random_loaded(symbols, layers, units, cell="lstm", seed=0):
    from charrnn.nn.tensors import engine_weights
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

    rng = np.random.default_rng(seed)
    v, e = len(symbols), 64
    g = {"lstm": 4, "gru": 3}[cell] * units
    f = lambda *s: rng.normal(scale=1 / np.sqrt(s[0]), size=s).astype(np.float32)  # noqa: E731
    bias = (2, g) if cell == "gru" else (g,)
    emb = f(v, e)
    kernels = [f(e if i == 0 else units, g) for i in range(layers)]
    recurrent = [f(units, g) for _ in range(layers)]
    biases = [f(*bias) for _ in range(layers)]
    tensors = {
        "embedding": emb,
        "logits.kernel": f(units, v),
        "logits.bias": np.zeros(v, np.float32),
    }
    for i in range(layers):
        tensors[f"layers.{i}.kernel"] = kernels[i]
        tensors[f"layers.{i}.recurrent_kernel"] = recurrent[i]
        tensors[f"layers.{i}.bias"] = biases[i]
    w = engine_weights(cell, tensors)
    loaded = LoadedModel("random", {"cell": cell}, Vocab(sorted(symbols)), {}, checkpoint="random")
    loaded.weights = w
    return loaded


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--units", type=int, default=512)
    ap.add_argument("--chars", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()

    from charrnn.analysis.visualize import analyse, visualize_page

    text = (ROOT / "data" / "shakespeare.txt").read_text("utf-8")[: a.chars]
    loaded = random_loaded(set(text), a.layers, a.units)
    out = Path(tempfile.mkdtemp()) / "page.html"
    writes = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        data = analyse(loaded, text, max_chars=a.chars)
        out.write_text(visualize_page(data), encoding="utf-8")
        writes.append(time.perf_counter() - t)
    size = out.stat().st_size
    print(
        f"{a.layers}x{a.units} LSTM, {len(text):,} chars: page {size / 1e6:.2f} MB, "
        f"{len(data['activations']['stored'])} units stored; written in median "
        f"{statistics.median(writes):.2f} s ({', '.join(f'{w:.2f}' for w in writes)})"
    )
    if a.no_browser:
        return
    import browser

    session = browser.browser_session()
    driver = next(session)
    opens = []
    for _ in range(a.repeat):
        browser.open_page(driver, out)
        ms = driver.execute_async_script(
            "const done = arguments[0];"
            "requestAnimationFrame(() => setTimeout(() => done(performance.now()), 0));"
        )
        opens.append(ms / 1000)
    browser.assert_offline(driver, out.resolve().as_uri())
    session.close()
    print(
        f"opened in median {statistics.median(opens):.2f} s "
        f"({', '.join(f'{o:.2f}' for o in opens)})"
    )


if __name__ == "__main__":
    main()
