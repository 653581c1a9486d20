"""``charrnn.train``: a run directory trained as ``charrnn train`` trains it, with a bar
that suits where it runs (a terminal, a Jupyter kernel) and the kernel's interrupt as
Ctrl-C."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charrnn.api.messages import log_line, options

if TYPE_CHECKING:
    from charrnn.api.models import Model
    from charrnn.atomic import StrPath


@dataclass(frozen=True)
class TrainResult:
    """How a ``train`` call ended: ``status`` is "done", "interrupted" (Ctrl-C or the
    kernel's interrupt: a checkpoint was saved; ``train(..., resume=True)`` continues
    exactly) or "nothing-to-do" (the run was already at its limit)."""

    out: str  # the run directory
    status: str
    step: int
    val_loss: float | None = None  # nats per symbol at the last evaluation of this call
    best_val_loss: float | None = None
    seconds: float | None = None  # the run's clock, across resumes
    signal: int | None = None  # the signal that interrupted it (2: SIGINT)

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    def load(self, checkpoint: StrPath = "best") -> Model:
        """The run's model (:func:`charrnn.load`)."""
        from charrnn.api.models import load

        return load(self.out, checkpoint)


@options
def train(
    config: StrPath | None = None,
    *,
    data: StrPath | None = None,
    out: StrPath | None = None,
    max_time: str | float | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    init_from: StrPath | None = None,
    force: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a model as ``charrnn train`` does, into the same run directory.

    ``config``: a YAML file or a shipped config's name (``"quick"``, ``"shakespeare"``,
    ...); ``data``, ``out`` and ``max_time`` (seconds, or ``"90s"``, ``"2h"``) as the
    flags of the same names; ``overrides``: ``{"section.key": value}`` for any setting
    (``{"model.cell": "gru", "train.batch_size": 32}``; a string is read as ``--set``
    reads it), checked by the settings' declarations (docs/settings.md).  ``resume``
    continues the run in ``out`` exactly; ``init_from`` starts from another run's
    weights; ``force`` replaces the run in ``out``.

    ``progress``: one bar updated in place (a widget in Jupyter when ipywidgets is
    installed, else text on stderr; none when stderr is neither a notebook's nor a
    terminal); the lines ``charrnn train`` prints are logged at INFO.  Interrupting
    (Ctrl-C, or the kernel's interrupt in Jupyter) finishes the step, saves a checkpoint
    and returns with ``status == "interrupted"``.

    Training sets process-wide TensorFlow state; what stays set afterwards is listed in
    docs/python.md ("Training in a long-lived process").  A run that another process
    (or call) is training is refused, as the command line refuses it.
    """
    from charrnn.training import config as configmod

    flags = {"data": data, "train.out": out, "train.max_time": max_time}
    cfg = configmod.resolve(
        None if config is None else os.fspath(config),
        flags=flags,
        overrides=overrides,
        resume=resume,
    )
    return train_resolved(cfg, resume=resume, init_from=init_from, force=force, progress=progress)


def train_resolved(
    config: dict,
    *,
    resume: bool = False,
    init_from: StrPath | None = None,
    force: bool = False,
    progress: bool = True,
    lines_above_bar: bool = False,
) -> TrainResult:
    """:func:`train` for a config already resolved (charrnn.training.config.resolve), as
    the command line resolves it from its flags; ``lines_above_bar``: write the
    evaluations' lines above the bar (a terminal's way) rather than to the logger."""
    from charrnn.training import loop

    with _process_state():
        result = loop.train(
            config,
            resume=resume,
            init_from=init_from,
            force=force,
            log=log_line,
            # a bar where one updates in place: a notebook, a terminal (not a log file)
            bar=_make_bar if progress and (_in_kernel() or sys.stderr.isatty()) else None,
            lines_above_bar=lines_above_bar,
        )
    return TrainResult(
        result.out,
        result.status,
        result.step,
        result.val_loss,
        result.best_val_loss,
        (result.timing or {}).get("clock"),
        result.signal,
    )


def _make_bar(total: int | None, initial: int) -> Any:
    """The training bar: tqdm's widget in a Jupyter kernel with ipywidgets (what
    tqdm.auto picks), else a text bar on stderr -- also in a kernel without ipywidgets,
    where tqdm.auto would warn first."""
    import importlib.util

    options = dict(total=total, initial=initial, unit="step", leave=True)
    if _in_kernel() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_bar

        return notebook_bar(**options)
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, **options)


def _in_kernel() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _process_state:  # noqa: N801  (a context manager)
    """Python's and NumPy's global random states, which ``train.seed`` reseeds, are
    given back afterwards; the rest of what training sets for the process is documented
    (docs/python.md)."""

    def __enter__(self) -> None:
        import random

        import numpy as np

        self.saved = random.getstate(), np.random.get_state()

    def __exit__(self, *exc: object) -> None:
        import random

        import numpy as np

        random.setstate(self.saved[0])
        np.random.set_state(self.saved[1])
