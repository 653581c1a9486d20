"""Setting up a training run: its batches, its model size, its run directory's checks,
and TensorFlow with the model, optimizer, state and compiled steps (charrnn.training.loop
runs them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from charrnn import backend
from charrnn.analysis import scoring
from charrnn.atomic import read_json, write_text_atomic
from charrnn.errors import CharrnnError
from charrnn.nn.cells import embedding_size as cell_embedding_size
from charrnn.nn.cells import get as get_cell
from charrnn.store import rundir
from charrnn.store.weightsfile import checkpoint_extra
from charrnn.training import autosize, distribute, settings
from charrnn.training.state import TrainState

if TYPE_CHECKING:
    import keras
    import tensorflow

    from charrnn.store.dataset import Dataset
    from charrnn.text import Vocab

Log = Callable[[str], None]  # a start-up line's receiver

# --- batches -------------------------------------------------------------------------


class Streams:
    """``batch_size`` contiguous streams over a 1-D id array, read in ``seq_length`` columns.

    A strided view of the (memory-mapped) array: a batch copies only its own
    batch_size x (seq_length + 1) ids, so memory does not grow with the corpus.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int) -> None:
        self.batch_size, self.seq_length = batch_size, seq_length
        self.length = (len(ids) - 1) // batch_size  # input symbols per stream
        self.batches = self.length // seq_length  # full batches per epoch
        step = ids.strides[0]
        self.view = np.lib.stride_tricks.as_strided(
            ids,
            shape=(batch_size, self.length + 1),
            strides=(self.length * step, step),
            writeable=False,
        )

    def columns(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = np.asarray(self.view[:, start : stop + 1], dtype=np.int32)
        return chunk[:, :-1], chunk[:, 1:]

    def batch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.columns(k * self.seq_length, (k + 1) * self.seq_length)


def window_symbols(train_cfg: dict, meta: dict) -> int:
    """Symbols per training window: ``seq_length``, or with ``seq_unit: chars`` on jamo
    data the symbols that cover ``seq_length`` characters on average in the train split,
    so a jamo window sees as much text as a syllable window of the same seq_length."""
    ratio = symbols_per_char(meta, "train")
    if train_cfg["seq_unit"] == "chars" and ratio:
        return max(1, round(train_cfg["seq_length"] * ratio))
    return train_cfg["seq_length"]


def symbols_per_char(meta: dict, split: str = "val") -> float | None:
    """Symbols per original character in ``split`` (> 1 for jamo data); None if unknown."""
    counts = (meta.get("splits") or {}).get(split) or {}
    if counts.get("symbols") and counts.get("chars"):
        return counts["symbols"] / counts["chars"]
    return None


# --- model size: chosen once, for the time budget (model: auto) ---------------------


def choose_size(
    config: dict,
    ds: Dataset,
    batches: Streams,
    out: Path,
    resume: bool,
    role: distribute.Role,
    log: Log,
) -> None:
    """``model.size: auto`` and ``model.cell: auto``: fill in the model settings
    (charrnn.training.autosize); a resumed run keeps the choice its model.json records."""
    model_cfg, train_cfg = config["model"], config["train"]
    keys = (["cell"] if model_cfg["cell"] == "auto" else []) + (
        ["num_layers", "rnn_size", "embedding_size", "dropout"]
        if model_cfg["size"] == "auto"
        else []
    )
    if not keys:
        return
    if resume and (out / rundir.MODEL_FILE).is_file():
        old = rundir.read_model_args(out)
        model_cfg.update({k: old[k] for k in keys})
        log(
            f"model auto: keeping the choice made when the run started, {old['num_layers']}x"
            f"{old['rnn_size']} {old['cell']}, dropout {old['dropout']:g}"
        )
        return
    if not train_cfg["max_time"]:
        raise CharrnnError(
            "model auto chooses the model for a time budget: give one with "
            "--max-time (e.g. --max-time 30m), or set model.cell, "
            "model.num_layers and model.rnn_size instead of auto"
        )
    if role.num_workers > 1 and not model_cfg["auto_throughput"]:
        raise CharrnnError(
            "model auto on several workers needs model.auto_throughput "
            "(symbols/s of a 2x256 LSTM), so every worker chooses the same model"
        )
    vocab, symbols = len(ds.vocab), len(ds.split("train"))
    speed = autosize.machine_speed(vocab, model_cfg["auto_throughput"], train_cfg["precision"])
    # the symbols the run may read before max_epochs / max_steps end it
    most = step_limit(train_cfg, batches.batches) * batches.batch_size * batches.seq_length
    budget = train_cfg["max_time"]
    if model_cfg["cell"] == "auto":
        model_cfg["cell"] = autosize.choose_cell(vocab, symbols, budget, speed, log, most)
    if model_cfg["size"] == "auto":
        chosen, _ = autosize.choose(
            vocab, symbols, budget, model_cfg["cell"], log=log, speed=speed, most=most
        )
        model_cfg.update(chosen)
    model_cfg["embedding_size"] = cell_embedding_size(
        model_cfg["cell"], model_cfg["rnn_size"], model_cfg["embedding_size"]
    )


def step_limit(train_cfg, batches_per_epoch):
    """The step at which max_steps / max_epochs end the run (inf: neither is set)."""
    limit = min(
        n
        for n in (
            train_cfg["max_steps"],
            train_cfg["max_epochs"] and train_cfg["max_epochs"] * batches_per_epoch,
            float("inf"),
        )
        if n
    )
    if (
        train_cfg["lr_schedule"] == "cosine"
        and limit == float("inf")
        and not (train_cfg["max_time"] or train_cfg["planned_steps"])
    ):
        raise CharrnnError(
            "train.lr_schedule cosine needs train.max_steps, train.max_epochs or "
            "train.max_time to know where the schedule ends"
        )
    return limit


# --- the run directory ----------------------------------------------------------------


def check_run_dir(
    out: Path, resume: bool, model_settings: dict, vocab: Vocab, train_cfg: dict
) -> None:
    """Refuse to overwrite a run, or to resume one with what its checkpoint cannot take:
    another vocabulary, or a setting declared ``fixed_on_resume`` (charrnn.training.settings)
    changed: the architecture, or the batch shape the carried state depends on."""
    has_ckpt = rundir.has_checkpoint(out)
    if not resume:
        if has_ckpt:
            raise CharrnnError(
                f"{out} already holds a training run; continue it with "
                f"`charrnn train --resume --out {out}`, start it over with "
                "--force, or choose another --out"
            )
        return
    if not has_ckpt:
        raise CharrnnError(
            f"nothing to resume in {out}: no checkpoint there; train without "
            "--resume first (or check --out)"
        )
    _check_vocab(read_json(out / rundir.VOCAB_FILE), vocab, f"run {out}")
    old = rundir.read_model_args(out)
    keys = [s.name for s in settings.fixed_on_resume("model")]
    if diff := ", ".join(
        f"{k} {old.get(k)} -> {model_settings.get(k)}"
        for k in keys
        if old.get(k) != model_settings.get(k)
    ):
        raise CharrnnError(
            f"cannot resume {out} with a different architecture ({diff}); "
            "resume with the run's own model settings or start a new run "
            "with another --out"
        )
    old_train = rundir.read_config(out).get("train") or {}
    for setting in settings.fixed_on_resume("train"):
        key = setting.name  # an older config.yaml without the key: the default then
        used = old_train.get(key, setting.default)
        if used != train_cfg[key]:
            raise CharrnnError(
                f"cannot resume {out} with {setting.key} {train_cfg[key]} (the run "
                f"used {used}): the carried state and data position depend on "
                "it; keep it or start a new run"
            )


def _check_vocab(old_json, vocab, what):
    old = old_json.get("symbols", [])
    new = list(vocab.symbols)
    if old != new or bool(old_json.get("jamo")) != bool(vocab.jamo):
        missing = [sym for sym in new if sym not in set(old)][:5]
        hint = f"; e.g. {', '.join(map(repr, missing))} not in it" if missing else ""
        raise CharrnnError(
            f"{what} was trained on a different vocabulary ({len(old)} symbols vs "
            f"{len(new)} in this dataset{hint}); use the same prepared data, or "
            "prepare the new text with the old run's vocabulary"
        )


def trim_metrics(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint we continue from."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))


# --- TensorFlow, model, optimizer, state, compiled steps -------------------------------


@dataclass
class Setup:
    tf: ModuleType  # TensorFlow, imported (charrnn.backend.tensorflow)
    model: keras.Model  # charrnn.nn.model's CharRNN
    optimizer: keras.optimizers.Optimizer  # Adam(W), wrapped for float16 loss scaling
    strategy: tensorflow.distribute.Strategy
    tstate: TrainState
    train_step: Callable[..., tuple]  # (x, y, states) -> (loss, gradient norm, states)
    eval_step: Callable[..., tuple]  # (x, y, states) -> (NLL of every y, states)
    scale: tensorflow.Variable | None  # the float16 loss scale (None otherwise)
    notes: str  # what is in effect, for the start-up line


def build(
    config: dict, ds: Dataset, model_settings: dict, window: int, write_dir: Path, out: Path
) -> Setup:
    """TensorFlow (threads, strategy, precision, determinism, seeds), the model, the
    optimizer, the training state and the compiled steps."""
    from charrnn.nn.model import build_model

    train_cfg, model_cfg = config["train"], config["model"]
    batch_size = train_cfg["batch_size"]
    tf = backend.tensorflow()
    import keras

    threads = distribute.set_intra_op_threads(
        distribute.intra_op_threads(  # before any TF op
            train_cfg["intra_op_threads"], batch_size, model_cfg["rnn_size"], model_cfg["cell"]
        )
    )
    strategy = distribute.make_strategy(train_cfg["strategy"])  # before any TF op
    replicas = strategy.num_replicas_in_sync
    distribute.replica_batch(strategy, batch_size)
    precision = distribute.resolve_precision(train_cfg["precision"])
    deterministic, why = distribute.resolve_deterministic(train_cfg["deterministic"])
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if train_cfg["seed"] is not None:
        keras.utils.set_random_seed(train_cfg["seed"])
    jit = (
        train_cfg["jit_compile"]
        and not tf.config.list_physical_devices("GPU")  # cuDNN is not XLA-able
        and replicas == 1
    )  # XLA around strategy.run's collectives is not for CPUs
    with distribute.precision(precision), strategy.scope():
        model = build_model(**model_settings)
        adam = keras.optimizers.Adam(
            learning_rate=train_cfg["learning_rate"], weight_decay=train_cfg["weight_decay"] or None
        )
        # AdamW as in nanoGPT: decay the matrices (kernels, embedding), not the biases
        adam.exclude_from_weight_decay([v for v in model.trainable_variables if len(v.shape) < 2])
        optimizer = distribute.wrap_optimizer(adam, precision)
        optimizer.build(model.trainable_variables)  # create the slots now so restore fills them
    tstate = TrainState(
        tf,
        model,
        optimizer,
        batch_size,
        out,
        write_dir,
        train_cfg["keep_checkpoints"],
        checkpoint_extra(model, ds.vocab, ds.meta),
    )
    scale = distribute.loss_scale(optimizer)  # float16 only
    train_step = _make_train_step(
        tf, model, optimizer, strategy, batch_size * window, train_cfg["grad_clip"], scale, jit
    )
    notes = (
        f"XLA {'on' if jit else 'off'}; determinism {'on' if deterministic else 'off'} "
        f"({why}); precision {precision}; "
        f"{threads or 'default'} intra-op thread{'s' * (threads != 1)}"
    )
    return Setup(
        tf,
        model,
        optimizer,
        strategy,
        tstate,
        train_step,
        scoring.make_step(model, jit),
        scale,
        notes,
    )


def _make_train_step(tf, model, optimizer, strategy, tokens, clip, scale, jit):
    variables = model.trainable_variables

    def replica_step(x, y, states):
        with tf.GradientTape() as tape:
            logits, new_state = model(x, states=states, return_state=True, training=True)
            # This replica's tokens over the GLOBAL count: the replicas' sum is the
            # global mean, so loss and gradient mean what they mean on one device.
            loss = (
                tf.reduce_sum(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                )
                / tokens
            )
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        # norm: before clipping, of the whole batch's gradient; what we report
        grads, norm = distribute.reduce_and_clip(grads, clip, scale)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, norm, new_state

    @tf.function(jit_compile=jit)
    def train_step(x, y, states):
        loss, norm, new_state = strategy.run(replica_step, args=(x, y, states))
        return (
            strategy.reduce("SUM", loss, axis=None),
            strategy.reduce("MEAN", norm, axis=None),
            new_state,
        )

    return train_step


def describe_data(log: Log, config: dict, ds: Dataset, batches: Streams) -> None:
    """The start-up line about the data: before TensorFlow starts, so a user sees at once
    what is being read."""
    train_cfg = config["train"]
    log(
        f"data {config['data']}: {len(ds.vocab)} symbols; train {len(ds.split('train')):,}, "
        f"val {len(ds.split('val')):,} symbols; {batches.batches:,} batches of "
        f"{train_cfg['batch_size']}x{batches.seq_length} per epoch"
        + (
            f" (seq_length {train_cfg['seq_length']} characters, about {batches.seq_length} jamo "
            "symbols)"
            if batches.seq_length != train_cfg["seq_length"]
            else ""
        )
    )


def describe(log: Log, setup: Setup, role: distribute.Role) -> None:
    """The start-up lines about the model and how it runs."""
    replicas = setup.strategy.num_replicas_in_sync
    model = setup.model
    stream = " (= rnn_size, the residual stream)" if get_cell(model.cell).parallel else ""
    log(
        f"model: {model.num_layers}x{model.rnn_size} {model.cell}, embedding "
        f"{model.embedding_size}{stream}, {model.count_params():,} parameters"
    )
    log(
        f"strategy {type(setup.strategy).__name__}: {replicas} replica{'s' * (replicas > 1)}"
        f"{f' on {role.num_workers} workers' if role.num_workers > 1 else ''}; {setup.notes}"
    )
