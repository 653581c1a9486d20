"""What a setting is made of: the :class:`Setting` declaration, the kinds (how a value is
read: :data:`INT`, :data:`DURATION`, ...) and the checks (what it must be: :data:`POSITIVE`,
:func:`one_of`, ...).  charrnn.training.settings declares every setting with them.

Import cost: the standard library only; the CLI imports this at start-up (through
charrnn.training.settings).  The classes are plain ``eq=False`` dataclasses, constants by
convention: frozen ones cost twice as much to define, a millisecond of every command's start.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# --- durations and intervals -----------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as '90s', '10m', '2h', '1h30m'."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"not a duration: {value!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("empty duration")
    return total


def interval(value: int | str) -> tuple:
    """``("steps", n)`` or ``("seconds", s)`` from an eval_every / save_every value: an
    integer counts steps, a duration string (``5m``) the run's clock."""
    if isinstance(value, str):
        return "seconds", parse_duration(value)
    return "steps", value


# --- kinds: how a value is read ----------------------------------------------------------


@dataclass(eq=False)
class Kind:
    """A setting's type: ``read(value)`` returns the value as the run uses it, or raises
    ValueError (with a message, or without one for "must be <expects>, got ...")."""

    name: str  # in docs/settings.md
    expects: str  # in messages: "must be {expects}, got ..."
    read: Callable[[Any], Any]
    verbatim: bool = False  # --set takes the text as written (no YAML reading: 010 stays 010)
    metavar: str = ""  # for a flag of this kind, when click's own type does not say it

    def coerce(self, value: Any) -> Any:
        try:
            return self.read(value)
        except ValueError as e:
            raise ValueError(str(e) or f"must be {self.expects}, got {value!r}") from None


def _int(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError
    return value


def _float(value):
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError
    if not math.isfinite(value):
        raise ValueError(f"must be finite, got {value!r}")
    return float(value)


def _bool(value):
    if not isinstance(value, bool):
        raise ValueError
    return value


def _str(value):
    if isinstance(value, (dict, list, bool)):
        raise ValueError
    return str(value)


def _duration(value):
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError from None


def _interval(value):
    """Steps, or a duration kept as written (so config.yaml reads back the same)."""
    if isinstance(value, str) and not value.strip().isdigit():
        _duration(value)
        return value.strip()
    return _int(int(value) if isinstance(value, str) else value)


def _or_words(*words: str, then: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A reader taking one of ``words`` as is, anything else through ``then``."""

    def read(value: Any) -> Any:
        return value if isinstance(value, str) and value in words else then(value)

    return read


INT = Kind("int", "an integer", _int)
FLOAT = Kind("float", "a number", _float)
BOOL = Kind("bool", "true or false", _bool)
STR = Kind("str", "a string", _str, verbatim=True)
PATH = Kind("path", "a path", _str, verbatim=True)
DURATION = Kind(
    "duration",
    "seconds or a duration such as 90s, 10m, 2h",
    _duration,
    metavar="DURATION",
)
STEPS_OR_DURATION = Kind("int or duration", "a step count or a duration such as 90s, 5m", _interval)
AUTO_ALL_OR_INT = Kind(
    "auto, all or int",
    "auto, all or a number of symbols",
    _or_words("auto", "all", then=_int),
)
AUTO_OR_BOOL = Kind("auto or bool", "auto, true or false", _or_words("auto", then=_bool))
AUTO_OR_INT = Kind("auto or int", "'auto' or an integer", _or_words("auto", then=_int))
EPOCH_OR_INT = Kind("epoch or int", "'epoch' or a number of steps", _or_words("epoch", then=_int))


# --- checks: what a value must be -----------------------------------------------------------


@dataclass(eq=False)
class Check:
    """``test(value)`` is true for a possible value (never called with null); ``must`` says
    what the value must be, in messages and in docs/settings.md."""

    test: Callable[[Any], bool]
    must: str  # "must be > 0"
    choices: tuple = ()  # the only values, when the check is a list of them (click.Choice)


def one_of(*choices: str, must: str = "") -> Check:
    if not must:
        listed = " or ".join(choices) if len(choices) <= 2 else "one of " + ", ".join(choices)
        must = f"must be {listed}"
    return Check(lambda v: v in choices, must, choices)


POSITIVE = Check(lambda v: v > 0, "must be > 0")
NON_NEGATIVE = Check(lambda v: v >= 0, "must be >= 0")
NOT_EMPTY = Check(lambda v: v.strip() != "", "must not be empty")
POSITIVE_INTERVAL = Check(lambda v: interval(v)[1] > 0, "must be > 0")


# --- the declaration ------------------------------------------------------------------------


@dataclass(eq=False)
class Setting:
    """One config key: ``section.name`` (or a top-level ``name``), read as ``kind``.

    ``null``: what null means, for a setting that may be null (one whose default is null
    must say).
    ``fixed_on_resume``: ``--resume`` refuses a value other than the run's own.
    ``flag`` (and ``short_flag``): the ``charrnn train`` option that sets it; its help is
    ``help`` plus "(sets key)".
    """

    key: str
    kind: Kind
    default: Any
    help: str
    check: Check | None = None
    null: str = ""
    fixed_on_resume: bool = False
    flag: str = ""
    short_flag: str = ""

    def __post_init__(self):
        if self.default is None and not self.null:
            raise TypeError(f"{self.key}: a null default needs null= saying what it means")

    @property
    def nullable(self) -> bool:
        return bool(self.null)

    @property
    def section(self) -> str | None:
        """``model`` of ``model.cell``; None for a top-level key (``data``)."""
        return self.key.split(".")[0] if "." in self.key else None

    @property
    def name(self) -> str:
        return self.key.split(".")[-1]

    @property
    def default_text(self) -> str:
        """The default as YAML writes it (docs/settings.md; ``--set key=`` it reads back)."""
        if self.default is None:
            return "null"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def read(self, value: Any) -> Any:
        """The value as the run uses it; ValueError says what it must be otherwise (the
        message reads after the key: "must be > 0, got 0")."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError("must not be null")
        value = self.kind.coerce(value)
        if self.check and not self.check.test(value):
            raise ValueError(f"{self.check.must}, got {value!r}")
        return value
