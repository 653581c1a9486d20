"""The one loader: a run directory or a .safetensors file -> a LoadedModel.

Every command that reads a model comes here (sample, evaluate, visualize, export,
`train --init-from`, `prepare --vocab-from`), so "is this a file or a run?", the
checkpoint choice and its fallback (charrnn.store.checkpoints), and the vocabulary
checks are decided once.  A run's checkpoint is read from its portable weights file
when it has one (no TensorFlow needed); otherwise TensorFlow restores the bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn.atomic import StrPath
from charrnn.errors import CharrnnError, first_line
from charrnn.store import checkpoints, rundir, weightsfile
from charrnn.store.loaded import LoadedModel
from charrnn.store.weightsfile import is_weights_file  # noqa: F401  (the one test)
from charrnn.text import Vocab

if TYPE_CHECKING:
    import keras
    import numpy as np


def load(
    path: StrPath,
    checkpoint: StrPath = "best",
    on_warning: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    *,
    read_weights: bool = True,
    from_bundle: bool = False,
) -> LoadedModel:
    """Load the model at ``path`` (a run directory or a .safetensors file).

    ``checkpoint``: "best", "latest" or a checkpoint path; a damaged one falls back to
    the newest intact one, saying so through ``on_warning``.  ``read_weights=False``
    reads only what describes the model (arguments, vocabulary, dataset meta, the step
    of the checkpoint that would be read).  ``from_bundle``: restore the TensorFlow
    bundle even where a weights file is beside it (the Keras model then comes along).
    ``on_note`` hears, once, how to speed up a run that has no weights files.
    """
    if is_weights_file(path):
        return weightsfile.read(path)
    path = str(path)
    args = rundir.read_model_args(path)
    vocab = Vocab.load(Path(path) / rundir.VOCAB_FILE)
    if len(vocab) != args.get("vocab_size"):
        raise CharrnnError(
            f"{path}: vocab.json has {len(vocab)} symbols but model.json says "
            f"{args.get('vocab_size')}; the run directory is inconsistent"
        )
    loaded = LoadedModel(
        path, args, vocab, rundir.read_dataset_meta(path), rundir.read_config(path)
    )
    if not read_weights:
        loaded.step = checkpoints.step_of(path, checkpoint)
        return loaded
    missing = []

    def read(ck: checkpoints.Checkpoint) -> tuple[dict[str, np.ndarray], keras.Model | None]:
        wf = None if from_bundle else weightsfile.read_beside(ck, args, vocab)
        if wf is not None:
            return wf.tensors, None
        missing.append(ck)
        return _restore(args, ck.prefix)

    # need="all": a checkpoint whose TF bundle is damaged is passed over here as in
    # train and evaluate, though its weights file alone would do (crc32 of a 3x512
    # checkpoint: tens of milliseconds)
    (loaded.tensors, loaded.model), ck = checkpoints.load(
        path, checkpoint, read, need="all", on_warning=on_warning
    )
    loaded.step, loaded.checkpoint = ck.step, ck.name
    if missing and on_note and not from_bundle:
        on_note(
            f"Note: checkpoint {ck.name} has no portable weights file, so TensorFlow had "
            f"to load first; add them to the run with `charrnn export {path}`"
        )
    return loaded


def _restore(args: dict, prefix: str) -> tuple[dict[str, np.ndarray], keras.Model]:
    """(named arrays, Keras model) of TensorFlow checkpoint ``prefix``."""
    from charrnn.nn.model import build_model
    from charrnn.nn.tensors import tensors_from_model

    model = build_model(**args)
    restore_weights(model, prefix)
    return tensors_from_model(model), model


def restore_weights(model: keras.Model, prefix: str) -> None:
    """Restore only the model's weights (key "model") from a training checkpoint."""
    from charrnn.backend import tensorflow

    tf = tensorflow()
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.expect_partial()  # optimizer, step, carried state: not needed here
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        if checkpoints.is_damage(e):
            raise  # the caller falls back to another checkpoint
        raise CharrnnError(
            f"checkpoint {prefix} does not fit this model ({first_line(e)}); "
            "was model.json edited or the checkpoint taken from another run?"
        ) from None


def load_run(
    path: StrPath,
    checkpoint: StrPath = "best",
    on_warning: Callable[[str], None] | None = None,
) -> LoadedModel:
    """A model with its Keras model restored by TensorFlow from the checkpoint itself (the
    reference export checks against); ``path`` may also be a .safetensors file."""
    return load(path, checkpoint, on_warning, from_bundle=True)
