"""Text in, symbols out: decoding (charrnn.text.decode), the jamo scheme
(charrnn.text.jamo) and the vocabulary (charrnn.text.vocab).

The names below are the public API (docs/python.md): ``from charrnn.text import Vocab``.
"""

from charrnn.text.decode import detect_encoding, iter_text, normalise_newlines, read_text
from charrnn.text.jamo import (
    ESC,
    JAMO_SCHEME,
    MAX_CP,
    N_SYLLABLES,
    S_BASE,
    decompose,
    decompose_cps,
    from_cps,
    jamo_counts,
    recompose,
    recompose_cps,
    to_cps,
)
from charrnn.text.vocab import UNK, StreamDecoder, Vocab

__all__ = [
    "ESC",
    "JAMO_SCHEME",
    "MAX_CP",
    "N_SYLLABLES",
    "S_BASE",
    "UNK",
    "StreamDecoder",
    "Vocab",
    "decompose",
    "decompose_cps",
    "detect_encoding",
    "from_cps",
    "iter_text",
    "jamo_counts",
    "normalise_newlines",
    "read_text",
    "recompose",
    "recompose_cps",
    "to_cps",
]
