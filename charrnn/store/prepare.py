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

import fnmatch
import os
import shutil
import sys
import tempfile

import numpy as np

from charrnn import __version__
from charrnn.atomic import read_json, write_json_atomic
from charrnn.errors import CharrnnError
from charrnn.store import loader, rundir
from charrnn.store.dataset import FORMAT, SPLITS, is_dataset
from charrnn.text import MAX_CP, N_SYLLABLES, S_BASE, UNK, Vocab, decompose_cps, iter_text
from charrnn.text.jamo import extra_symbols, extra_symbols_table, jamo_counts

JAMO_MODES = ("auto", "on", "off")
# --jamo auto (README, "Korean: the jamo scheme"): jamo when Hangul syllables are at least 10%
# of the characters, except where syllables measured better: mostly Hangul text (jamo spend 2-3
# predictions on each syllable) of few distinct syllables, and enough of it.
AUTO_JAMO_SHARE = 0.10
AUTO_SYLLABLES_SHARE = 0.45   # syllables won at 50% and 65% Hangul, jamo at 38%
AUTO_SYLLABLES_MAX = 1000     # distinct syllables: at most 835 where syllables were measured
AUTO_SYLLABLES_MIN = 20_000   # syllables in the text: at least 23,000 where they were measured
MIN_SPLIT_CHARS = 2  # a split needs at least one input/target pair


# --- inputs and output ----------------------------------------------------------

def _hidden(name):
    return name.startswith(".")


def expand_inputs(inputs, include=()):
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
            found = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not _hidden(d))  # skip .git and friends
                for name in names:
                    full = os.path.join(root, name)
                    rel = os.path.relpath(full, p).replace(os.sep, "/")
                    if _hidden(name) or not os.path.isfile(full):
                        continue
                    if include and not any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(rel, g)
                                           for g in include):
                        continue
                    if os.path.getsize(full) == 0:
                        continue  # an empty __init__.py is no reason to fail a whole tree
                    found.append((rel, full))
            if not found:
                what = f"matching {' '.join(include)}" if include else "non-empty, non-hidden"
                raise CharrnnError(f"directory {p} has no {what} files; check the path or pass "
                                   "--include globs such as '*.txt' '*.c'")
            files.extend(full for _, full in sorted(found))
        elif os.path.exists(p):
            files.append(p)
        else:
            raise CharrnnError(f"{p} does not exist; check the path")
    return files


def default_out(inputs):
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
    for f in files:
        if f != "-":
            real = os.path.realpath(f)
            if real == out_abs or real.startswith(out_abs + os.sep):
                raise CharrnnError(f"input {f} is inside the output {out}; choose another -o")
    if os.path.lexists(out):
        if not force:
            raise CharrnnError(f"{out} already exists; pass --force to replace it, or choose "
                               "another -o")
        empty_dir = os.path.isdir(out) and not os.listdir(out)
        if not (is_dataset(out) or empty_dir):
            raise CharrnnError(f"{out} exists and is not a prepared dataset, so even --force will "
                               "not replace it; choose another -o")


# --- writing --------------------------------------------------------------------

def _npy(path, dtype, n):
    """An open .npy file whose header promises ``n`` items; the data is appended after it."""
    f = open(path, "wb")
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                             "fortran_order": False, "shape": (int(n),)})
    return f


def _dtype_for(n):
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)


def _split_chars(chars, val_fraction, test_fraction):
    n_val = int(round(chars * val_fraction))
    n_test = int(round(chars * test_fraction))
    n_train = chars - n_val - n_test
    for name, n, frac in (("train", n_train, 1.0), ("val", n_val, val_fraction),
                          ("test", n_test, test_fraction)):
        if frac > 0 and n < MIN_SPLIT_CHARS:
            need = int(np.ceil(MIN_SPLIT_CHARS / frac)) if name != "train" else "more"
            raise CharrnnError(f"the corpus ({chars} characters) is too small for the requested "
                               f"split: {name} would get {n} characters; add text (at least {need} "
                               "characters) or lower --val-fraction/--test-fraction")
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
    pairs = np.bincount(u8[:2 * half].view("<u2"), minlength=1 << 16).reshape(256, 256)
    h = pairs.sum(axis=0) + pairs.sum(axis=1)
    if len(u8) % 2:
        h[u8[-1]] += 1
    return u8, h


def _bar(progress, total, unit, desc):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, file=sys.stderr,
                disable=not progress, leave=False)


def _read_inputs(files, raw, progress, **decode):
    """Pass 1: decode every input into ``raw`` chunk by chunk, counting code points.

    The temporary file holds each chunk in the narrowest dtype that fits it
    (1, 2 or 4 bytes a character), logged as (chars, itemsize, extra jamo symbols).
    """
    counts = np.zeros(MAX_CP, np.int64)
    extra = extra_symbols_table()  # int64, indexed by code point up to U+E000
    chunk_log, infos = [], []
    sizes = [os.path.getsize(f) for f in files if f != "-"]
    total = sum(sizes) if len(sizes) == len(files) else None
    with _bar(progress, total, "B", "reading") as bar:
        for path in files:
            info, n_file = {}, 0
            for text in iter_text(path, info=info, on_bytes=bar.update, **decode):
                c, h = _code_points_and_counts(text)
                counts[:len(h)] += h
                h = h[:len(extra)]
                chunk_log.append((len(c), c.itemsize, int(h @ extra[:len(h)])))
                raw.write(memoryview(c))
                n_file += len(c)
            if n_file == 0:
                raise CharrnnError(f"{info.get('path', path)} contains no text; remove it from "
                                   "the inputs")
            infos.append(info)
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


def auto_jamo(counts):
    """``--jamo auto``'s choice from the code point counts: ``(on, why)``, ``why`` None
    for text without Hangul."""
    syl = counts[S_BASE:S_BASE + N_SYLLABLES]
    n, distinct = int(syl.sum()), int(np.count_nonzero(syl))
    if not n:
        return False, None
    share = n / int(counts.sum())
    seen = f"Hangul syllables {share:.0%} of the characters, {n:,} of them, {distinct:,} distinct"
    if share < AUTO_JAMO_SHARE:
        return False, f"{seen}: too little Hangul to split"
    if share < AUTO_SYLLABLES_SHARE:
        return True, f"{seen}: jamo, which train better on text this mixed"
    if distinct > AUTO_SYLLABLES_MAX:
        return True, f"{seen}: jamo, for so many distinct syllables"
    if n < AUTO_SYLLABLES_MIN:
        return True, f"{seen}: jamo, for so little text"
    return False, f"{seen}: whole syllables, which train better on such text"


def _make_vocab(counts, applied, min_count):
    """``(vocab, lookup table code point -> id, symbols replaced by unknown)``, split into jamo
    if ``applied``."""
    sym_counts = jamo_counts(counts) if applied else counts
    present = np.flatnonzero(sym_counts)
    rare = present[(sym_counts[present] < min_count) & (present != ord(UNK))]
    keep = present[sym_counts[present] >= min_count]
    unk_replaced = int(sym_counts[rare].sum())
    unk_id = None
    vocab_counts = sym_counts[keep]
    if len(rare):
        if not len(keep[keep != ord(UNK)]):
            raise CharrnnError(f"--min-count {min_count} leaves no symbol in the vocabulary "
                               "(every symbol is rarer); lower --min-count")
        keep = np.union1d(keep, [ord(UNK)])
        vocab_counts = sym_counts[keep].copy()
        unk_id = int(np.searchsorted(keep, ord(UNK)))
        vocab_counts[unk_id] += unk_replaced
    vocab = Vocab([chr(c) for c in keep], vocab_counts.tolist(), unk_id, applied)
    lut = np.zeros(int(max(present[-1], keep[-1])) + 1, _dtype_for(len(vocab)))
    lut[rare] = unk_id or 0
    lut[keep] = np.arange(len(keep))
    return vocab, lut, unk_replaced


def _extend_vocab(counts, base, min_count):
    """``_make_vocab`` for ``prepare --vocab-from``: ``base``'s symbols keep their ids
    (whether or not this corpus has them) and the corpus' other symbols follow, sorted
    by code point; new symbols rarer than ``min_count`` become the unknown symbol
    (the base's own, else U+FFFD added after them).  Counts are this corpus'."""
    sym_counts = jamo_counts(counts) if base.jamo else counts
    present = np.flatnonzero(sym_counts)
    new = present[~base.lookup(present.astype(np.uint32))[1]]
    rare = new[(sym_counts[new] < min_count) & (new != ord(UNK))]
    added = new[sym_counts[new] >= min_count]
    symbols = base.symbols + [chr(c) for c in added]
    unk_id = base.unk_id
    if len(rare) and unk_id is None:
        if UNK not in symbols:
            symbols.append(UNK)
        unk_id = symbols.index(UNK)
    unk_replaced = int(sym_counts[rare].sum())
    vocab = Vocab(symbols, None, unk_id, base.jamo)
    vocab.counts = sym_counts[vocab.code_points].tolist()
    if unk_id is not None:
        vocab.counts[unk_id] += unk_replaced
    lut = np.zeros(int(present[-1]) + 1, _dtype_for(len(vocab)))
    lut[present] = vocab.lookup(present.astype(np.uint32))[0]
    lut[rare] = unk_id or 0
    return vocab, lut, unk_replaced


def base_vocab(run, jamo, newlines):
    """The vocabulary of run (or dataset, or weights file) ``run`` for ``prepare
    --vocab-from``, after checking that the jamo and newline settings agree with it."""
    if loader.is_weights_file(run) or rundir.is_run(run):
        source = loader.load(run, read_weights=False)
        base, old_nl = source.vocab, source.newlines
    elif is_dataset(run):
        base = Vocab.load(os.path.join(run, "vocab.json"))
        old_nl = read_json(os.path.join(run, "meta.json")).get("newlines", "lf")
    else:
        raise CharrnnError(f"--vocab-from {run}: no vocab.json there; pass the directory of a "
                           "`charrnn train` run (or of a prepared dataset), or a .safetensors "
                           "file from `charrnn export`")
    if old_nl != newlines:
        fix = "pass --keep-newlines" if old_nl == "keep" else "leave out --keep-newlines"
        raise CharrnnError(f"--vocab-from {run}: its data was prepared with newlines {old_nl}, "
                           f"this one with {newlines}; {fix} so the newline symbols mean the same")
    if jamo != "auto" and (jamo == "on") != base.jamo:
        raise CharrnnError(f"--vocab-from {run}: its vocabulary has jamo "
                           f"{'on' if base.jamo else 'off'}, but --jamo {jamo} was given; leave "
                           "out --jamo (the run's setting is used)")
    return base


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


def _write_dataset(tmp, files, *, jamo, min_count, val_fraction, test_fraction, progress, base=None,
           base_path=None, **decode):
    with tempfile.TemporaryFile(dir=tmp) as raw:  # gone even if we are killed
        counts, chunk_log, infos = _read_inputs(files, raw, progress, **decode)
        chars = int(counts.sum())
        if base is None:
            applied, why = auto_jamo(counts) if jamo == "auto" else (jamo == "on", None)
            vocab, lut, unk_replaced = _make_vocab(counts, applied, min_count)
        else:  # --vocab-from: the run's jamo setting
            (vocab, lut, unk_replaced), why = _extend_vocab(counts, base, min_count), None
        split_chars = _split_chars(chars, val_fraction, test_fraction)
        char_bounds = np.cumsum([0] + split_chars).tolist()
        if vocab.jamo:
            sym_bounds = [_syms_before(raw, chunk_log, p) for p in char_bounds]
        else:
            sym_bounds = char_bounds
        split_syms = np.diff(sym_bounds).tolist()
        outs = [_npy(os.path.join(tmp, f"{s}.npy"), lut.dtype, n) for s, n in zip(SPLITS, split_syms)]
        try:
            written = _write_ids(raw, chunk_log, outs, char_bounds, vocab, lut, progress)
        finally:
            for f in outs:
                f.close()
    if written != split_syms:  # would mean a bug here, never bad input
        raise RuntimeError(f"internal error: wrote {written} symbols, expected {split_syms}")

    vocab.save(os.path.join(tmp, "vocab.json"))
    meta = {
        "format": FORMAT, "charrnn_version": __version__, "inputs": infos,
        "newlines": decode["newlines"], "jamo": {"requested": jamo, "applied": vocab.jamo,
                                                  **({"why": why} if why else {})},
        "chars": chars, "symbols": int(sym_bounds[-1]), "dtype": lut.dtype.name,
        "min_count": int(min_count), "unk_replaced": unk_replaced,
        "split": {"method": "contiguous", "val_fraction": float(val_fraction),
                  "test_fraction": float(test_fraction)},
        "splits": {s: {"symbols": int(n), "chars": int(m)}
                   for s, n, m in zip(SPLITS, split_syms, split_chars)},
    }
    if base is not None:
        meta["vocab_from"] = {"path": base_path, "symbols": len(base),
                              "added": len(vocab) - len(base)}
    write_json_atomic(os.path.join(tmp, "meta.json"), meta)
    return meta, vocab


def prepare(inputs, out=None, *, include=(), encoding=None, errors="strict", newlines="lf",
            jamo="auto", min_count=1, val_fraction=0.05, test_fraction=0.0, force=False,
            progress=False, on_warning=None, vocab_from=None) -> dict:
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
        raise CharrnnError("--val-fraction and --test-fraction must be in [0, 1) and leave some "
                           "text for training")
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
        raise CharrnnError(f"cannot create the output {out}: {e.strerror}; choose another -o") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a dataset is an ordinary directory
        meta, vocab = _write_dataset(tmp, files, encoding=encoding, errors=errors, newlines=newlines,
                             on_warning=on_warning, jamo=jamo, min_count=min_count,
                             val_fraction=val_fraction, test_fraction=test_fraction,
                             progress=progress, base=base,
                             base_path=os.fspath(vocab_from) if base else None)
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
            raise CharrnnError(f"cannot write {out}: {e.strerror or e}; check free space and "
                               "permissions") from None
        raise
    return {"out": out, "vocab_size": len(vocab), **meta}
