"""Text in, symbols out: decoding (charrnn.text.decode), the jamo scheme
(charrnn.text.jamo) and the vocabulary (charrnn.text.vocab).

The names below are the public API (README, Python API): ``from charrnn.text import Vocab``.
"""

from charrnn.text.decode import detect_encoding, iter_text, read_text  # noqa: F401
from charrnn.text.jamo import (ESC, JAMO_SCHEME, MAX_CP, N_SYLLABLES, S_BASE, decompose,  # noqa: F401
                               decompose_cps, from_cps, jamo_counts, recompose, recompose_cps,
                               to_cps)
from charrnn.text.vocab import UNK, StreamDecoder, Vocab  # noqa: F401
