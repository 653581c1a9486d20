"""Run directories: find them, load a trained model from one, write their files safely.

A run directory (written by ``charrnn train``) holds config.yaml, model.json,
vocab.json, dataset_meta.json, checkpoints/ (the last few), best/ (the best by
validation loss), metrics.jsonl and logs/ (TensorBoard).  Everything needed to
sample from it is inside, so it can be copied elsewhere on its own.
"""

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.errors import CharrnnError

MODEL_FILE = "model.json"
CONFIG_FILE = "config.yaml"
VOCAB_FILE = "vocab.json"
META_FILE = "dataset_meta.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"


# --- atomic writes -------------------------------------------------------------
# A reader (or a crash) must never see half a file: write beside it, then rename.

def write_text_atomic(path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CharrnnError(f"cannot read {path}: {e}") from None


# --- finding runs -----------------------------------------------------------------

def is_run(path) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def checkpoint_in(folder):
    """The newest checkpoint prefix in ``folder``, or None.

    Reads the ``checkpoint`` state file that tf.train.CheckpointManager keeps, as
    tf.train.latest_checkpoint does, but without importing TensorFlow (the sampler
    prints its first characters before TensorFlow has loaded).
    """
    state = Path(folder) / "checkpoint"
    if not state.is_file():
        return None
    m = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', state.read_text("utf-8"), re.M)
    if m and "\\" in m.group(1):  # an escaped name: leave the parsing to TensorFlow
        return _tf().train.latest_checkpoint(str(folder))
    prefix = Path(folder) / m.group(1) if m else None  # an absolute path stays as is
    return str(prefix) if prefix and Path(f"{prefix}.index").is_file() else None


def latest_checkpoint(run_path, which="latest"):
    """Path prefix of the newest checkpoint in ``checkpoints/`` or ``best/``, or None."""
    return checkpoint_in(Path(run_path) / (BEST_DIR if which == "best" else CHECKPOINTS_DIR))


def _run_time(path: Path) -> float:
    # The newest checkpoint index file tells when a run last made progress.
    stamps = [p.stat().st_mtime for p in (path / CHECKPOINTS_DIR / "checkpoint",
                                          path / METRICS_FILE, path / MODEL_FILE) if p.exists()]
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


def resolve_checkpoint(run_path, checkpoint="best") -> str:
    """``best`` (falling back to the latest when no evaluation was saved yet), ``latest``,
    or an explicit checkpoint prefix / directory."""
    if checkpoint in ("best", "latest"):
        ckpt = latest_checkpoint(run_path, checkpoint)
        if ckpt is None and checkpoint == "best":
            ckpt = latest_checkpoint(run_path, "latest")
        if ckpt is None:
            raise CharrnnError(f"run {run_path} has no checkpoint yet; train it longer or "
                               f"continue it with `charrnn train --resume --out {run_path}`")
        return ckpt
    path = Path(checkpoint)
    if path.is_dir():
        ckpt = checkpoint_in(path)
        if ckpt is None:
            raise CharrnnError(f"{checkpoint} holds no checkpoint; pass a checkpoint such as "
                               f"{Path(run_path) / CHECKPOINTS_DIR / 'ckpt-1000'}")
        return ckpt
    if not Path(str(checkpoint) + ".index").exists():
        raise CharrnnError(f"checkpoint {checkpoint} not found; use best, latest, or a "
                           f"prefix such as {Path(run_path) / CHECKPOINTS_DIR / 'ckpt-1000'}")
    return str(checkpoint)


def checkpoint_step(ckpt: str) -> int:
    reader = _tf().train.load_checkpoint(ckpt)
    try:
        return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    except Exception:  # a checkpoint written by something else: step unknown
        return 0


def load_run(path, checkpoint="best") -> Run:
    """Rebuild the model of run ``path`` and restore its weights from ``checkpoint``
    ("best", "latest", or a checkpoint path).  ``path`` may also be a .safetensors
    weights file (charrnn.weightsfile), which holds one set of weights."""
    from charrnn import weightsfile
    from charrnn.model import build_model
    from charrnn.text import Vocab

    if weightsfile.is_weights_file(path):
        return weightsfile.load_run(path)

    path = str(path)
    args = read_model_args(path)
    ckpt = resolve_checkpoint(path, checkpoint)
    vocab = Vocab.load(Path(path) / VOCAB_FILE)
    if len(vocab) != args["vocab_size"]:
        raise CharrnnError(f"{path}: vocab.json has {len(vocab)} symbols but model.json says "
                           f"{args['vocab_size']}; the run directory is inconsistent")
    config = read_config(path)
    model = build_model(**args)
    restore_weights(model, ckpt)
    return Run(path=path, model=model, vocab=vocab, config=config,
               step=checkpoint_step(ckpt), checkpoint=ckpt, model_args=args)


def restore_weights(model, ckpt: str) -> None:
    """Restore only the model's weights (key "model") from a training checkpoint."""
    tf = _tf()
    try:
        status = tf.train.Checkpoint(model=model).restore(ckpt)
        status.expect_partial()  # optimizer, step, carried state: not needed here
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise CharrnnError(f"checkpoint {ckpt} does not fit this model ({_first_line(e)}); "
                           "was model.json edited or the checkpoint taken from another run?"
                           ) from None


def _first_line(e) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


def _tf():
    from charrnn.backend import tensorflow

    return tensorflow()
