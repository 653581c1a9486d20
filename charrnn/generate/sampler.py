"""Generate streams of symbol ids from a model: fast, streaming and reproducible.

Two engines run the same step: NumPy for the first steps (as many as cover
TensorFlow's usual start-up, from the model's shape), which needs no TensorFlow
at all (the weights come from the checkpoint's portable weights.safetensors, see
charrnn.store.weightsfile), so text streams while a child process
(charrnn.generate.xla_process) imports TensorFlow and compiles on the other core;
then XLA (charrnn.generate.xla_engine) for the rest.  They use the same algorithm and
the same counter-based random numbers, and the switch happens at a fixed step, so
the output depends only on the seed and the options -- never on timing or chunk sizes.

``generate(n)`` blocks while the child starts or computes; ``generating(n)`` is the same
work as a generator that yields a ``Wait`` there instead, so a caller with other work
(the server's engine thread) does it meanwhile.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from charrnn import backend
from charrnn.generate.choice import Options
from charrnn.generate.numpy_engine import NumpyEngine
from charrnn.generate.xla_engine import CHUNK, XLAEngine
from charrnn.generate.xla_process import ChildSlots, XLAProcess
from charrnn.nn.cells import get
from charrnn.nn.step import Weights

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from charrnn.generate.constraints import Allowed
    from charrnn.text import Vocab

T = TypeVar("T")

NUMPY_STEPS_ENV = "CHARRNN_TEST_NUMPY_STEPS"  # test hook: NumPy's share of the steps
NUMPY_COVER = 6.5  # seconds of estimated NumPy work before XLA takes over (numpy_steps_for)


def start_id(vocab: Vocab) -> int:
    """The input before the first symbol when there is no prime: a newline (text
    usually starts after one), else the most frequent symbol."""
    if "\n" in vocab.symbols:
        return vocab.symbols.index("\n")
    return int(np.argmax(vocab.counts)) if len(vocab.counts) else 0


def step_seconds(w: Weights, batch: int = 1) -> float:
    """An estimate of the NumPy engine's seconds per step for this shape (on the 2-core
    test machine): a fixed cost per step and per layer -- NumPy calls -- plus the
    multiply-adds."""
    seconds = 12e-6 + 8e-6 * len(w.layers) + 0.15e-9 * w.macs_per_step() * batch
    if get(w.cell).numpy_fast is None or batch > 1:
        seconds += 15e-6 * len(w.layers)  # the generic step: more NumPy calls
    return seconds


def numpy_steps_for(w: Weights, batch: int = 1) -> int:
    """How many steps the NumPy engine runs before XLA takes over: enough to cover
    TensorFlow's usual start-up in the child process (import and compile; measured
    on the 2-core test machine: as long as 60,000-110,000 NumPy steps of a 2x128 LSTM)
    from ``step_seconds``.  Both scale with the machine alike, so the cover in steps is
    roughly machine-independent; it is never measured at run time, or the text would
    depend on timing."""
    return int(max(64, min(200_000, NUMPY_COVER / step_seconds(w, batch))))


class Wait:
    """Yielded by ``Sampler.generating`` where it would otherwise block: nothing to do
    until ``fd`` (the child's pipe) is readable, or, with ``fd`` None (waiting for room
    under a ChildSlots cap), until a little later."""

    __slots__ = ("fd",)
    RETRY = 0.02  # seconds between asks for room under the cap

    def __init__(self, fd: int | None = None):
        self.fd = fd

    def block(self) -> None:
        """Wait here for what this waits for."""
        if self.fd is None:
            time.sleep(self.RETRY)
        else:
            select.select([self.fd], [], [])


def finish(gen: Generator[Wait, None, T]) -> T:
    """Run ``gen`` (of ``Wait``s only) to its end, blocking at each; its return value."""
    while True:
        try:
            next(gen).block()
        except StopIteration as stop:
            return stop.value


class Sampler:
    """Generates ``batch`` independent streams of symbol ids from ``weights``.

    ``prime(ids)`` feeds symbols to set the state; ``generate(n)`` returns the next
    ``n`` sampled ids of every stream as an int32 array (batch, n).  With the same
    seed and options the ids are the same however the calls are split.

    ``engine``: "auto" (NumPy for the first ``numpy_steps`` steps, then XLA in a child
    process), "numpy" or "xla" (in this process).  Call ``close()`` when done.

    ``first_lane``: row b draws the random numbers of sample first_lane + b (so a sample
    is the same whatever batch it is generated in).  ``allowed``: a
    charrnn.generate.constraints.Allowed; constrained sampling runs on the NumPy engine.
    ``children``: a ChildSlots shared with other samplers (a server's cap on TensorFlow
    children); the child starts once it has room (None: at once).
    """

    def __init__(
        self,
        weights: Weights,
        batch: int = 1,
        options: Options = Options(),
        start_id: int = 0,
        engine: str = "auto",
        numpy_steps: int | None = None,
        first_lane: int = 0,
        allowed: Allowed | None = None,
        children: ChildSlots | None = None,
    ):
        options.check()
        self.w, self.opt, self.batch = weights, options, int(batch)
        self.first_lane = int(first_lane)
        engine = "numpy" if allowed is not None else engine
        self.engine = engine
        self.t = 0
        self.tok = np.full(self.batch, start_id, np.int32)
        self.states = weights.zero_states(self.batch)
        self.pending = np.zeros(0, np.int32)  # primed ids not yet fed
        self.primed = False
        if numpy_steps is None:
            # The test hook moves the handover to where a test can afford to reach it.
            hook = os.environ.get(NUMPY_STEPS_ENV)
            numpy_steps = int(hook) if hook else numpy_steps_for(weights, self.batch)
        self.numpy_steps = {"auto": numpy_steps, "numpy": float("inf"), "xla": 0}[engine]
        self._np = (
            NumpyEngine(weights, options, self.batch, self.first_lane, allowed)
            if engine != "xla"
            else None
        )
        self._xla = None
        self.children = children
        self.wants_child = False
        self.work_seconds = 0.0  # the last generate's computing, waits left out

    def start_compiling(self) -> None:
        """Start TensorFlow's import and the compile (a child process in "auto" mode):
        now, or once ``children`` has room (each generate asks again)."""
        if self.engine == "auto":
            self.wants_child = True
            self._child()

    def _child(self) -> XLAProcess | None:
        """The child process, started if wanted and allowed; None until then."""
        if (
            self._xla is None
            and self.wants_child
            and (self.children is None or self.children.take(self))
        ):
            self._xla = XLAProcess(
                self.w, self.opt, self.batch, self.first_lane, verbose=backend.is_verbose()
            )
        return self._xla

    def close(self) -> None:
        """End the child process, if any, and give back its slot (the sampler cannot
        generate after this)."""
        if self._xla is not None and hasattr(self._xla, "close"):
            self._xla.close()
        if self.children is not None:
            self.children.give_back(self)

    # -- feeding and generating
    def prime(self, ids: ArrayLike) -> None:
        """Feed ``ids`` (1-D, the same for every stream) before generating."""
        ids = np.asarray(ids, np.int32).reshape(-1)
        if len(ids) == 0:
            return
        if not self.primed and len(self.pending) == 0 and self.t == 0:
            # The first prime symbol replaces the start symbol as the first input.
            self.tok[:] = ids[0]
            if self._np is not None and self._np.allowed is not None:
                self._np.allowed_state = self._np.allowed.advance(self._np.allowed_state, self.tok)
            ids = ids[1:]
        self.primed = True
        self.pending = np.concatenate([self.pending, ids])

    def generate(self, n: int) -> np.ndarray:
        """The next ``n`` ids of every stream, (batch, n) int32."""
        return finish(self.generating(n))

    def generating(self, n: int) -> Generator[Wait, None, np.ndarray]:
        """``generate(n)`` as a generator: it yields a ``Wait`` wherever it would wait on
        the child (its start, its computing, room for it under ``children``) and returns
        the ids.  Closing it midway leaves the sampler good only for ``close()``."""
        p = len(self.pending)
        forced = np.full((self.batch, p + n), -1, np.int32)
        forced[:, :p] = self.pending
        self.pending = self.pending[:0]
        self.work_seconds = 0.0
        outs, i = [], 0
        while i < forced.shape[1]:
            self._child()  # a child waiting for room starts as soon as there is some
            left = forced.shape[1] - i
            if self.t < self.numpy_steps or self.engine == "xla":
                # In this process one XLA call is at most CHUNK steps (the compiled buffer).
                m = (
                    min(left, self.numpy_steps - self.t)
                    if self.t < self.numpy_steps
                    else min(left, CHUNK)
                )
                engine = self._np if self.t < self.numpy_steps else self._in_process_xla()
                t = time.perf_counter()
                out, self.tok, self.states = engine.run(
                    self.tok, self.states, self.t, forced[:, i : i + m]
                )
                if engine is not self._np:
                    self.tok, self.states = self.tok.numpy(), [s.numpy() for s in self.states]
                self.work_seconds += time.perf_counter() - t
            else:
                # The child process runs any number of steps per call.
                out, m = (yield from self._on_child(forced[:, i:])), left
            outs.append(out)
            self.t += m
            i += m
        out = np.concatenate(outs, axis=1) if outs else np.zeros((self.batch, 0), np.int32)
        return out[:, p:]

    def _in_process_xla(self):
        if self._xla is None:
            self._xla = XLAEngine(self.w, self.opt, self.batch, self.first_lane)
        return self._xla

    def _on_child(self, forced):
        """The steps of ``forced`` from the child, yielding a Wait while it is not there,
        starts or computes."""
        self.wants_child = True
        while self._child() is None:
            yield Wait()
        child = self._xla
        while not child.poll_ready():
            yield Wait(child.fileno())
        child.send_run(self.tok, self.states, self.t, forced)
        self.states = None  # the child holds the state from now on
        while (out := child.poll_run()) is None:
            yield Wait(child.fileno())
        self.tok = out[:, -1].copy()
        self.work_seconds += child.seconds
        return out
