"""Import TensorFlow lazily and quietly.

Only commands that need TensorFlow import it (so ``--help`` stays instant), and
its C++ start-up chatter (oneDNN notices, CUDA probing, absl's pre-init banner)
is written straight to file descriptor 2 before Python can intercept it, so we
point fd 2 at /dev/null for the duration of the import unless ``verbose``.
"""

import contextlib
import os
import sys

_verbose = False


def set_verbose(verbose: bool) -> None:
    global _verbose
    _verbose = bool(verbose)
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _silenced_fd2():
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


def tensorflow():
    """Return the ``tensorflow`` module, importing it quietly the first time."""
    if "tensorflow" not in sys.modules:
        set_verbose(_verbose)
        with _silenced_fd2():
            import tensorflow  # noqa: F401
            import keras  # noqa: F401
        if not _verbose:
            import logging

            logging.getLogger("tensorflow").setLevel(logging.ERROR)
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
    return sys.modules["tensorflow"]
