"""How much a model loses when its weights change (an int8 export): bits per character of a
model in the engines' arrangement on a check text, under the one scoring definition."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from charrnn.analysis import scoring
from charrnn.errors import CharrnnError
from charrnn.nn.step import NumpyOps, cell_step
from charrnn.store import loader
from charrnn.store.dataset import load_dataset
from charrnn.text import read_text

if TYPE_CHECKING:
    from charrnn.atomic import StrPath
    from charrnn.nn.step import Weights

CHECK_CHARS = 100_000  # an int8 export is measured on at most this many characters


def int8_scorer(
    run_dir: StrPath, check_text: StrPath | None, on_warning: Callable[[str], None] | None = None
) -> Callable[[Weights], float]:
    """``score(weights)``: bits per character of a model (the engines' arrangement) on the
    check text -- ``check_text``, else the run's validation split, its first CHECK_CHARS
    characters -- under the one scoring definition (charrnn.analysis.scoring), read in one
    pass from the zero state as `charrnn evaluate --streams 1` reads it."""
    header = loader.load(run_dir, read_weights=False)
    if check_text:
        text = read_text(check_text, newlines=header.newlines, on_warning=on_warning)[0][
            :CHECK_CHARS
        ]
    elif loader.is_weights_file(run_dir):
        raise CharrnnError(
            f"{run_dir} is a weights file, which has no validation split: give the text to "
            "measure the int8 model on with --check-text FILE"
        )
    else:
        data = header.config.get("data")
        try:
            ds = load_dataset(data or "")
        except CharrnnError:
            raise CharrnnError(
                f"run {run_dir}'s dataset {data!r} is not there to measure the int8 model on; "
                "give a text with --check-text FILE"
            ) from None
        dec, parts, n = ds.vocab.stream_decoder(), [], 0
        val = ds.split("val")
        for i in range(0, len(val), 1 << 16):
            parts.append(dec.feed(val[i : i + (1 << 16)]))
            n += len(parts[-1])
            if n >= CHECK_CHARS:
                break
        text = ("".join(parts) + dec.flush())[:CHECK_CHARS]

    def score(w: Weights) -> float:
        def nats_of(ids: np.ndarray) -> np.ndarray:
            out, states = np.full(len(ids), np.nan), w.zero_states(1)
            with np.errstate(over="ignore", under="ignore"):
                for t in range(len(ids) - 1):
                    logits, states = cell_step(NumpyOps, w, ids[t : t + 1], states)
                    z = logits[0].astype(np.float64)
                    top = z.max()
                    out[t + 1] = top + np.log(np.exp(z - top).sum()) - z[ids[t + 1]]
            return out

        scored = scoring.score_text(
            None, header.vocab, text, name="the check text", nats_of=nats_of
        )
        return scored.figures()["bits_per_char"]

    return score
