"""Scaling out: tf.distribute strategies, worker roles and mixed precision for training.

TensorFlow's own engine does the work; this module only picks and wires it:

- :func:`make_strategy` resolves ``train.strategy`` (auto, default, mirrored,
  multiworker).  auto: MultiWorkerMirroredStrategy when TF_CONFIG describes a
  cluster, MirroredStrategy when more than one GPU is visible, else the default
  (single-device) strategy.  It must run before any other TensorFlow op: both
  MultiWorkerMirroredStrategy and logical-device splitting need that.
- The global ``batch_size`` streams are split among the replicas in order
  (replica r gets streams [r*b, (r+1)*b)), each replica carries the recurrent
  state of its own streams, and the loss is summed over the replica's tokens and
  divided by the *global* token count, so the summed loss and gradient equal
  single-device ones (:func:`distribute_streams`, :func:`gather_streams`).
- :func:`reduce_and_clip` all-reduces the gradients *before* global-norm
  clipping, so clipping sees the same norm as on one device (Keras 3's optimizer
  would clip each replica's partial gradient).
- :func:`worker_role` / :func:`write_path` / :func:`discard`: TensorFlow's
  multi-worker pattern.  Every worker saves (saving may take part in
  collectives), but only the chief writes the real run directory; the others
  write to a temporary sibling that is removed, so a worker that dies cannot
  corrupt the chief's checkpoints.  Everyone restores from the chief's.
- :func:`set_intra_op_threads`: how many threads one op may use (``train.intra_op_threads``).
- :func:`set_precision` / :func:`wrap_optimizer`: Keras mixed precision with
  float32 variables, logits and loss (the model's logits layer is float32);
  float16 gets dynamic loss scaling.

Import cost: nothing from TensorFlow until a function needs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charrnn.backend import tensorflow
from charrnn.errors import CharrnnError
from charrnn.nn.cells import get

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from charrnn.atomic import StrPath

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# Split the CPU into this many logical devices (tests of MirroredStrategy on a
# CPU-only machine); read before TensorFlow initialises its devices.
CPU_DEVICES_ENV = "CHARRNN_CPU_DEVICES"
_TEMP_PREFIX = ".workertemp_"


# --- devices and strategy ------------------------------------------------------------


def split_cpu(n: int) -> None:
    """Present the first CPU as ``n`` logical devices.  Must precede any TF op."""
    tf = tensorflow()
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) == n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        raise CharrnnError(
            f"{CPU_DEVICES_ENV}={n}: TensorFlow's devices are already "
            "initialised; set it in the environment before charrnn starts"
        ) from None


def tf_config() -> dict | None:
    """The parsed TF_CONFIG when it describes a cluster of chief/worker tasks, else None."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
    except ValueError as e:
        raise CharrnnError(
            f"TF_CONFIG is not valid JSON ({e}); set it as docs/scaling.md shows or unset it"
        ) from None
    cluster = cfg.get("cluster") if isinstance(cfg, dict) else None
    if not cluster:
        return None
    task = cfg.get("task") or {}
    if task.get("type") not in ("chief", "worker") or not isinstance(task.get("index"), int):
        raise CharrnnError(
            f"TF_CONFIG task {task!r} is not a chief or worker with an index; "
            "charrnn trains with MultiWorkerMirroredStrategy, which needs "
            '"task": {"type": "worker", "index": N} (no parameter servers)'
        )
    if task["index"] >= len(cluster.get(task["type"], [])):
        raise CharrnnError(
            f"TF_CONFIG task index {task['index']} is not in its cluster's "
            f"{task['type']} list; each process needs its own index"
        )
    return cfg


def resolve_name(name: str = "auto") -> str:
    """The concrete strategy ``name`` stands for (auto looks at TF_CONFIG and the GPUs)."""
    if name not in STRATEGIES:
        raise CharrnnError(
            f"train.strategy {name!r} is unknown; choose one of {', '.join(STRATEGIES)}"
        )
    if name != "auto":
        return name
    if tf_config():
        return "multiworker"
    if len(tensorflow().config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Create the tf.distribute strategy for ``train.strategy``; call it before any TF op."""
    n_cpu = os.environ.get(CPU_DEVICES_ENV)
    if n_cpu:
        if not n_cpu.isdigit() or int(n_cpu) < 1:
            raise CharrnnError(f"{CPU_DEVICES_ENV}={n_cpu!r} must be a device count >= 1")
        split_cpu(int(n_cpu))
    name = resolve_name(name)
    tf = tensorflow()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = None  # every GPU; with none, every (logical) CPU instead of just CPU:0
        if not tf.config.list_physical_devices("GPU"):
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if not tf_config():
        raise CharrnnError(
            "train.strategy multiworker needs TF_CONFIG describing the cluster "
            "and this process's task; see docs/scaling.md"
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:  # e.g. created after TensorFlow already ran ops
        raise CharrnnError(
            f"cannot start MultiWorkerMirroredStrategy ({e}); it must be created "
            "before TensorFlow runs anything"
        ) from None


# Largest recurrent matmul of one time step (batch x rnn_size x gates * rnn_size
# multiply-adds) for which auto uses one thread per op, with AVX-512 GEMM kernels and with
# AVX2 ones; see intra_op_threads.
SMALL_STEP_MACS = 32 * 2**20
SMALL_STEP_MACS_AVX2 = 8 * 2**20


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


CPUINFO = "/proc/cpuinfo"


def cpu_flags() -> set[str]:
    """The CPU's flags as oneDNN's kernels see them: /proc/cpuinfo's, less what
    ONEDNN_MAX_CPU_ISA withholds (AVX2 or older: no avx512*/amx*; AVX512_CORE[_VNNI]: no
    bfloat16), so that variable emulates an older CPU for train's auto settings too."""
    try:
        with open(CPUINFO, encoding="ascii", errors="replace") as f:
            flags = set(next((ln for ln in f if ln.startswith("flags")), ":").split(":")[1].split())
    except OSError:
        return set()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if cap.startswith("SSE") or cap in ("AVX", "AVX2") or cap.startswith("AVX2_"):
        flags = {f for f in flags if not f.startswith(("avx512", "amx"))}
    elif cap in ("AVX512_CORE", "AVX512_CORE_VNNI"):
        flags = {f for f in flags if f != "avx512_bf16" and not f.startswith("amx")}
    return flags


def bfloat16_in_hardware() -> bool:
    """Does this CPU (as oneDNN sees it) do bfloat16 matmuls in hardware (AVX512_BF16, AMX)?"""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def intra_op_threads(setting: int | str, batch_size: int, rnn_size: int, cell: str) -> int:
    """The intra-op thread count ``train.intra_op_threads`` stands for (0: TF's default).

    auto: 1 on a CPU-only machine of at most 2 cores when one time step's recurrent
    matmul is small: such a step is thousands of small ops, and splitting each across the
    cores costs more than it saves, while with one thread per op the two cores run
    independent ops side by side.  Measured with the real `charrnn train` (median of 12 log
    windows, runs interleaved) on AVX-512: 1.06x at 2x128 and 2x256 LSTM (batch 64, seq 100),
    but 0.96x at 3x512 (batch 50: 52M multiply-adds a step), hence SMALL_STEP_MACS.  With
    AVX2 kernels only (most laptops; TensorFlow then runs its matmuls through Eigen) one
    thread does such a matmul at half the speed, so splitting pays sooner: a 2x256 step took
    1.4x as long on one thread, a 2x128 step the same (benchmarks/RESULTS.md, emulated with
    ONEDNN_MAX_CPU_ISA=AVX2), hence SMALL_STEP_MACS_AVX2.  Not measured on more cores, so
    TensorFlow's default there.  The parallel cells (mingru, minlstm: no recurrent matmul,
    an element-wise step) get the same bound on their input projection's share of a step;
    not measured either.
    """
    if setting != "auto":
        return setting
    if tensorflow().config.list_physical_devices("GPU") or cpu_count() > 2:
        return 0
    bound = SMALL_STEP_MACS if "avx512f" in cpu_flags() else SMALL_STEP_MACS_AVX2
    return 1 if batch_size * rnn_size * get(cell).gates * rnn_size <= bound else 0


def set_intra_op_threads(n: int) -> int:
    """Use ``n`` intra-op threads (0: TF's default) if TensorFlow has not started yet;
    returns the count in effect (0: TF's default)."""
    threading = tensorflow().config.threading
    if n and threading.get_intra_op_parallelism_threads() != n:
        try:
            threading.set_intra_op_parallelism_threads(n)
        except RuntimeError:  # already initialised (a second run in one process): keep it
            pass
    return threading.get_intra_op_parallelism_threads()


# --- who writes what -------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    chief: bool = True
    task_type: str | None = None
    task_id: int = 0
    num_workers: int = 1


def worker_role(strategy_name: str = "auto") -> Role:
    """This process's role, from TF_CONFIG alone (no TensorFlow needed).

    The chief is the "chief" task, or worker 0 when the cluster has no chief
    (TensorFlow's rule).  Single-machine strategies are always the chief.
    """
    cfg = tf_config() if strategy_name in ("auto", "multiworker") else None
    if cfg is None:
        return Role()
    cluster, task = cfg["cluster"], cfg["task"]
    chief = task["type"] == "chief" or (
        task["type"] == "worker" and task["index"] == 0 and not cluster.get("chief")
    )
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return Role(chief, task["type"], task["index"], workers)


def write_path(path: StrPath, role: Role) -> Path:
    """Where this process writes ``path``: the path itself for the chief, else a
    temporary sibling ``<parent>/.workertemp_<id>/<name>`` (remove it with :func:`discard`)."""
    path = Path(path)
    if role.chief:
        return path
    return path.parent / f"{_TEMP_PREFIX}{role.task_id}" / path.name


def discard(path: StrPath, role: Role) -> None:
    """Remove what a non-chief wrote under :func:`write_path` (no-op for the chief)."""
    if role.chief:
        return
    temp = Path(path).parent
    if temp.name.startswith(_TEMP_PREFIX):
        shutil.rmtree(temp, ignore_errors=True)


# --- data and state across replicas ------------------------------------------------------


def replica_batch(strategy: tf.distribute.Strategy, batch_size: int) -> int:
    """Streams per replica; the global batch must split evenly."""
    n = strategy.num_replicas_in_sync
    if batch_size % n:
        raise CharrnnError(
            f"train.batch_size {batch_size} does not split evenly among "
            f"{n} replicas; use a multiple of {n}"
        )
    return batch_size // n


def distribute_streams(strategy: tf.distribute.Strategy, value: Any) -> Any:
    """Split global (batch, ...) arrays -- or a list of them -- among the replicas by row."""
    tf = tensorflow()
    if strategy.num_replicas_in_sync == 1:
        return tf.nest.map_structure(tf.convert_to_tensor, value)
    b = replica_batch(strategy, len(tf.nest.flatten(value)[0]))

    def part(ctx: tf.distribute.experimental.ValueContext) -> Any:
        r = ctx.replica_id_in_sync_group
        return tf.nest.map_structure(lambda a: tf.convert_to_tensor(a[r * b : (r + 1) * b]), value)

    return strategy.experimental_distribute_values_from_function(part)


def gather_streams(strategy: tf.distribute.Strategy, value: Any) -> Any:
    """The inverse of :func:`distribute_streams`: global tensors (a collective on clusters)."""
    if strategy.num_replicas_in_sync == 1:
        return value
    tf = tensorflow()
    return tf.nest.map_structure(lambda v: strategy.gather(v, axis=0), value)


def reduce_and_clip(
    grads: list[tf.Tensor | tf.IndexedSlices],
    clip_norm: float | None = None,
    scale: tf.Tensor | keras.Variable | None = None,
) -> tuple[list[tf.Tensor], tf.Tensor]:
    """In a replica: the whole batch's gradient norm, and gradients clipped by it.

    Returns ``(grads_for_apply, norm)``; norm is the unclipped global norm of the
    true (unscaled) gradient, the same number one device would compute.  Gradients
    are summed over replicas *before* clipping (Keras 3's optimizer would clip each
    replica's part); it sums them again, so each replica hands it 1/n of the sum.
    An embedding's gradient (IndexedSlices, one row per input token) is made dense
    first: Keras 3's Adam squares such rows before their duplicates are summed, so the
    second moment of a symbol read k times gets the sum of k squares instead of the
    square of the sum, and its step grows past Adam's bound of one learning rate
    (tests/test_distribute.py); the norm must be that of the sum too.  A char model's
    embedding is small.
    ``scale`` is the LossScaleOptimizer's: clipping the scaled gradient at
    ``clip_norm * scale`` is clipping the true one at ``clip_norm``; the optimizer
    unscales, or skips the step when the scaled gradient overflowed.
    """
    tf = tensorflow()
    ctx = tf.distribute.get_replica_context()
    n = ctx.num_replicas_in_sync
    grads = [tf.convert_to_tensor(g) for g in grads]
    if n > 1:
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    norm = tf.linalg.global_norm(grads)
    scale = 1.0 if scale is None else tf.cast(scale, tf.float32)
    if clip_norm:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm * scale, use_norm=norm)
    if n > 1:
        grads = [g / n for g in grads]
    return grads, norm / scale


def _multiworker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tensorflow().distribute.MultiWorkerMirroredStrategy)


def agree_max(strategy: tf.distribute.Strategy, code: int) -> int:
    """The largest ``code`` over all workers, on every worker: a stop decision (time,
    Ctrl-C) taken on one worker is taken by all at the same step, so every worker
    runs the same collectives and none waits for a peer that already left."""
    tf = tensorflow()
    if not _multiworker(strategy):
        return code
    # ReduceOp has no MAX: sum "code >= k" indicators for k = 1..8 and count the levels hit.
    levels = [float(code >= k) for k in range(1, 9)]
    v = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(levels))
    return int(tf.math.count_nonzero(strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)))


def agree_mean(strategy: tf.distribute.Strategy, value: float) -> float:
    """The mean of ``value`` over workers: one number every worker acts on alike."""
    tf = tensorflow()
    if not _multiworker(strategy):
        return value
    v = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(float(value), tf.float64)
    )
    return float(strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None))


# --- determinism ----------------------------------------------------------------------


def resolve_deterministic(setting: bool | str, gpus: list | None = None) -> tuple[bool, str]:
    """(on?, why) for ``train.deterministic``.  auto: on where no GPU is visible (exact
    resume is tested there); off with a GPU, where cuDNN's RNN kernels and the embedding
    gradient may have no deterministic implementation and no test here ran on one.
    ``gpus``: the visible GPU list (default: ask TensorFlow; tests pass a fake one)."""
    if setting != "auto":
        return bool(setting), "set in the config"
    if gpus is None:
        gpus = tensorflow().config.list_physical_devices("GPU")
    return (False, "auto: a GPU is visible") if gpus else (True, "auto: no GPU")


# --- precision ------------------------------------------------------------------------


def resolve_precision(name: str = "auto") -> str:
    """auto: mixed_bfloat16 on a CPU that does bfloat16 in hardware (AVX512_BF16 or AMX;
    measured 1.2-1.3x faster here at the same validation loss), else float32 -- also on
    GPUs, where we have not measured it."""
    if name != "auto":
        return name
    if tensorflow().config.list_physical_devices("GPU"):
        return "float32"
    return "mixed_bfloat16" if bfloat16_in_hardware() else "float32"


def set_precision(name: str) -> str:
    """Set the Keras global dtype policy (before building the model); returns the old one."""
    if name not in PRECISIONS[1:]:
        raise CharrnnError(
            f"train.precision {name!r} is unknown; choose one of {', '.join(PRECISIONS)}"
        )
    tensorflow()
    import keras

    old = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    return old


@contextlib.contextmanager
def precision(name: str) -> Iterator[None]:
    """``with precision("mixed_bfloat16"): build the model`` -- the policy is process-wide,
    so restore it afterwards for whatever runs next in this process."""
    old = set_precision(name)
    try:
        yield
    finally:
        set_precision(old)


def wrap_optimizer(
    optimizer: keras.optimizers.Optimizer, precision_name: str
) -> keras.optimizers.Optimizer:
    """float16 needs dynamic loss scaling (bfloat16 has float32's range and does not)."""
    if precision_name != "mixed_float16":
        return optimizer
    import keras

    return keras.optimizers.LossScaleOptimizer(optimizer)


def loss_scale(optimizer: keras.optimizers.Optimizer) -> keras.Variable | None:
    """The current loss scale variable, or None when the optimizer does not scale."""
    return (
        getattr(optimizer, "dynamic_scale", None) if hasattr(optimizer, "inner_optimizer") else None
    )
