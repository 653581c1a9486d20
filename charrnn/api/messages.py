"""How the Python API speaks: the ``charrnn`` logger (INFO notes, WARNING warnings, each
warning also a :class:`charrnn.CharrnnWarning`), and a misspelt option as an error naming
the nearest one.  The command line shows the same records on stderr
(charrnn.cli.group.messages_to_stderr)."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from charrnn.errors import CharrnnError, CharrnnWarning

logger = logging.getLogger("charrnn")
logger.addHandler(logging.NullHandler())  # a library's: shown once the user configures logging

F = TypeVar("F", bound=Callable[..., Any])


def info(message: str) -> None:
    """A line for people: an INFO record on the ``charrnn`` logger."""
    logger.info(message)


def warn(message: str) -> None:
    """A warning: a WARNING record on the ``charrnn`` logger and a :class:`CharrnnWarning`
    pointing at the caller's line (the command line shows the record, not both)."""
    logger.warning(message)
    warnings.warn(message, CharrnnWarning, stacklevel=_outside_charrnn())


def _outside_charrnn() -> int:
    """The ``stacklevel`` of the first frame outside the charrnn package."""
    here, frame, level = str(Path(__file__).parent.parent), sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def log_line(line: str) -> None:
    """Training's lines, which mark their warnings ``Warning: ``."""
    if line.startswith("Warning: "):
        warn(line.removeprefix("Warning: "))
    else:
        info(line)


def options(fn: F) -> F:
    """A misspelt keyword is a CharrnnError (and a TypeError, as Python's own would be)
    naming the nearest option, as the command line names the nearest flag."""
    code = fn.__code__  # (inspect.signature would cost `import charrnn` ~10 ms)
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    names = [p for p in names if p != "self"]

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for key in kwargs:
            if key not in names:
                import difflib

                near = difflib.get_close_matches(key, names, 1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise OptionError(
                    f"{fn.__name__}() has no option {key!r}{hint} (options: {', '.join(names)})"
                )
        return fn(*args, **kwargs)

    return checked  # type: ignore[return-value]


class OptionError(CharrnnError, TypeError):
    """An option a call does not have."""
