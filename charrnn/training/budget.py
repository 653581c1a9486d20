"""Time-planned training: a time budget becomes a step count the LR schedule ends with.

When ``train.max_time`` is set, the run times its first steps (at least 20 and 5% of the
budget), an evaluation (a few windows of the validation subset, extrapolated:
charrnn.training.validation) and a checkpoint, fixes its total step count (the budget left
over the measured time per step, evaluations and checkpoints included, but never past
``max_steps`` / ``max_epochs``) and stops exactly there.  The plan is stored with every
checkpoint, so a resumed run keeps it and equals an uninterrupted one: for planned runs
``max_time`` is the training time of the whole run, across resumes.  Resuming with a
different ``max_time`` plans again for what is left of the new budget.
``train.planned_steps`` gives the plan directly (no timing; what tests use).

If the machine slows down mid-run, the run still stops at its planned step, later than
the budget (it says so once when that is foreseeable); at twice the budget it stops with
a checkpoint, and ``--resume`` goes on with the same plan.
"""

import math
import time
from collections.abc import Callable

from charrnn.training.config import interval

MEASURE = 20  # steps timed for the plan, after the first (compiling) step, and ...
MEASURE_SHARE = 0.05  # ... at least this share of the budget: a plan timed over the first few
# seconds was 30% optimistic when another training started beside it
SLACK = 2.0  # stop anyway at this multiple of the budget
MIN_TIMED, SLOW_SHARE = 3, 0.1  # steps so slow that MEASURE of them take over this share of
# the budget: plan from MIN_TIMED once they have taken it


class Budget:
    def __init__(self, t, limit, step, saved=None):
        """``limit``: the step at which max_steps / max_epochs end the run (inf: none);
        ``saved``: the "train" record of the checkpoint resumed from (or None)."""
        saved = saved or {}
        self.max_time, self.limit = t["max_time"], limit
        self.elapsed = float(saved.get("elapsed", 0.0))  # training seconds before this start
        self.started = time.monotonic()
        plan = saved.get("plan") or {}
        self.planned = t["planned_steps"]
        if self.planned is None and plan.get("budget") == self.max_time:
            self.planned = plan.get("steps")
        self.step_time = plan.get("step_time")
        self.eval_every, self.save_every = interval(t["eval_every"]), interval(t["save_every"])
        self.first, self.timed_from, self.paced_from, self.warned = step, None, None, False
        self.measure = MEASURE

    @property
    def planning(self) -> bool:
        return self.planned is None and bool(self.max_time)

    def total_steps(self) -> int | float | None:
        """Where the LR schedule ends: the plan; while still measuring, None (the
        schedule holds its starting value, so the plan can come in at any step)."""
        if self.planned is not None:
            return self.planned
        return None if self.max_time else self.limit

    def seconds(self) -> float:
        return self.elapsed + time.monotonic() - self.started

    def after_step(
        self,
        step: int,
        busy: float,
        log: Callable[[str], None],
        agree: Callable[[int], int] | None = None,
        overheads: Callable[[int], tuple[float, float] | None] | None = None,
        now: bool = False,
    ) -> None:
        """Call after each step; plans once enough steps are timed, or at once (``now``)
        when an evaluation is due before that, so the plan sizes its validation subset.
        ``busy``: the run's clock less its evaluations and checkpoints, what is timed.
        ``agree(n)``: the largest n over all workers (multi-worker runs keep one plan).
        ``overheads(n)``: (seconds of one evaluation in a run that evaluates n times,
        seconds of one checkpoint), both measured: it fixes the validation subset, times a
        few of its windows and writes a checkpoint (for small models each costs far more
        than its arithmetic says); None when Ctrl-C came during it: no plan then (a
        resumed run plans afresh)."""
        if not self.planning:
            return
        if step == self.first + 1:  # the first step compiles: time from here
            self.timed_from = (step, busy)
            return
        if not self.timed_from:
            return
        timed, spent = step - self.timed_from[0], busy - self.timed_from[1]
        if timed == MEASURE:  # steps that make MEASURE_SHARE of the budget, agreed by all workers
            per = max(spent, 1e-6) / timed
            self.measure = max(MEASURE, math.ceil(MEASURE_SHARE * self.max_time / per))
            if agree is not None:
                self.measure = agree(self.measure)
        slow = timed >= MIN_TIMED and spent >= SLOW_SHARE * self.max_time  # big steps
        if timed == self.measure or ((now or slow) and agree is None):
            self._plan(step, spent / timed, timed, log, agree, overheads)

    def _plan(self, step, per, timed, log, agree, overheads):
        evaluations = evaluations_in(self.max_time - self.seconds(), per, self.eval_every)
        costs = overheads(evaluations) if overheads else (0.0, 0.0)
        if costs is None:
            return
        eval_time, save_time = costs
        # an evaluation may save the best checkpoint; save_every saves the latest
        self.step_time, share = per, 0.0
        for cost, (kind, every) in (
            (eval_time + save_time, self.eval_every),
            (save_time, self.save_every),
        ):
            if kind == "steps":
                self.step_time += cost / every
            else:
                share += cost / every
        self.step_time /= max(0.5, 1 - share)
        left = max(0.0, self.max_time - self.seconds() - eval_time - save_time)  # the last
        self.planned = min(self.limit, step + int(left / self.step_time))
        if agree is not None:
            self.planned = agree(self.planned)
        log(
            f"planned {self.planned:,} steps for max_time {self.max_time:g}s "
            f"({per:.3g} s/step measured over {timed:,} steps; about {evaluations} "
            f"evaluation{'s' * (evaluations != 1)} of {_seconds(eval_time)}, "
            f"{evaluations * eval_time / self.max_time:.1%} of the budget; checkpoints "
            f"{_seconds(save_time)}); the LR schedule ends there"
        )

    def stop_reason(self, step: int) -> str | None:
        if self.planned is not None and step >= self.planned:
            return f"reached the planned step {self.planned}"
        if not self.max_time:
            return None
        spent = self.seconds()
        if self.planned is None and spent >= self.max_time:
            return f"reached max_time {self.max_time:g}s"
        if spent >= SLACK * self.max_time:
            return (
                f"reached {SLACK:g}x max_time before the planned step {self.planned} (the "
                "machine slowed down); --resume continues the plan"
            )
        return None

    def check_pace(self, step: int, log: Callable[[str], None]) -> None:
        """Say once when the plan will clearly overrun its budget, judged by the pace of the
        steps since the plan was in force (not the start-up and compiling before it)."""
        if self.planned is None or self.warned or not self.max_time:
            return
        if self.paced_from is None:
            self.paced_from = (step, time.monotonic())
            return
        done = step - self.paced_from[0]
        if done < 5 * MEASURE:
            return
        per = (time.monotonic() - self.paced_from[1]) / done
        eta = self.seconds() + per * (self.planned - step)
        if eta > 1.25 * self.max_time:
            self.warned = True
            log(
                f"Warning: this machine is slower now than when the run was planned; it will "
                f"reach its planned step {self.planned} after about {_minutes(eta)} instead of "
                f"{_minutes(self.max_time)}"
            )

    def record(self) -> dict:
        """What a checkpoint stores of the plan."""
        plan = (
            None
            if self.planned is None
            else {"steps": self.planned, "budget": self.max_time, "step_time": self.step_time}
        )
        return {"plan": plan, "elapsed": self.seconds()}


def evaluations_in(seconds: float, step_time: float, every: tuple[str, float]) -> int:
    """How many evaluations ``seconds`` of training hold, the last one included, for an
    eval_every of ``every`` = ("steps", n) or ("seconds", s)."""
    kind, n = every
    steps_or_seconds = seconds if kind == "seconds" else seconds / max(step_time, 1e-9)
    return int(max(0.0, steps_or_seconds) // n) + 1


def _seconds(seconds) -> str:
    return f"{seconds:.2g} s" if seconds < 100 else f"{seconds:,.0f} s"


def _minutes(seconds) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds:.0f} s"
