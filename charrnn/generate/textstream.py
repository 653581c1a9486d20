"""One sample's text as its symbols come: recomposed, cut at a length or after a stop."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from charrnn.text import Vocab


def stop_strings(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """``stop`` (one string, several, or None) as a tuple of the non-empty ones."""
    if stop is None:
        return ()
    return tuple(s for s in ((stop,) if isinstance(stop, str) else stop) if s)


def first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """(end, stop) of the stop that ends first in ``text`` (the longest of those that end
    there), or None."""
    best = None
    for s in stops:
        at = text.find(s)
        if at >= 0 and (best is None or (at + len(s), -len(s)) < (best[0], -len(best[1]))):
            best = (at + len(s), s)
    return best


class TextStream:
    """One sample's text: recomposed as it streams, cut at ``length`` characters or
    just after the first of the stop strings to appear."""

    def __init__(self, vocab: Vocab, length: int, stop: str | Sequence[str] | None) -> None:
        self.decoder = vocab.stream_decoder()
        self.left, self.stops = length, stop_strings(stop)
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.tail = ""  # the last `keep` characters, to find a stop across chunks
        self.pending = ""  # text not yet written to the output
        self.done = length <= 0

    def feed(self, ids: ArrayLike) -> None:
        if self.done:
            return
        text = self.decoder.feed(ids)
        if self.stops:
            hay = self.tail + text
            found = first_stop(hay, self.stops)
            if found is not None:
                text = text[: max(0, found[0] - len(self.tail))]
                self.done = True
            self.tail = hay[-self.keep :] if self.keep else ""
        if len(text) >= self.left:
            text, self.done = text[: self.left], True
        self.left -= len(text)
        self.pending += text

    def take(self) -> str:
        text, self.pending = self.pending, ""
        return text

    def copy(self) -> TextStream:
        """An independent copy (beam search branches a text)."""
        other = copy.copy(self)
        other.decoder = copy.copy(self.decoder)
        return other
