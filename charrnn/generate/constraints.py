"""`--allow CHARS`: only these characters may be emitted -- a mask on the logits.

The constraint is on characters, not symbols.  For a plain vocabulary that is one mask.
For a jamo vocabulary (charrnn.text.jamo) a character is a run of symbols, so the mask
depends on what has been read of the syllable so far: a small automaton whose states are
"between characters", "after an escape", "after lead consonant L" and "after L and
vowel V".  From each state it allows the symbols that keep the text on the way to an
allowed character, e.g. with --allow 가각 after ㄱ only ㅏ, and after ㄱㅏ the final ㄱ
(각) or, as 가 is allowed too, the start of the next allowed character.  A lead
consonant the model leaves dangling is printed as that standalone jamo, so it counts
as that character.

``masks[state]`` (bool, vocab) is what may follow; ``trans[state, symbol]`` the next
state, defined for every symbol, so forced symbols (the prime) move it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.text.jamo import ESC, L_BASE, L_COUNT, S_BASE, T_BASE, T_COUNT, V_BASE, V_COUNT

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from charrnn.text import Vocab

START, ESCAPED = 0, 1


def _syllable(lead: int, vowel: int, final: int = 0) -> str:
    return chr(S_BASE + (lead * V_COUNT + vowel) * T_COUNT + final)


class Allowed:
    def __init__(self, vocab: Vocab, chars: str) -> None:
        self.chars = "".join(dict.fromkeys(chars))
        allowed = set(self.chars)
        cps = vocab.code_points.astype(np.int64)
        plain = np.array([chr(c) in allowed for c in cps], bool)
        if not vocab.jamo:
            self.masks, self.trans = plain[None, :], np.zeros((1, len(cps)), np.int32)
        else:
            self.masks, self.trans = _jamo_automaton(cps, plain, allowed)
        if not self.masks[START].any():
            raise CharrnnError(
                f"none of the --allow characters {self.chars[:40]!r} can be "
                "written with this model's vocabulary; allow characters it knows"
            )

    def start(self, batch: int) -> np.ndarray:
        return np.zeros(batch, np.int32)

    def mask(self, logits: np.ndarray, state: np.ndarray) -> np.ndarray:
        """``logits`` with the symbols not allowed in ``state`` (batch,) set to -inf."""
        return np.where(self.masks[state], logits, np.float32(-np.inf))

    def advance(self, state: ArrayLike, ids: ArrayLike) -> np.ndarray:
        return self.trans[state, ids]


def _jamo_automaton(
    cps: np.ndarray, plain: np.ndarray, allowed: set[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(masks, trans) over states START, ESCAPED, L(l) = 2 + l, LV(l, v) = 2 + 19 + l*21 + v."""
    n_states = 2 + L_COUNT + L_COUNT * V_COUNT
    lead, vowel, final = cps - L_BASE, cps - V_BASE, cps - T_BASE
    is_l = (lead >= 0) & (lead < L_COUNT)
    is_v = (vowel >= 0) & (vowel < V_COUNT)
    is_t = (final >= 1) & (final < T_COUNT)
    masks = np.zeros((n_states, len(cps)), bool)
    trans = np.zeros((n_states, len(cps)), np.int32)

    def lv_state(lead_i: int, v: int) -> int:
        return 2 + L_COUNT + lead_i * V_COUNT + v

    # between characters: an L opens a syllable if some allowed syllable starts with it
    # (or the standalone jamo is allowed); the escape, if what it escapes may be allowed
    opens = {
        li
        for li in range(L_COUNT)
        if any(_syllable(li, v, t) in allowed for v in range(V_COUNT) for t in range(T_COUNT))
    }
    masks[START] = plain & ~is_l
    trans[START] = START
    for i in np.flatnonzero(is_l):
        masks[START, i] = int(lead[i]) in opens or chr(int(cps[i])) in allowed
        trans[START, i] = 2 + int(lead[i])
    esc = np.flatnonzero(cps == ESC)
    trans[START, esc] = ESCAPED
    masks[START, esc] = plain.any()  # ESC x prints x: allowed when some x is
    masks[ESCAPED], trans[ESCAPED] = plain, START
    for li in range(L_COUNT):
        s = 2 + li
        # after L: a vowel that leads to an allowed syllable, or anything after the
        # dangling L when the standalone jamo is allowed
        dangling = chr(L_BASE + li) in allowed
        masks[s], trans[s] = masks[START] & dangling, trans[START]
        for i in np.flatnonzero(is_v):
            v = int(vowel[i])
            masks[s, i] = any(_syllable(li, v, t) in allowed for t in range(T_COUNT))
            trans[s, i] = lv_state(li, v)
        for v in range(V_COUNT):
            s2 = lv_state(li, v)
            # after L V: a final that makes an allowed syllable, or (when L V alone is
            # an allowed syllable) whatever may start the next character
            masks[s2], trans[s2] = masks[START] & (_syllable(li, v) in allowed), trans[START]
            for i in np.flatnonzero(is_t):
                masks[s2, i] = _syllable(li, v, int(final[i])) in allowed
                trans[s2, i] = START
    return masks, trans
