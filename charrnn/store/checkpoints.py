"""Checkpoints you can trust: written whole or not at all, verified before use, rotated safely.

Layout: every checkpoint is a directory ``<folder>/ckpt-<step>/`` holding

    tf.index, tf.data-00000-of-00001   the TensorFlow bundle (prefix ``<dir>/tf``)
    weights.safetensors                 (optional) portable weights, written by ``extra``
    manifest.json                       {"format", "step", "val_loss",
                                         "files": {name: {size, crc32}}}

A checkpoint is assembled in ``<folder>/.tmp-ckpt-<step>-<pid>/`` and renamed into place
once every file and the manifest are on disk, so a reader (or a crash) sees it complete or
not at all.  Rotation renames a checkpoint out of the way before deleting it, so a reader
that opened its files keeps reading them, and one that comes too late finds it gone and
looks again.

Runs made before this layout keep ``<folder>/ckpt-<step>.index`` + ``.data-*`` files and
a ``checkpoint`` state file, with no manifest: they are used after a size check, and
TensorFlow's own checks (each tensor has a crc32c) catch the rest when they are read.

Choosing: ``best`` falls back to the newest intact checkpoint in ``checkpoints/`` (with a
warning that it is not the best); ``latest`` to the next newest intact one; an explicit
checkpoint never falls back.  What is "intact" is decided here, for train, sample and
evaluate alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from charrnn.atomic import StrPath, file_crc32, write_text_atomic
from charrnn.errors import CharrnnError, first_line

if TYPE_CHECKING:
    import tensorflow as tf

T = TypeVar("T")
# The files a reader is about to read: "all", or their names (those the manifest lists)
Need = Literal["all"] | Sequence[str]
# save's hook: (the checkpoint folder being assembled, step, val_loss) -> writes files there
Extra = Callable[[Path, int, float | None], None]

FORMAT = "charrnn-checkpoint/1"
MANIFEST = "manifest.json"
TF_NAME = "tf"  # the TF bundle's prefix inside a checkpoint directory
CHECKPOINTS_DIR, BEST_DIR = "checkpoints", "best"
_DIR = re.compile(r"ckpt-(\d+)$")
_LEGACY = re.compile(r"ckpt-(\d+)\.index$")
_READ_TRIES = 5  # a checkpoint rotated away while we read it: look again


class Damaged(Exception):
    """A checkpoint that is incomplete or corrupt (the message says what is wrong)."""


@dataclass
class Checkpoint:
    prefix: str  # the TensorFlow prefix: <dir>/tf, or <folder>/ckpt-N
    step: int
    dir: Path | None = None  # None: a checkpoint of the old layout
    manifest: dict | None = None

    @property
    def legacy(self) -> bool:
        return self.dir is None

    @property
    def name(self) -> str:
        return str(self.dir) if self.dir else self.prefix

    def file(self, name: str) -> Path | None:
        """Path of file ``name`` if the manifest lists it, else None."""
        if self.manifest and name in self.manifest.get("files", {}):
            return self.dir / name
        return None

    def size(self) -> int:
        """Bytes on disk (what the next checkpoint of this model will need)."""
        if self.manifest:
            return sum(f["size"] for f in self.manifest["files"].values())
        return sum(p.stat().st_size for p in _legacy_files(self.prefix) if p.exists())


# --- reading ---------------------------------------------------------------------------


def list_in(folder: StrPath) -> list[Checkpoint]:
    """Every checkpoint in ``folder``, newest first (nothing is verified yet).

    A listing is a snapshot: a checkpoint it names can be rotated away before we look at it,
    and the newer one that replaced it was written after the snapshot.  Then we list again, so
    a reader never finds none while the writer always keeps one."""
    folder = Path(folder)
    for _ in range(_READ_TRIES):
        try:
            entries = list(folder.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        found, moved = [], False
        for p in entries:
            m = _DIR.match(p.name)
            if m:
                if p.is_dir():
                    found.append(Checkpoint(str(p / TF_NAME), int(m.group(1)), dir=p))
                else:
                    moved = moved or not p.exists()
                continue
            m = _LEGACY.match(p.name)
            if m:
                found.append(Checkpoint(str(folder / p.name[: -len(".index")]), int(m.group(1))))
        if not moved:
            break
    # the new layout first where both hold a step (a run resumed after upgrading)
    return sorted(found, key=lambda c: (c.step, not c.legacy), reverse=True)


def verify(ck: Checkpoint, need: Need = "all") -> Checkpoint:
    """Check ``ck`` against its manifest and return it (with ``manifest`` filled in).

    ``need``: "all" checks every file; a list of names checks those the manifest lists
    (the files a reader is about to read).  Raises Damaged.  FileNotFoundError escapes
    when the checkpoint was rotated away meanwhile (the caller looks again).
    """
    if ck.legacy:
        _verify_legacy(ck)
        return ck
    try:
        manifest = json.loads((ck.dir / MANIFEST).read_text("utf-8"))
        files = manifest["files"]
        ok = manifest.get("format") == FORMAT and isinstance(files, dict)
    except FileNotFoundError:
        raise Damaged(f"{MANIFEST} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Damaged(f"{MANIFEST} is unreadable ({e})") from None
    if not ok or f"{TF_NAME}.index" not in files:
        raise Damaged(f"{MANIFEST} is not a charrnn checkpoint manifest")
    names = list(files) if need == "all" else [n for n in need if n in files]
    for name in names:
        _verify_file(ck.dir / name, files[name])
    ck.manifest = manifest
    return ck


def _verify_file(path: Path, expect: dict) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise Damaged(f"{path.name} is missing") from None
    if size != expect.get("size"):
        raise Damaged(f"{path.name} has {size:,} bytes, the manifest says {expect.get('size'):,}")
    if file_crc32(path) != expect.get("crc32"):
        raise Damaged(f"{path.name} does not match its checksum (corrupted)")


def _legacy_files(prefix: StrPath) -> list[Path]:
    prefix = Path(prefix)
    return [Path(f"{prefix}.index"), *sorted(prefix.parent.glob(f"{prefix.name}.data-*"))]


def _verify_legacy(ck: Checkpoint) -> None:
    index, *shards = _legacy_files(ck.prefix)
    if not index.is_file() or index.stat().st_size < 48:  # an sstable footer is 48 bytes
        raise Damaged(f"{index.name} is missing or cut short")
    m = re.search(r"-of-(\d+)$", shards[0].name) if shards else None
    if not m or len(shards) != int(m.group(1)):
        raise Damaged("a data shard is missing")
    if any(p.stat().st_size == 0 for p in shards):
        raise Damaged("a data shard is empty")


def is_damage(e: BaseException) -> bool:
    """Does an error from reading a checkpoint mean its files are damaged?

    TensorFlow reports a cut-short or corrupt bundle as DataLossError, OutOfRangeError,
    "Read less bytes than requested" (IndexError), a bad table magic number, and so on;
    a checkpoint that does not fit the model (AssertionError, shape ValueError) is not
    damage and must not send us to an older checkpoint that would not fit either.
    """
    if isinstance(e, (Damaged, IndexError, OSError, EOFError)):
        return True
    kind = type(e).__name__
    if kind in ("DataLossError", "OutOfRangeError", "NotFoundError", "InternalError"):
        return True
    text = str(e).lower()
    return kind in (
        "UnknownError",
        "FailedPreconditionError",
        "InvalidArgumentError",
        "ValueError",
    ) and any(
        w in text
        for w in (
            "read less bytes",
            "checksum",
            "corrupt",
            "sstable",
            "magic number",
            "truncated",
            "data loss",
            "unable to open table",
            "not found",
        )
    )


def _to_try(run_path: StrPath, which: StrPath) -> tuple[list[Checkpoint], bool]:
    """(checkpoints to try in order, whether falling back is allowed)."""
    run = Path(run_path)
    if which in ("best", "latest"):
        latest = list_in(run / CHECKPOINTS_DIR)
        best = list_in(run / BEST_DIR)
        return (best + latest if which == "best" else latest + best), True
    path = Path(which)
    if path.is_dir() and ((path / MANIFEST).exists() or _DIR.match(path.name)):  # one checkpoint
        m = _DIR.match(path.name)
        return [Checkpoint(str(path / TF_NAME), int(m.group(1)) if m else 0, dir=path)], False
    if path.is_dir():  # a folder of checkpoints: its newest intact one
        return list_in(path), True
    if path.name == TF_NAME and (path.parent / MANIFEST).exists():  # <dir>/tf given as prefix
        return _to_try(run_path, str(path.parent))
    if Path(f"{path}.index").exists():
        m = re.search(r"(\d+)$", path.name)
        return [Checkpoint(str(path), int(m.group(1)) if m else 0)], False
    raise CharrnnError(
        f"checkpoint {which} not found; use best, latest, or a checkpoint "
        f"such as {run / CHECKPOINTS_DIR / 'ckpt-1000'}"
    )


def load(
    run_path: StrPath,
    which: StrPath = "best",
    loader: Callable[[Checkpoint], T] | None = None,
    need: Need = "all",
    on_warning: Callable[[str], None] | None = None,
) -> tuple[T | None, Checkpoint]:
    """Find the checkpoint ``which`` ("best", "latest" or a path) of run ``run_path``, verify
    it and read it with ``loader(checkpoint)``; return (loader's result, Checkpoint).

    A damaged choice falls back to the newest intact checkpoint with one warning naming
    both; an explicit checkpoint that is damaged, or a run with no intact checkpoint, is a
    CharrnnError.  ``need``: the files ``loader`` reads ("all", or a list of names).
    """
    loader = loader or (lambda ck: None)
    for _ in range(_READ_TRIES):
        cands, fallback = _to_try(run_path, which)
        if not cands:
            raise CharrnnError(
                f"run {run_path} has no checkpoint yet; train it longer or "
                f"continue it with `charrnn train --resume --out {run_path}`"
            )
        damaged = []
        try:
            for ck in cands if fallback else cands[:1]:
                try:
                    result = loader(verify(ck, need))
                except Exception as e:
                    if _gone(ck):
                        raise _Rotated from None
                    if not is_damage(e):
                        raise
                    damaged.append((ck, _reason(e)))
                    continue
                if damaged and on_warning:
                    on_warning(_fallback_message(run_path, which, damaged, ck))
                return result, ck
        except _Rotated:
            continue
        raise CharrnnError(_all_damaged_message(run_path, which, damaged, fallback))
    raise CharrnnError(
        f"the checkpoints of {run_path} kept disappearing while being read "
        "(another process deleting them?); try again"
    )


class _Rotated(Exception):
    """The checkpoint being read was rotated away by the training process."""


def _gone(ck: Checkpoint) -> bool:
    return not (ck.dir.exists() if ck.dir else Path(f"{ck.prefix}.index").exists())


def _reason(e) -> str:
    return first_line(e, 160)


def _fallback_message(run_path, which, damaged, used):
    bad = "; ".join(f"{c.name} ({why})" for c, why in damaged)
    msg = f"damaged checkpoint {bad}; using {used.name} (step {used.step})"
    if which == "best" and Path(used.name).parent.name != BEST_DIR:
        msg += ", the newest intact checkpoint, which is not the best by validation loss"
    return msg


def _all_damaged_message(run_path, which, damaged, fallback):
    bad = "; ".join(f"{c.name} ({why})" for c, why in damaged)
    if not fallback:
        return (
            f"checkpoint {bad} is damaged; choose another with --checkpoint (best, "
            f"latest or a path under {Path(run_path) / CHECKPOINTS_DIR})"
        )
    return (
        f"no intact checkpoint in {run_path}: {bad}. Restore the run from a backup, or "
        "start a new run with another --out"
    )


def step_of(run_path: StrPath, which: StrPath = "latest") -> int | None:
    """The step of the newest checkpoint ``which`` without verifying it (None if none)."""
    cands, _ = _to_try(run_path, which)
    return cands[0].step if cands else None


# --- writing --------------------------------------------------------------------------


def _fsync_dir(path: StrPath) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(
    tf_checkpoint: tf.train.Checkpoint,
    folder: StrPath,
    step: int,
    keep: int,
    *,
    extra: Extra | None = None,
    val_loss: float | None = None,
    info: dict | None = None,
) -> Checkpoint:
    """Write ``tf_checkpoint`` (a tf.train.Checkpoint) as ``folder/ckpt-<step>/``, then keep
    only the newest ``keep`` intact checkpoints in ``folder``.

    ``extra(tmpdir, step, val_loss)`` may write more files into the checkpoint; they join
    its manifest.
    ``info``: JSON-able training facts kept in the manifest under "train" (the time plan).
    On any failure nothing is left behind and the checkpoints already there are untouched.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-ckpt-{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        tf_checkpoint.write(str(tmp / TF_NAME))
        if extra is not None:
            extra(tmp, int(step), val_loss)
        files = {}
        for p in sorted(tmp.iterdir()):
            if p.is_file():
                with open(p, "rb+") as f:
                    os.fsync(f.fileno())
                files[p.name] = _entry(p)
            else:  # TensorFlow's own temporary folder: never part of a checkpoint
                shutil.rmtree(p)
        manifest = {"format": FORMAT, "step": int(step), "val_loss": val_loss, "files": files}
        if info is not None:
            manifest["train"] = info
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        final = folder / f"ckpt-{step}"
        if final.exists():  # the same step again (e.g. resumed past a damaged one)
            _remove(Checkpoint(str(final / TF_NAME), step, dir=final))
        os.rename(tmp, final)
        _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ck = Checkpoint(str(final / TF_NAME), int(step), dir=final, manifest=manifest)
    rotate(folder, keep, written=ck)
    return ck


def _entry(path: Path) -> dict:
    """A file's line in a manifest."""
    return {"size": path.stat().st_size, "crc32": file_crc32(path)}


def list_file(ck: Checkpoint, name: str) -> None:
    """List file ``name``, already in checkpoint ``ck``'s directory, in its manifest: the new
    manifest replaces the old one whole (charrnn.store.weightsfile adds weights files so)."""
    manifest = dict(ck.manifest)
    manifest["files"] = dict(manifest["files"], **{name: _entry(ck.dir / name)})
    write_text_atomic(ck.dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    ck.manifest = manifest


_verified = {}  # dir -> manifest stat, so rotation re-reads a checkpoint only once


def _intact(ck: Checkpoint) -> bool:
    key = ck.name
    try:
        stamp = (ck.dir / MANIFEST).stat().st_mtime_ns if ck.dir else None
        if key in _verified and _verified[key] == stamp:
            return True
        verify(ck)
        _verified[key] = stamp
        return True
    except (Damaged, OSError):
        return False


def rotate(folder: StrPath, keep: int, written: Checkpoint | None = None) -> None:
    """Delete every checkpoint in ``folder`` but the newest ``keep`` intact ones."""
    if written is not None and written.dir is not None:
        _verified[written.name] = (written.dir / MANIFEST).stat().st_mtime_ns
    kept = 0
    for ck in list_in(folder):
        if kept < keep and _intact(ck):
            kept += 1
        elif kept >= keep or ck.step < (written.step if written else 0):
            _remove(ck)  # older than what we keep, or damaged and superseded
    if not any(c.legacy for c in list_in(folder)):
        state = Path(folder) / "checkpoint"  # the old layout's state file
        if state.exists():
            state.unlink()


def _remove(ck: Checkpoint) -> None:
    """Remove everything that belonged to ``ck``."""
    _verified.pop(ck.name, None)
    if ck.dir is None:
        # with the weights file `charrnn export RUN` may have put beside it
        for p in [*_legacy_files(ck.prefix), Path(f"{ck.prefix}.safetensors")]:
            p.unlink(missing_ok=True)
        return
    trash = ck.dir.parent / f".trash-{ck.dir.name}-{os.getpid()}"
    try:
        os.rename(ck.dir, trash)  # readers now find it gone, never half-deleted
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def clean_leftovers(folder: StrPath) -> None:
    """Remove what a killed save or rotation left (only the single writer may call this)."""
    for p in Path(folder).glob(".tmp-ckpt-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in Path(folder).glob(".trash-ckpt-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in Path(folder).glob("ckpt-*_temp*"):  # the old layout's TensorFlow temp folders
        shutil.rmtree(p, ignore_errors=True)
