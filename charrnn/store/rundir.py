"""Run directories: what files they hold, how to find them, how to read their small files.

A run directory (written by ``charrnn train``) holds config.yaml, model.json,
vocab.json, dataset_meta.json, checkpoints/ (the last few), best/ (the best by
validation loss), metrics.jsonl and logs/ (TensorBoard).  Everything needed to
sample from it is inside, so it can be copied elsewhere on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from charrnn.atomic import StrPath, read_json
from charrnn.errors import CharrnnError
from charrnn.nn.cells import CELLS
from charrnn.store import checkpoints
from charrnn.store.checkpoints import BEST_DIR, CHECKPOINTS_DIR

MODEL_FILE = "model.json"
CONFIG_FILE = "config.yaml"
VOCAB_FILE = "vocab.json"
META_FILE = "dataset_meta.json"
METRICS_FILE = "metrics.jsonl"


RUN_FILES = (CONFIG_FILE, MODEL_FILE, VOCAB_FILE, META_FILE, METRICS_FILE)
RUN_DIRS = (CHECKPOINTS_DIR, BEST_DIR, "logs")


def clear_run(path: StrPath) -> None:
    """Delete a run's files (train --force), leaving anything else in the directory."""
    import shutil

    for name in RUN_DIRS:
        shutil.rmtree(Path(path) / name, ignore_errors=True)
    for name in RUN_FILES:
        (Path(path) / name).unlink(missing_ok=True)


def has_checkpoint(path: StrPath) -> bool:
    return any(checkpoints.list_in(Path(path) / d) for d in (CHECKPOINTS_DIR, BEST_DIR))


# --- finding runs -----------------------------------------------------------------


def is_run(path: StrPath) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def _run_time(path: Path) -> float:
    # A new checkpoint (renamed into checkpoints/) tells when a run last made progress.
    stamps = [
        p.stat().st_mtime
        for p in (path / CHECKPOINTS_DIR, path / METRICS_FILE, path / MODEL_FILE)
        if p.exists()
    ]
    return max(stamps)


def find_latest_run(root: StrPath = "runs") -> str:
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
        raise CharrnnError(
            f"no training run found in {root}/; train one first "
            "(`charrnn train --config quick.yaml`) or pass a run directory"
        )
    return str(max(candidates, key=_run_time))


# --- the small files -----------------------------------------------------------


def read_model_args(run_path: StrPath) -> dict:
    path = Path(run_path) / MODEL_FILE
    if not path.is_file():
        raise CharrnnError(
            f"{run_path} is not a charrnn run (no {MODEL_FILE}); pass the "
            "--out directory of a `charrnn train` run"
        )
    args = read_json(path)
    if args.get("cell") not in CELLS:
        raise CharrnnError(
            f"{run_path} is a run of cell {args.get('cell')!r}, which this "
            f"charrnn does not know ({', '.join(CELLS)}); upgrade charrnn"
        )
    return args


def read_config(run_path: StrPath) -> dict:
    """The run's resolved config.yaml ({} if missing)."""
    path = Path(run_path) / CONFIG_FILE
    if not path.is_file():
        return {}
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def read_dataset_meta(run_path: StrPath) -> dict:
    """The dataset's meta.json as the run saved it ({} if missing)."""
    path = Path(run_path) / META_FILE
    return read_json(path) if path.is_file() else {}


def logged_val_loss(run_path: StrPath, checkpoint: StrPath, step: int) -> float | None:
    """The validation loss of checkpoint directory ``checkpoint`` at ``step``: its
    manifest's, else the one metrics.jsonl logged at that step, or None."""
    manifest = Path(checkpoint) / checkpoints.MANIFEST
    if manifest.is_file():
        try:
            loss = json.loads(manifest.read_text("utf-8")).get("val_loss")
            if isinstance(loss, (int, float)):
                return loss
        except ValueError:
            pass
    path = Path(run_path) / METRICS_FILE
    if not path.is_file():
        return None
    loss = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("step") == step and rec.get("val_loss") is not None:
            loss = rec["val_loss"]
    return loss
