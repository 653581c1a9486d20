"""`charrnn prepare`: text files in, a dataset directory (charrnn.store.dataset) out.

prepare makes two passes over the input so its memory does not grow with the corpus:

1. decode each input in chunks (text.iter_text), append the code points to a
   temporary file (4 bytes each) and count them;
2. once the counts are known (vocabulary, jamo decision, dtype, split sizes),
   read the code points back in chunks, decompose Hangul if jamo is on, map
   them to ids through a lookup table and append them to the .npy files.

Everything is written into a temporary directory beside the output and renamed
into place at the end, so a failure or Ctrl-C leaves nothing half written and
--force replaces an old dataset only once the new one is complete.

Splits are contiguous and counted in original characters: train is the first
1 - val - test of the characters, val the next val fraction, test the tail, so
a boundary never cuts a character (or a syllable's jamo) in two.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from charrnn import __version__
from charrnn.atomic import StrPath, write_json_atomic
from charrnn.errors import CharrnnError
from charrnn.store.dataset import FORMAT, SPLITS, is_dataset
from charrnn.store.prepare_vocab import (
    auto_jamo,
    base_vocab,
    extend_vocab,
    make_vocab,
    rare_symbols,
)
from charrnn.text import MAX_CP, decompose_cps, iter_text
from charrnn.text.jamo import extra_symbols, extra_symbols_table

JAMO_MODES = ("auto", "on", "off")
MIN_SPLIT_CHARS = 2  # a split needs at least one input/target pair
FLUSH_CHARS = 1 << 20  # pass 1 counts and stores decoded text in chunks of about this many


# --- inputs and output ----------------------------------------------------------


def _hidden(name):
    return name.startswith(".")


def _walk(top, include):
    """(relative path, path) of the non-empty, non-hidden files under ``top`` matching
    ``include``, sorted by relative path.  One stat per file kept (os.scandir's entries
    say which are files and directories), none per file skipped: a tree of tens of
    thousands of files is listed in a fraction of a second."""
    found = []
    stack = [("", top)]
    while stack:
        rel_dir, path = stack.pop()
        try:
            it = os.scandir(path)
        except OSError:
            continue  # unreadable, as os.walk would skip it
        with it:
            for e in it:
                if _hidden(e.name):
                    continue  # .git and friends
                rel = rel_dir + e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", e.path))
                elif e.is_file():
                    if include and not any(
                        fnmatch.fnmatchcase(e.name, g) or fnmatch.fnmatchcase(rel, g)
                        for g in include
                    ):
                        continue
                    if e.stat().st_size == 0:
                        continue  # an empty __init__.py is no reason to fail a whole tree
                    found.append((rel, e.path))
    found.sort()
    return found


def expand_inputs(inputs: Sequence[StrPath], include: Sequence[str] = ()) -> list[StrPath]:
    """Files, directories (recursive, sorted, filtered by ``include`` globs) and ``-``."""
    if not inputs:
        raise CharrnnError("no input given; pass a file, a directory or - for standard input")
    files = []
    for p in inputs:
        if p == "-":
            if "-" in files:
                raise CharrnnError("- (standard input) can be given only once")
            files.append(p)
        elif os.path.isdir(p):
            found = _walk(os.fspath(p), include)
            if not found:
                what = f"matching {' '.join(include)}" if include else "non-empty, non-hidden"
                raise CharrnnError(
                    f"directory {p} has no {what} files; check the path or pass "
                    "--include globs such as '*.txt' '*.c'"
                )
            files.extend(full for _, full in found)
        elif os.path.exists(p):
            files.append(p)
        else:
            raise CharrnnError(f"{p} does not exist; check the path")
    return files


def default_out(inputs: Sequence[StrPath]) -> str:
    """data/<stem of the first input>: data/corpus for corpus.txt, data/stdin for -."""
    first = inputs[0] if inputs else "-"
    if first == "-":
        stem = "stdin"
    elif os.path.isdir(first):
        stem = os.path.basename(os.path.abspath(first)) or "corpus"
    else:
        name = os.path.basename(first)
        stem = os.path.splitext(name)[0] or name
    return os.path.join("data", stem)


def _check_out(out, files, force):
    out_abs = os.path.realpath(out)
    for f in files if os.path.lexists(out) else ():  # nothing is inside what does not exist
        if f != "-":
            real = os.path.realpath(f)
            if real == out_abs or real.startswith(out_abs + os.sep):
                raise CharrnnError(f"input {f} is inside the output {out}; choose another -o")
    if os.path.lexists(out):
        if not force:
            raise CharrnnError(
                f"{out} already exists; pass --force to replace it, or choose another -o"
            )
        empty_dir = os.path.isdir(out) and not os.listdir(out)
        if not (is_dataset(out) or empty_dir):
            raise CharrnnError(
                f"{out} exists and is not a prepared dataset, so even --force will "
                "not replace it; choose another -o"
            )


# --- writing --------------------------------------------------------------------


def _npy(path, dtype, n):
    """An open .npy file whose header promises ``n`` items; the data is appended after it."""
    f = open(path, "wb")
    np.lib.format.write_array_header_1_0(
        f,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": (int(n),),
        },
    )
    return f


def _split_chars(chars, val_fraction, test_fraction):
    n_val = int(round(chars * val_fraction))
    n_test = int(round(chars * test_fraction))
    n_train = chars - n_val - n_test
    for name, n, frac in (
        ("train", n_train, 1.0),
        ("val", n_val, val_fraction),
        ("test", n_test, test_fraction),
    ):
        if frac > 0 and n < MIN_SPLIT_CHARS:
            need = int(np.ceil(MIN_SPLIT_CHARS / frac)) if name != "train" else "more"
            raise CharrnnError(
                f"the corpus ({chars} characters) is too small for the requested "
                f"split: {name} would get {n} characters; add text (at least {need} "
                "characters) or lower --val-fraction/--test-fraction"
            )
    return [n_train, n_val, n_test]


def _code_points_and_counts(text):
    """``(code points in the narrowest dtype, bincount)`` of one decoded chunk."""
    try:
        u8 = np.frombuffer(text.encode("latin-1"), np.uint8)  # every character < 256
    except UnicodeEncodeError:
        c = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        h = np.bincount(c)
        return (c.astype(np.uint16) if len(h) <= 1 << 16 else c), h
    # np.bincount costs about the same per item whatever the dtype, so count byte pairs
    # (half as many items) and add up the rows and columns of the 256 x 256 table
    half = len(u8) // 2
    pairs = np.bincount(u8[: 2 * half].view("<u2"), minlength=1 << 16).reshape(256, 256)
    h = pairs.sum(axis=0) + pairs.sum(axis=1)
    if len(u8) % 2:
        h[u8[-1]] += 1
    return u8, h


def _bar(progress, total, unit, desc):
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit=unit,
        unit_scale=True,
        desc=desc,
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )


def _read_inputs(files, raw, progress, **decode):
    """Pass 1: decode every input into ``raw`` chunk by chunk, counting code points.

    The temporary file holds each chunk in the narrowest dtype that fits it
    (1, 2 or 4 bytes a character), logged as (chars, itemsize, extra jamo symbols).
    """
    counts = np.zeros(MAX_CP, np.int64)
    extra = extra_symbols_table()  # int64, indexed by code point up to U+E000
    chunk_log, infos, pending = [], [], []

    def flush() -> None:
        # small files' texts are gathered into one chunk: NumPy's per-call costs are paid
        # per chunk, not per file
        c, h = _code_points_and_counts("".join(pending))
        pending.clear()
        counts[: len(h)] += h
        h = h[: len(extra)]
        chunk_log.append((len(c), c.itemsize, int(h @ extra[: len(h)])))
        raw.write(memoryview(c))

    total = None
    if progress and "-" not in files:
        total = sum(os.path.getsize(f) for f in files)
    with _bar(progress, total, "B", "reading") as bar:
        n_pending = 0
        for path in files:
            info, n_file = {}, 0
            for text in iter_text(path, info=info, on_bytes=bar.update, **decode):
                pending.append(text)
                n_pending += len(text)
                n_file += len(text)
                if n_pending >= FLUSH_CHARS:
                    flush()
                    n_pending = 0
            if n_file == 0:
                raise CharrnnError(
                    f"{info.get('path', path)} contains no text; remove it from the inputs"
                )
            infos.append(info)
        if pending:
            flush()
    return counts, chunk_log, infos


def _iter_chunks(raw, chunk_log):
    raw.seek(0)
    for n, size, _ in chunk_log:
        yield np.frombuffer(raw.read(n * size), f"<u{size}")


def _syms_before(raw, chunk_log, char_pos):
    """Symbol offset of character ``char_pos`` under jamo, from the per-chunk log."""
    chars = syms = offset = 0
    for n, size, extra in chunk_log:
        if char_pos < chars + n:
            raw.seek(offset)
            head = np.frombuffer(raw.read((char_pos - chars) * size), f"<u{size}")
            return syms + len(head) + extra_symbols(head)
        chars, syms, offset = chars + n, syms + n + extra, offset + n * size
    return syms


def _write_ids(raw, chunk_log, outs, char_bounds, vocab, lut, progress):
    """Pass 2: code points -> ids, appended to the split files; returns symbols written."""
    # For text with every code point < 256, bytes.translate beats a NumPy gather.
    table = lut.tobytes().ljust(256, b"\0") if len(lut) <= 256 and not vocab.jamo else None
    written = [0] * len(outs)
    pos, k = 0, 0
    with _bar(progress, char_bounds[-1], "char", "writing") as bar:
        for c in _iter_chunks(raw, chunk_log):
            i = 0
            while i < len(c):
                while pos + i >= char_bounds[k + 1]:
                    k += 1
                j = min(len(c), char_bounds[k + 1] - pos)
                seg = c[i:j]
                if table is not None and seg.dtype == np.uint8:
                    ids = np.frombuffer(seg.tobytes().translate(table), np.uint8)
                else:
                    ids = lut[decompose_cps(seg) if vocab.jamo else seg]
                outs[k].write(memoryview(ids))
                written[k] += len(ids)
                i = j
            pos += len(c)
            bar.update(len(c))
    return written


def _write_dataset(
    tmp,
    files,
    *,
    jamo,
    min_count,
    val_fraction,
    test_fraction,
    progress,
    base=None,
    base_path=None,
    **decode,
):
    with tempfile.TemporaryFile(dir=tmp) as raw:  # gone even if we are killed
        counts, chunk_log, infos = _read_inputs(files, raw, progress, **decode)
        chars = int(counts.sum())
        if base is None:
            applied, why = auto_jamo(counts) if jamo == "auto" else (jamo == "on", None)
            vocab, lut, unk_replaced = make_vocab(counts, applied, min_count)
        else:  # --vocab-from: the run's jamo setting
            (vocab, lut, unk_replaced), why = extend_vocab(counts, base, min_count), None
        split_chars = _split_chars(chars, val_fraction, test_fraction)
        char_bounds = np.cumsum([0] + split_chars).tolist()
        if vocab.jamo:
            sym_bounds = [_syms_before(raw, chunk_log, p) for p in char_bounds]
        else:
            sym_bounds = char_bounds
        split_syms = np.diff(sym_bounds).tolist()
        outs = [
            _npy(os.path.join(tmp, f"{s}.npy"), lut.dtype, n) for s, n in zip(SPLITS, split_syms)
        ]
        try:
            written = _write_ids(raw, chunk_log, outs, char_bounds, vocab, lut, progress)
        finally:
            for f in outs:
                f.close()
    if written != split_syms:  # would mean a bug here, never bad input
        raise RuntimeError(f"internal error: wrote {written} symbols, expected {split_syms}")

    vocab.save(os.path.join(tmp, "vocab.json"))
    meta = {
        "format": FORMAT,
        "charrnn_version": __version__,
        "inputs": infos,
        "newlines": decode["newlines"],
        "jamo": {"requested": jamo, "applied": vocab.jamo, **({"why": why} if why else {})},
        "chars": chars,
        "symbols": int(sym_bounds[-1]),
        "dtype": lut.dtype.name,
        "min_count": int(min_count),
        "unk_replaced": unk_replaced,
        "split": {
            "method": "contiguous",
            "val_fraction": float(val_fraction),
            "test_fraction": float(test_fraction),
        },
        "splits": {
            s: {"symbols": int(n), "chars": int(m)}
            for s, n, m in zip(SPLITS, split_syms, split_chars)
        },
    }
    if base is not None:
        meta["vocab_from"] = {
            "path": base_path,
            "symbols": len(base),
            "added": len(vocab) - len(base),
        }
    else:  # with --vocab-from the run's symbols are kept whatever their counts here
        meta["rare_symbols"] = rare_symbols(vocab, min_count)
    write_json_atomic(os.path.join(tmp, "meta.json"), meta)
    return meta, vocab


def prepare(
    inputs: Sequence[StrPath],
    out: StrPath | None = None,
    *,
    include: Sequence[str] = (),
    encoding: str | None = None,
    errors: str = "strict",
    newlines: str = "lf",
    jamo: str = "auto",
    min_count: int = 1,
    val_fraction: float = 0.05,
    test_fraction: float = 0.0,
    force: bool = False,
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
    vocab_from: StrPath | None = None,
) -> dict:
    """Turn text inputs into a dataset directory; returns the summary (meta + out, vocab_size).

    ``vocab_from``: a run (or dataset) directory whose vocabulary is kept, ids and all,
    and extended with this corpus' other symbols (for fine-tuning that run).

    Raises CharrnnError for bad input, leaving nothing behind.
    """
    if jamo not in JAMO_MODES:
        raise CharrnnError(f"jamo must be one of {', '.join(JAMO_MODES)}")
    if min_count < 1:
        raise CharrnnError("--min-count must be at least 1")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise CharrnnError(
            "--val-fraction and --test-fraction must be in [0, 1) and leave some text for training"
        )
    files = expand_inputs(inputs, include)
    out = out or default_out(inputs)
    _check_out(out, files, force)
    base = base_vocab(vocab_from, jamo, newlines) if vocab_from else None

    out_abs = os.path.abspath(out)
    parent = os.path.dirname(out_abs)
    created = parent
    while not os.path.exists(os.path.dirname(created)):
        created = os.path.dirname(created)
    created = None if os.path.exists(parent) else created
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_abs)}.tmp-", dir=parent)
    except OSError as e:
        raise CharrnnError(
            f"cannot create the output {out}: {e.strerror}; choose another -o"
        ) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(
            tmp, 0o777 & ~umask
        )  # mkdtemp makes it private; a dataset is an ordinary directory
        meta, vocab = _write_dataset(
            tmp,
            files,
            encoding=encoding,
            errors=errors,
            newlines=newlines,
            on_warning=on_warning,
            jamo=jamo,
            min_count=min_count,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            progress=progress,
            base=base,
            base_path=os.fspath(vocab_from) if base else None,
        )
        if os.path.lexists(out_abs):  # --force: swap, then drop the old one
            old = tmp + ".old"
            os.rename(out_abs, old)
            try:
                os.rename(tmp, out_abs)
            except OSError:
                os.rename(old, out_abs)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_abs)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(created, ignore_errors=True)  # only directories we made just now
        if isinstance(e, OSError) and not isinstance(e, CharrnnError):
            raise CharrnnError(
                f"cannot write {out}: {e.strerror or e}; check free space and permissions"
            ) from None
        raise
    return {"out": out, "vocab_size": len(vocab), **meta}
