"""`charrnn train --init-from RUN`: start from another run's weights, mapped by symbol.

The source may have been trained on another alphabet.  Symbols both vocabularies
hold keep their embedding row, output-layer column and bias entry; symbols only
the new data has keep the new model's own initialisation (from train.seed);
symbols only the source has are dropped.  Every other weight (by its name in
charrnn.nn.tensors: whatever the cell has, kernels, norms, feed-forward) is copied as
it is, so the architecture must match (all model settings but the vocabulary size
and dropout), and so must the jamo scheme and the newline policy: otherwise a shared
symbol would stand for something else in the new data.

`charrnn prepare --vocab-from RUN` (charrnn.store.prepare) keeps the source's symbols and
ids, so nothing is dropped and a small new corpus does not cost the old alphabet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.nn.tensors import assign_to_model, tensors_from_model
from charrnn.store import loader
from charrnn.store.loaded import LoadedModel
from charrnn.text import Vocab

if TYPE_CHECKING:
    import keras

    from charrnn.atomic import StrPath

IGNORED = ("vocab_size", "dropout")  # may differ between source and fine-tuned model


def check(src: StrPath, model_settings: dict, vocab: Vocab, meta: dict) -> LoadedModel:
    """Check that ``src`` (a run directory or a .safetensors file) can initialise a model
    with ``model_settings`` on data with ``vocab`` and dataset ``meta``; raises one
    CharrnnError naming the differences.  Returns the source as far as it was read."""
    source = loader.load(src, read_weights=False)
    if source.step is None:
        raise CharrnnError(
            f"--init-from {src}: run {src} has no checkpoint yet; train it longer "
            f"or continue it with `charrnn train --resume --out {src}`"
        )
    old, old_vocab = source.model_args, source.vocab
    keys = [k for k in model_settings if k not in IGNORED]
    arch = [
        f"{k} {old.get(k)} (source) vs {model_settings[k]}"
        for k in keys
        if old.get(k) != model_settings[k]
    ]
    data = []
    if old_vocab.jamo != vocab.jamo:
        data.append(
            f"jamo {'on' if old_vocab.jamo else 'off'} (source) vs {'on' if vocab.jamo else 'off'}"
        )
    if source.newlines != meta.get("newlines", "lf"):
        data.append(f"newlines {source.newlines} (source) vs {meta.get('newlines', 'lf')}")
    problems, fixes = [], []
    if arch:
        problems.append(f"the architecture differs ({', '.join(arch)})")
        fixes.append("use the source's model settings")
    if data:
        problems.append(f"the data was prepared differently ({', '.join(data)})")
        fixes.append(
            f"prepare the new text with `charrnn prepare --vocab-from {src}`, which "
            "takes the source's jamo and newline settings"
        )
    if problems:
        raise CharrnnError(f"--init-from {src}: {' and '.join(problems)}; {' and '.join(fixes)}")
    return source


def symbol_map(old: Vocab, new: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """``(old ids, new ids)`` of the shared symbols, in new-id order."""
    ids, ok = old.lookup(new.code_points)
    return ids[ok].astype(np.int64), np.flatnonzero(ok)


def restore(
    model: keras.Model,
    source: LoadedModel,
    vocab: Vocab,
    log: Callable[[str], None],
    on_warning: Callable[[str], None] | None = None,
) -> None:
    """Fill ``model`` (built for ``vocab``) from ``source`` (what :func:`check` returned),
    reading its best checkpoint now if only its header was read."""
    if source.tensors is None:
        source = loader.load(source.path, "best", on_warning=on_warning)
    old_ids, new_ids = symbol_map(source.vocab, vocab)
    assign_to_model(model, mapped(source.tensors, tensors_from_model(model), old_ids, new_ids))
    shared = len(new_ids)
    log(
        f"initialised weights from {source.checkpoint}: {shared} symbols shared (weights kept), "
        f"{len(vocab) - shared} new (fresh weights), {len(source.vocab) - shared} dropped "
        "(not in this data)"
    )


BY_SYMBOL = {"embedding": 0, "logits.kernel": 1, "logits.bias": 0}  # name -> vocabulary axis


def mapped(src: dict, fresh: dict, old_ids: np.ndarray, new_ids: np.ndarray) -> dict:
    """The source's named tensors (charrnn.nn.tensors) for the new model, whose own are
    ``fresh``: every tensor as it is (whatever the cell has: kernels, norms,
    feed-forward), but the vocabulary-sized ones, which keep ``fresh`` and take the
    source's values at the shared symbols only."""
    out = dict(src)
    for name, axis in BY_SYMBOL.items():
        value = fresh[name].copy()
        index = [slice(None)] * value.ndim
        src_index = list(index)
        index[axis], src_index[axis] = new_ids, old_ids
        value[tuple(index)] = src[name][tuple(src_index)]
        out[name] = value
    return out
