"""Import TensorFlow lazily and quietly; the process' thread settings.

Only commands that need TensorFlow import it (so ``--help`` stays instant), and
its C++ start-up chatter (oneDNN notices, CUDA probing, absl's pre-init banner)
is written straight to file descriptor 2 before Python can intercept it, so we
point fd 2 at /dev/null for the duration of the import unless ``verbose``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType

_verbose = False


def is_verbose() -> bool:
    return _verbose


def one_blas_thread() -> None:
    """NumPy's BLAS on one thread, for the commands that step a model symbol by symbol
    (sample, export's checks, visualize): on 2 cores a multi-threaded BLAS is 10-20x
    slower at those small matrix-vector products (measured), and 10-80x while it fights
    TensorFlow's import in sample's child process.  Only effective before NumPy is
    imported, which is the case when a command calls it first in a fresh process."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def set_verbose(verbose: bool) -> None:
    global _verbose
    _verbose = bool(verbose)
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_fd2() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a while (unless verbose): C++ libraries
    write their chatter there, below Python's sys.stderr."""
    if _verbose:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. some test harnesses)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensorflow() -> ModuleType:
    """Return the ``tensorflow`` module, importing it quietly the first time."""
    if "tensorflow" not in sys.modules:
        set_verbose(_verbose)
        with quiet_fd2():
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        if not _verbose:
            import logging

            logging.getLogger("tensorflow").setLevel(logging.ERROR)
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
    return sys.modules["tensorflow"]
