"""What a loaded model is, for every command: the one record charrnn.store.loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import numpy as np

    from charrnn.nn.step import Weights
    from charrnn.text import Vocab


@dataclass
class LoadedModel:
    """A model as read from a run directory or a .safetensors file.

    ``tensors`` holds the weights under the one naming of charrnn.nn.tensors; ``weights``
    (the engines' arrangement) and ``model`` (a Keras CharRNN, which imports TensorFlow)
    are made from them on first use.
    """

    path: str  # the run directory or weights file it came from
    model_args: dict  # charrnn.nn.model.build_model arguments
    vocab: Vocab
    meta: dict  # the dataset's meta.json as the run saved it ({} if unknown)
    config: dict = field(default_factory=dict)  # the run's resolved config ({} for a file)
    step: int = 0  # training step of the checkpoint
    checkpoint: str = ""  # the checkpoint directory (or file) the weights came from
    tensors: dict[str, np.ndarray] | None = None  # float32 arrays; None: only the header read
    recorded_val_loss: float | None = None  # a weights file's val_loss; runs read theirs on demand
    _model: keras.Model | None = field(default=None, repr=False)
    _weights: Weights | None = field(default=None, repr=False)

    @property
    def val_loss(self) -> float | None:
        """The validation loss of the checkpoint (its manifest, else the one logged at its
        step in metrics.jsonl), or None."""
        if self.recorded_val_loss is None and Path(self.path).is_dir():
            from charrnn.store.rundir import logged_val_loss

            self.recorded_val_loss = logged_val_loss(self.path, self.checkpoint, self.step)
        return self.recorded_val_loss

    @property
    def cell(self) -> str:
        return self.model_args["cell"]

    @property
    def weights(self) -> Weights:
        """charrnn.nn.step.Weights for the NumPy / XLA engines (no TensorFlow)."""
        if self._weights is None:
            from charrnn.nn.tensors import engine_weights

            self._weights = engine_weights(self.cell, self.tensors)
        return self._weights

    @weights.setter
    def weights(self, value: Weights) -> None:
        self._weights = value

    @property
    def model(self) -> keras.Model:
        """The Keras model (built and filled on first use; imports TensorFlow)."""
        if self._model is None:
            from charrnn.nn.model import build_model
            from charrnn.nn.tensors import assign_to_model

            model = build_model(**self.model_args)
            assign_to_model(model, self.tensors)
            self._model = model
        return self._model

    @model.setter
    def model(self, value: keras.Model) -> None:
        """A Keras model already holding these weights (a restore made one anyway)."""
        self._model = value

    @property
    def newlines(self) -> str:
        return self.meta.get("newlines", "lf")

    @property
    def symbols_per_char(self) -> float:
        """Symbols per character of the training text (above 1 only with jamo)."""
        chars, symbols = self.meta.get("chars"), self.meta.get("symbols")
        return symbols / chars if chars and symbols else 1.0

    @property
    def short_checkpoint(self) -> str:
        """``best/ckpt-1200``: what a reader needs, without the local path (pages get shared)."""
        return "/".join(Path(str(self.checkpoint)).parts[-2:])
