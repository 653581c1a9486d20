"""One writer per run directory: an OS lock held by `charrnn train` for its whole life."""

from __future__ import annotations

import json
import os
from pathlib import Path

from charrnn.atomic import StrPath
from charrnn.errors import CharrnnError

LOCK_FILE = "train.lock"


class RunLock:
    """An exclusive OS lock (flock) on a run directory, held by one `charrnn train` for its
    whole life.  The kernel drops it when the process ends, however it ends, so `kill -9`
    never leaves a stale lock; the lock file only tells who holds it (PID and host)."""

    def __init__(self, path: StrPath, enabled: bool = True) -> None:
        self.path, self.enabled, self.fd = Path(path), enabled, None

    def __enter__(self) -> RunLock:
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
            raise CharrnnError(
                f"cannot write the run directory {self.path}: {e.strerror}; "
                "choose another --out or fix its permissions"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            raise CharrnnError(_locked_message(self.path, holder, e)) from None
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(
                fd,
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    }
                ).encode(),
            )
        except OSError:
            pass  # a full disk: the lock holds all the same; the start-up checks report it
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the lock
            self.fd = None


def _locked_message(path: Path, holder: str, e: OSError) -> str:
    import errno
    import socket

    if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        return (
            f"cannot lock the run directory {path} ({e.strerror}): its file system does "
            "not support locks; use a local directory for --out"
        )
    try:
        h = json.loads(holder)
        who = f"pid {h['pid']} on host {h['host']}, started {h['started']}"
        mine = h["pid"] == os.getpid() and h["host"] == socket.gethostname()
    except (ValueError, KeyError, TypeError):
        who, mine = "a process whose PID is not recorded yet", False
    by = "another train call in this process" if mine else "another process"
    return (
        f"run {path} is being trained by {by} ({who}); two trainings would "
        f"write the same checkpoints. Wait for it to finish or stop it, then continue with "
        f"`charrnn train --resume --out {path}`"
    )
