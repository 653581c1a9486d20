"""One sample's text as its symbols come: recomposed, cut at a length or after a stop."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from charrnn.text import Vocab


class TextStream:
    """One sample's text: recomposed as it streams, cut at ``length`` characters or
    just after the stop string."""

    def __init__(self, vocab: Vocab, length: int, stop: str | None) -> None:
        self.decoder = vocab.stream_decoder()
        self.left, self.stop = length, stop or None
        self.tail = ""  # the last len(stop) - 1 characters, to find a stop across chunks
        self.pending = ""  # text not yet written to the output
        self.done = length <= 0

    def feed(self, ids: ArrayLike) -> None:
        if self.done:
            return
        text = self.decoder.feed(ids)
        if self.stop:
            hay = self.tail + text
            at = hay.find(self.stop)
            if at >= 0:
                text = text[: max(0, at + len(self.stop) - len(self.tail))]
                self.done = True
            self.tail = hay[-(len(self.stop) - 1) :] if len(self.stop) > 1 else ""
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
