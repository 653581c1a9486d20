"""The XLA engine in a child process, so that TensorFlow imports and compiles on
the other core while this process streams NumPy-generated text.

Why a process and not a thread: importing TensorFlow holds the GIL for long
stretches.  Measured on the 2-core test machine with the import in a background
thread, the NumPy loop in the main thread ran 5x slower and the import itself took
3x longer; in a child process both run at full speed.  The child imports
TensorFlow alone (not Keras, which the loop does not need) and keeps an XLA
compile cache in the user's cache directory.

Protocol (pipes, no pickle): a message is one JSON line, then the raw bytes of the
arrays it lists as [dtype, shape] (float32 or int32 only).
  parent -> child: {"op": "init", "cell", "names", "batch", "first_lane", "options"} + weights
                   {"op": "run", "t0", "sync"} + forced ids [+ tok, states if sync]
  child -> parent: {"ready": true} | {"error": "..."} | {"op": "out"} + ids
The child holds the recurrent state between runs; "sync" hands it over once.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.generate.choice import Options
from charrnn.generate.xla_engine import CHUNK, XLAEngine
from charrnn.nn.step import Weights

DELAY_ENV = "CHARRNN_TEST_XLA_DELAY"   # test hook: seconds the child waits before importing
_DTYPES = {"float32": np.float32, "int32": np.int32}


def _send(f, header, arrays=()):
    arrays = [np.ascontiguousarray(a) for a in arrays]
    header = dict(header, arrays=[[str(a.dtype), list(a.shape)] for a in arrays])
    f.write(json.dumps(header).encode() + b"\n")
    for a in arrays:
        f.write(memoryview(a).cast("B"))
    f.flush()


def _recv(f):
    line = f.readline()
    if not line:
        raise EOFError
    header = json.loads(line)
    arrays = []
    for dtype, shape in header.pop("arrays"):
        dt = np.dtype(_DTYPES[dtype])
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        buf = f.read(n)
        if len(buf) < n:
            raise EOFError
        arrays.append(np.frombuffer(buf, dt).reshape(shape))
    return header, arrays


def cache_dir():
    """The XLA compile cache: per user, keyed by TensorFlow version and CPU, so a
    cached program is never run on a CPU or TensorFlow it was not built for."""
    import hashlib
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf_version = version("tensorflow")
    except PackageNotFoundError:
        tf_version = "unknown"
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [x for x in f.read().split("\n\n")[0].splitlines()
                     if x.split(":")[0].strip() in ("vendor_id", "model name", "flags")]
        cpu += "\n".join(lines)
    except OSError:
        cpu += platform.processor()
    key = hashlib.sha256(cpu.encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "charrnn", "xla", f"tf-{tf_version}-{key}")


def _child():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent reports Ctrl-C
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from TensorFlow cannot corrupt the protocol
    inp = sys.stdin.buffer
    try:
        header, arrays = _recv(inp)
    except EOFError:
        return
    try:
        time.sleep(float(os.environ.get(DELAY_ENV) or 0))
        try:
            path = cache_dir()
            os.makedirs(path, exist_ok=True)
            os.environ["TF_XLA_FLAGS"] = (os.environ.get("TF_XLA_FLAGS", "")
                                          + f" --tf_xla_persistent_cache_directory={path}")
        except OSError:
            pass  # no cache: compile every time
        import tensorflow  # noqa: F401  (alone: charrnn.backend would add Keras)

        weights = Weights.from_arrays(header["cell"], dict(zip(header["names"], arrays)))
        engine = XLAEngine(weights, Options(**header["options"]), header["batch"],
                           header["first_lane"])
        engine.warm_up()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        _send(out, {"error": f"{type(e).__name__}: {e}"})
        return
    _send(out, {"ready": True})
    tok = states = None
    while True:
        try:
            header, arrays = _recv(inp)
        except EOFError:
            return
        forced = arrays[0]
        if header["sync"]:
            tok, states = arrays[1], list(arrays[2])
        try:
            outs = []
            for i in range(0, forced.shape[1], CHUNK):
                o, tok, states = engine.run(tok, states, header["t0"] + i, forced[:, i:i + CHUNK])
                outs.append(o)
            ids = np.concatenate(outs, axis=1) if outs else forced[:, :0]
        except Exception as e:  # noqa: BLE001
            _send(out, {"error": f"{type(e).__name__}: {e}"})
            return
        _send(out, {"op": "out"}, [ids.astype(np.int32)])


class XLAProcess:
    """The parent's end: ``run(tok, states, t0, forced)`` like the in-process engines,
    returning (ids, last ids, None) -- the state stays in the child."""

    def __init__(self, weights, options, batch, first_lane=0, verbose=False):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "charrnn.generate.xla_process"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=None if verbose else subprocess.DEVNULL,
            start_new_session=True)  # Ctrl-C and Ctrl-Z reach the parent only
        named = weights.arrays()
        names, arrays = list(named), list(named.values())
        init = {"op": "init", "cell": weights.cell, "names": names, "batch": int(batch),
                "first_lane": int(first_lane), "options": asdict(options)}
        # Weights can be megabytes: write them while this process gets on with NumPy.
        self._writer = threading.Thread(target=self._write_init, args=(init, arrays), daemon=True)
        self._writer.start()
        self.ready = False
        self.synced = False

    def _write_init(self, init, arrays):
        try:
            _send(self.proc.stdin, init, arrays)
        except OSError:
            pass  # the child is gone: wait_ready says so

    def _reply(self):
        try:
            header, arrays = _recv(self.proc.stdout)
        except (EOFError, OSError, ValueError):
            status = self.proc.wait()
            raise CharrnnError(f"the TensorFlow engine process ended unexpectedly (status {status}); "
                               "run with -v to see its messages") from None
        if "error" in header:
            raise CharrnnError(f"the TensorFlow engine failed: {header['error']}")
        return header, arrays

    def wait_ready(self):
        if not self.ready:
            self._writer.join()
            self._reply()
            self.ready = True

    def run(self, tok, states, t0, forced):
        self.wait_ready()
        arrays = [forced]
        if not self.synced:
            arrays += [np.asarray(tok, np.int32), np.stack(states).astype(np.float32)]
        try:
            _send(self.proc.stdin, {"op": "run", "t0": int(t0), "sync": not self.synced}, arrays)
        except OSError:
            pass  # the reply says what happened
        self.synced = True
        (ids,) = self._reply()[1]
        return ids, ids[:, -1].copy(), None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


if __name__ == "__main__":
    _child()
