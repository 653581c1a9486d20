"""`charrnn sample RUN -i`: write together with the model in a terminal.

The screen shows the text so far and the model's most likely next symbols with
their probabilities.  Typed characters go into the text as they are; keys let the
model write.  Only the NumPy engine is used (no TensorFlow import: the session
starts at once, and a step at batch 1 takes well under a millisecond).

The session is the ``Session`` class (text, model state, undo; no terminal) and a
small full-screen loop over the terminal in cbreak mode: ISIG and IXON stay on, so
Ctrl-C, Ctrl-Z, Ctrl-S and Ctrl-Q keep their usual meaning.  The terminal is
/dev/tty, so with stdout redirected the session still runs on the screen and only
the final text goes to stdout, once, at the end.
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import termios
import tty
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.generate.beam import beam_search
from charrnn.generate.choice import Options
from charrnn.generate.constraints import Allowed
from charrnn.generate.numpy_engine import NumpyEngine
from charrnn.generate.sampler import start_id
from charrnn.generate.textstream import TextStream
from charrnn.nn.step import NumpyOps, cell_step

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from charrnn.nn.step import Weights
    from charrnn.text import Vocab

TAB, NEXT_LINE, UNDO, UNDO2, RESET, QUIT, ESC = "\t", "\x0e", "\x7f", "\x08", "\x12", "\x04", "\x1b"
KEYS = "Tab write k · ^N write a line · ⌫ undo · ^R reset · Esc :command · ^D done"
COMMANDS = (
    "commands: t T (temperature), top-k K, top-p P, k K (chars per Tab), seed S, "
    "n N (candidates shown), allow CHARS (only these; none: all), beam N (Tab writes "
    "the most probable text; 0: sample), q (done)"
)
MAX_LINE = 2000  # Ctrl-N stops after this many symbols without a newline


class Session:
    """The text (symbol ids), the model's state after it, and an undo stack."""

    def __init__(
        self,
        weights: Weights,
        vocab: Vocab,
        options: Options = Options(),
        k: int = 40,
        top: int = 10,
    ) -> None:
        options.check()
        self.w, self.vocab, self.opt = weights, vocab, options
        self.k, self.top = int(k), int(top)
        self.start = start_id(vocab)  # the text starts after a newline, like an unprimed sample
        self.history = []
        self.allowed, self.beam = None, 0
        self._set_empty()
        self._engine = self._new_engine()

    def _new_engine(self) -> NumpyEngine:
        """The NumPy engine for the options and --allow, its automaton at the text's end."""
        engine = NumpyEngine(self.w, self.opt, 1, allowed=self.allowed)
        if self.allowed is not None:
            state = self.allowed.start(1)
            for i in self.ids:
                state = self.allowed.advance(state, np.array([i]))
            engine.allowed_state = state
        return engine

    def _set_empty(self) -> None:
        self.ids = []
        self.tok = np.array([self.start], np.int32)
        self.states = [
            np.zeros((1, self.w.units), np.float32)
            for _ in range(len(self.w.layers) * self.w.states_per_layer)
        ]
        self.t = 0

    # -- reading
    @property
    def text(self) -> str:
        return self.vocab.decode(self.ids)

    def probabilities(self) -> np.ndarray:
        """The model's distribution over the next symbol (temperature 1, no cut)."""
        with np.errstate(over="ignore", under="ignore"):
            logits, _ = cell_step(NumpyOps, self.w, self.tok, self.states)
        z = logits[0].astype(np.float64)
        p = np.exp(z - z.max())
        return p / p.sum()

    def candidates(self) -> list[tuple[str, float]]:
        """The ``top`` most likely next symbols as (shown text, probability); with jamo,
        each is shown composed with the pending syllable (ᄒ ᅡ + ᆫ shows as 한)."""
        p = self.probabilities()
        best = np.argsort(-p, kind="stable")[: self.top]
        tail = self.ids[-3:] if self.vocab.jamo else []
        before = self.vocab.decode(tail)
        out = []
        for i in best:
            after = self.vocab.decode(tail + [int(i)])
            n = 0
            while n < min(len(before), len(after)) and before[n] == after[n]:
                n += 1
            out.append((after[n:], float(p[i])))
        return out

    # -- changing
    def _save(self) -> None:
        self.history.append(
            (list(self.ids), self.tok.copy(), [s.copy() for s in self.states], self.t)
        )

    def _run(self, forced: ArrayLike) -> np.ndarray:
        forced = np.asarray(forced, np.int32).reshape(1, -1)
        out, self.tok, self.states = self._engine.run(self.tok, self.states, self.t, forced)
        self.tok = np.asarray(self.tok, np.int32)
        self.t += forced.shape[1]
        self.ids += out[0].tolist()
        return out[0]

    def type(self, text: str) -> list[str]:
        """Force ``text`` into the text; returns the characters left out (not in the
        vocabulary)."""
        bad = self.vocab.unknown_chars(text)
        ids = self.vocab.encode(text, unknown="skip")
        if len(ids):
            self._save()
            self._run(ids)
        return bad

    def write(self, k: int | None = None) -> None:
        """Let the model write ``k`` more characters (original characters: a Hangul
        syllable counts once)."""
        k = self.k if k is None else k
        self._save()
        if self.beam:
            stream = TextStream(self.vocab, k, None)
            stream.decoder.feed(np.array(self.ids, np.int32))
            best = beam_search(
                self.w, stream, [self.start, *self.ids], self.start, k, self.beam, self.allowed
            )
            self._run(np.array(best.ids, np.int32))
            return
        if not self.vocab.jamo:
            self._run(np.full(k, -1))
            return
        goal = len(self.text) + k
        for _ in range(8 * k + 8):
            self._run([-1])
            if len(self.text) >= goal:
                break

    def next_line(self) -> None:
        """Let the model write up to and including its next newline."""
        self._save()
        nl = self.start if self.vocab.symbols[self.start] == "\n" else None
        for _ in range(MAX_LINE):
            if self._run([-1])[0] == nl:
                break

    def undo(self) -> bool:
        if self.history:
            self.ids, self.tok, self.states, self.t = self.history.pop()
            self._engine = self._new_engine()
            return True
        return False

    def reset(self) -> None:
        if self.ids:
            self._save()
            self._set_empty()
            self._engine = self._new_engine()

    def command(self, line: str) -> str:
        """A `:` command; returns a message for the status line."""
        words = line.strip().lstrip(":").split()
        if not words:
            return ""
        name, args = words[0].lower(), words[1:]
        if name in ("q", "quit"):
            raise _Done
        if name == "allow":
            return self._allow(line.strip().lstrip(":")[len(words[0]) :].strip())
        names = {
            "t": "temperature",
            "temp": "temperature",
            "temperature": "temperature",
            "top-k": "top_k",
            "topk": "top_k",
            "top-p": "top_p",
            "topp": "top_p",
            "seed": "seed",
            "k": "k",
            "n": "top",
            "beam": "beam",
        }
        if name not in names or len(args) != 1:
            return f"unknown command {line.strip()!r}; {COMMANDS}"
        field = names[name]
        try:
            value = float(args[0]) if field in ("temperature", "top_p") else int(args[0])
        except ValueError:
            example = "0.8" if field in ("temperature", "top_p") else "5"
            return f"{name} needs a number, e.g. {name} {example}"
        if field in ("k", "top", "beam"):
            if value < (0 if field == "beam" else 1):
                return f"{name} must be at least {0 if field == 'beam' else 1}"
            setattr(self, field, value)
        else:
            opt = replace(self.opt, **{field: value})
            try:
                opt.check()
            except CharrnnError as e:
                return str(e).replace("--", "").replace("_", "-")
            self.opt = opt
            self._engine = self._new_engine()
        return f"{_PRETTY[field]} {value:g}"

    def _allow(self, chars: str) -> str:
        """`:allow CHARS`: only these characters from now on; `:allow` alone: all."""
        try:
            self.allowed = Allowed(self.vocab, chars) if chars else None
        except CharrnnError as e:
            return str(e).replace("--allow", "allow")
        self._engine = self._new_engine()
        return f"allowed: {chars}" if chars else "all characters allowed"


_PRETTY = {
    "temperature": "temperature",
    "top_k": "top-k",
    "top_p": "top-p",
    "seed": "seed",
    "k": "k",
    "top": "candidates shown",
    "beam": "beam",
}


class _Done(Exception):
    pass


# --- the terminal -------------------------------------------------------------------


def _shown(s):
    return s.replace("\n", "⏎").replace(" ", "␠").replace("\t", "⇥") or "∅"


class _Screen:
    def __init__(self, fd, session, title):
        self.fd, self.s, self.title = fd, session, title
        self.message = ""
        self.command = None  # the `:` line being typed, or None

    def size(self) -> tuple[int, int]:
        try:
            cols, rows = os.get_terminal_size(self.fd)
        except OSError:
            cols, rows = 80, 24
        return max(cols, 20), max(rows, 8)

    def draw(self) -> None:
        s, o = self.s, self.s.opt
        cols, rows = self.size()
        head = (
            f"{self.title} · T {o.temperature:g} · top-k {o.top_k} · top-p {o.top_p:g} · "
            f"k {s.k} · seed {o.seed}"
        )
        cands = "  ".join(f"{_shown(c)} {100 * p:.1f}%" for c, p in s.candidates())
        foot = [
            f"next: {cands}",
            self.message,
            ":" + self.command if self.command is not None else KEYS,
        ]
        foot = [line[: cols - 1] for line in foot]
        body = _wrap(s.text + "▌", cols - 1)[-(rows - 2 - len(foot)) :]
        lines = [head[: cols - 1], "─" * (cols - 1), *body]
        lines += [""] * (rows - len(foot) - len(lines)) + foot
        os.write(self.fd, ("\x1b[H\x1b[2J" + "\n".join(lines)).encode("utf-8", "replace"))


def _wrap(text, width):
    out = []
    for line in text.split("\n"):
        line = line.replace("\t", "    ")
        out += [line[i : i + width] for i in range(0, max(len(line), 1), width)]
    return out


class _Terminal:
    """/dev/tty in cbreak mode on the alternate screen; restored on exit and Ctrl-Z."""

    def __init__(self):
        try:
            self.fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise CharrnnError(
                f"interactive mode needs a terminal, and there is none here "
                f"(/dev/tty: {e.strerror}); run it from a terminal, or use "
                "`charrnn sample` without -i"
            ) from None
        if not os.isatty(self.fd):
            os.close(self.fd)
            raise CharrnnError("interactive mode needs a terminal; run it from one")
        self.saved = termios.tcgetattr(self.fd)
        self.redraw = None

    def enter(self) -> None:
        tty.setcbreak(self.fd)  # no echo, no line editing; signals and flow control kept
        os.write(self.fd, b"\x1b[?1049h")

    def leave(self) -> None:
        os.write(self.fd, b"\x1b[?1049l")
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def _on_stop(self, signum, frame):
        self.leave()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        # ... stopped until `fg` ...
        signal.signal(signal.SIGTSTP, self._on_stop)
        self.enter()
        if self.redraw:
            self.redraw()

    def __enter__(self):
        self.enter()
        self.old = {
            sig: signal.signal(sig, h)
            for sig, h in (
                (signal.SIGTSTP, self._on_stop),
                (signal.SIGWINCH, lambda *_: self.redraw and self.redraw()),
            )
        }
        return self

    def __exit__(self, *exc):
        for sig, h in self.old.items():
            signal.signal(sig, h)
        self.leave()
        os.close(self.fd)

    def keys(self) -> Iterator[str]:
        """Typed text, one key (or one pasted/IME-committed run of characters) at a time."""
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                data = os.read(self.fd, 1024)
            except InterruptedError:
                continue
            if not data:
                return
            text = dec.decode(data)
            i = 0
            while i < len(text):
                c = text[i]
                if c == ESC and i + 1 < len(text) and text[i + 1] in "[O":
                    # an arrow or function key: skip its escape sequence
                    j = i + 2
                    while j < len(text) and not ("@" <= text[j] <= "~"):
                        j += 1
                    i = j + 1
                    continue
                if c == ESC and i + 1 == len(text) and self._more_soon():
                    text += dec.decode(os.read(self.fd, 1024))
                    continue
                j = i
                while j < len(text) and text[j] >= " " and text[j] != "\x7f":
                    j += 1
                if j < len(text) and text[j] in "\r\n":
                    j += 1  # a run ends with its Enter
                if j > i:  # printable characters as one run (a paste, an IME syllable)
                    yield text[i:j]
                    i = j
                else:
                    yield c
                    i += 1

    def _more_soon(self):
        return bool(select.select([self.fd], [], [], 0.03)[0])


def run(session: Session, title: str = "charrnn") -> str:
    """The interactive loop; returns the final text."""
    with _Terminal() as term:
        screen = _Screen(term.fd, session, title)
        term.redraw = screen.draw
        screen.draw()
        try:
            for key in term.keys():
                screen.message = _handle(screen, session, key)
                screen.draw()
        except _Done:
            pass
    return session.text


def _handle(screen, s, key):
    if screen.command is not None:  # typing a `:` command
        if key == ESC:
            screen.command = None
        elif key in (UNDO, UNDO2):
            screen.command = screen.command[:-1]
        elif key[-1] in "\r\n":
            line, screen.command = screen.command + key.rstrip("\r\n"), None
            return s.command(line)
        elif key >= " ":
            screen.command += key
        return ""
    if key == ESC:
        screen.command = ""
        return COMMANDS
    if key == QUIT:
        raise _Done
    if key == TAB:
        s.write()
    elif key == NEXT_LINE:
        s.next_line()
    elif key in (UNDO, UNDO2):
        return "" if s.undo() else "nothing to undo"
    elif key == RESET:
        s.reset()
        return "reset (Backspace brings the text back)"
    elif key >= " " or key in ("\n", "\r"):
        bad = s.type(key.replace("\r", "\n"))
        if bad:
            return "not in the model's vocabulary: " + " ".join(repr(c) for c in bad)
    return ""
