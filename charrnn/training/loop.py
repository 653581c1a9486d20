"""Training: truncated BPTT over parallel streams, Adam, clipping, LR decay, exact resume.

Reads top to bottom like the classic char-rnn train script:
dataset -> run directory -> model and optimizer -> checkpoint (resume / init-from)
-> compiled train/eval steps (charrnn.training.setup) -> the loop (log, evaluate, save, stop).

The train split is cut into ``batch_size`` contiguous streams; batch k of an
epoch is columns [k*seq_length, (k+1)*seq_length) of every stream, so row b of
one batch continues row b of the previous one and the recurrent state carries
across batches (reset at each epoch).  Everything that decides what happens
next -- weights, Adam slots, step/epoch/position, the carried state, the dropout
RNG -- lives in one tf.train.Checkpoint, so a resumed run continues exactly.
"""

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charrnn.atomic import StrPath, write_json_atomic, write_text_atomic
from charrnn.errors import CharrnnError
from charrnn.store import checkpoints, rundir
from charrnn.store.dataset import Dataset, load_dataset
from charrnn.store.lock import RunLock
from charrnn.training import distribute, finetune
from charrnn.training import setup as run_setup
from charrnn.training.budget import Budget
from charrnn.training.config import interval, to_yaml
from charrnn.training.metrics import Sinks, preview
from charrnn.training.validation import WHOLE_SPLIT, Validation

LN2 = math.log(2.0)


@dataclass
class TrainResult:
    out: str
    step: int
    status: str  # "done", "interrupted" or "nothing-to-do"
    val_loss: float | None = None
    best_val_loss: float | None = None
    signal: int | None = None  # the signal that interrupted the run
    timing: dict | None = None  # seconds: clock (the run's, across resumes), steps,
    # evaluation, checkpoints (this process)


# --- batches -------------------------------------------------------------------------


def learning_rate(
    train_cfg: dict, step: int, batches_per_epoch: int, total_steps: int | float | None
) -> float:
    """The LR for ``step``: a pure function of the step (and of the plan, see budget.py),
    so resuming restores it exactly.  ``total_steps`` None: not planned yet (start value)."""
    if train_cfg["lr_schedule"] == "cosine":
        progress = 0.0 if total_steps is None else min(1.0, step / max(1, total_steps))
        end = train_cfg["final_lr_fraction"]
        factor = end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        every = train_cfg["decay_every"]
        period = batches_per_epoch if every == "epoch" else every
        factor = train_cfg["decay_rate"] ** (step // period)
    if step < train_cfg["warmup_steps"]:
        factor *= (step + 1) / train_cfg["warmup_steps"]
    return train_cfg["learning_rate"] * factor


# --- the whole training run ----------------------------------------------------------


def train(
    config: dict,
    resume: bool = False,
    init_from: StrPath | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
    bar: Callable[[int | None, int], Any] | None = None,
    lines_above_bar: bool = True,
) -> TrainResult:
    """Train (or continue) the run described by the resolved ``config``.

    ``force`` deletes the run already in ``train.out`` first.  ``log(str)`` receives
    human progress lines (default: stderr).  ``bar(total, initial)`` makes the progress
    bar (a tqdm; None: none), with evaluations' lines written above it when
    ``lines_above_bar`` (a terminal's), else only to ``log``.  Ctrl-C (SIGINT, a
    notebook's interrupt) and SIGTERM finish the step, save and return "interrupted"
    when this runs in the main thread.  Raises CharrnnError for anything the user must fix.
    """
    from charrnn.nn.model import MODEL_ARGS, model_args, start_from_unigram

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    train_cfg = config["train"]
    out = Path(train_cfg["out"])
    # Multi-worker: only the chief writes `out` and holds its lock; the others write a
    # temporary copy (removed at the end) and restore from the chief's checkpoints.
    role = distribute.worker_role(train_cfg["strategy"])
    write_dir = distribute.write_path(out, role)

    # --- dataset: memory-mapped ids --------------------------------------------------
    ds = load_dataset(config["data"])
    batches = run_setup.Streams(
        ds.split("train"), train_cfg["batch_size"], run_setup.window_symbols(train_cfg, ds.meta)
    )
    if batches.batches < 1:
        raise CharrnnError(
            f"the train split of {config['data']} has {len(ds.split('train')):,} symbols, too "
            f"few for batch_size x seq_length = {train_cfg['batch_size']} x "
            f"{batches.seq_length}; lower train.batch_size or train.seq_length"
        )

    # --- model size: chosen once, for the time budget (model: auto) -------------------
    run_setup.choose_size(config, ds, batches, out, resume, role, log)
    model_settings = {
        "vocab_size": len(ds.vocab),
        **{k: config["model"][k] for k in MODEL_ARGS},
    }

    # --- run directory: one writer, checked before anything is written ----------------
    with RunLock(out, enabled=role.chief):
        if init_from:
            source = finetune.check(init_from, model_settings, ds.vocab, ds.meta)
        if force and role.chief:  # only once every check that can refuse has passed
            rundir.clear_run(out)
        run_setup.check_run_dir(out, resume, model_settings, ds.vocab, train_cfg)
        distribute.discard(write_dir, role)  # left behind by a worker that died
        write_dir.mkdir(parents=True, exist_ok=True)
        for folder in (rundir.CHECKPOINTS_DIR, rundir.BEST_DIR):
            checkpoints.clean_leftovers(write_dir / folder)  # of a save that was killed

        # --- TensorFlow, model, optimizer, checkpoint ------------------------------------
        run_setup.describe_data(log, config, ds, batches)
        setup = run_setup.build(config, ds, model_settings, batches.seq_length, write_dir, out)
        if resume:
            ck = setup.tstate.restore(on_warning=_warn(log))
            log(f"resuming {out} from {ck.name}")
        else:  # (fine-tuning then overwrites the symbols it shares)
            start_from_unigram(setup.model, ds.counts("train"))  # the train split's own
        setup.tstate.check_writable()
        try:
            write_text_atomic(write_dir / rundir.CONFIG_FILE, to_yaml(config))
            write_json_atomic(write_dir / rundir.VOCAB_FILE, ds.vocab.to_json())
            write_json_atomic(write_dir / rundir.META_FILE, ds.meta)
            write_json_atomic(write_dir / rundir.MODEL_FILE, model_args(setup.model))
            run_setup.trim_metrics(write_dir / rundir.METRICS_FILE, setup.tstate.values()[0])
        except OSError as e:
            raise setup.tstate.write_error("the run files in", write_dir, e) from None
        if init_from:
            finetune.restore(setup.model, source, ds.vocab, log, _warn(log))
        run_setup.describe(log, setup, role)
        return _loop(
            _Run(config, setup, ds, batches, role, write_dir, out, log, bar, lines_above_bar)
        )


def _warn(log):
    return lambda message: log(f"Warning: {message}")


@dataclass
class _Run:
    """What the loop trains: the resolved config, the built model and its state
    (train.setup.Setup), the data and its batches, this worker's role, where it writes."""

    config: dict
    setup: run_setup.Setup
    ds: Dataset
    batches: run_setup.Streams
    role: distribute.Role
    write_dir: Path
    out: Path
    log: Callable[[str], None]
    bar: Callable[[int | None, int], Any] | None
    lines_above_bar: bool


def _loop(run: _Run) -> TrainResult:
    """Train until a limit, Ctrl-C or an error: log, evaluate, save."""
    config, setup, ds, batches, role = run.config, run.setup, run.ds, run.batches, run.role
    write_dir, out, log = run.write_dir, run.out, run.log
    tf, train_cfg, strategy, tstate = setup.tf, config["train"], setup.strategy, setup.tstate
    batch_size, batches_per_epoch = train_cfg["batch_size"], batches.batches
    step, epoch, position, best = tstate.values()
    saved = ((tstate.last.manifest or {}).get("train") if tstate.last else None) or {}
    budget = Budget(train_cfg, run_setup.step_limit(train_cfg, batches_per_epoch), step, saved)
    if reason := _limit_reached(train_cfg, budget, step, epoch):
        distribute.discard(write_dir, role)
        log(
            f"nothing to do: run {out} is at step {step} and {reason}; raise --max-steps / "
            "train.max_epochs (or --max-time, for a planned run) to train further"
        )
        return TrainResult(str(out), step, "nothing-to-do", best_val_loss=_finite(best))

    # --- logging sinks; Ctrl-C finishes the current step or evaluation ------------------
    logdir = Path(train_cfg["logdir"]) if train_cfg["logdir"] and role.chief else write_dir / "logs"
    sinks = Sinks(
        tf,
        write_dir,
        logdir,
        config,
        step,
        budget.total_steps() or budget.limit,
        log,
        tstate.write_error,
        run.bar,
        run.lines_above_bar,
    )
    stop = _StopOnSignal(sinks.progress.write)
    symbols_per_char = run_setup.symbols_per_char(ds.meta) if ds.vocab.jamo else None
    # every worker keeps the same plan
    agree = (lambda n: distribute.agree_max(strategy, n)) if role.num_workers > 1 else None
    # A checkpoint from before bounded validation measured its best on the whole split.
    validation = Validation(
        setup,
        ds.split("val"),
        train_cfg,
        budget.planning,
        saved.get("eval", {"identity": WHOLE_SPLIT}) if tstate.last else None,
        # workers evaluate in step (their means are agreed): no early exit
        stopped=(lambda: stop.signal is not None) if role.num_workers == 1 else (lambda: False),
        say=sinks.progress.write,
    )
    eval_due = _Every(train_cfg["eval_every"], budget.seconds())
    save_due = _Every(train_cfg["save_every"], budget.seconds())
    log(f"validation: {validation.describe()}, every {_every_text(train_cfg['eval_every'])}")
    timing = {"steps": 0.0, "checkpoints": 0.0}
    # the carried recurrent state (save() checkpoints it with the model)
    states = distribute.distribute_streams(strategy, [v.numpy() for v in tstate.state])

    def save(kind: str = "latest", val_loss: float | None = None) -> None:
        tick = time.perf_counter()
        _check_finite_weights(setup, train_cfg, out, step)
        tstate.save(
            kind,
            step,
            epoch,
            position,
            best,
            distribute.gather_streams(strategy, states),
            val_loss,
            {**budget.record(), "eval": validation.record()},
        )
        timing["checkpoints"] += time.perf_counter() - tick

    def overheads(evaluations: int) -> tuple[float, float] | None:
        """For the plan: the seconds of one evaluation (fixing the subset) and of one
        checkpoint (a real one, of this step)."""
        eval_time = validation.fix_for(evaluations, budget.max_time, agree)
        if eval_time is None:
            return None
        before = timing["checkpoints"]
        save()
        return eval_time, timing["checkpoints"] - before

    # --- the loop -----------------------------------------------------------------------
    val_loss, reason = None, None
    acc = _Accumulator()
    try:
        with _lost_worker_is_an_error(tf, role, out):
            while not reason:
                # one training step
                if position == 0:
                    states = distribute.distribute_streams(
                        strategy, setup.model.initial_state(batch_size)
                    )
                tick = time.perf_counter()
                lr = learning_rate(train_cfg, step, batches_per_epoch, budget.total_steps())
                loss, norm, skipped, states = _step(
                    setup, train_cfg, lr, batches.batch(position), states, step, out
                )
                step, position = step + 1, position + 1
                if position == batches_per_epoch:
                    epoch, position = epoch + 1, 0
                took = time.perf_counter() - tick
                acc.add(loss, norm, skipped, took)
                timing["steps"] += took
                eval_now = eval_due(step, budget.seconds())
                # what a step costs: the clock less evaluations and checkpoints (the loop's
                # own work per step counts: for small models it is a good share of a step)
                budget.after_step(
                    step,
                    budget.seconds() - validation.seconds - timing["checkpoints"],
                    sinks.progress.write,
                    agree,
                    overheads,
                    now=eval_now,
                )
                budget.check_pace(step, sinks.progress.write)
                sinks.progress.update(step, loss, lr, budget.total_steps())
                reason = _agree_stop(
                    strategy,
                    role,
                    _limit_reached(train_cfg, budget, step, epoch)
                    or (stop.signal and "interrupted"),
                )
                do_eval = eval_now or (reason and reason != "interrupted")

                # evaluate, log, save
                if do_eval or step % train_cfg["log_every"] == 0 or reason:
                    record = acc.record(
                        step,
                        round(epoch + position / batches_per_epoch, 4),
                        lr,
                        batch_size * batches.seq_length,
                    )
                    sample = None
                    if do_eval:
                        val_loss, best = _evaluate(
                            validation,
                            setup,
                            role,
                            record,
                            best,
                            log,
                            symbols_per_char,
                            final=bool(reason),
                        )
                    if do_eval and val_loss is None and stop.signal:
                        reason = "interrupted"  # during the evaluation (one worker only)
                    elif do_eval and val_loss is not None:
                        if record["best"]:
                            best = val_loss
                            save("best", val_loss)
                        sample = (
                            preview(setup.model, ds.vocab, train_cfg["sample_length"], step)
                            if role.chief
                            else None
                        )
                    sinks.record(record, sample)
                if save_due(step, budget.seconds()) or reason:
                    save()
    finally:
        stop.restore()
        sinks.close()
        distribute.discard(write_dir, role)
    timing.update(evaluation=validation.seconds, clock=budget.seconds())
    return _finish(log, out, step, reason, val_loss, best, stop.signal, timing, budget.max_time)


class _Every:
    """eval_every / save_every: every n steps, or each time the run's clock passes a
    multiple of s seconds (counted across --resume, like max_time)."""

    def __init__(self, value, clock):
        self.kind, self.n = interval(value)
        self.next = self._after(clock)

    def _after(self, clock):
        return (math.floor(clock / self.n) + 1) * self.n

    def __call__(self, step, clock) -> bool:
        if self.kind == "steps":
            return step % self.n == 0
        if clock < self.next:
            return False
        self.next = self._after(clock)
        return True


def _every_text(value) -> str:
    kind, n = interval(value)
    return f"{n:,} steps" if kind == "steps" else f"{value} of the run's clock"


def _limit_reached(train_cfg, budget, step, epoch):
    """Why the run ends at ``step`` (None: it goes on)."""
    if train_cfg["max_steps"] and step >= train_cfg["max_steps"]:
        return f"reached max_steps {train_cfg['max_steps']}"
    if train_cfg["max_epochs"] and epoch >= train_cfg["max_epochs"]:
        return f"reached max_epochs {train_cfg['max_epochs']}"
    return budget.stop_reason(step)


def _check_finite_weights(setup, train_cfg, out, step):
    """A finite loss can still come with an update that overflowed the weights: never let
    such weights replace the last good checkpoint."""
    tf = setup.tf
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in setup.model.trainable_variables):
        raise CharrnnError(_nan_message(0.0, 0.0, step - 1, train_cfg, out, setup.tstate.last))


@contextlib.contextmanager
def _lost_worker_is_an_error(tf, role, out):
    """A peer that died or left makes its collectives fail here within seconds: one error."""
    try:
        yield
    except tf.errors.OpError as e:
        if role.num_workers == 1:
            raise
        raise CharrnnError(
            f"the cluster lost a worker ({type(e).__name__} in a collective "
            f"op); the chief's checkpoints in {out} are intact: restart every "
            f"worker with `charrnn train --resume --out {out}`"
        ) from None


def _finish(log, out, step, reason, val_loss, best, signum, timing, max_time) -> TrainResult:
    """The last lines for the user, and the result."""
    budget = f" of max_time {max_time:g} s" if max_time else ""
    log(
        f"time: run clock {timing['clock']:.1f} s{budget}: steps {timing['steps']:.1f} s, "
        f"evaluation {timing['evaluation']:.1f} s, checkpoints {timing['checkpoints']:.1f} s"
    )
    if reason == "interrupted":
        log(
            f"interrupted at step {step}; checkpoint saved in {out / rundir.CHECKPOINTS_DIR}. "
            f"Resume with: charrnn train --resume --out {out}"
        )
        return TrainResult(str(out), step, "interrupted", val_loss, _finite(best), signum, timing)
    summary = f"done at step {step} ({reason})"
    if val_loss is not None:
        summary += f"; val loss {val_loss:.4f} nats ({val_loss / LN2:.3f} bits)/symbol"
    log(summary + f"; run saved in {out}")
    return TrainResult(str(out), step, "done", val_loss, _finite(best), None, timing)


def _step(setup, train_cfg, lr, xy, states, step, out):
    """One update at ``lr``: (loss, gradient norm, skipped, new states); a loss or norm
    that is not finite stops the run."""
    setup.optimizer.learning_rate = lr
    xy = distribute.distribute_streams(setup.strategy, xy)
    loss, norm, states = setup.train_step(*xy, states)
    loss, norm = float(loss), float(norm)
    # float16: an overflowing loss scale gives an infinite norm; Keras skips
    # that update and halves the scale, so it is not divergence.
    skipped = setup.scale is not None and not math.isfinite(norm)
    if not (math.isfinite(loss) and (math.isfinite(norm) or skipped)):
        raise CharrnnError(_nan_message(loss, norm, step, train_cfg, out, setup.tstate.last))
    return loss, norm, skipped, states


def _agree_stop(strategy, role, reason):
    """Why to stop after this step (None: go on); all workers leave at the same step."""
    if role.num_workers == 1:
        return reason
    code = distribute.agree_max(strategy, 2 if reason == "interrupted" else 1 if reason else 0)
    return [None, reason or "another worker reached max_time", "interrupted"][code]


def _evaluate(validation, setup, role, record, best, log, symbols_per_char, final):
    """One evaluation into ``record``: (its loss, the best loss to compare it with); the
    loss is None when there is no split or Ctrl-C came during it.  Workers agree on one
    mean, so they agree on which checkpoint is the best."""
    val_loss = validation.run()
    if val_loss is None:
        return None, best
    if role.num_workers > 1:
        val_loss = distribute.agree_mean(setup.strategy, val_loss)
    if validation.changed:
        best, validation.changed = math.inf, False
        log(
            f"the validation subset is not the one the run's best checkpoint was measured on; "
            f"the next evaluation's loss replaces it ({validation.describe()})"
        )
    record.update(
        val_loss=val_loss,
        val_bpc=val_loss / LN2,
        best=val_loss < best,
        # what was measured: the whole split or a fixed subset of it
        val_symbols=validation.spans.scored,
        val_subset=not validation.spans.whole,
    )
    if symbols_per_char:  # bits per original character
        record["val_bpc_char"] = val_loss / LN2 * symbols_per_char
    if final and validation.final_whole and not validation.spans.whole:
        record["val_loss_whole"] = validation.run_whole()
    return val_loss, best


class _Accumulator:
    """Sums over the steps since the last log line."""

    def __init__(self):
        self.loss = self.norm = self.time = 0.0
        self.n = self.skipped = 0

    def add(self, loss: float, norm: float, skipped: bool, seconds: float) -> None:
        self.loss += loss
        self.norm += 0.0 if skipped else norm
        self.skipped += skipped
        self.n += 1
        self.time += seconds

    def record(self, step: int, epoch: float, lr: float, tokens_per_step: int) -> dict:
        r = {
            "step": step,
            "epoch": epoch,
            "loss": self.loss / self.n,
            "lr": lr,
            "grad_norm": self.norm / max(1, self.n - self.skipped),
            "chars_per_s": self.n * tokens_per_step / max(self.time, 1e-9),
        }
        self.__init__()
        return r


class _StopOnSignal:
    """Ctrl-C / SIGTERM: finish the current step, save, stop; a second Ctrl-C aborts."""

    def __init__(self, say):
        self.signal, self.say, self.old = None, say, {}
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers: a thread's run stops by its limits
        self.old = {n: signal.signal(n, self._handle) for n in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: give up at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signal = signum
        self.say("interrupt: finishing the current step and saving (Ctrl-C again to abort)")

    def restore(self) -> None:
        for n, handler in self.old.items():
            signal.signal(n, handler)


# --- helpers ------------------------------------------------------------------------


def _nan_message(loss, norm, step, train_cfg, out, kept):
    what = (
        f"loss {loss}"
        if not math.isfinite(loss)
        else f"gradient norm {norm}"
        if not math.isfinite(norm)
        else "the weights overflowed"
    )
    keep = (
        f"the last good checkpoint {kept.name} is kept; after changing the setting "
        f"continue with "
        f"`charrnn train --resume --out {out} --set train.learning_rate=...`"
        if kept
        else "no checkpoint was saved yet"
    )
    return (
        f"training diverged at step {step + 1}: {what}. Lower train.learning_rate "
        f"(now {train_cfg['learning_rate']:g}) or train.grad_clip "
        f"(now {train_cfg['grad_clip']}); {keep}"
    )


def _finite(x):
    return x if x is not None and math.isfinite(x) else None
