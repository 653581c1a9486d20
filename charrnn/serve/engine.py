"""One model, many requests: the server's generation thread.

Every request is a ``charrnn.generate.write.samples`` generator -- the code `charrnn
sample` runs, so the same seed and options give the same text.  One thread steps all
active requests in turn, each for about ``CHUNK_SECONDS`` (sampling, priming and beam
search hand back control after about that much work, and a job whose steps are short
gets several in its turn), so no request blocks another's
stream; a new request's first turn comes after the turn under way, so a small one is
answered within a turn or two however many are running.

A request whose samples go past NumPy's share of the steps hands over to a TensorFlow
child process (charrnn.generate.xla_process); its generator yields a ``Wait`` instead
of blocking while the child starts or computes, so the thread steps the others
meanwhile, and sleeps on the children's pipes (at most a turn) only when every request
waits.  At most ``max_children`` children run at once (``ChildSlots``); a request that
needs one when none is free waits its turn, in order, in NumPy's share or at the
handover -- the text is the same, as the handover is at a fixed step.

A request holds one of ``max_streams`` slots from ``submit`` (or ``hold``, for work done
on another thread: /v1/score) until it ends, times out (``timeout`` counts from
``submit``, whether it was stepped or waiting) or is cancelled.  Cancelling (the client
went away) frees the slot at once, from any thread; the engine thread drops the
generator, and with it the request's memory, before its next turn would come.

The requests' rows are not fused into one matrix product: BLAS computes a row of a
(16 x n) product in another order than the same row alone (measured: results up to
4e-5 apart), so a reply would then depend on what else was being generated, and would
no longer equal `charrnn sample`'s.  What one engine buys is everything else: the
model loaded once, no process or TensorFlow start per request (the NumPy engine needs
none), one thread doing the arithmetic while the event loop serves the sockets.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Generator
from typing import Literal

from charrnn.errors import CharrnnError
from charrnn.generate.sampler import Wait
from charrnn.generate.write import Event
from charrnn.generate.xla_process import ChildSlots

# A request: a charrnn.generate.write.samples generator, and where its events go (Job)
Gen = Generator[Event, None, list[str]]
Emit = Callable[[str, object], None]

CHUNK_SECONDS = 0.02


class Full(Exception):
    """Every stream slot is taken."""


class Job:
    """One request's slot: its generator (None for work on another thread) and where its
    events go.

    ``emit(kind, value)`` is called from the engine thread: ("piece", (index, text)),
    then ("done", return value) or ("error", CharrnnError, TimeoutError or other
    exception)."""

    def __init__(self, engine: Engine, gen: Gen | None, emit: Emit | None, deadline: float) -> None:
        self.engine, self.gen, self.emit, self.deadline = engine, gen, emit, deadline
        self.cancelled = False

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def cancel(self) -> None:
        """Give up the slot now (from any thread); the generator is closed on the engine
        thread."""
        self.engine.release(self)


class Engine:
    def __init__(self, max_streams: int, max_children: int = 2) -> None:
        self.max_streams = max_streams
        self.children = ChildSlots(max_children)  # pass to charrnn.generate.write.samples
        self.held = set()  # every job holding a slot
        self.jobs = []  # the ones this thread steps, cancelled ones until closed
        self.fresh = []  # submitted since the engine last looked: their first turn is next
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="charrnn-engine", daemon=True)
        self.thread.start()

    @property
    def active(self) -> int:
        with self.cond:
            return len(self.held)

    def submit(self, gen: Gen, emit: Emit, timeout: float) -> Job:
        """Start stepping ``gen``; raises Full when ``max_streams`` slots are held."""
        job = self.hold(timeout, gen, emit)
        with self.cond:
            self.jobs.append(job)
            self.fresh.append(job)
            self.cond.notify()
        return job

    def hold(self, timeout: float, gen: Gen | None = None, emit: Emit | None = None) -> Job:
        """Take a slot for ``timeout`` seconds; raises Full when ``max_streams`` are held."""
        job = Job(self, gen, emit, time.monotonic() + timeout)
        with self.cond:
            if len(self.held) >= self.max_streams:
                raise Full
            self.held.add(job)
        return job

    def release(self, job: Job) -> None:
        with self.cond:
            job.cancelled = True
            self.held.discard(job)
            self.cond.notify()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.jobs:
                    self.cond.wait()
                jobs = list(self.jobs)
            fds, busy = [], False
            for job in jobs:
                for (
                    new
                ) in self._fresh():  # a new request's first turn comes next, not a round later
                    busy = self._give_turn(new, fds) or busy
                busy = self._give_turn(job, fds) or busy
            if not busy:
                # Every job waits on a child or for room under the cap: sleep till a child
                # has something to say or a turn has passed (a new job, a cancel, room).
                select.select(fds, [], [], CHUNK_SECONDS)

    def _fresh(self) -> list[Job]:
        with self.cond:
            fresh, self.fresh = self.fresh, []
        return fresh

    def _give_turn(self, job: Job, fds: list[int]) -> bool:
        """One turn of ``job``: True if it did something, False if it only waits (on the
        pipe it adds to ``fds``, if any)."""
        if job.gen is None:
            return False  # ended in its first turn, earlier in this round
        event = self._turn(job)
        if event is False:
            with self.cond:
                self.jobs.remove(job)
                self.held.discard(job)
            job.gen.close()  # runs the generator's cleanup (a sampler's child process)
            job.gen = None  # its memory goes now, not when the reply has been sent
            return True
        if isinstance(event, Wait):
            if event.fd is not None:
                fds.append(event.fd)
            return False
        return True

    def _turn(self, job: Job) -> Event | Literal[False]:
        """Step ``job`` for up to CHUNK_SECONDS (a short request is done in one turn, not
        one round of every other job per chunk); what its last step gave."""
        end = time.perf_counter() + CHUNK_SECONDS
        while True:
            event = self._step(job)
            if event is False or isinstance(event, Wait) or time.perf_counter() >= end:
                return event

    def _step(self, job: Job) -> Event | Literal[False]:
        """Advance ``job`` by one chunk: False when it is over, else what it yielded."""
        if job.cancelled:
            return False
        if job.expired:
            job.emit("error", TimeoutError())
            return False
        try:
            event = next(job.gen)
        except StopIteration as stop:
            job.emit("done", stop.value)
            return False
        except Exception as e:  # noqa: BLE001 - reported to the request, the server goes on
            job.emit("error", e if isinstance(e, CharrnnError) else RuntimeError(repr(e)))
            return False
        if event is not None and not isinstance(event, Wait):
            job.emit("piece", event)
        return event
