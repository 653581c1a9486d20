"""Run directories: find them, load a trained model from one, write their files safely.

A run directory (written by ``charrnn train``) holds config.yaml, model.json,
vocab.json, dataset_meta.json, checkpoints/ (the last few), best/ (the best by
validation loss), metrics.jsonl and logs/ (TensorBoard).  Everything needed to
sample from it is inside, so it can be copied elsewhere on its own.
"""

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from charrnn import checkpoints
from charrnn.checkpoints import BEST_DIR, CHECKPOINTS_DIR
from charrnn.errors import CharrnnError

MODEL_FILE = "model.json"
CONFIG_FILE = "config.yaml"
VOCAB_FILE = "vocab.json"
META_FILE = "dataset_meta.json"
METRICS_FILE = "metrics.jsonl"


# --- atomic writes -------------------------------------------------------------
# A reader (or a crash) must never see half a file: write beside it, then rename.

def write_bytes_atomic(path, data: bytes, fsync=False) -> None:
    """Write ``data`` to ``path`` whole or not at all; ``fsync``: on disk before the rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CharrnnError(f"cannot read {path}: {e}") from None


# --- one writer per run directory ------------------------------------------------------

LOCK_FILE = "train.lock"


class RunLock:
    """An exclusive OS lock (flock) on a run directory, held by one `charrnn train` for its
    whole life.  The kernel drops it when the process ends, however it ends, so `kill -9`
    never leaves a stale lock; the lock file only tells who holds it (PID and host)."""

    def __init__(self, path, enabled=True):
        self.path, self.enabled, self.fd = Path(path), enabled, None

    def __enter__(self):
        if not self.enabled:
            return self
        import fcntl
        import socket
        import time

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # no O_TRUNC: the holder's PID stays readable until we hold the lock
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CharrnnError(f"cannot write the run directory {self.path}: {e.strerror}; "
                               "choose another --out or fix its permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            raise CharrnnError(_locked_message(self.path, holder, e)) from None
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        except OSError:
            pass  # a full disk: the lock holds all the same; the start-up checks report it
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the lock
            self.fd = None


def _locked_message(path, holder, e) -> str:
    import errno

    if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        return (f"cannot lock the run directory {path} ({e.strerror}): its file system does "
                "not support locks; use a local directory for --out")
    try:
        h = json.loads(holder)
        who = f"pid {h['pid']} on host {h['host']}, started {h['started']}"
    except (ValueError, KeyError, TypeError):
        who = "a process whose PID is not recorded yet"
    return (f"run {path} is being trained by another process ({who}); two trainings would "
            f"write the same checkpoints. Wait for it to finish or stop it, then continue with "
            f"`charrnn train --resume --out {path}`")


RUN_FILES = (CONFIG_FILE, MODEL_FILE, VOCAB_FILE, META_FILE, METRICS_FILE)
RUN_DIRS = (CHECKPOINTS_DIR, BEST_DIR, "logs")


def clear_run(path) -> None:
    """Delete a run's files (train --force), leaving anything else in the directory."""
    import shutil

    for name in RUN_DIRS:
        shutil.rmtree(Path(path) / name, ignore_errors=True)
    for name in RUN_FILES:
        (Path(path) / name).unlink(missing_ok=True)


def has_checkpoint(path) -> bool:
    return any(checkpoints.list_in(Path(path) / d) for d in (CHECKPOINTS_DIR, BEST_DIR))


# --- finding runs -----------------------------------------------------------------

def is_run(path) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def _run_time(path: Path) -> float:
    # A new checkpoint (renamed into checkpoints/) tells when a run last made progress.
    stamps = [p.stat().st_mtime for p in (path / CHECKPOINTS_DIR, path / METRICS_FILE,
                                          path / MODEL_FILE) if p.exists()]
    return max(stamps)


def find_latest_run(root="runs") -> str:
    """The most recently updated run directory at or below ``root`` (two levels deep).

    ``root`` may itself be a run.  Raises CharrnnError when there is none.
    """
    root = Path(root)
    if is_run(root):
        return str(root)
    candidates = []
    if root.is_dir():
        for child in root.iterdir():
            if is_run(child):
                candidates.append(child)
            elif child.is_dir():
                candidates.extend(g for g in child.iterdir() if is_run(g))
    if not candidates:
        raise CharrnnError(f"no training run found in {root}/; train one first "
                           "(`charrnn train --config quick.yaml`) or pass a run directory")
    return str(max(candidates, key=_run_time))


# --- loading a run ------------------------------------------------------------------

@dataclass
class Run:
    path: str
    model: object          # a built charrnn.model CharRNN with restored weights
    vocab: object          # a charrnn.text.Vocab
    config: dict           # the resolved training config
    step: int              # training step of the restored checkpoint
    checkpoint: str        # the checkpoint path prefix that was restored
    model_args: dict = field(default_factory=dict)
    meta: dict = None      # dataset meta when it does not come from the run directory


def read_model_args(run_path) -> dict:
    path = Path(run_path) / MODEL_FILE
    if not path.is_file():
        raise CharrnnError(f"{run_path} is not a charrnn run (no {MODEL_FILE}); pass the "
                           "--out directory of a `charrnn train` run")
    return read_json(path)


def read_config(run_path) -> dict:
    """The run's resolved config.yaml ({} if missing)."""
    path = Path(run_path) / CONFIG_FILE
    if not path.is_file():
        return {}
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def read_dataset_meta(run_path) -> dict:
    """The dataset's meta.json as the run saved it ({} if missing)."""
    path = Path(run_path) / META_FILE
    return read_json(path) if path.is_file() else {}


def load_run(path, checkpoint="best", on_warning=None) -> Run:
    """Rebuild the model of run ``path`` and restore its weights from ``checkpoint``
    ("best", "latest", or a checkpoint path); a damaged checkpoint falls back to the
    newest intact one (see charrnn.checkpoints), saying so through ``on_warning``.
    ``path`` may also be a .safetensors weights file (charrnn.weightsfile), which holds
    one set of weights."""
    from charrnn import weightsfile
    from charrnn.model import build_model
    from charrnn.text import Vocab

    if weightsfile.is_weights_file(path):
        return weightsfile.load_run(path)

    path = str(path)
    args = read_model_args(path)
    vocab = Vocab.load(Path(path) / VOCAB_FILE)
    if len(vocab) != args["vocab_size"]:
        raise CharrnnError(f"{path}: vocab.json has {len(vocab)} symbols but model.json says "
                           f"{args['vocab_size']}; the run directory is inconsistent")
    config = read_config(path)
    model = build_model(**args)
    _, ck = checkpoints.load(path, checkpoint, lambda ck: restore_weights(model, ck.prefix),
                             on_warning=on_warning)
    return Run(path=path, model=model, vocab=vocab, config=config,
               step=ck.step, checkpoint=ck.name, model_args=args)


def restore_weights(model, ckpt: str) -> None:
    """Restore only the model's weights (key "model") from a training checkpoint."""
    tf = _tf()
    try:
        status = tf.train.Checkpoint(model=model).read(ckpt)
        status.expect_partial()  # optimizer, step, carried state: not needed here
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        if checkpoints.is_damage(e):
            raise  # the caller falls back to another checkpoint
        raise CharrnnError(f"checkpoint {ckpt} does not fit this model ({_first_line(e)}); "
                           "was model.json edited or the checkpoint taken from another run?"
                           ) from None


def _first_line(e) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


def _tf():
    from charrnn.backend import tensorflow

    return tensorflow()
