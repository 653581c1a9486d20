"""/v1/completions' ``logprobs``: the model's log probability of each character of a
choice, with the top candidates, from its distribution before temperature, top-k, top-p
and --allow (what the model says, not what the sampler was told to do).

The choices' symbols are stepped again through ``cell_step`` in NumPy once they are known
(the sampler does not keep its distributions), a prompt's choices as one batch, on the
engine's thread in turns like generation's, under the request's slot and timeout.  The
inputs are the sampler's: the prompt's symbols (its first replacing the start symbol), else
the start symbol, then the choice's.  A character of a jamo model is several symbols: its
log probability is their sum, and its top candidates are those of its first symbol.  A
text's first symbol, which nothing predicted (the prompt's first, with echo), has None.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np

from charrnn.generate.sampler import start_id
from charrnn.nn.step import NumpyOps, cell_step

if TYPE_CHECKING:
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

MAX_TOP = 5  # OpenAI's limit on logprobs


def prompt_logprobs(
    loaded: LoadedModel,
    prime_ids: np.ndarray,
    texts: list[str],
    echo: bool,
    top: int,
    offset: int,
    chunk_seconds: float,
) -> Generator[None, None, list[dict]]:
    """OpenAI's ``logprobs`` object of each of ``texts`` (one prompt's choices, as
    returned: with the prompt if ``echo``); ``offset``: where the texts start in the
    prompt + completion (text_offset)."""
    vocab, w = loaded.vocab, loaded.weights
    prime = np.asarray(prime_ids, np.int32)
    # The symbols each text is made of, and where its own begin in the inputs.
    own = [vocab.encode(t, unknown="skip") if t else np.zeros(0, np.int32) for t in texts]
    if echo:
        rows, first = own, [0] * len(texts)
    else:
        rows, first = [np.concatenate([prime, o]) for o in own], [len(prime)] * len(texts)
    head = [] if len(prime) else [start_id(vocab)]  # the first prime symbol replaces it
    inputs = [np.concatenate([np.array(head, np.int32), r]).astype(np.int32) for r in rows]
    lead = len(head)  # logits after input j predict input j + 1
    longest = max((len(x) for x in inputs), default=0)
    grid = np.zeros((len(texts), max(longest, 1)), np.int32)
    for i, x in enumerate(inputs):
        grid[i, : len(x)] = x
    scored = np.full(grid.shape, np.nan, np.float64)  # log p of input j + 1, at j
    tops: list[list] = [[None] * grid.shape[1] for _ in texts]
    states = w.zero_states(len(texts))
    end = time.perf_counter() + chunk_seconds
    for j in range(longest - 1):
        logits, states = cell_step(NumpyOps, w, grid[:, j], states)
        logp = _log_softmax(np.asarray(logits, np.float64))
        nxt = grid[:, j + 1]
        scored[:, j] = logp[np.arange(len(texts)), nxt]
        if j + 1 >= lead + first[0]:  # a symbol of the texts (not of a prompt left out)
            best = np.argsort(-logp, axis=1, kind="stable")[:, :top]
            for i in range(len(texts)):
                tops[i][j] = {vocab.symbols[k]: float(logp[i, k]) for k in best[i]}
        if time.perf_counter() >= end:
            yield None
            end = time.perf_counter() + chunk_seconds
    out = []
    for i, text in enumerate(texts):
        at = lead + first[i]  # input index of the text's first symbol
        out.append(_per_char(vocab, text, scored[i], tops[i], at, offset))
    return out


def _per_char(
    vocab: Vocab, text: str, scored: np.ndarray, tops: list, at: int, offset: int
) -> dict:
    tokens, lps, top_lps, offsets = [], [], [], []
    for pos, ch in enumerate(text):
        n = len(vocab.encode(ch, unknown="skip")) if vocab.jamo else 1
        # the symbols of ch are inputs at .. at + n - 1, predicted at at - 1 .. at + n - 2
        parts = [scored[k - 1] for k in range(at, at + n) if k >= 1]
        lp = None if at == 0 or not parts else float(sum(parts))
        tokens.append(ch)
        lps.append(lp)
        top_lps.append(tops[at - 1] if at >= 1 else None)
        offsets.append(offset + pos)
        at += n
    return {
        "tokens": tokens,
        "token_logprobs": lps,
        "top_logprobs": top_lps,
        "text_offset": offsets,
    }


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
