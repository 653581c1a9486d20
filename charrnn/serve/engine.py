"""One model, many requests: the server's generation thread.

Every request is a ``charrnn.generate.write.samples`` generator -- the code `charrnn
sample` runs, so the same seed and options give the same text.  One thread steps all
active requests in turn, one chunk each (about ``CHUNK_SECONDS`` of work), so no request
blocks another's stream and a new one starts within a chunk of every other's.

The requests' rows are not fused into one matrix product: BLAS computes a row of a
(16 x n) product in another order than the same row alone (measured: results up to
4e-5 apart), so a reply would then depend on what else was being generated, and would
no longer equal `charrnn sample`'s.  What one engine buys is everything else: the
model loaded once, no process or TensorFlow start per request (the NumPy engine needs
none), one thread doing the arithmetic while the event loop serves the sockets.
"""

import threading
import time

from charrnn.errors import CharrnnError

CHUNK_SECONDS = 0.02


class Full(Exception):
    """Every stream slot is taken."""


class Job:
    """One request in the engine: its generator and where its events go.

    ``emit(kind, value)`` is called from the engine thread: ("piece", (index, text)),
    then ("done", return value) or ("error", CharrnnError or other exception)."""

    def __init__(self, gen, emit, deadline):
        self.gen, self.emit, self.deadline = gen, emit, deadline
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Engine:
    def __init__(self, max_streams):
        self.max_streams = max_streams
        self.jobs = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="charrnn-engine", daemon=True)
        self.thread.start()

    @property
    def active(self) -> int:
        with self.cond:
            return len(self.jobs)

    def submit(self, gen, emit, timeout) -> Job:
        """Start a job; raises Full when ``max_streams`` are running."""
        job = Job(gen, emit, time.monotonic() + timeout)
        with self.cond:
            if len(self.jobs) >= self.max_streams:
                raise Full
            self.jobs.append(job)
            self.cond.notify()
        return job

    def _loop(self):
        while True:
            with self.cond:
                while not self.jobs:
                    self.cond.wait()
                jobs = list(self.jobs)
            for job in jobs:
                if not self._step(job):
                    with self.cond:
                        self.jobs.remove(job)
                    job.gen.close()  # runs the generator's cleanup (a sampler's child process)

    def _step(self, job) -> bool:
        """Advance ``job`` by one chunk; False when it is over."""
        if job.cancelled:
            return False
        if time.monotonic() > job.deadline:
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
        if event is not None:
            job.emit("piece", event)
        return True
