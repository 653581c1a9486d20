"""Where a training run reports: metrics.jsonl, TensorBoard and the terminal.

metrics.jsonl is part of the run (resume trims it to the checkpoint), so failing to
write it stops the run like a failed checkpoint; TensorBoard is a view, so a failed
write there warns once and turns it off for the rest of the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from charrnn.errors import first_line
from charrnn.generate.choice import Options
from charrnn.generate.sampler import Sampler, start_id
from charrnn.nn.tensors import weights_from_model
from charrnn.store.rundir import METRICS_FILE
from charrnn.training.config import to_yaml

if TYPE_CHECKING:
    import keras

    from charrnn.atomic import StrPath
    from charrnn.errors import CharrnnError
    from charrnn.text import Vocab


class Sinks:
    def __init__(
        self,
        tf: ModuleType,
        write_dir: Path,
        logdir: Path,
        config: dict,
        step: int,
        total: int | float,
        log: Callable[[str], None],
        on_write_error: Callable[[str, StrPath, BaseException], CharrnnError],
        bar: Callable[[int | None, int], Any] | None = None,
        lines_above_bar: bool = True,
    ):
        self.tf, self.log, self.on_write_error = tf, log, on_write_error
        self.path = write_dir / METRICS_FILE
        self.writer = None
        self.metrics = None
        try:
            self.metrics = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise on_write_error("metrics", self.path, e) from None
        try:
            self.writer = tf.summary.create_file_writer(str(logdir))
            if step == 0:
                _write_hparams(tf, self.writer, config)
        except (OSError, tf.errors.OpError) as e:
            self._tensorboard_failed(e)
        self.progress = _Progress(log, step, total, bar, lines_above_bar)

    def _tensorboard_failed(self, e):
        self.log(
            f"Warning: cannot write TensorBoard logs ({first_line(e)}); "
            "TensorBoard is off for the rest of this run (metrics.jsonl goes on)"
        )
        self.writer = None

    def record(self, record: dict, sample: str | None = None) -> None:
        try:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()
        except OSError as e:
            raise self.on_write_error("metrics", self.path, e) from None
        if self.writer is not None:
            try:
                _summaries(self.tf, self.writer, record, sample)
            except (OSError, self.tf.errors.OpError) as e:
                self._tensorboard_failed(e)
        self.progress.record(record)

    def close(self) -> None:
        self.progress.close()
        for f in (self.metrics, self.writer):
            try:
                if f is not None:
                    f.close()
            except (OSError, self.tf.errors.OpError):
                pass  # the run is ending anyway; the error was reported when it happened


def preview(model: keras.Model, vocab: Vocab, length: int, step: int) -> str | None:
    """A short temperature-0.8 sample for TensorBoard, drawn with the sampler's own
    counter-based RNG (seeded by the step), so it takes nothing from the training RNG."""
    if length <= 0:
        return None
    with np.errstate(all="ignore"):  # a model about to diverge may overflow: still a preview
        sampler = Sampler(
            weights_from_model(model),
            1,
            Options(temperature=0.8, seed=step),
            start_id(vocab),
            engine="numpy",
        )
        return vocab.decode(sampler.generate(length)[0])


def _write_hparams(tf, writer, config):
    flat = {"data": config["data"]}
    for section in ("model", "train"):
        for k, v in config[section].items():
            if isinstance(v, (bool, int, float, str)):
                flat[f"{section}.{k}"] = v
    with writer.as_default():
        tf.summary.text("config", "```\n" + to_yaml(config) + "```", step=0)
        try:
            from tensorboard.plugins.hparams import api as hp

            hp.hparams(flat)
        except Exception:  # hparams plugin unavailable: the text summary above remains
            pass


def _summaries(tf, writer, record, sample):
    step = record["step"]
    with writer.as_default():
        tf.summary.scalar("train/loss", record["loss"], step=step)
        tf.summary.scalar("lr", record["lr"], step=step)
        tf.summary.scalar("grad_norm", record["grad_norm"], step=step)
        tf.summary.scalar("chars_per_s", record["chars_per_s"], step=step)
        if "val_loss" in record:
            what = f"{record['val_symbols']:,} symbols of the validation split" + (
                ", a fixed subset (train.eval_symbols)" if record["val_subset"] else ""
            )
            tf.summary.scalar(
                "val/loss",
                record["val_loss"],
                step=step,
                description=f"mean nats per symbol over {what}",
            )
            tf.summary.scalar(
                "val/bpc", record["val_bpc"], step=step, description=f"bits per symbol over {what}"
            )
            if "val_bpc_char" in record:
                tf.summary.scalar("val/bpc_char", record["val_bpc_char"], step=step)
            if "val_loss_whole" in record:
                tf.summary.scalar(
                    "val/loss_whole",
                    record["val_loss_whole"],
                    step=step,
                    description="the whole validation split (train.final_eval)",
                )
        if sample:
            tf.summary.text("sample", sample, step=step)
    writer.flush()


class _Progress:
    """A progress bar made by ``bar(total, initial)`` (a tqdm; None: no bar) carrying the
    step, loss and validation figures.  Without a bar each log/eval event is a line for
    ``log``; with one only evaluations are, written above the bar when ``lines_above_bar``
    (a terminal), else to ``log``."""

    def __init__(self, log, step, total, bar=None, lines_above_bar=True):
        self.log = log
        self.total = None if total == float("inf") else int(total)
        self.post = {}  # step loss, val loss, lr, chars/s shown beside the bar
        self.bar = bar(self.total, step) if bar is not None else None
        self.lines_above_bar = lines_above_bar
        self.last = step

    def update(self, step: int, loss: float, lr: float, total: int | float | None = None) -> None:
        """``total``: the step the run now ends at, once a time budget has planned it."""
        if total and total != self.total:
            self.total = int(total)
            if self.bar is not None:
                self.bar.total = self.total
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.post.update(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
            self.bar.set_postfix(self.post, refresh=False)
        self.last = step

    def record(self, r: dict) -> None:
        total = f"/{self.total}" if self.total else ""
        line = (
            f"step {r['step']}{total} epoch {r['epoch']:.2f} loss {r['loss']:.4f} "
            f"lr {r['lr']:.2e} grad {r['grad_norm']:.2f} {r['chars_per_s']:,.0f} chars/s"
        )
        if "val_loss" in r:
            line += f" | val {r['val_loss']:.4f} ({r['val_bpc']:.3f} bits)"
        if "val_loss_whole" in r:
            line += f", whole split {r['val_loss_whole']:.4f}"
        if self.bar is None:
            self.log(line)
            return
        # The bar carries the numbers; evaluations also leave a line, above it on a terminal.
        if "val_loss" in r:
            self.post["val"] = f"{r['val_loss']:.3f}"
            if self.lines_above_bar:
                self.bar.write(line, file=sys.stderr)
            else:
                self.log(line)
        self.post["chars/s"] = f"{r['chars_per_s']:,.0f}"
        self.bar.set_postfix(self.post)

    def write(self, message: str) -> None:
        if self.bar is not None and self.lines_above_bar:
            self.bar.write(message, file=sys.stderr)
        else:
            self.log(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
