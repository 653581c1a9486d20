"""Every registered cell (charrnn.nn.cells.REGISTRY) on every backend it lists, against one
reference on the same weights and inputs; that no module outside the cells' package branches on
a cell's name; and that every cell has what the registry and the page need of it.

The reference is the generic step over NumPy (``cell_step(NumpyOps, ...)``), teacher-forced over
a short window of random ids from the zero state at batch 3, on a small random model (2 layers
of 12 units; weights drawn here, large enough that every gate is far from its resting value).
A backend reproduces its logits at every step and its final states: Keras' layers, the fused
CPU pass (and its gradients equal Keras'), the same step over TensorFlow, the NumPy and XLA
engines of charrnn.generate (teacher-forced, then greedy: their choices are the reference's
argmax wherever its top two are clearly apart), the ONNX and TFLite exports in their runtimes,
and the page's JavaScript in a real browser.
"""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from charrnn.nn.cells import REGISTRY, get
from charrnn.nn.cells.base import BACKENDS
from charrnn.nn.step import NumpyOps, cell_step, tf_ops

ROOT = Path(__file__).resolve().parent.parent / "charrnn"
CELLS_DIR = ROOT / "nn" / "cells"
PAGE = ROOT / "web" / "sampler.html"

SYMBOLS = list("\n abcdefghijk")  # the vocabulary: 13 symbols
LAYERS, UNITS, EMBED = 2, 12, 6
BATCH, STEPS, GREEDY = 3, 9, 12  # ids per row teacher-forced, then greedy steps
LONG = 150  # the page's stream
TOL = {"atol": 2e-5, "rtol": 2e-5}  # float32 against float32, other order of operations
EXPORT_TOL = {"atol": 1e-4, "rtol": 1e-4}  # the exports' own check (charrnn.export.formats)
MARGIN = 1e-3  # an argmax is checked where the reference's top two are further apart


def tensorflow():
    from charrnn.backend import tensorflow

    return tensorflow()


def no_gpu_reason():
    """Why the fused path cannot be tested here (a model on a GPU keeps Keras' cuDNN
    kernels: charrnn.nn.model), or None on a CPU-only machine."""
    if tensorflow().config.list_physical_devices("GPU"):
        return "the fused pass is the CPU path; with a GPU the model keeps Keras' layers"
    return None


# --- the shared model per cell, and the reference on it ----------------------------------


def random_tensors(shapes: dict, rng) -> dict:
    """Weights that make every gate matter: norm scales near 1, matrices ~1.2 / sqrt(fan-in)
    (so a gate's input is of order 1, not Keras' near-zero start), biases and the embedding
    of order 0.3 and 1."""
    out = {}
    for name, shape in shapes.items():
        if name.endswith("norm"):
            a = 1 + rng.normal(scale=0.2, size=shape)
        elif name == "embedding":
            a = rng.normal(size=shape)
        elif len(shape) == 2 and not name.endswith("bias"):
            a = rng.normal(scale=1.2 / np.sqrt(shape[0]), size=shape)
        else:
            a = rng.normal(scale=0.3, size=shape)
        out[name] = a.astype(np.float32)
    return out


class Case:
    """One cell's random model (Keras), its weights in the engines' arrangement, the ids, and
    the reference's logits [B, T, V] and final states."""

    def __init__(self, cell: str, seed: int):
        from charrnn.nn.model import build_model
        from charrnn.nn.tensors import assign_to_model, engine_weights, tensors_from_model

        self.cell, self.spec = cell, get(cell)
        self.model = build_model(
            len(SYMBOLS), cell, num_layers=LAYERS, rnn_size=UNITS, embedding_size=EMBED
        )
        self.default_fused = self.model.fused
        rng = np.random.default_rng(seed)
        shapes = {k: v.shape for k, v in tensors_from_model(self.model).items()}
        assign_to_model(self.model, random_tensors(shapes, rng))
        self.tensors = tensors_from_model(self.model)
        self.args = {
            "vocab_size": len(SYMBOLS),
            "cell": cell,
            "num_layers": LAYERS,
            "rnn_size": UNITS,
            "embedding_size": self.model.embedding_size,
            "dropout": 0.0,
        }
        self.w = engine_weights(cell, self.tensors)
        self.ids = rng.integers(0, len(SYMBOLS), (BATCH, STEPS)).astype(np.int32)
        self.logits, self.states = self.run(self.w.zero_states(BATCH), self.ids)
        # the input matters, and so does the state: not a model that ignores either
        assert np.abs(self.logits - self.logits.mean(axis=1, keepdims=True)).mean() > 1e-2
        assert np.abs(self.logits[0] - self.logits[1]).max() > 1e-2

    def run(self, states, ids):
        """The reference: cell_step over NumPy, teacher-forced over ids [B, T]."""
        out = []
        for t in range(ids.shape[1]):
            logits, states = cell_step(NumpyOps, self.w, ids[:, t], states)
            out.append(logits)
        return np.stack(out, 1), states

    @property
    def n_states(self):
        return LAYERS * len(self.spec.states)

    def same(self, logits, states, rows=slice(None), tol=TOL):
        """``logits`` [b, T, V] and final ``states`` are the reference's (of ``rows``)."""
        np.testing.assert_allclose(np.asarray(logits), self.logits[rows], **tol)
        assert len(states) == self.n_states
        for i, (got, want) in enumerate(zip(states, self.states)):
            np.testing.assert_allclose(np.asarray(got), want[rows], **tol, err_msg=f"state {i}")

    def greedy(self, chosen, states):
        """An engine's choices after the teacher-forced window (``chosen`` [B, GREEDY]) and its
        states after them: each the reference's argmax where its top two are clearly apart,
        and the states the reference reaches along the same path."""
        logits, ref = self.logits[:, -1], self.states
        decisive = []
        for k in range(chosen.shape[1]):
            top2 = np.sort(logits, axis=1)[:, -2:]
            clear = top2[:, 1] - top2[:, 0] > MARGIN
            assert (chosen[:, k] == logits.argmax(axis=1))[clear].all(), (k, chosen[:, k])
            decisive.append(clear)
            if k + 1 < chosen.shape[1]:  # the last choice is not fed yet
                logits, ref = cell_step(NumpyOps, self.w, chosen[:, k], ref)
        assert np.mean(decisive) > 0.5  # the argmax check has something to check
        for got, want in zip(states, ref):
            np.testing.assert_allclose(np.asarray(got), want, **TOL)


@pytest.fixture(scope="module")
def case():
    """case(cell): the cell's Case, made on first use and shared by its backends' tests."""
    made = {}

    def get_case(cell):
        if cell not in made:
            made[cell] = Case(cell, seed=list(REGISTRY).index(cell))
        return made[cell]

    return get_case


@pytest.fixture(scope="module")
def driver():
    import browser

    yield from browser.browser_session()


# --- each backend ------------------------------------------------------------------------


def keras_window(c):
    """Keras' own layers (model.fused off) over the whole window from the zero state."""
    tf = tensorflow()
    c.model.fused = False
    try:
        logits, states = c.model(tf.constant(c.ids), return_state=True)
    finally:
        c.model.fused = c.default_fused
    c.same(logits, states)


def keras_stepped(c):
    """The reference is the Keras model's own logits, a symbol at a time with the state
    carried out and back in (so the step's state is the layers' state, step by step)."""
    tf = tensorflow()
    c.model.fused = False
    try:
        states, out = None, []
        for t in range(STEPS):
            logits, states = c.model(tf.constant(c.ids[:, t : t + 1]), states, return_state=True)
            out.append(logits.numpy()[:, 0])
    finally:
        c.model.fused = c.default_fused
    c.same(np.stack(out, 1), states)


def loss_and_grads(model, x, y, states):
    tf = tensorflow()
    with tf.GradientTape() as tape:
        logits, new_states = model(x, states=states, return_state=True, training=True)
        # the final states feed the loss too, so their gradient paths are checked as well
        # (both states of an LSTM's last layer, a GRU's last two layers)
        loss = (
            tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            + 0.1 * tf.reduce_sum(new_states[-1])
            + 0.1 * tf.reduce_sum(new_states[-2])
        )
    grads = tape.gradient(loss, model.trainable_variables)
    return loss, new_states, [tf.convert_to_tensor(g) for g in grads]


def fused(c):
    """The fused pass: forward (eager) is the reference; from non-zero states the loss, final
    states and the gradient of every variable equal Keras' layers', eagerly and in a graph."""
    reason = no_gpu_reason()
    if reason:
        pytest.skip(reason)
    tf = tensorflow()
    assert c.default_fused  # this cell has a fused pass, and a CPU-only model takes it
    logits, states = c.model(tf.constant(c.ids), return_state=True)
    c.same(logits, states)
    rng = np.random.default_rng(7)
    x = tf.constant(rng.integers(0, len(SYMBOLS), c.ids.shape), tf.int32)
    y = tf.constant(rng.integers(0, len(SYMBOLS), c.ids.shape), tf.int32)
    init = [tf.constant(rng.normal(size=(BATCH, UNITS)), tf.float32) for _ in range(c.n_states)]
    for fn in (loss_and_grads, tf.function(loss_and_grads)):
        got = fn(c.model, x, y, init)
        c.model.fused = False
        try:
            want = tf.function(loss_and_grads)(c.model, x, y, init)
        finally:
            c.model.fused = True
        assert abs(float(got[0]) - float(want[0])) < 1e-5
        for a, b in zip(got[1], want[1]):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
        for var, a, b in zip(c.model.trainable_variables, got[2], want[2]):
            assert np.abs(b.numpy()).max() > 0, var.path  # every variable is on the path
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=1e-4, err_msg=var.path)


def step_tf(c):
    """cell_step over TensorFlow, the window unrolled in a tf.function."""
    tf, ops = tf_ops()

    @tf.function(autograph=False)
    def window(ids):
        states, out = [tf.zeros((BATCH, UNITS))] * c.n_states, []
        for t in range(STEPS):
            logits, states = cell_step(ops, c.w, ids[:, t], states)
            out.append(logits)
        return tf.stack(out, 1), states

    logits, states = window(tf.constant(c.ids))
    c.same(logits, states)


def forced_then_greedy(c):
    """An engine's ``forced`` ids: the window's after its first (the first input is ``tok``),
    then GREEDY steps of its own choosing."""
    return np.concatenate([c.ids[:, 1:], np.full((BATCH, GREEDY), -1, np.int32)], axis=1)


def numpy_engine(c):
    from charrnn.generate.choice import Options
    from charrnn.generate.numpy_engine import NumpyEngine

    engine = NumpyEngine(c.w, Options(temperature=0), BATCH)
    out, tok, states = engine.run(c.ids[:, 0], c.w.zero_states(BATCH), 0, forced_then_greedy(c))
    np.testing.assert_array_equal(out[:, : STEPS - 1], c.ids[:, 1:])
    np.testing.assert_array_equal(tok, out[:, -1])
    c.greedy(out[:, STEPS - 1 :], states)


def xla_engine(c):
    from charrnn.generate.choice import Options
    from charrnn.generate.xla_engine import XLAEngine

    engine = XLAEngine(c.w, Options(temperature=0), BATCH)
    out, tok, states = engine.run(c.ids[:, 0], c.w.zero_states(BATCH), 0, forced_then_greedy(c))
    np.testing.assert_array_equal(out[:, : STEPS - 1], c.ids[:, 1:])
    np.testing.assert_array_equal(tok.numpy(), out[:, -1])
    c.greedy(out[:, STEPS - 1 :], [s.numpy() for s in states])


def numpy_fast(c):
    """The cell's batch-1 fast path: its logits at batch 1 (ids as ints) and at batch 3 (as an
    array), and the NumPy engine's batch-1 sampling loop on it: the ids the reference's
    ``choose`` draws from the reference's logits with the same uniforms."""
    from charrnn.generate.choice import Options, choose, seed_mix, uniform
    from charrnn.generate.numpy_engine import NumpyEngine

    for rows in (slice(0, 1), slice(None)):
        fast = c.spec.numpy_fast(c.w, len(c.ids[rows]))
        fast.load(c.w.zero_states(len(c.ids[rows])))
        first = rows.stop == 1
        out = [fast.step(int(i[0]) if first else i).copy() for i in c.ids[rows].T]
        c.same(np.stack(out, 1), fast.save(), rows)
    opt = Options(temperature=0.8, seed=5)
    engine = NumpyEngine(c.w, opt, 1)
    forced = np.full((1, 40), -1, np.int32)
    forced[0, : STEPS - 1] = c.ids[0, 1:]
    got, _, _ = engine.run(c.ids[:1, 0], c.w.zero_states(1), 0, forced)
    tok, states, want = c.ids[:1, 0], c.w.zero_states(1), []
    for t in range(forced.shape[1]):
        logits, states = cell_step(NumpyOps, c.w, tok, states)
        u = uniform(NumpyOps, seed_mix(opt.seed), np.uint32(t), np.zeros(1, np.uint32))
        tok = forced[:, t] if forced[0, t] >= 0 else choose(NumpyOps, opt, logits, u)
        want.append(int(tok[0]))
    assert got[0].tolist() == want
    assert len(set(want[STEPS - 1 :])) > 3  # it sampled, not a fixed point


def state_names(c):
    """The one-step function's state inputs (charrnn.export.formats), in the flat order."""
    return [f"state_{s}_{i}" for i in range(LAYERS) for s in c.spec.states]


def exported(step, c):
    """A one-step function ``step(ids, states) -> (logits, states)`` over the window."""
    states, out = c.w.zero_states(BATCH), []
    for t in range(STEPS):
        logits, states = step(c.ids[:, t], states)
        out.append(np.asarray(logits))
    return np.stack(out, 1), states


def onnx(c):
    import onnxruntime as ort

    from charrnn.export.onnx_graph import onnx_model

    proto = onnx_model(c.tensors, c.args).SerializeToString()
    sess = ort.InferenceSession(proto, providers=["CPUExecutionProvider"])
    names = state_names(c)

    def step(ids, states):
        logits, *states = sess.run(None, {"ids": ids, **dict(zip(names, states))})
        return logits, states

    c.same(*exported(step, c), tol=EXPORT_TOL)


def tflite(c):
    from ai_edge_litert.interpreter import Interpreter

    from charrnn.export.formats import tflite_model

    runner = Interpreter(model_content=tflite_model(c.tensors, c.args, {})).get_signature_runner()
    names = state_names(c)

    def step(ids, states):
        res = runner(ids=ids, **dict(zip(names, states)))
        return res["logits"], [res[f"new_{s}"] for s in names]

    c.same(*exported(step, c), tol=EXPORT_TOL)


def page(c, driver, tmp_path):
    """The page's JavaScript, row by row (``window.charrnn.logits`` runs batch 1); and over a
    stream of LONG ids, where its rounding, if it differed from float32's, would grow."""
    import browser

    from charrnn.export.webpage import write_page
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

    loaded = LoadedModel(
        "random", c.args, Vocab(SYMBOLS), {}, checkpoint="random", tensors=c.tensors
    )
    path = tmp_path / f"{c.cell}.html"
    write_page(loaded, path)
    url = browser.open_page(driver, path)
    script = "return window.charrnn.logits(arguments[0])"
    got = np.array([driver.execute_script(script, row.tolist()) for row in c.ids])
    assert got.shape == c.logits.shape
    np.testing.assert_array_less(np.abs(got - c.logits), 1e-4 + 1e-4 * np.abs(c.logits))
    stream = np.random.default_rng(1).integers(0, len(SYMBOLS), (1, LONG)).astype(np.int32)
    want = c.run(c.w.zero_states(1), stream)[0][0]
    got = np.array(driver.execute_script(script, stream[0].tolist()))
    np.testing.assert_array_less(np.abs(got - want), 1e-4 + 1e-4 * np.abs(want))
    browser.assert_offline(driver, url)


RUN = {
    "keras": keras_window,
    "fused": fused,
    "step_numpy": keras_stepped,
    "step_tf": step_tf,
    "numpy_engine": numpy_engine,
    "numpy_fast": numpy_fast,
    "xla_engine": xla_engine,
    "onnx": onnx,
    "tflite": tflite,
}


@pytest.mark.parametrize(
    "cell, backend", [(name, b) for name, cell in REGISTRY.items() for b in cell.backends]
)
def test_every_cell_on_every_backend_is_the_reference(cell, backend, case, request, tmp_path):
    """What REGISTRY lists is what runs: a new cell or backend is tested once it is listed."""
    c = case(cell)
    if backend == "page":
        page(c, request.getfixturevalue("driver"), tmp_path)
    else:
        RUN[backend](c)


def test_every_backend_has_its_check():
    assert set(RUN) | {"page"} == set(BACKENDS)


# --- nothing outside the cells' package branches on a cell's name ---------------------------

NAMES = set(REGISTRY)


def _names_in(node) -> bool:
    """A cell's name as a string constant, or a tuple/list/set holding one."""
    if isinstance(node, ast.Constant):
        return node.value in NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_in(e) for e in node.elts)
    return False


def _pattern_names(p) -> bool:
    if isinstance(p, ast.MatchValue):
        return _names_in(p.value)
    if isinstance(p, ast.MatchOr):
        return any(_pattern_names(q) for q in p.patterns)
    if isinstance(p, ast.MatchAs) and p.pattern is not None:
        return _pattern_names(p.pattern)
    return False


def branches_on_cell_names(tree) -> list:
    """(line, what) of each comparison with, dict keyed by, or match case on a cell's name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            compares = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)
            if any(isinstance(op, compares) for op in node.ops) and any(
                _names_in(x) for x in [node.left, *node.comparators]
            ):
                found.append((node.lineno, "compares with a cell's name"))
        elif isinstance(node, ast.Dict):
            if any(k is not None and _names_in(k) for k in node.keys):
                found.append((node.lineno, "a dict keyed by cells' names"))
        elif isinstance(node, ast.match_case) and _pattern_names(node.pattern):
            found.append((node.pattern.lineno, "a match case on a cell's name"))
    return found


def test_no_module_outside_the_cells_branches_on_a_cells_name():
    """Code outside charrnn/nn/cells/ asks the cell (charrnn.nn.cells.get) instead: naming a
    cell as a value (a default, autosize's choice) is fine, comparing with one is not."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        if CELLS_DIR in path.parents:
            continue
        rel = path.relative_to(ROOT.parent)
        for line, what in branches_on_cell_names(ast.parse(path.read_text("utf-8"))):
            bad.append(f"{rel}:{line}: {what}")
    assert not bad, "ask charrnn.nn.cells.get(cell) instead:\n" + "\n".join(bad)


def test_the_check_finds_each_kind_of_branch():
    code = (
        "if cell == 'lstm': pass\n"
        "x = cell in ('gru', 'rnn')\n"
        "y = 'mingru' != c\n"
        "g = {'lstm': 4, 'gru': 3}[cell]\n"
        "match cell:\n"
        "    case 'minlstm' | 'x':\n"
        "        pass\n"
        "default = 'lstm'\n"  # a value, not a branch
        "z = cell == 'transformer'\n"  # not a registered cell
    )
    assert sorted(line for line, _ in branches_on_cell_names(ast.parse(code))) == [1, 2, 3, 4, 6]


def js_branches_on_cell_names(text: str) -> list:
    """Lines of JavaScript comparing (==, ===, !=, !==) with, or switching on, a cell's name."""
    name = "|".join(sorted(NAMES))
    quoted = "(?:" + "|".join(f"{q}(?:{name}){q}" for q in "\"'`") + ")"
    pattern = re.compile(rf"{quoted}\s*[!=]==?|[!=]==?\s*{quoted}|\bcase\s+{quoted}")
    return [i for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]


def test_the_page_does_not_branch_on_a_cells_name():
    lines = js_branches_on_cell_names(PAGE.read_text("utf-8"))
    assert not lines, f"{PAGE.relative_to(ROOT.parent)} compares with a cell's name at {lines}"
    probe = "if (cell === 'lstm') x();\nif (\"gru\" == M.cell) y();\ncase 'rnn':\nconst a = 'lstm';"
    assert js_branches_on_cell_names(probe) == [1, 2, 3]


# --- what every cell has ------------------------------------------------------------------

REQUIRED = ("name", "gates", "gate_order", "states", "js_step", "backends")
FAMILY = (
    "tensor_shapes",
    "variables",
    "arrange",
    "build",
    "call",
    "step",
    "sweep",
    "onnx_setup",
    "onnx_layer",
    "matrix_weights",
    "other_params",
)


def page_steps() -> set:
    """The names listed in the page's ``CELL_STEPS`` object that are functions of the page."""
    text = PAGE.read_text("utf-8")
    listed = re.search(r"const CELL_STEPS = \{([^}]*)\}", text)
    assert listed, f"{PAGE.name} has no CELL_STEPS object"
    names = {n.strip() for n in listed.group(1).split(",") if n.strip()}
    return {n for n in names if re.search(rf"\bfunction {re.escape(n)}\s*\(", text)}


@pytest.mark.parametrize("key", list(REGISTRY))
def test_every_cell_has_what_a_cell_needs(key):
    """The failure lists everything the cell lacks, at once."""
    cell = REGISTRY[key]
    lacks = [a for a in REQUIRED if getattr(cell, a, None) in (None, "", ())]
    lacks += [m for m in FAMILY if not callable(getattr(cell, m, None))]
    lacks += [f"{m} (its family's stub)" for m in stubs(type(cell))]
    if getattr(cell, "name", None) != key:
        lacks.append(f"the name of its REGISTRY key (it is named {getattr(cell, 'name', None)!r})")
    if not (isinstance(getattr(cell, "gates", None), int) and cell.gates >= 1):
        lacks.append("gates: a whole number of weight blocks, at least 1")
    if tuple(getattr(cell, "states", ()))[:1] != ("h",):
        lacks.append("states starting with 'h' (what every layer carries, and the page reads)")
    if getattr(cell, "js_step", None) not in page_steps():
        lacks.append(
            f"its js_step ({getattr(cell, 'js_step', None)!r}) as a function of {PAGE.name} "
            "listed in its CELL_STEPS"
        )
    backends = tuple(getattr(cell, "backends", ()))
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        lacks.append(f"backends known to charrnn.nn.cells.base.BACKENDS (not {unknown})")
    if len(set(backends)) != len(backends):
        lacks.append("each backend listed once")
    for backend, attr in (("fused", "fused_call"), ("numpy_fast", "numpy_fast")):
        has = getattr(cell, attr, None) is not None
        if has != (backend in backends):
            lacks.append(
                f"{attr} (it lists {backend!r})"
                if not has
                else f"{backend!r} in its backends (it has {attr})"
            )
    assert not lacks, f"cell {key!r} lacks: " + "; ".join(lacks)


def stubs(cls) -> list:
    """The methods a cell class inherits as stubs its family left for the cell to write (whose
    body raises NotImplementedError): a family's hooks (``update``, ``recurrence``, ...)."""
    names = {n for klass in cls.__mro__ for n, v in vars(klass).items() if callable(v)}
    return sorted(n for n in names if _raises_not_implemented(getattr(cls, n)))


def _raises_not_implemented(fn) -> bool:
    """Is ``fn`` a stub whose whole body (after a docstring) raises NotImplementedError?"""
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError):
        return False
    body = tree.body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return (
        len(body) == 1
        and isinstance(body[0], ast.Raise)
        and "NotImplementedError" in ast.unparse(body[0].exc)
    )
