"""Files written whole or not at all, and the checksum that proves it.

A reader (or a crash) must never see half a file: write beside it, then rename.
Layer 0: every other module may use these; they use nothing of charrnn's but errors.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, TypeAlias

from charrnn.errors import CharrnnError

# A path as callers give it: a str or a pathlib.Path (anything os.fspath takes to a str).
StrPath: TypeAlias = str | os.PathLike[str]


def write_bytes_atomic(path: StrPath, data: bytes, fsync: bool = False) -> None:
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


def write_text_atomic(path: StrPath, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: StrPath, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: StrPath) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CharrnnError(f"cannot read {path}: {e}") from None


def file_crc32(path: StrPath, chunk: int = 1 << 20) -> str:
    """The CRC-32 of a file as 8 hex digits (what checkpoint manifests record)."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"
