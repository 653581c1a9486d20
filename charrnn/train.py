"""Training: truncated BPTT over parallel streams, Adam, clipping, LR decay, exact resume.

Reads top to bottom like the classic char-rnn train script:
dataset -> run directory -> model and optimizer -> checkpoint (resume / init-from)
-> compiled train/eval steps -> the loop (log, evaluate, save, stop).

The train split is cut into ``batch_size`` contiguous streams; batch k of an
epoch is columns [k*seq_length, (k+1)*seq_length) of every stream, so row b of
one batch continues row b of the previous one and the recurrent state carries
across batches (reset at each epoch).  Everything that decides what happens
next -- weights, Adam slots, step/epoch/position, the carried state, the dropout
RNG -- lives in one tf.train.Checkpoint, so a resumed run continues exactly.
"""

import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import checkpoints, distribute, finetune, runs, weightsfile
from charrnn.config import to_yaml
from charrnn.errors import CharrnnError
from charrnn.plan import Budget
from charrnn.trainlog import Sinks, _preview
from charrnn.trainstate import TrainState

LN2 = math.log(2.0)


@dataclass
class TrainResult:
    out: str
    step: int
    status: str                 # "done", "interrupted" or "nothing-to-do"
    val_loss: float | None = None
    best_val_loss: float | None = None
    signal: int | None = None   # the signal that interrupted the run


# --- batches -------------------------------------------------------------------------

class Streams:
    """``batch_size`` contiguous streams over a 1-D id array, read in ``seq_length`` columns.

    A strided view of the (memory-mapped) array: a batch copies only its own
    batch_size x (seq_length + 1) ids, so memory does not grow with the corpus.
    """

    def __init__(self, ids, batch_size, seq_length):
        self.batch_size, self.seq_length = batch_size, seq_length
        self.length = (len(ids) - 1) // batch_size        # input symbols per stream
        self.batches = self.length // seq_length           # full batches per epoch
        step = ids.strides[0]
        self.view = np.lib.stride_tricks.as_strided(
            ids, shape=(batch_size, self.length + 1), strides=(self.length * step, step),
            writeable=False)

    def columns(self, start, stop):
        chunk = np.asarray(self.view[:, start:stop + 1], dtype=np.int32)
        return chunk[:, :-1], chunk[:, 1:]

    def batch(self, k):
        return self.columns(k * self.seq_length, (k + 1) * self.seq_length)


def make_eval_step(model, jit=False):
    """The compiled scoring step for ``model`` (charrnn.scoring.make_step), built once
    per run and reused by every validation."""
    from charrnn import scoring

    return scoring.make_step(model, jit)


def evaluate_loss(model, ids, eval_step=None):
    """Mean loss in nats/symbol over all of ``ids`` under charrnn.scoring's definition
    (pieces side by side with warm-up, the first symbol context only), so validation
    and `charrnn evaluate` mean the same thing; None when there is nothing to predict."""
    from charrnn import scoring

    return scoring.mean_nats(model, ids, step=eval_step or make_eval_step(model))


def learning_rate(t: dict, step: int, batches_per_epoch: int, total_steps) -> float:
    """The LR for ``step``: a pure function of the step (and of the plan, see plan.py),
    so resuming restores it exactly.  ``total_steps`` None: not planned yet (start value)."""
    if t["lr_schedule"] == "cosine":
        progress = 0.0 if total_steps is None else min(1.0, step / max(1, total_steps))
        end = t["final_lr_fraction"]
        factor = end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        period = batches_per_epoch if t["decay_every"] == "epoch" else t["decay_every"]
        factor = t["decay_rate"] ** (step // period)
    if step < t["warmup_steps"]:
        factor *= (step + 1) / t["warmup_steps"]
    return t["learning_rate"] * factor


# --- the whole training run ----------------------------------------------------------

def train(config: dict, resume=False, init_from=None, force=False, log=None) -> TrainResult:
    """Train (or continue) the run described by the resolved ``config``.

    ``force`` deletes the run already in ``train.out`` first.  ``log(str)`` receives
    human progress lines (default: stderr).  Raises CharrnnError for anything the
    user must fix.
    """
    from charrnn.data import load_dataset
    from charrnn.model import MODEL_DEFAULTS, model_args, start_from_unigram

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t = config["train"]
    out = Path(t["out"])
    # Multi-worker: only the chief writes `out` and holds its lock; the others write a
    # temporary copy (removed at the end) and restore from the chief's checkpoints.
    role = distribute.worker_role(t["strategy"])
    wout = distribute.write_path(out, role)

    # --- dataset: memory-mapped ids --------------------------------------------------
    ds = load_dataset(config["data"])
    batches = Streams(ds.split("train"), t["batch_size"], window_symbols(t, ds.meta))
    if batches.batches < 1:
        raise CharrnnError(
            f"the train split of {config['data']} has {len(ds.split('train')):,} symbols, too "
            f"few for batch_size x seq_length = {t['batch_size']} x {batches.seq_length}; lower "
            "train.batch_size or train.seq_length")

    # --- model size: chosen once, for the time budget (model: auto) -------------------
    _choose_size(config, ds, out, resume, role, log)
    margs = {"vocab_size": len(ds.vocab), **{k: config["model"][k] for k in MODEL_DEFAULTS}}

    # --- run directory: one writer, checked before anything is written ----------------
    with runs.RunLock(out, enabled=role.chief):
        if init_from:
            source = finetune.check(init_from, margs, ds.vocab, ds.meta, _warn(log))
        if force and role.chief:  # only once every check that can refuse has passed
            runs.clear_run(out)
        _check_run_dir(out, resume, margs, ds.vocab, t)
        distribute.discard(wout, role)  # left behind by a worker that died
        wout.mkdir(parents=True, exist_ok=True)
        for folder in (runs.CHECKPOINTS_DIR, runs.BEST_DIR):
            checkpoints.clean_leftovers(wout / folder)  # of a save that was killed

        # --- TensorFlow, model, optimizer, checkpoint ------------------------------------
        s = _setup(config, margs, batches.seq_length, wout, out, log)
        s.tstate.extra = weightsfile.checkpoint_extra(s.model, ds.vocab, ds.meta, s.tstate)
        if resume:
            ck = s.tstate.restore(on_warning=_warn(log))
            log(f"resuming {out} from {ck.name}")
        else:  # (fine-tuning then overwrites the symbols it shares)
            start_from_unigram(s.model, ds.split("train"))
        s.tstate.check_writable()
        try:
            runs.write_text_atomic(wout / runs.CONFIG_FILE, to_yaml(config))
            runs.write_json_atomic(wout / runs.VOCAB_FILE, ds.vocab.to_json())
            runs.write_json_atomic(wout / runs.META_FILE, ds.meta)
            runs.write_json_atomic(wout / runs.MODEL_FILE, model_args(s.model))
            _trim_metrics(wout / runs.METRICS_FILE, s.tstate.values()[0])
        except OSError as e:
            raise s.tstate.write_error("the run files in", wout, e) from None
        if init_from:
            finetune.restore(s.model, source, ds.vocab, log)
        _describe(log, config, ds, batches, s, role)
        return _loop(config, s, ds, batches, role, wout, out, log)


def _choose_size(config, ds, out, resume, role, log):
    """``model.size: auto``: fill in the model settings (charrnn.autosize); a resumed run
    keeps the choice its model.json records."""
    from charrnn import autosize

    m, t = config["model"], config["train"]
    if m["size"] != "auto":
        return
    if resume and (out / runs.MODEL_FILE).is_file():
        old = runs.read_model_args(out)
        m.update({k: old[k] for k in ("num_layers", "rnn_size", "embedding_size", "dropout")})
        log(f"model auto: keeping the choice made when the run started, {m['num_layers']}x"
            f"{m['rnn_size']}, dropout {m['dropout']:g}")
        return
    if not t["max_time"]:
        raise CharrnnError("model size auto chooses the model for a time budget: give one with "
                           "--max-time (e.g. --max-time 30m), or set model.num_layers and "
                           "model.rnn_size instead of model.size")
    if role.num_workers > 1 and not m["auto_throughput"]:
        raise CharrnnError("model size auto on several workers needs model.auto_throughput "
                           "(symbols/s of a 2x256 LSTM), so every worker chooses the same model")
    chosen, _ = autosize.choose(len(ds.vocab), len(ds.split("train")), t["max_time"], m["cell"],
                                m["auto_throughput"], log)
    m.update(chosen)


def _warn(log):
    return lambda message: log(f"Warning: {message}")


@dataclass
class _Setup:
    tf: object
    model: object
    optimizer: object
    strategy: object
    tstate: object
    train_step: object
    eval_step: object
    scale: object         # the float16 loss scale (None otherwise)
    notes: str            # what is in effect, for the start-up line


def _setup(config, margs, T, wout, out, log) -> _Setup:
    """TensorFlow (threads, strategy, precision, determinism, seeds), the model, the
    optimizer, the training state and the compiled steps."""
    from charrnn.backend import tensorflow
    from charrnn.model import build_model

    t, m = config["train"], config["model"]
    B = t["batch_size"]
    tf = tensorflow()
    import keras

    threads = distribute.set_intra_op_threads(distribute.intra_op_threads(  # before any TF op
        t["intra_op_threads"], B, m["rnn_size"], m["cell"]))
    strategy = distribute.make_strategy(t["strategy"])  # before any TF op
    replicas = strategy.num_replicas_in_sync
    distribute.replica_batch(strategy, B)
    precision = distribute.resolve_precision(t["precision"])
    deterministic, why = distribute.resolve_deterministic(t["deterministic"])
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if t["seed"] is not None:
        keras.utils.set_random_seed(t["seed"])
    jit = (t["jit_compile"] and not tf.config.list_physical_devices("GPU")  # cuDNN is not XLA-able
           and replicas == 1)  # XLA around strategy.run's collectives is not for CPUs
    with distribute.precision(precision), strategy.scope():
        model = build_model(**margs)
        adam = keras.optimizers.Adam(learning_rate=t["learning_rate"],
                                     weight_decay=t["weight_decay"] or None)
        # AdamW as in nanoGPT: decay the matrices (kernels, embedding), not the biases
        adam.exclude_from_weight_decay([v for v in model.trainable_variables if len(v.shape) < 2])
        optimizer = distribute.wrap_optimizer(adam, precision)
        optimizer.build(model.trainable_variables)  # create the slots now so restore fills them
    tstate = TrainState(tf, model, optimizer, B, out, wout, t["keep_checkpoints"])
    scale = distribute.loss_scale(optimizer)  # float16 only
    train_step = _make_train_step(tf, model, optimizer, strategy, B * T, t["grad_clip"], scale,
                                  jit)
    notes = (f"XLA {'on' if jit else 'off'}; determinism {'on' if deterministic else 'off'} "
             f"({why}); precision {precision}; "
             f"{threads or 'default'} intra-op thread{'s' * (threads != 1)}")
    return _Setup(tf, model, optimizer, strategy, tstate, train_step,
                  make_eval_step(model, jit), scale, notes)


def _make_train_step(tf, model, optimizer, strategy, tokens, clip, scale, jit):
    variables = model.trainable_variables

    def replica_step(x, y, states):
        with tf.GradientTape() as tape:
            logits, new_state = model(x, states=states, return_state=True, training=True)
            # This replica's tokens over the GLOBAL count: the replicas' sum is the
            # global mean, so loss and gradient mean what they mean on one device.
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits)) / tokens
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        # norm: before clipping, of the whole batch's gradient; what we report
        grads, norm = distribute.reduce_and_clip(grads, clip, scale)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, norm, new_state

    @tf.function(jit_compile=jit)
    def train_step(x, y, states):
        loss, norm, new_state = strategy.run(replica_step, args=(x, y, states))
        return (strategy.reduce("SUM", loss, axis=None), strategy.reduce("MEAN", norm, axis=None),
                new_state)

    return train_step


def _describe(log, config, ds, batches, s, role):
    t, m = config["train"], config["model"]
    replicas = s.strategy.num_replicas_in_sync
    log(f"data {config['data']}: {len(ds.vocab)} symbols; train {len(ds.split('train')):,}, "
        f"val {len(ds.split('val')):,} symbols; {batches.batches:,} batches of "
        f"{t['batch_size']}x{batches.seq_length} per epoch"
        + (f" (seq_length {t['seq_length']} characters, about {batches.seq_length} jamo "
           "symbols)" if batches.seq_length != t["seq_length"] else ""))
    log(f"model: {m['num_layers']}x{m['rnn_size']} {m['cell']}, embedding {m['embedding_size']}, "
        f"{s.model.count_params():,} parameters")
    log(f"strategy {type(s.strategy).__name__}: {replicas} replica{'s' * (replicas > 1)}"
        f"{f' on {role.num_workers} workers' if role.num_workers > 1 else ''}; {s.notes}")


def _loop(config, s, ds, batches, role, wout, out, log) -> TrainResult:
    """Train until a limit, Ctrl-C or an error: log, evaluate, save."""
    tf, t, strategy, tstate = s.tf, config["train"], s.strategy, s.tstate
    B, T, bpe = t["batch_size"], batches.seq_length, batches.batches
    val_ids = ds.split("val")
    step, epoch, position, best = tstate.values()
    saved = (tstate.last.manifest or {}).get("train") if tstate.last else None
    budget = Budget(t, _step_limit(t, bpe), step, saved)

    # --- when to stop; maybe before the first step -------------------------------------
    def stop_reason():
        if t["max_steps"] and step >= t["max_steps"]:
            return f"reached max_steps {t['max_steps']}"
        if t["max_epochs"] and epoch >= t["max_epochs"]:
            return f"reached max_epochs {t['max_epochs']}"
        return budget.stop_reason(step)

    if stop_reason():
        distribute.discard(wout, role)
        log(f"nothing to do: run {out} is at step {step} and {stop_reason()}; raise "
            "--max-steps / train.max_epochs (or --max-time, for a planned run) to train further")
        return TrainResult(str(out), step, "nothing-to-do", best_val_loss=_finite(best))

    # --- logging sinks; Ctrl-C finishes the current step -----------------------------------
    logdir = Path(t["logdir"]) if t["logdir"] and role.chief else wout / "logs"
    sinks = Sinks(tf, wout, logdir, config, step, budget.total_steps() or budget.limit, log,
                  tstate.write_error)
    stop = _StopOnSignal(sinks.progress.write)
    symbols_per_char = _symbols_per_char(ds.meta) if ds.vocab.jamo else None
    # every worker keeps the same plan
    agree = (lambda n: distribute.agree_max(strategy, n)) if role.num_workers > 1 else None

    def save(kind="latest", val_loss=None):
        # A finite loss can still come with an update that overflowed the weights:
        # never let such weights replace the last good checkpoint.
        if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in s.model.trainable_variables):
            raise CharrnnError(_nan_message(0.0, 0.0, step - 1, t, out, tstate.last))
        tstate.save(kind, step, epoch, position, best,
                    distribute.gather_streams(strategy, states), val_loss, budget.record())

    # --- the loop -----------------------------------------------------------------------
    val_loss, reason = None, None
    acc = _Accumulator()
    states = distribute.distribute_streams(strategy, [v.numpy() for v in tstate.state])
    try:
        while True:
            # one training step
            if position == 0:
                states = distribute.distribute_streams(strategy, s.model.initial_state(B))
            tick = time.perf_counter()
            lr = learning_rate(t, step, bpe, budget.total_steps())
            loss, norm, skipped, states = _step(s, t, lr, batches.batch(position), states,
                                                step, out)
            step, position = step + 1, position + 1
            if position == bpe:
                epoch, position = epoch + 1, 0
            acc.add(loss, norm, skipped, time.perf_counter() - tick)
            budget.after_step(step, sinks.progress.write, agree,
                              lambda: evaluate_loss(s.model, val_ids, s.eval_step))
            budget.check_pace(step, sinks.progress.write)
            sinks.progress.update(step, loss, lr, budget.total_steps())

            reason = _agree_stop(strategy, role, stop_reason() or (stop.signal and "interrupted"))
            do_eval = step % t["eval_every"] == 0 or (reason and reason != "interrupted")

            # evaluate, log, save
            if do_eval or step % t["log_every"] == 0 or reason:
                record = acc.record(step, round(epoch + position / bpe, 4), lr, B * T)
                sample = None
                if do_eval and (val_loss := _validate(s, val_ids, role)) is not None:
                    _add_val(record, val_loss, best, symbols_per_char)
                    if val_loss < best:
                        best = val_loss
                        save("best", val_loss)
                    sample = _preview(s.model, ds.vocab, t["sample_length"], step) \
                        if role.chief else None
                sinks.record(record, sample)
            if step % t["save_every"] == 0 or reason:
                save()
            if reason:
                break
    except tf.errors.OpError as e:
        if role.num_workers == 1:
            raise
        # A peer died or left: its collectives fail here within seconds.
        raise CharrnnError(f"the cluster lost a worker ({type(e).__name__} in a collective "
                           f"op); the chief's checkpoints in {out} are intact: restart every "
                           f"worker with `charrnn train --resume --out {out}`") from None
    finally:
        stop.restore()
        sinks.close()
        distribute.discard(wout, role)

    return _finish(log, out, step, reason, val_loss, best, stop.signal)


def _finish(log, out, step, reason, val_loss, best, signum) -> TrainResult:
    """The last line for the user, and the result."""
    if reason == "interrupted":
        log(f"interrupted at step {step}; checkpoint saved in {out / runs.CHECKPOINTS_DIR}. "
            f"Resume with: charrnn train --resume --out {out}")
        return TrainResult(str(out), step, "interrupted", val_loss, _finite(best), signum)
    summary = f"done at step {step} ({reason})"
    if val_loss is not None:
        summary += f"; val loss {val_loss:.4f} nats ({val_loss / LN2:.3f} bits)/symbol"
    log(summary + f"; run saved in {out}")
    return TrainResult(str(out), step, "done", val_loss, _finite(best))


def _step(s, t, lr, xy, states, step, out):
    """One update at ``lr``: (loss, gradient norm, skipped, new states); a loss or norm
    that is not finite stops the run."""
    s.optimizer.learning_rate = lr
    xy = distribute.distribute_streams(s.strategy, xy)
    loss, norm, states = s.train_step(*xy, states)
    loss, norm = float(loss), float(norm)
    # float16: an overflowing loss scale gives an infinite norm; Keras skips
    # that update and halves the scale, so it is not divergence.
    skipped = s.scale is not None and not math.isfinite(norm)
    if not (math.isfinite(loss) and (math.isfinite(norm) or skipped)):
        raise CharrnnError(_nan_message(loss, norm, step, t, out, s.tstate.last))
    return loss, norm, skipped, states


def _agree_stop(strategy, role, reason):
    """Why to stop after this step (None: go on); all workers leave at the same step."""
    if role.num_workers == 1:
        return reason
    code = distribute.agree_max(strategy, 2 if reason == "interrupted" else 1 if reason else 0)
    return [None, reason or "another worker reached max_time", "interrupted"][code]


def _validate(s, val_ids, role):
    """The validation loss (None: no validation split); workers agree on one mean, so
    they agree on which checkpoint is the best."""
    val_loss = evaluate_loss(s.model, val_ids, s.eval_step)
    if val_loss is not None and role.num_workers > 1:
        val_loss = distribute.agree_mean(s.strategy, val_loss)
    return val_loss


def _step_limit(t, bpe):
    """The step at which max_steps / max_epochs end the run (inf: neither is set)."""
    limit = min(s for s in (t["max_steps"], t["max_epochs"] and t["max_epochs"] * bpe,
                            float("inf")) if s)
    if t["lr_schedule"] == "cosine" and limit == float("inf") and not (
            t["max_time"] or t["planned_steps"]):
        raise CharrnnError("train.lr_schedule cosine needs train.max_steps, train.max_epochs or "
                           "train.max_time to know where the schedule ends")
    return limit


def _add_val(record, val_loss, best, symbols_per_char):
    record.update(val_loss=val_loss, val_bpc=val_loss / LN2, best=val_loss < best)
    if symbols_per_char:  # bits per original character
        record["val_bpc_char"] = val_loss / LN2 * symbols_per_char


class _Accumulator:
    """Sums over the steps since the last log line."""

    def __init__(self):
        self.loss = self.norm = self.time = 0.0
        self.n = self.skipped = 0

    def add(self, loss, norm, skipped, seconds):
        self.loss += loss
        self.norm += 0.0 if skipped else norm
        self.skipped += skipped
        self.n += 1
        self.time += seconds

    def record(self, step, epoch, lr, tokens_per_step) -> dict:
        r = {"step": step, "epoch": epoch, "loss": self.loss / self.n, "lr": lr,
             "grad_norm": self.norm / max(1, self.n - self.skipped),
             "chars_per_s": self.n * tokens_per_step / max(self.time, 1e-9)}
        self.__init__()
        return r


class _StopOnSignal:
    """Ctrl-C / SIGTERM: finish the current step, save, stop; a second Ctrl-C aborts."""

    def __init__(self, say):
        self.signal, self.say = None, say
        self.old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        if self.signal is not None:          # a second Ctrl-C: give up at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signal = signum
        self.say("interrupt: finishing the current step and saving (Ctrl-C again to abort)")

    def restore(self):
        for s, h in self.old.items():
            signal.signal(s, h)


# --- helpers ------------------------------------------------------------------------

def _check_run_dir(out: Path, resume, margs, vocab, t):
    has_ckpt = runs.has_checkpoint(out)
    if not resume:
        if has_ckpt:
            raise CharrnnError(f"{out} already holds a training run; continue it with "
                               f"`charrnn train --resume --out {out}`, start it over with "
                               "--force, or choose another --out")
        return
    if not has_ckpt:
        raise CharrnnError(f"nothing to resume in {out}: no checkpoint there; train without "
                           "--resume first (or check --out)")
    _check_vocab(runs.read_json(out / runs.VOCAB_FILE), vocab, f"run {out}")
    old = runs.read_model_args(out)
    if old != margs:  # dropout too: it owns a checkpointed random generator
        diff = ", ".join(f"{k} {old.get(k)} -> {margs.get(k)}" for k in margs
                         if old.get(k) != margs.get(k))
        raise CharrnnError(f"cannot resume {out} with a different architecture ({diff}); "
                           "resume with the run's own model settings or start a new run "
                           "with another --out")
    old_train = runs.read_config(out).get("train", {})
    for key in ("batch_size", "seq_length", "seq_unit"):
        if old_train.get(key, "symbols" if key == "seq_unit" else None) not in (None, t[key]):
            raise CharrnnError(f"cannot resume {out} with train.{key} {t[key]} (the run used "
                               f"{old_train[key]}): the carried state and data position depend "
                               "on it; keep it or start a new run")


def _check_vocab(old_json, vocab, what):
    old = old_json.get("symbols", [])
    new = list(vocab.symbols)
    if old != new or bool(old_json.get("jamo")) != bool(vocab.jamo):
        missing = [s for s in new if s not in set(old)][:5]
        hint = f"; e.g. {', '.join(map(repr, missing))} not in it" if missing else ""
        raise CharrnnError(f"{what} was trained on a different vocabulary ({len(old)} symbols vs "
                           f"{len(new)} in this dataset{hint}); use the same prepared data, or "
                           "prepare the new text with the old run's vocabulary")


def _trim_metrics(path: Path, step: int):
    """On resume, drop lines logged after the checkpoint we continue from."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step]
    if len(kept) != len(lines):
        runs.write_text_atomic(path, "".join(kept))


def _nan_message(loss, norm, step, t, out, kept):
    what = (f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
            if not math.isfinite(norm) else "the weights overflowed")
    keep = (f"the last good checkpoint {kept.name} is kept; after changing the setting continue with "
            f"`charrnn train --resume --out {out} --set train.learning_rate=...`"
            if kept else "no checkpoint was saved yet")
    return (f"training diverged at step {step + 1}: {what}. Lower train.learning_rate "
            f"(now {t['learning_rate']:g}) or train.grad_clip (now {t['grad_clip']}); {keep}")


def window_symbols(t, meta) -> int:
    """Symbols per training window: ``seq_length``, or with ``seq_unit: chars`` on jamo
    data the symbols that cover ``seq_length`` characters on average in the train split,
    so a jamo window sees as much text as a syllable window of the same seq_length."""
    ratio = _symbols_per_char(meta, "train")
    if t["seq_unit"] == "chars" and ratio:
        return max(1, round(t["seq_length"] * ratio))
    return t["seq_length"]


def _symbols_per_char(meta, split="val"):
    """Symbols per original character in ``split`` (> 1 for jamo data); None if unknown."""
    counts = (meta.get("splits") or {}).get(split) or {}
    if counts.get("symbols") and counts.get("chars"):
        return counts["symbols"] / counts["chars"]
    return None


def _finite(x):
    return x if x is not None and math.isfinite(x) else None
