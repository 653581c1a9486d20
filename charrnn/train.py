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

from charrnn import distribute, finetune, runs
from charrnn.config import to_yaml
from charrnn.errors import CharrnnError

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
    """A compiled (x, y, states) -> (summed loss in nats, new states) for ``model``."""
    from charrnn.backend import tensorflow

    tf = tensorflow()

    @tf.function(jit_compile=jit)
    def eval_step(x, y, states):
        logits, new_state = model(x, states=states, return_state=True, training=False)
        loss = tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        return loss, new_state

    return eval_step


def evaluate_loss(model, ids, batch_size, seq_length, eval_step=None):
    """Mean loss in nats/symbol over all of ``ids`` (the whole split, cut into at most
    ``batch_size`` streams, state carried across ``seq_length`` chunks); None when
    there is nothing to predict."""
    if len(ids) < 2:
        return None
    eval_step = eval_step or make_eval_step(model)
    streams = Streams(ids, max(1, min(batch_size, (len(ids) - 1) // seq_length)), seq_length)
    states = model.initial_state(streams.batch_size)
    total, count = 0.0, 0
    for start in range(0, streams.length, seq_length):
        x, y = streams.columns(start, min(start + seq_length, streams.length))
        loss, states = eval_step(x, y, states)
        total += float(loss)
        count += y.size
    return total / count


def learning_rate(t: dict, step: int, batches_per_epoch: int, total_steps) -> float:
    """The LR for ``step``: a pure function of the step, so resuming restores it exactly."""
    if t["lr_schedule"] == "cosine":
        progress = min(1.0, step / max(1, total_steps))
        end = t["final_lr_fraction"]
        factor = end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        period = batches_per_epoch if t["decay_every"] == "epoch" else t["decay_every"]
        factor = t["decay_rate"] ** (step // period)
    if step < t["warmup_steps"]:
        factor *= (step + 1) / t["warmup_steps"]
    return t["learning_rate"] * factor


# --- the whole training run ----------------------------------------------------------

def train(config: dict, resume=False, init_from=None, log=None) -> TrainResult:
    """Train (or continue) the run described by the resolved ``config``.

    ``log(str)`` receives human progress lines (default: stderr).
    Raises CharrnnError for anything the user must fix.
    """
    from charrnn.backend import tensorflow
    from charrnn.data import load_dataset
    from charrnn.model import build_model, model_args

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t = config["train"]
    out = Path(t["out"])
    B, T = t["batch_size"], t["seq_length"]
    # Multi-worker: only the chief writes `out`; the others write a temporary copy
    # (removed at the end) and restore from the chief's checkpoints.
    role = distribute.worker_role(t["strategy"])
    wout = distribute.write_path(out, role)

    # --- dataset: memory-mapped ids --------------------------------------------------
    ds = load_dataset(config["data"])
    vocab = ds.vocab
    train_ids, val_ids = ds.split("train"), ds.split("val")
    batches = Streams(train_ids, B, T)
    if batches.batches < 1:
        raise CharrnnError(
            f"the train split of {config['data']} has {len(train_ids):,} symbols, too few for "
            f"batch_size x seq_length = {B} x {T}; lower train.batch_size or train.seq_length")
    bpe = batches.batches
    total_steps = min(s for s in (t["max_steps"], t["max_epochs"] and t["max_epochs"] * bpe,
                                  float("inf")) if s)
    if t["lr_schedule"] == "cosine" and total_steps == float("inf"):
        raise CharrnnError("train.lr_schedule cosine needs train.max_steps or train.max_epochs "
                           "to know where the schedule ends")

    # --- run directory -----------------------------------------------------------------
    margs = {"vocab_size": len(vocab), **config["model"]}
    _check_run_dir(out, resume, margs, vocab, t)
    if init_from:
        source = finetune.check(init_from, margs, vocab, ds.meta)
    distribute.discard(wout, role)  # left behind by a worker that died
    wout.mkdir(parents=True, exist_ok=True)
    runs.write_text_atomic(wout / runs.CONFIG_FILE, to_yaml(config))
    runs.write_json_atomic(wout / runs.VOCAB_FILE, vocab.to_json())
    runs.write_json_atomic(wout / runs.META_FILE, ds.meta)

    # --- TensorFlow: determinism, seeds -------------------------------------------------
    tf = tensorflow()
    import keras

    threads = distribute.set_intra_op_threads(distribute.intra_op_threads(  # before any TF op
        t["intra_op_threads"], B, config["model"]["rnn_size"], config["model"]["cell"]))
    strategy = distribute.make_strategy(t["strategy"])  # before any TF op
    replicas = strategy.num_replicas_in_sync
    distribute.replica_batch(strategy, B)
    precision = distribute.resolve_precision(t["precision"])
    if t["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    if t["seed"] is not None:
        keras.utils.set_random_seed(t["seed"])
    jit = (t["jit_compile"] and not tf.config.list_physical_devices("GPU")  # cuDNN is not XLA-able
           and replicas == 1)  # XLA around strategy.run's collectives is not for CPUs

    # --- model and optimizer --------------------------------------------------------
    with distribute.precision(precision), strategy.scope():
        model = build_model(**margs)
        optimizer = distribute.wrap_optimizer(
            keras.optimizers.Adam(learning_rate=t["learning_rate"]), precision)
        optimizer.build(model.trainable_variables)  # create the slots now so restore fills them
    runs.write_json_atomic(wout / runs.MODEL_FILE, model_args(model))
    params = model.count_params()
    if init_from:
        finetune.restore(model, source, vocab, log)

    # --- checkpoint: everything the next step depends on ----------------------------------
    state = [tf.Variable(s, trainable=False) for s in model.initial_state(B)]
    counters = {k: tf.Variable(0, dtype=tf.int64, trainable=False)
                for k in ("step", "epoch", "position")}
    best_var = tf.Variable(float("inf"), dtype=tf.float64, trainable=False)
    rng = [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, state=state, rng=rng,
                               best_val_loss=best_var, **counters)
    manager = tf.train.CheckpointManager(ckpt, str(wout / runs.CHECKPOINTS_DIR),
                                         max_to_keep=t["keep_checkpoints"])
    best_manager = tf.train.CheckpointManager(ckpt, str(wout / runs.BEST_DIR), max_to_keep=1)
    if resume:
        latest = runs.latest_checkpoint(out)  # the chief's
        status = ckpt.restore(latest)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as e:
            raise CharrnnError(f"checkpoint {latest} does not match this "
                               f"model/optimizer ({runs._first_line(e)}); start a new run "
                               "with another --out") from None
        log(f"resuming {out} from {latest}")
    step, epoch, position = (int(counters[k].numpy()) for k in ("step", "epoch", "position"))
    best = float(best_var.numpy())
    _trim_metrics(wout / runs.METRICS_FILE, step)

    log(f"data {config['data']}: {len(vocab)} symbols; train {len(train_ids):,}, "
        f"val {len(val_ids):,} symbols; {bpe:,} batches of {B}x{T} per epoch")
    m = config["model"]
    log(f"model: {m['num_layers']}x{m['rnn_size']} {m['cell']}, embedding {m['embedding_size']}, "
        f"{params:,} parameters; XLA {'on' if jit else 'off'}")
    log(f"strategy {type(strategy).__name__}: {replicas} replica{'s' * (replicas > 1)}"
        f"{f' on {role.num_workers} workers' if role.num_workers > 1 else ''}; "
        f"precision {precision}; {threads or 'default'} intra-op thread{'s' * (threads != 1)}")

    # --- compiled steps -----------------------------------------------------------------
    variables = model.trainable_variables
    clip = t["grad_clip"]

    scale = distribute.loss_scale(optimizer)  # float16 only

    def replica_step(x, y, states):
        with tf.GradientTape() as tape:
            logits, new_state = model(x, states=states, return_state=True, training=True)
            # This replica's tokens over the GLOBAL count: the replicas' sum is the
            # global mean, so loss and gradient mean what they mean on one device.
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits)) / (B * T)
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

    eval_step = make_eval_step(model, jit)

    def evaluate():
        return evaluate_loss(model, val_ids, B, T, eval_step)

    # --- when to stop; maybe before the first step -------------------------------------
    def stop_reason():
        if t["max_steps"] and step >= t["max_steps"]:
            return f"reached max_steps {t['max_steps']}"
        if t["max_epochs"] and epoch >= t["max_epochs"]:
            return f"reached max_epochs {t['max_epochs']}"
        if t["max_time"] and time.monotonic() - started >= t["max_time"]:
            return f"reached max_time {t['max_time']:g}s"
        return None

    started = time.monotonic()
    if stop_reason():
        distribute.discard(wout, role)
        log(f"nothing to do: run {out} is at step {step} and {stop_reason()}; raise "
            "--max-steps / train.max_epochs to train further")
        return TrainResult(str(out), step, "nothing-to-do", best_val_loss=_finite(best))

    # --- logging sinks ------------------------------------------------------------------
    logdir = Path(t["logdir"]) if t["logdir"] and role.chief else wout / "logs"
    writer = tf.summary.create_file_writer(str(logdir))
    if step == 0:
        _write_hparams(tf, writer, config)
    metrics = open(wout / runs.METRICS_FILE, "a", encoding="utf-8")
    symbols_per_char = _symbols_per_char(ds.meta) if vocab.jamo else None
    progress = _Progress(log, step, total_steps)

    # --- stop on Ctrl-C after the current step -------------------------------------------
    stop = {"signal": None}

    def on_signal(signum, frame):
        if stop["signal"] is not None:          # a second Ctrl-C: give up at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop["signal"] = signum
        progress.write("interrupt: finishing the current step and saving (Ctrl-C again to abort)")

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def save(which=manager):
        # A finite loss can still come with an update that overflowed the weights:
        # never let such weights replace the last good checkpoint.
        if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables):
            raise CharrnnError(_nan_message(0.0, 0.0, step - 1, t, out,
                                            last_save, manager))
        for k, v in (("step", step), ("epoch", epoch), ("position", position)):
            counters[k].assign(v)
        best_var.assign(best)
        for v, s in zip(state, distribute.gather_streams(strategy, states)):
            v.assign(s)  # the whole batch's carried state, whatever the replica count
        return which.save(checkpoint_number=step)

    # --- the loop -----------------------------------------------------------------------
    last_save = None
    val_loss = None

    def fresh_acc():  # sums over the steps since the last log line
        return {"loss": 0.0, "norm": 0.0, "n": 0, "time": 0.0, "skipped": 0}

    acc = fresh_acc()
    states = distribute.distribute_streams(strategy, [s.numpy() for s in state])
    try:
        while True:
            # one training step
            if position == 0:
                states = distribute.distribute_streams(strategy, model.initial_state(B))
            tick = time.perf_counter()
            lr = learning_rate(t, step, bpe, total_steps)
            optimizer.learning_rate = lr
            xy = distribute.distribute_streams(strategy, batches.batch(position))
            loss, norm, states = train_step(*xy, states)
            loss, norm = float(loss), float(norm)
            acc["time"] += time.perf_counter() - tick
            # float16: an overflowing loss scale gives an infinite norm; Keras skips
            # that update and halves the scale, so it is not divergence.
            skipped = scale is not None and not math.isfinite(norm)
            if not (math.isfinite(loss) and (math.isfinite(norm) or skipped)):
                raise CharrnnError(_nan_message(loss, norm, step, t, out, last_save, manager))
            step, position = step + 1, position + 1
            if position == bpe:
                epoch, position = epoch + 1, 0
            acc["loss"] += loss
            acc["norm"] += 0.0 if skipped else norm
            acc["skipped"] += skipped
            acc["n"] += 1
            progress.update(step, loss, lr)

            reason = stop_reason() or (stop["signal"] and "interrupted")
            if role.num_workers > 1:  # all workers leave at the same step
                code = distribute.agree_max(strategy, 2 if reason == "interrupted" else
                                            1 if reason else 0)
                reason = [None, reason or "another worker reached max_time", "interrupted"][code]
            do_eval = step % t["eval_every"] == 0 or (reason and reason != "interrupted")

            # evaluate, log, save
            record = None
            if do_eval or step % t["log_every"] == 0 or reason:
                record = {"step": step, "epoch": round(epoch + position / bpe, 4),
                          "loss": acc["loss"] / acc["n"], "lr": lr,
                          "grad_norm": acc["norm"] / max(1, acc["n"] - acc["skipped"]),
                          "chars_per_s": acc["n"] * B * T / max(acc["time"], 1e-9)}
                acc = fresh_acc()
            if do_eval:
                val_loss = evaluate()
                if val_loss is not None and role.num_workers > 1:
                    val_loss = distribute.agree_mean(strategy, val_loss)  # one "best" decision
                if val_loss is not None:
                    record.update(val_loss=val_loss, val_bpc=val_loss / LN2)
                    if symbols_per_char:  # bits per original character
                        record["val_bpc_char"] = val_loss / LN2 * symbols_per_char
                    record["best"] = val_loss < best
                    if val_loss < best:
                        best = val_loss
                        save(best_manager)
                    sample = _preview(model, vocab, t["sample_length"], step) if role.chief \
                        else None
                else:
                    sample = None
            if record is not None:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                _summaries(tf, writer, record, sample if do_eval else None)
                progress.record(record)
            if step % t["save_every"] == 0 or reason:
                save()
                last_save = step
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
        _restore_handlers(old_handlers)
        progress.close()
        metrics.close()
        writer.close()
        distribute.discard(wout, role)

    if reason == "interrupted":
        log(f"interrupted at step {step}; checkpoint saved in {out / runs.CHECKPOINTS_DIR}. "
            f"Resume with: charrnn train --resume --out {out}")
        return TrainResult(str(out), step, "interrupted", val_loss, _finite(best),
                           stop["signal"])
    summary = f"done at step {step} ({reason})"
    if val_loss is not None:
        summary += f"; val loss {val_loss:.4f} nats ({val_loss / LN2:.3f} bits)/symbol"
    log(summary + f"; run saved in {out}")
    return TrainResult(str(out), step, "done", val_loss, _finite(best))


# --- helpers ------------------------------------------------------------------------

def _check_run_dir(out: Path, resume, margs, vocab, t):
    has_ckpt = (out / runs.CHECKPOINTS_DIR / "checkpoint").exists()
    if not resume:
        if has_ckpt:
            raise CharrnnError(f"{out} already holds a training run; continue it with "
                               f"`charrnn train --resume --out {out}` or choose another --out")
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
    for key in ("batch_size", "seq_length"):
        if old_train.get(key) not in (None, t[key]):
            raise CharrnnError(f"cannot resume {out} with train.{key} {t[key]} (the run used "
                               f"{old_train[key]}): the carried state and data position depend "
                               "on it; keep it or start a new run")


def _check_init_from(src, margs, vocab):
    old = runs.read_model_args(src)
    _check_vocab(runs.read_json(Path(src) / runs.VOCAB_FILE), vocab, f"--init-from {src}")
    keys = [k for k in margs if k != "dropout"]
    if any(old.get(k) != margs[k] for k in keys):
        diff = ", ".join(f"{k} {old.get(k)} (source) vs {margs[k]}" for k in keys
                         if old.get(k) != margs[k])
        raise CharrnnError(f"--init-from {src}: the architecture differs ({diff}); use the same "
                           "model settings as the source run")


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


def _nan_message(loss, norm, step, t, out, last_save, manager):
    what = (f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
            if not math.isfinite(norm) else "the weights overflowed")
    kept = manager.latest_checkpoint
    keep = (f"the last good checkpoint {kept} is kept; after changing the setting continue with "
            f"`charrnn train --resume --out {out} --set train.learning_rate=...`"
            if kept else "no checkpoint was saved yet")
    return (f"training diverged at step {step + 1}: {what}. Lower train.learning_rate "
            f"(now {t['learning_rate']:g}) or train.grad_clip (now {t['grad_clip']}); {keep}")


def _symbols_per_char(meta):
    """Symbols per original character in the val split (> 1 for jamo data)."""
    val = (meta.get("splits") or {}).get("val") or {}
    if val.get("symbols") and val.get("chars"):
        return val["symbols"] / val["chars"]
    return None


def _finite(x):
    return x if x is not None and math.isfinite(x) else None


def _restore_handlers(handlers):
    for s, h in handlers.items():
        signal.signal(s, h)


def _preview(model, vocab, length, step):
    """A short temperature-0.8 sample for TensorBoard, drawn with the sampler's own
    counter-based RNG (seeded by the step), so it takes nothing from the training RNG."""
    if length <= 0:
        return None
    from charrnn.sample import Options, Sampler, start_id, weights_from_model

    with np.errstate(all="ignore"):  # a model about to diverge may overflow: still a preview
        sampler = Sampler(weights_from_model(model), 1, Options(temperature=0.8, seed=step),
                          start_id(vocab), engine="numpy")
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
            tf.summary.scalar("val/loss", record["val_loss"], step=step)
            tf.summary.scalar("val/bpc", record["val_bpc"], step=step)
            if "val_bpc_char" in record:
                tf.summary.scalar("val/bpc_char", record["val_bpc_char"], step=step)
        if sample:
            tf.summary.text("sample", sample, step=step)
    writer.flush()


class _Progress:
    """tqdm bar on a terminal; otherwise a plain line per log/eval event."""

    def __init__(self, log, step, total):
        self.log = log
        self.bar = None
        self.total = None if total == float("inf") else int(total)
        self.post = {}  # step loss, val loss, lr, chars/s shown beside the bar
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=step, unit="step", file=sys.stderr,
                            dynamic_ncols=True, leave=True)
        self.last = step

    def update(self, step, loss, lr):
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.post.update(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
            self.bar.set_postfix(self.post, refresh=False)
        self.last = step

    def record(self, r):
        total = f"/{self.total}" if self.total else ""
        line = (f"step {r['step']}{total} epoch {r['epoch']:.2f} loss {r['loss']:.4f} "
                f"lr {r['lr']:.2e} grad {r['grad_norm']:.2f} {r['chars_per_s']:,.0f} chars/s")
        if "val_loss" in r:
            line += f" | val {r['val_loss']:.4f} ({r['val_bpc']:.3f} bits)"
        if self.bar is None:
            self.log(line)
            return
        # On a terminal the bar carries the numbers; evaluations also leave a line above it.
        if "val_loss" in r:
            self.post["val"] = f"{r['val_loss']:.3f}"
            self.bar.write(line, file=sys.stderr)
        self.post["chars/s"] = f"{r['chars_per_s']:,.0f}"
        self.bar.set_postfix(self.post)

    def write(self, message):
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            self.log(message)

    def close(self):
        if self.bar is not None:
            self.bar.close()
