"""Validation during training: a fixed subset of the validation split, bounded in time.

Scoring a whole split at every evaluation does not scale: 9 million validation
symbols took a small LSTM longer than its whole time budget.  So each evaluation
scores the same fixed sample of the split (charrnn.analysis.scoring.Spans.subset:
up to 64 evenly spaced pieces, each read after its 256 warm-up symbols, as the
scoring definition requires), and every evaluation of a run is comparable:

- ``train.eval_symbols: N`` scores N symbols; ``all`` the whole split;
- ``auto`` (the default): AUTO_SYMBOLS; with a time budget to plan, what keeps the
  run's evaluations within EVAL_SHARE of ``max_time`` (at least MIN_SYMBOLS, at most
  64 x AUTO_SYMBOLS), from a few windows timed and extrapolated (the planner calls
  :meth:`Validation.fix_for`; an evaluation due before the plan takes MIN_SYMBOLS).
  Splits no larger are read whole.

The subset's identity (pieces, length, a CRC of the symbols scored) goes into every
checkpoint; a run resumed on another subset does not compare its new losses with a
``best`` measured on the old one.  An evaluation stops between two windows when
Ctrl-C arrives (``stopped()``), so a long one never holds the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from charrnn.analysis.scoring import MAX_PIECES, MIN_PIECE, Spans, pieces_for, window_for

if TYPE_CHECKING:
    import numpy as np

    from charrnn.training.setup import Setup

AUTO_SYMBOLS = 262_144  # ~1-3 s for the small models on two cores; a stable mean (64 pieces)
EVAL_SHARE = 0.05  # of max_time, for all the evaluations of a run together
MIN_SYMBOLS = 16_384  # auto never goes below: a mean over fewer is too noisy to pick "best"
WHOLE_SPLIT = "whole"  # the identity of a checkpoint from before subsets: the whole split
PROGRESS_AFTER = 2.0  # seconds: an evaluation longer than this shows its progress ...
PLAIN_EVERY = 10.0  # ... without a terminal, a line this often


class Validation:
    def __init__(
        self,
        setup: Setup,
        ids: np.ndarray,
        train_cfg: dict,
        planning: bool,
        saved: dict | None = None,
        stopped: Callable[[], bool] = lambda: False,
        say: Callable[[str], None] | None = None,
    ):
        """``planning``: a time budget will plan the run (and size an auto subset);
        ``saved``: the "eval" record of the checkpoint resumed from; ``stopped()``: true
        once the run should stop (Ctrl-C); ``say(str)``: progress lines for people."""
        self.setup, self.ids, self.stopped, self.say = setup, ids, stopped, say or (lambda m: None)
        self.setting = train_cfg["eval_symbols"]
        self.final_whole = train_cfg["final_eval"] == "all"
        self.vocab_size = setup.model.vocab_size
        self.budgeted = planning
        self.saved = saved or {}
        self.spans = None  # fixed at the plan or at the first evaluation
        self.identity = None
        self.changed = False  # the subset differs from the checkpoint's
        self.seconds = 0.0  # spent evaluating in this process

    @property
    def available(self) -> bool:
        return len(self.ids) >= 2

    def _symbols(self, fitted=None):
        """How many symbols to score under the setting (``fitted``: what the budget allows)."""
        if self.setting == "all":
            return len(self.ids)
        if self.setting != "auto":
            return self.setting
        if self.saved.get("symbols"):  # a resumed run keeps its subset
            return self.saved["symbols"]
        if fitted is not None:
            return fitted
        # evaluating before a time budget's plan could size the subset: the least
        return MIN_SYMBOLS if self.budgeted else AUTO_SYMBOLS

    @property
    def _sizing(self) -> bool:
        """The subset is the budget's to size (auto, not fixed yet, not kept by a resume)."""
        return self.spans is None and self.setting == "auto" and not self.saved.get("symbols")

    def _subset(self, symbols):
        return Spans.subset(len(self.ids), int(symbols), vocab_size=self.vocab_size)

    def _fix(self, symbols):
        if self.spans is None:
            self.spans = self._subset(symbols)
            self.identity = self.spans.identity(self.ids)
            old = self.saved.get("identity")
            self.changed = (
                not self.spans.whole
                if old == WHOLE_SPLIT
                else old is not None and old != self.identity
            )

    def describe(self) -> str:
        if not self.available:
            return "none (no validation split)"
        if self._sizing and self.budgeted and len(self.ids) - 1 > MIN_SYMBOLS:
            return (
                f"a fixed subset of the {len(self.ids) - 1:,} symbols, sized when the run "
                f"is planned to keep evaluations within {EVAL_SHARE:.0%} of max_time"
            )
        spans = self.spans or self._subset(self._symbols())
        return spans.describe()

    def record(self) -> dict | None:
        """What a checkpoint keeps of the subset."""
        if self.spans is None:
            return self.saved or None
        return {"symbols": self.spans.scored, "identity": self.identity}

    # --- the planner ---------------------------------------------------------------

    def fix_for(
        self, evaluations: int, max_time: float, agree: Callable[[int], int] | None = None
    ) -> float | None:
        """Fix the subset for a run that will evaluate ``evaluations`` times in ``max_time``
        seconds (``agree(n)``: the largest n over all workers) and return the seconds one
        evaluation will take, from a few windows timed after one that compiles."""
        if not self.available:
            return 0.0
        if self._sizing:
            # the widest shape first, for the cost of a symbol where calls are full ...
            probe = self._time(self._subset(MAX_PIECES * MIN_PIECE * 4))
            if probe is None:  # stopped
                return None
            allowed = EVAL_SHARE * max_time / max(1, evaluations) / probe
            symbols = max(MIN_SYMBOLS, min(AUTO_SYMBOLS * 64, int(allowed)))
            if agree is not None:
                symbols = agree(symbols)
            self._fix(symbols)
        self._fix(self._symbols())
        # ... then the subset itself: fewer pieces cost more per symbol (a call's overhead)
        per_symbol = self._time(self.spans)
        if per_symbol is None:
            return None
        share = evaluations * per_symbol * self.spans.scored / max_time
        if share > 2 * EVAL_SHARE:
            self.say(
                f"Warning: {evaluations} evaluations of {self.spans.scored:,} validation "
                f"symbols (train.eval_symbols {self.setting}) will take about {share:.0%} "
                "of max_time; evaluate less often (train.eval_every, e.g. 5m)"
            )
        return per_symbol * self.spans.scored

    def _time(self, spans):
        """Seconds per scored symbol of an evaluation over ``spans``: up to three windows
        timed after one that compiles, times the windows it has (None: stopped)."""
        windows = spans.windows(self.setup.model, self.ids, self.setup.eval_step)
        began = time.monotonic()
        start, timed = None, 0
        try:
            for i, _ in enumerate(windows):
                if self.stopped():
                    return None
                if i == 0:
                    start = time.monotonic()
                elif i == 3 or i == spans.calls - 1:
                    timed = i
                    break
        finally:
            windows.close()
            self.seconds += time.monotonic() - began
        if not timed:  # a split of one window: its time is all there is
            return (time.monotonic() - began) / max(1, spans.scored)
        return (time.monotonic() - start) / timed * spans.calls / spans.scored

    # --- evaluating ------------------------------------------------------------------

    def run(self, spans: Spans | None = None) -> float | None:
        """The mean loss over the subset (or ``spans``); None when there is no split or the
        run was stopped during it (the partial sum is thrown away)."""
        if not self.available:
            return None
        if spans is None:
            self._fix(self._symbols())
            spans = self.spans
        started = time.monotonic()
        total, bar, last_said = 0.0, None, None
        try:
            for i, (_, nll) in enumerate(
                spans.windows(self.setup.model, self.ids, self.setup.eval_step), 1
            ):
                total += float(nll.sum())
                if self.stopped() and i < spans.calls:
                    self.say(f"evaluation stopped at window {i}/{spans.calls}")
                    return None
                now = time.monotonic()
                if now - started > PROGRESS_AFTER and i < spans.calls:
                    bar, last_said = self._progress(bar, i, spans.calls, now, last_said)
        finally:
            if bar is not None:
                bar.close()
            self.seconds += time.monotonic() - started
        return total / spans.scored

    def run_whole(self) -> float | None:
        """The whole split once (``final_eval: all``)."""
        if not self.available:
            return None
        b = pieces_for(len(self.ids) - 1)
        return self.run(Spans.cover(len(self.ids), b, window=window_for(b, self.vocab_size)))

    def _progress(self, bar, done, calls, now, last_said):
        """A bar on a terminal; otherwise a line at once and then every ~10 s."""
        if sys.stderr.isatty():
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(
                    total=calls,
                    initial=done,
                    unit="window",
                    desc="evaluating",
                    file=sys.stderr,
                    leave=False,
                    dynamic_ncols=True,
                )
            else:
                bar.update(done - bar.n)
            return bar, last_said
        if last_said is None or now - last_said >= PLAIN_EVERY:
            self.say(f"evaluating: window {done}/{calls} ({done / calls:.0%})")
            return bar, now
        return bar, last_said
