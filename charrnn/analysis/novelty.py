"""Is a sample new, or copied from the training text?  (`sample --novelty`, serve's "novelty")

For each sample: the longest substring it shares with the train split of the run's
dataset, and where in that text it is (character offset, line and column, from 1); and
the share of its characters that lie inside substrings of at least ``RUN`` characters
found in the training text.

The index (charrnn.analysis.suffixes) is a suffix array over the train split, one symbol a
character: the dataset's own ids, memory-mapped from its train.npy, or, for a jamo
vocabulary (several ids a syllable), its decoded characters numbered and stored beside the
index.  It is built once and cached under ``~/.cache/charrnn/novelty/<key>/``
(``$XDG_CACHE_HOME`` if set), keyed by the dataset's meta.json and vocab.json: plain .npy
files and an index.json, no pickle, written aside and renamed.  Opening it checks what it
can afford to (the format, every array's dtype and shape, a fingerprint of the dataset's
train.npy, the order of the suffix array at a few places) and builds it again when any of
that does not match, so a damaged cache is never trusted.  A report reads the cached files
memory-mapped, a few pages per sample character.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from charrnn.analysis.suffixes import (
    PEAK_PER_SYMBOL,
    SECONDS_PER_BYTE,
    ArrayReader,
    FileReader,
    Suffixes,
    npy_chunks,
    npy_header,
    sort_suffixes,
    write_npy,
)
from charrnn.atomic import write_json_atomic
from charrnn.errors import CharrnnError
from charrnn.store.dataset import load_dataset
from charrnn.text import to_cps

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from charrnn.analysis.suffixes import Reader
    from charrnn.atomic import StrPath
    from charrnn.generate.write import Request
    from charrnn.store.dataset import Dataset
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

RUN = 20  # shared substrings this long or longer count as copied
FORMAT = "charrnn-novelty/2"
log = logging.getLogger(__name__)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "charrnn" / "novelty"


class NoveltyIndex:
    """A suffix array over one text; ``report(sample)`` says what the sample shares with it.

    ``text``: ids, one a character; ``alphabet[id]``: its code point; ``sa``: the suffixes
    sorted by ``rank``; ``line_starts``: where lines 2... begin (the three as readers of
    charrnn.analysis.suffixes, or arrays).
    """

    def __init__(
        self,
        text: Reader | np.ndarray,
        sa: Reader | np.ndarray,
        rank: ArrayLike,
        alphabet: ArrayLike,
        line_starts: Reader | np.ndarray,
        name: str = "",
    ) -> None:
        text, sa, line_starts = (
            x if hasattr(x, "rows") else ArrayReader(x) for x in (text, sa, line_starts)
        )
        self.suffixes = Suffixes(text, sa, rank)
        self.alphabet = np.asarray(alphabet, np.uint32)
        self._order = np.argsort(self.alphabet, kind="stable")
        self.line_starts = line_starts
        self.name = name

    @classmethod
    def build(cls, text: str, name: str = "") -> NoveltyIndex:
        """The index of ``text``, in memory (for small texts: tests, benchmarks)."""
        cps = to_cps(text)
        alphabet, ids = np.unique(cps, return_inverse=True)
        ids = ids.astype(np.uint16 if len(alphabet) <= 1 << 16 else np.uint32)
        with tempfile.TemporaryDirectory() as tmp:
            np.save(os.path.join(tmp, "text.npy"), ids)
            rank = sort_suffixes(
                os.path.join(tmp, "text.npy"),
                np.bincount(ids, minlength=len(alphabet)),
                os.path.join(tmp, "sa.npy"),
            )
            sa = np.load(os.path.join(tmp, "sa.npy"), allow_pickle=False)
        return cls(ids, sa, rank, alphabet, np.flatnonzero(cps == 10) + 1, name)

    # -- lookups
    def _ranks(self, sample: str) -> np.ndarray:
        """The sample's characters as ranks of the index (-1: a character the text lacks)."""
        cps = to_cps(sample)
        pos = np.searchsorted(self.alphabet[self._order], cps)
        ok = pos < len(self.alphabet)
        ok[ok] = self.alphabet[self._order[pos[ok]]] == cps[ok]
        return (
            np.where(ok, self.suffixes.rank[self._order[np.where(ok, pos, 0)]], -1)
            if len(self.alphabet)
            else np.full(len(cps), -1)
        )

    def matches(self, sample: str) -> tuple[np.ndarray, np.ndarray]:
        """Per position i of ``sample``: (length of the longest prefix of sample[i:] found in
        the text, an offset in the text where it starts, -1 if none)."""
        return self.suffixes.longest(self._ranks(sample))

    def report(self, sample: str) -> dict:
        """The longest shared substring (text, length, offset, line, column) and the share
        of the sample's characters inside shared substrings of at least RUN characters."""
        lengths, where = self.matches(sample)
        covered = np.zeros(len(sample) + 1, np.int64)
        for i in np.flatnonzero(lengths >= RUN):
            covered[i] += 1
            covered[i + lengths[i]] -= 1
        share = float((np.cumsum(covered)[:-1] > 0).mean()) if len(sample) else 0.0
        out = {
            "chars": len(sample),
            "longest": 0,
            "longest_text": "",
            "offset": None,
            "line": None,
            "column": None,
            f"copied_{RUN}": round(share, 4),
        }
        if len(sample) and lengths.max() > 0:
            i = int(np.argmax(lengths))
            at = int(where[i])
            line = self._line(at)
            first = int(self.line_starts.rows(np.array([line - 1]), 1)[0, 0]) if line else 0
            out.update(
                longest=int(lengths[i]),
                longest_text=sample[i : i + int(lengths[i])],
                offset=at,
                line=line + 1,
                column=at - first + 1,
            )
        return out

    def _line(self, at: int) -> int:
        """How many lines start at or before offset ``at`` after the first (bisection)."""
        lo, hi = 0, self.line_starts.n
        while lo < hi:
            mid = (lo + hi) // 2
            if int(self.line_starts.rows(np.array([mid]), 1)[0, 0]) <= at:
                lo = mid + 1
            else:
                hi = mid
        return lo


def sample_reports(
    index: NoveltyIndex, vocab: Vocab, request: Request, texts: Sequence[str]
) -> list[dict]:
    """The report on each sample of a charrnn.generate.write.Request: on what it generated,
    without the prime it echoes."""
    from charrnn.generate.write import echoed_prime

    shown = len(echoed_prime(vocab, request))
    return [index.report(text[shown:]) for text in texts]


def describe(i: int, r: dict) -> str:
    """One line for a person about sample ``i``'s report ``r``."""
    if not r["longest"]:
        return f"Novelty, sample {i + 1}: shares no character with the training text"
    shown = r["longest_text"][:60] + ("..." if r["longest"] > 60 else "")
    return (
        f"Novelty, sample {i + 1}: longest shared substring {r['longest']} characters, at "
        f"line {r['line']}, column {r['column']} of the training text: {shown!r}; "
        f"{r[f'copied_{RUN}']:.1%} of its {r['chars']} characters lie in shared runs of "
        f"{RUN} or more"
    )


# --- the cached index of a run's training text ---------------------------------------


class _Stale(Exception):
    """The cache cannot be used (the message says why; empty: there is none yet)."""


def index_for(loaded: LoadedModel, on_info: Callable[[str], None] | None = None) -> NoveltyIndex:
    """The index of the train split of the dataset ``loaded``'s run was trained on, from
    the cache or built now (and cached)."""
    data = (loaded.config or {}).get("data")
    if not data:
        raise CharrnnError(
            f"{loaded.path} names no training data (a .safetensors file carries "
            "none): the novelty report needs a run directory whose dataset is "
            "still there"
        )
    if not (Path(data) / "meta.json").is_file():
        raise CharrnnError(
            f"the novelty report needs the run's training text, but its dataset "
            f"{data} (config.yaml's data) is gone; prepare it again there, or "
            "sample without --novelty"
        )
    return dataset_index(data, on_info)


def dataset_index(data: StrPath, on_info: Callable[[str], None] | None = None) -> NoveltyIndex:
    """The index of the train split of the prepared dataset ``data``, from the cache or
    built now (and cached); ``on_info`` hears what takes time (default: logging)."""
    on_info = on_info or log.info
    path = Path(data)
    ds = load_dataset(path)
    key = hashlib.sha256((path / "meta.json").read_bytes() + (path / "vocab.json").read_bytes())
    folder = cache_root() / key.hexdigest()[:32]
    try:
        return _open(folder, ds)
    except _Stale as e:
        if str(e):
            on_info(
                f"The cached novelty index in {folder} does not match its dataset ({e}); "
                "building it again"
            )
    chars = int(ds.meta.get("splits", {}).get("train", {}).get("chars", 0))
    on_info(
        f"Indexing the training text of {data} for the novelty report (once; cached in "
        f"{folder}): {chars:,} characters, ~{max(1, chars * SECONDS_PER_BYTE * 1.5):.0f} s "
        f"and ~{chars * PEAK_PER_SYMBOL / 1e9:.1f} GB of memory"
    )
    t = time.perf_counter()
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    except OSError:  # no cache (read-only home, full disk): index in the temporary folder
        pass
    try:
        if tmp is None:
            tmp = Path(tempfile.mkdtemp(prefix="charrnn-novelty-"))
            _build(tmp, ds, on_info)
            return _open(tmp, ds)  # open, so the files outlive the folder removed below
        _build(tmp, ds, on_info)
        try:
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(tmp, folder)
            tmp = None
        except OSError:
            return _open(tmp, ds)
        index = _open(folder, ds)
        on_info(f"Novelty index ready in {time.perf_counter() - t:.1f} s")
        return index
    except _Stale as e:  # would mean a bug here, never bad input
        raise RuntimeError(f"internal error: the index just built does not open ({e})") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _fingerprint(path: StrPath) -> str:
    """The size, .npy header and 64 blocks spread over ``path``: cheap to read, and
    different for another text (a full hash would read all of it on every report)."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for at in sorted({0, *np.linspace(0, max(0, size - 4096), 64).astype(np.int64).tolist()}):
            f.seek(at)
            h.update(f.read(4096))
    return h.hexdigest()


def _array(path, dtypes, length=None, whole=False):
    """The 1-D .npy ``path`` (``whole``: read into memory, else a FileReader) if its dtype
    is one of ``dtypes`` and its size is exactly what its header says (and ``length`` when
    given); else _Stale."""
    try:
        shape, dtype, offset = npy_header(path)
        if (
            len(shape) != 1
            or dtype not in [np.dtype(d) for d in dtypes]
            or (length is not None and shape[0] != length)
            or os.path.getsize(path) != offset + shape[0] * dtype.itemsize
        ):
            raise _Stale(f"{path.name} is not the array it should be")
        return np.load(path, allow_pickle=False) if whole else FileReader(path)
    except (OSError, ValueError) as e:
        raise _Stale(f"{path.name}: {e}") from None


def _open(folder: Path, ds: Dataset) -> NoveltyIndex:
    try:
        info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _Stale("") from None
    except (OSError, ValueError) as e:
        raise _Stale(f"index.json: {e}") from None
    if (
        not isinstance(info, dict)
        or info.get("format") != FORMAT
        or not all(isinstance(info.get(k), int) for k in ("symbols", "vocab", "lines"))
    ):
        raise _Stale(f"index.json is not {FORMAT}")
    train = Path(ds.path) / "train.npy"
    if info.get("train") != _fingerprint(train):
        raise _Stale("its train.npy is not the one the index was built from")
    n, v = info["symbols"], info["vocab"]
    text = _array(
        folder / "text.npy" if info.get("text") == "cache" else train, ("u1", "<u2", "<u4"), n
    )
    sa = _array(folder / "sa.npy", ("<i4",) if n < 1 << 31 else ("<i8",), n)
    rank = _array(folder / "rank.npy", ("<i4",), v, whole=True)
    alphabet = _array(folder / "alphabet.npy", ("<u4",), v, whole=True)
    lines = _array(folder / "lines.npy", ("<i8",), info["lines"])
    if not np.array_equal(np.sort(rank), np.arange(v)) or (
        v > 1 and not (np.diff(np.sort(alphabet).astype(np.int64)) > 0).all()
    ):
        raise _Stale("rank.npy or alphabet.npy is not a numbering of the characters")
    index = NoveltyIndex(text, sa, rank, alphabet, lines, str(ds.path))
    if not index.suffixes.check_order():
        raise _Stale("its suffix array is out of order")
    return index


def _build(folder: Path, ds: Dataset, on_info: Callable[[str], None]) -> None:
    """Write the index of ``ds``'s train split into ``folder``: the suffix array and, for a
    jamo vocabulary, the decoded text numbered (text.npy)."""
    train = Path(ds.path) / "train.npy"
    if ds.vocab.jamo:
        text_path, alphabet = folder / "text.npy", _number_characters(ds, folder / "text.npy")
    else:
        text_path, alphabet = train, ds.vocab.code_points
    counts = np.zeros(len(alphabet), np.int64)
    newline = np.flatnonzero(alphabet == 10)
    starts, at = [], 0
    for ids in npy_chunks(text_path):
        if len(ids) and int(ids.max()) >= len(alphabet):
            raise CharrnnError(
                f"{train} holds id {int(ids.max())}, outside its vocabulary of "
                f"{len(alphabet)} symbols; prepare the dataset again"
            )
        counts += np.bincount(ids, minlength=len(alphabet))
        if len(newline):
            starts.append(np.flatnonzero(ids == newline[0]) + at + 1)
        at += len(ids)
    lines = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    np.save(folder / "lines.npy", lines.astype(np.int64))
    del starts, lines
    rank = sort_suffixes(text_path, counts, folder / "sa.npy", on_info)
    np.save(folder / "rank.npy", rank.astype(np.int32))
    np.save(folder / "alphabet.npy", np.asarray(alphabet, np.uint32))
    write_json_atomic(
        folder / "index.json",
        {
            "format": FORMAT,
            "symbols": at,
            "vocab": len(alphabet),
            "lines": int(counts[newline].sum()),
            "text": "cache" if ds.vocab.jamo else "dataset",
            "train": _fingerprint(train),
        },
    )


def _number_characters(ds: Dataset, out: Path) -> np.ndarray:
    """Write the train split's decoded characters to ``out`` as numbers (indices into the
    returned sorted code points): two passes over the ids, a chunk at a time."""
    train = Path(ds.path) / "train.npy"

    def chars() -> Iterator[np.ndarray]:
        dec = ds.vocab.stream_decoder()
        for ids in npy_chunks(train):
            yield to_cps(dec.feed(ids))
        yield to_cps(dec.flush())

    alphabet, n = np.zeros(0, np.uint32), 0
    for cps in chars():
        alphabet, n = np.union1d(alphabet, cps).astype(np.uint32), n + len(cps)
    if len(alphabet) > 1 << 16:
        raise CharrnnError(
            f"the novelty index handles up to 65,536 distinct characters; "
            f"{train} has {len(alphabet):,}"
        )
    write_npy(out, np.uint16, n, (np.searchsorted(alphabet, cps) for cps in chars()))
    return alphabet
