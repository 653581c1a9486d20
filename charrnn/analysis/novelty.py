"""Is a sample new, or copied from the training text?  (`sample --novelty`, serve's "novelty")

For each sample: the longest substring it shares with the train split of the run's
dataset, and where in that text it is (character offset, line and column, from 1); and
the share of its characters that lie inside substrings of at least ``RUN`` characters
found in the training text.

The index is a suffix array of the train split's characters (code points), built once
with pydivsufsort (libdivsufsort) and cached under ``~/.cache/charrnn/novelty/<key>/``
(``$XDG_CACHE_HOME`` if set) as two .npy files -- the text's code points and the suffix
array, no pickle -- keyed by the dataset's meta.json and vocab.json, which change whenever
its text does.  A lookup walks the sample once (matching statistics): for each position,
the longest prefix of the rest that occurs in the text, by binary search in the suffix
array, starting from the previous position's match less one character.
"""

import bisect
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.store.dataset import load_dataset
from charrnn.text import from_cps, to_cps

RUN = 20          # shared substrings this long or longer count as copied
EXTRA = "pip install 'charrnn[novelty]'"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "charrnn" / "novelty"


class NoveltyIndex:
    """A suffix array over one text; ``report(sample)`` says what the sample shares with it."""

    def __init__(self, cps: np.ndarray, sa: np.ndarray, name=""):
        self.text = from_cps(cps)
        self.sa = sa  # int32 (int64 past 2**31 characters): 4 bytes a character
        self.name = name
        self.line_starts = np.flatnonzero(cps == 10) + 1

    @classmethod
    def build(cls, text: str, name=""):
        try:
            from pydivsufsort import divsufsort
        except ImportError:
            raise CharrnnError(f"the novelty report needs the Python package 'pydivsufsort'; "
                               f"install it with {EXTRA}") from None
        cps = np.ascontiguousarray(to_cps(text))
        return cls(cps, divsufsort(cps.copy()) if len(cps) else np.zeros(0, np.int32), name)

    # -- lookups
    def _range(self, pattern, lo, hi):
        """The suffixes in sa[lo:hi] that start with ``pattern`` (all of sa[lo:hi] share
        its prefix but the last character): their [lo, hi)."""
        n, text, sa = len(pattern), self.text, self.sa
        key = lambda i: text[int(sa[i]):int(sa[i]) + n]  # noqa: E731
        return (bisect.bisect_left(range(len(sa)), pattern, lo, hi, key=key),
                bisect.bisect_right(range(len(sa)), pattern, lo, hi, key=key))

    def matches(self, sample: str):
        """Per position i of ``sample``: (length of the longest prefix of sample[i:] found in
        the text, an offset in the text where it starts)."""
        lengths, where = np.zeros(len(sample), np.int64), np.full(len(sample), -1, np.int64)
        length = 0
        for i in range(len(sample)):
            lo, hi = self._range(sample[i:i + length], 0, len(self.sa)) if length else \
                (0, len(self.sa))
            while i + length < len(sample):
                nlo, nhi = self._range(sample[i:i + length + 1], lo, hi)
                if nlo == nhi:
                    break
                lo, hi, length = nlo, nhi, length + 1
            lengths[i] = length
            if length:
                where[i] = int(self.sa[lo])
            length = max(0, length - 1)
        return lengths, where

    def report(self, sample: str) -> dict:
        """The longest shared substring (text, length, offset, line, column) and the share
        of the sample's characters inside shared substrings of at least RUN characters."""
        lengths, where = self.matches(sample)
        covered = np.zeros(len(sample) + 1, np.int64)
        for i in np.flatnonzero(lengths >= RUN):
            covered[i] += 1
            covered[i + lengths[i]] -= 1
        share = float((np.cumsum(covered)[:-1] > 0).mean()) if len(sample) else 0.0
        out = {"chars": len(sample), "longest": 0, "longest_text": "", "offset": None,
               "line": None, "column": None, f"copied_{RUN}": round(share, 4)}
        if len(sample) and lengths.max() > 0:
            i = int(np.argmax(lengths))
            at = int(where[i])
            line = int(np.searchsorted(self.line_starts, at, side="right"))
            first = int(self.line_starts[line - 1]) if line else 0
            out.update(longest=int(lengths[i]), longest_text=sample[i:i + int(lengths[i])],
                       offset=at, line=line + 1, column=at - first + 1)
        return out


def sample_reports(index, vocab, request, texts) -> list:
    """The report on each sample of a charrnn.generate.write.Request: on what it generated,
    without the prime it echoes."""
    from charrnn.generate.write import echoed_prime

    shown = len(echoed_prime(vocab, request))
    return [index.report(text[shown:]) for text in texts]


def describe(i, r) -> str:
    """One line for a person about sample ``i``'s report ``r``."""
    if not r["longest"]:
        return f"Novelty, sample {i + 1}: shares no character with the training text"
    shown = r["longest_text"][:60] + ("..." if r["longest"] > 60 else "")
    return (f"Novelty, sample {i + 1}: longest shared substring {r['longest']} characters, at "
            f"line {r['line']}, column {r['column']} of the training text: {shown!r}; "
            f"{r[f'copied_{RUN}']:.1%} of its {r['chars']} characters lie in shared runs of "
            f"{RUN} or more")


def index_for(loaded, on_info=None) -> NoveltyIndex:
    """The index of the train split of the dataset ``loaded``'s run was trained on, from
    the cache or built now (and cached)."""
    data = (loaded.config or {}).get("data")
    if not data:
        raise CharrnnError(f"{loaded.path} names no training data (a .safetensors file carries "
                           "none): the novelty report needs a run directory whose dataset is "
                           "still there")
    path = Path(data)
    if not (path / "meta.json").is_file():
        raise CharrnnError(f"the novelty report needs the run's training text, but its dataset "
                           f"{data} (config.yaml's data) is gone; prepare it again there, or "
                           "sample without --novelty")
    key = hashlib.sha256((path / "meta.json").read_bytes() + (path / "vocab.json").read_bytes())
    folder = cache_root() / key.hexdigest()[:32]
    try:
        cps = np.load(folder / "text.npy", allow_pickle=False)
        sa = np.load(folder / "sa.npy", allow_pickle=False)
        if len(cps) == len(sa):
            return NoveltyIndex(cps, sa, str(path))
    except (OSError, ValueError):
        pass  # not cached yet, or a damaged cache: build it again
    if on_info:
        on_info(f"Indexing the training text of {data} for the novelty report (once; cached "
                f"in {folder})")
    ds = load_dataset(path)
    text = "".join(_decoded(ds))
    index = NoveltyIndex.build(text, str(path))
    _save(folder, to_cps(text), index.sa)
    return index


def _decoded(ds, chunk=1 << 20):
    ids, dec = ds.split("train"), ds.vocab.stream_decoder()
    for i in range(0, len(ids), chunk):
        yield dec.feed(ids[i:i + chunk])
    yield dec.flush()


def _save(folder: Path, cps, sa):
    """Write the cache whole or not at all (a temporary folder, then rename)."""
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        np.save(tmp / "text.npy", np.ascontiguousarray(cps, np.uint32))
        np.save(tmp / "sa.npy", sa)
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(tmp, folder)
    except OSError:
        # no cache (read-only home, full disk): the next report indexes again
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
