"""A suffix array over a text of symbol ids, built with bounded memory, and the longest-match
query on it that reads only the pieces it needs (charrnn.analysis.novelty uses both).

Building.  libdivsufsort (pydivsufsort) sorts bytes.  Ids of a vocabulary past 256 symbols
are written as a byte code first: the commonest symbols one byte each (as many as leave
room: 255 of 300 symbols, 222 of 8,779), the rest two bytes, a prefix-free code whose
byte order is the order of the symbols' ranks.  The suffixes that start at a code's first
byte then sort exactly as the symbol strings do (rank order,
a shorter string first), so after the sort the array keeps those entries, mapped back to
symbol positions.  Peak memory: the coded text (n + r bytes for n symbols, r of them with
two-byte codes), its byte suffix array (4 bytes each, 8 past 2**31 bytes) and r positions
(4 bytes each): ``PEAK_PER_SYMBOL`` = 5 bytes a symbol when r is small (source code, English),
at most 14 bytes when every symbol takes two.  The ids are read from their .npy file in
chunks (no memory map, so nothing of them stays resident) and the result is written to
disk in chunks, 32-bit when the text has fewer than 2**31 symbols.

Querying.  For every position of a sample at once, a binary search (all positions in
lockstep) finds where the rest of the sample would sort among the suffixes; the longest
prefix it shares with the text is shared with one of the two suffixes beside that place.
Each step reads one suffix-array entry and a few text symbols per position, so a report on
a sample of m characters reads O(m log n) small pieces of the files.  They are read with
pread, not through a memory map: on kernels that cache files in large folios (Linux 6.x)
one touch of a mapped page maps up to 2 MB, and the scattered touches of one report mapped
most of the files (measured: 77 MB of resident memory for one report on 28 M characters).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import CharrnnError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

    from charrnn.atomic import StrPath

CHUNK = 1 << 18  # items a pass handles at a time: a few MB of temporaries
MAX_SYMBOLS = 1 << 16  # the byte code has room for this many distinct symbols
PEAK_PER_SYMBOL = 5  # bytes a symbol while sorting, when few symbols need 2 bytes
SECONDS_PER_BYTE = 1.5e-7  # libdivsufsort: 3.5 s for 50 MB of .py, 52 s for 196 MB (busy)
EXTRA = "pip install 'charrnn-lab[novelty]'"


# --- reading ids from a .npy without keeping them mapped -------------------------


def npy_header(path: StrPath) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the data) of the .npy file ``path`` (no pickle: object
    arrays are refused)."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(f)
        if dtype.hasobject or fortran:
            raise ValueError(f"{path} is not a plain array")
        return shape, dtype, f.tell()


def npy_chunks(path: StrPath, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """The 1-D array in ``path``, ``chunk`` items at a time, by plain reads."""
    shape, dtype, offset = npy_header(path)
    if len(shape) != 1:
        raise ValueError(f"{path} is not a 1-D array")
    with open(path, "rb") as f:
        f.seek(offset)
        for start in range(0, shape[0], chunk):
            part = np.fromfile(f, dtype, count=min(chunk, shape[0] - start))
            if len(part) != min(chunk, shape[0] - start):
                raise ValueError(f"{path} is truncated")
            yield part


# --- the byte code -----------------------------------------------------------------


def byte_code(counts: ArrayLike) -> tuple[np.ndarray, int]:
    """``(rank, k)``: rank[id] orders the symbols by count (commonest first, ties by id);
    ranks below k get one byte (the rank), the others two (k + (r-k) // 256, (r-k) % 256)."""
    v = len(counts)
    if v > MAX_SYMBOLS:
        raise CharrnnError(
            f"the novelty index handles up to {MAX_SYMBOLS:,} distinct "
            f"characters; this text has {v:,}"
        )
    k = 256 if v <= 256 else (MAX_SYMBOLS - v) // 255  # the most one-byte codes that leave room
    order = np.argsort(-np.asarray(counts, np.int64), kind="stable")
    rank = np.empty(v, np.int32)
    rank[order] = np.arange(v, dtype=np.int32)
    return rank, k


def _encode(
    chunks: Iterable[np.ndarray], coded_len: int, rank: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The coded text (uint8, ``coded_len`` bytes) and the sorted byte positions where
    two-byte codes start."""
    out, at, two = np.empty(coded_len, np.uint8), 0, []
    for ids in chunks:
        r = rank[ids]
        wide = np.flatnonzero(r >= k)
        need = at + len(r) + len(wide)
        if need > coded_len:
            raise ValueError("the ids changed while they were read")
        if len(wide):
            starts = wide + np.arange(len(wide))  # each earlier two-byte code shifts it by one
            first = np.ones(len(r) + len(wide), bool)
            first[starts + 1] = False
            view = out[at:need]
            view[np.flatnonzero(first)] = np.where(r >= k, k + (r - k) // 256, r)
            view[starts + 1] = (r[wide] - k) % 256
            two.append(at + starts)
        else:
            out[at:need] = r
        at = need
    if at != coded_len:
        raise ValueError("the ids changed while they were read")
    wide = np.concatenate(two) if two else np.zeros(0, np.int64)
    return out, wide.astype(np.uint32 if at < 1 << 32 else np.int64)


def write_npy(path: StrPath, dtype: DTypeLike, n: int, chunks: Iterable[ArrayLike]) -> int:
    """Write the 1-D .npy ``path`` of ``n`` items from ``chunks`` (arrays), a chunk at a
    time; returns how many were written."""
    written = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f,
            {
                "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                "fortran_order": False,
                "shape": (int(n),),
            },
        )
        for part in chunks:
            f.write(np.ascontiguousarray(part, dtype).tobytes())
            written += len(part)
    return written


def sort_suffixes(
    ids_path: StrPath,
    counts: np.ndarray,
    out_path: StrPath,
    on_info: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Write the suffix array of the ids in the .npy file ``ids_path`` (symbol ``i`` seen
    ``counts[i]`` times) to the .npy file ``out_path``; returns the rank order it uses."""
    try:
        from pydivsufsort import divsufsort
    except ImportError:
        raise CharrnnError(
            f"the novelty report needs the Python package 'pydivsufsort'; install it with {EXTRA}"
        ) from None
    shape, _, _ = npy_header(ids_path)
    n = int(shape[0])
    rank, k = byte_code(counts)
    coded, wide = _encode(npy_chunks(ids_path), n + int(np.sum(counts, where=rank >= k)), rank, k)
    if on_info:
        gb = (len(coded) * (5 if len(coded) < 1 << 31 else 9) + wide.nbytes) / 1e9
        on_info(
            f"Sorting the suffixes of {n:,} characters ({len(coded):,} bytes coded): one "
            f"call, ~{len(coded) * SECONDS_PER_BYTE:.0f} s, ~{gb:.1f} GB of memory"
        )
    t = time.perf_counter()
    sa = divsufsort(coded) if len(coded) else np.zeros(0, np.int32)
    del coded

    def symbol_positions() -> Iterator[
        np.ndarray
    ]:  # the byte positions where a code starts, as symbol positions
        for start in range(0, len(sa), CHUNK):
            p = sa[start : start + CHUNK].astype(np.int64)
            if not len(wide):
                yield p
                continue
            before = np.searchsorted(wide, p)  # two-byte codes that start before p
            second = (before > 0) & (wide[np.maximum(before - 1, 0)] == p - 1)
            yield (p - before)[~second]

    kept = write_npy(out_path, np.int32 if n < 1 << 31 else np.int64, n, symbol_positions())
    if kept != n:  # would mean a bug here, never bad input
        raise RuntimeError(f"internal error: kept {kept} suffixes of {n}")
    if on_info:
        on_info(f"Sorted in {time.perf_counter() - t:.1f} s")
    return rank


# --- querying ----------------------------------------------------------------------


class ArrayReader:
    """Rows of consecutive items of an in-memory 1-D array (zeros past its end)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.n = np.asarray(array), len(array)

    def rows(self, starts: np.ndarray, width: int) -> np.ndarray:
        pos = starts[:, None] + np.arange(width)
        return (
            np.where(pos < self.n, self.array[np.minimum(pos, max(0, self.n - 1))], 0)
            if self.n
            else np.zeros(pos.shape, np.int64)
        )


class FileReader:
    """Rows of consecutive items of the 1-D .npy ``path``, read with pread where asked
    (zeros past its end); nothing of the file stays in this process's memory."""

    def __init__(self, path: StrPath) -> None:
        shape, self.dtype, self.offset = npy_header(path)
        self.n = int(shape[0])
        self.fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)  # closed with the reader

    def rows(self, starts: np.ndarray, width: int) -> np.ndarray:
        item = self.dtype.itemsize
        uniq, inverse = np.unique(starts, return_inverse=True)
        size = width * item
        data = b"".join(
            os.pread(self.fd, size, self.offset + int(s) * item).ljust(size, b"\0") for s in uniq
        )
        return np.frombuffer(data, self.dtype).reshape(len(uniq), width)[inverse]


Reader = ArrayReader | FileReader  # what Suffixes reads its text and suffix array through


class Suffixes:
    """A text of ids and its suffix array (readers: ArrayReader or FileReader), and the
    rank order it was sorted in.  Sample symbols are given as ranks, -1 for one the text
    never has."""

    def __init__(self, text: Reader, sa: Reader, rank: ArrayLike) -> None:
        self.text, self.sa, self.n = text, sa, text.n
        self.rank = np.asarray(rank, np.int64)
        self.absent = len(self.rank)  # a sample symbol no text symbol equals

    def entries(self, i: ArrayLike) -> np.ndarray:
        return self.sa.rows(np.asarray(i, np.int64), 1)[:, 0].astype(np.int64)

    def values(self, starts: np.ndarray, width: int) -> np.ndarray:
        """The ranks of the text at starts[j] + 0..width-1 (a row each); -2 past its end."""
        ids = self.text.rows(starts, width).astype(np.int64)
        inside = (starts[:, None] + np.arange(width)) < self.n
        return np.where(inside, self.rank[np.minimum(ids, len(self.rank) - 1)], -2)

    def compare(
        self, q: np.ndarray, rows: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(lcp, suffix < pattern) of q[rows:] (q ends in -1) against the suffixes at
        ``starts``: compared a block of symbols at a time, doubling, until all differ."""
        lcp = np.zeros(len(rows), np.int64)
        less = np.zeros(len(rows), bool)
        active, done, width = np.arange(len(rows)), 0, 8
        end = len(q) - 1
        while len(active):
            a = q[np.minimum(rows[active, None] + done + np.arange(width), end)]
            b = self.values(starts[active] + done, width)
            neq = a != b
            hit = neq.any(1)
            first = neq.argmax(1)
            pick = np.flatnonzero(hit)
            lcp[active[pick]] = done + first[pick]
            less[active[pick]] = b[pick, first[pick]] < a[pick, first[pick]]
            active, done, width = active[~hit], done + width, width * 2
        return lcp, less

    def longest(self, sample_ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per position i: (length of the longest prefix of sample[i:] found in the text,
        a text position where it starts, -1 if none)."""
        m = len(sample_ranks)
        if m == 0 or self.n == 0:
            return np.zeros(m, np.int64), np.full(m, -1, np.int64)
        q = np.append(np.where(sample_ranks < 0, self.absent, sample_ranks), -1).astype(np.int64)
        rows = np.arange(m)
        lo, hi = np.zeros(m, np.int64), np.full(m, self.n, np.int64)
        while True:  # every position's lower bound among the suffixes, in lockstep
            act = np.flatnonzero(lo < hi)
            if not len(act):
                break
            mid = (lo[act] + hi[act]) // 2
            _, less = self.compare(q, act, self.entries(mid))
            lo[act[less]] = mid[less] + 1
            hi[act[~less]] = mid[~less]
        best, where = np.zeros(m, np.int64), np.full(m, -1, np.int64)
        for side in (lo - 1, lo):  # the suffixes just before and at that place
            ok = (side >= 0) & (side < self.n)
            starts = self.entries(side[ok])
            lcp, _ = self.compare(q, rows[ok], starts)
            better = lcp > best[ok]
            best[rows[ok][better]] = lcp[better]
            where[rows[ok][better]] = starts[better]
        return best, where

    def check_order(self, points: int = 32, span: int = 256) -> bool:
        """A spot check of a stored array: at ``points`` places, entries inside the text
        and each suffix sorting before the next.  False if any is out of place."""
        if self.n < 2:
            return self.n == 0 or int(self.entries([0])[0]) == 0
        at = np.unique(np.linspace(0, self.n - 2, points).astype(np.int64))
        first, second = self.entries(at), self.entries(at + 1)
        if min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= self.n:
            return False
        a, b = self.values(first, span), self.values(second, span)
        neq = a != b
        i, rows = neq.argmax(1), np.arange(len(at))
        return bool((~neq.any(1) | (a[rows, i] < b[rows, i])).all())
