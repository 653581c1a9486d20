"""Training state: everything the next step depends on, saved whole or not at all.

One tf.train.Checkpoint holds the weights, Adam's slots, step / epoch / position in
the data, the carried recurrent state, the dropout RNG and the best validation loss,
so a resumed run continues exactly.  Saving goes through charrnn.store.checkpoints (a
checkpoint directory appears complete or not at all); a save that cannot be written
-- full disk, quota, read-only or forbidden -- stops the run with one error that says
what it needs and how to resume, leaving the last good checkpoint as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from charrnn.errors import CharrnnError, first_line
from charrnn.store import checkpoints
from charrnn.store.checkpoints import BEST_DIR, CHECKPOINTS_DIR

if TYPE_CHECKING:
    import keras
    import numpy as np
    import tensorflow as tf

    from charrnn.atomic import StrPath
    from charrnn.store.checkpoints import Checkpoint, Extra

# Phrases TensorFlow puts in the message of a failed write (it raises its own errors,
# not OSError, e.g. ResourceExhaustedError "... No space left on device [Op:SaveV2]").
_WRITE_REASONS = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Permission denied",
    "Operation not permitted",
)


def _mb(n) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.0f} KB"


class TrainState:
    """``out``: the run directory (the chief's); ``write_dir``: where this process writes
    (``out``, or a worker's temporary copy); ``extra(tmpdir, step, val_loss)``: adds files
    to each checkpoint (training's weights file, charrnn.store.weightsfile)."""

    def __init__(
        self,
        tf: ModuleType,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        batch_size: int,
        out: StrPath,
        write_dir: StrPath,
        keep: int,
        extra: Extra | None = None,
    ):
        self.tf, self.out, self.write_dir = tf, Path(out), Path(write_dir)
        self.keep, self.extra = keep, extra
        self.state = [tf.Variable(s, trainable=False) for s in model.initial_state(batch_size)]
        self.counters = {
            k: tf.Variable(0, dtype=tf.int64, trainable=False)
            for k in ("step", "epoch", "position")
        }
        self.best = tf.Variable(float("inf"), dtype=tf.float64, trainable=False)
        rng = [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]
        self.ckpt = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            state=self.state,
            rng=rng,
            best_val_loss=self.best,
            **self.counters,
        )
        self.last = None  # the newest good checkpoint (restored or written)
        # What a checkpoint needs on disk, until one has been written: every variable,
        # plus the model's weights once more for the files ``extra`` may add.
        weights = sum(v.numpy().nbytes for v in model.weights)
        others = sum(v.numpy().nbytes for v in optimizer.variables) + sum(
            s.numpy().nbytes for s in self.state
        )
        self.need = weights * 2 + others + 64_000

    def values(self) -> tuple[int, int, int, float]:
        """(step, epoch, position, best validation loss) as restored."""
        return (
            *(int(self.counters[k].numpy()) for k in ("step", "epoch", "position")),
            float(self.best.numpy()),
        )

    # --- restore -------------------------------------------------------------------
    def restore(self, on_warning: Callable[[str], None] | None = None) -> Checkpoint:
        """Continue from the newest intact checkpoint of the chief's run directory."""

        def load(ck: Checkpoint) -> None:
            status = self.ckpt.read(ck.prefix)  # the counterpart of write (no save counter)
            try:
                status.assert_existing_objects_matched()
            except AssertionError as e:
                raise CharrnnError(
                    f"checkpoint {ck.name} does not match this model/optimizer "
                    f"({first_line(e)}); start a new run with another "
                    "--out"
                ) from None

        _, self.last = checkpoints.load(self.out, "latest", load, need="all", on_warning=on_warning)
        self.need = max(self.need, self.last.size())
        return self.last

    # --- save --------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Before any training: the run directory takes files, and a checkpoint fits."""
        try:
            with tempfile.TemporaryFile(dir=self.write_dir):
                pass
        except OSError as e:
            raise self.write_error("the run directory", self.write_dir, e) from None
        self.check_space(self.write_dir)

    def check_space(self, folder: StrPath) -> None:
        folder = Path(folder)
        probe = folder if folder.exists() else folder.parent
        free = shutil.disk_usage(probe).free
        if free < self.need * 1.1 + 64_000:
            raise self.write_error("the next checkpoint in", folder, "not enough free space")

    def save(
        self,
        kind: str,
        step: int,
        epoch: int,
        position: int,
        best: float,
        states: Sequence[tf.Tensor | np.ndarray],
        val_loss: float | None = None,
        info: dict | None = None,
    ) -> Checkpoint:
        """Save into checkpoints/ (kind "latest") or best/ ("best")."""
        folder = self.write_dir / (BEST_DIR if kind == "best" else CHECKPOINTS_DIR)
        self.check_space(folder)
        for k, v in (("step", step), ("epoch", epoch), ("position", position)):
            self.counters[k].assign(v)
        self.best.assign(best)
        for v, s in zip(self.state, states):
            v.assign(s)  # the whole batch's carried state, whatever the replica count
        keep = 1 if kind == "best" else self.keep
        try:
            ck = checkpoints.save(
                self.ckpt, folder, step, keep, val_loss=val_loss, extra=self.extra, info=info
            )
        except (OSError, self.tf.errors.OpError) as e:
            raise self.write_error("checkpoint", folder / f"ckpt-{step}", e) from None
        self.need = max(self.need, ck.size())
        if kind != "best":
            self.last = ck
        return ck

    def write_error(self, what: str, path: StrPath, e: BaseException | str) -> CharrnnError:
        """The one error for a failed write: what, where, what it needs, how to go on."""
        reason = (
            e
            if isinstance(e, str)
            else getattr(e, "strerror", None)
            or next((r for r in _WRITE_REASONS if r in str(e)), first_line(e))
        )
        probe = Path(path)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        msg = (
            f"could not write {what} {path}: {reason} (a checkpoint of this model "
            f"needs about {_mb(self.need)}; {_mb(free)} free there). "
        )
        if self.last is not None:
            msg += (
                f"The last good checkpoint {self.last.name} (step {self.last.step}) is "
                f"intact: free some space, then continue with "
                f"`charrnn train --resume --out {self.out}`"
            )
        else:
            msg += "No checkpoint was saved yet: free some space and start the run again"
        return CharrnnError(msg)
