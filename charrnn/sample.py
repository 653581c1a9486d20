"""Generate text from a trained model: fast, streaming and reproducible.

Calling the Keras model once per character costs a framework call per symbol
(34 chars/s here).  Instead the recurrent cell is written out from the layer
weights and the whole loop -- cell step, temperature / top-k / top-p sampling,
feeding the choice back in -- runs inside one XLA-compiled ``tf.while_loop``
that returns a chunk of symbols per call and carries the state to the next
call.  The chunk length is a tensor (at most ``CHUNK`` steps), so one
compilation serves every chunk.

Two engines run the same step: NumPy for the first steps (as many as cover
TensorFlow's usual start-up, from the model's shape), which needs no TensorFlow
at all (the weights come from the checkpoint's portable weights.safetensors, see
charrnn.weightsfile), so text streams while a child process (charrnn.xla_process)
imports TensorFlow and compiles on the other core; then XLA for the rest.  They
use the same algorithm and the same counter-based random numbers, and the switch
happens at a fixed step, so the output depends only on the seed and the options
-- never on timing or chunk sizes.
"""

import os
import time
from dataclasses import dataclass

import numpy as np

from charrnn.errors import CharrnnError

CHUNK = 1024          # most steps one XLA call runs (the compiled buffer size)
NUMPY_STEPS_ENV = "CHARRNN_TEST_NUMPY_STEPS"  # test hook: NumPy's share of the steps
NUMPY_COVER = 6.5     # seconds of estimated NumPy work before XLA takes over (numpy_steps_for)


# --- weights --------------------------------------------------------------------
# The cell math below needs only arrays.  The first layer's input projection of
# every symbol is precomputed into one table (embedding @ kernel + bias), so a
# step starts with a row lookup instead of an embedding lookup and a matmul.

@dataclass
class Weights:
    cell: str        # "lstm", "gru" or "rnn"
    table: np.ndarray        # (vocab, gates): first layer's input projection
    layers: list     # per layer: dict(W=input kernel (None in layer 0), U=recurrent kernel,
    #                  WU=both stacked (LSTM/RNN layers > 0), b=input bias, br=GRU recurrent bias)
    dense: np.ndarray        # (units, vocab)
    dense_b: np.ndarray      # (vocab,)

    @property
    def vocab_size(self):
        return self.dense.shape[1]

    @property
    def units(self):
        return self.dense.shape[0]

    @property
    def states_per_layer(self):
        return 2 if self.cell == "lstm" else 1

    def macs_per_step(self):
        """Multiply-adds of one step at batch 1 (to size the NumPy phase)."""
        n = self.dense.size
        for layer in self.layers:
            n += layer["U"].size + (0 if layer["W"] is None else layer["W"].size)
        return n


def make_weights(cell, embedding, kernels, recurrent_kernels, biases, dense, dense_b) -> Weights:
    """Arrange raw layer weights (Keras layout) for the engines."""
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    layers = []
    for i, (k, u, b) in enumerate(zip(kernels, recurrent_kernels, biases)):
        b = f32(b)
        # Keras' GRU (reset_after=True) keeps separate input and recurrent biases.
        b_in, b_rec = (b[0], b[1]) if cell == "gru" else (b, None)
        if i == 0:
            table = f32(embedding) @ f32(k) + b_in
            layers.append({"W": None, "U": f32(u), "b": None, "br": b_rec})
        else:
            layer = {"W": f32(k), "U": f32(u), "b": b_in, "br": b_rec}
            if cell != "gru":  # input and recurrent parts in one matmul
                layer["WU"] = np.concatenate([layer["W"], layer["U"]], axis=0)
            layers.append(layer)
    return Weights(cell, f32(table), layers, f32(dense), f32(dense_b))


def weights_from_model(model) -> Weights:
    """Weights of a built charrnn.model CharRNN."""
    cells = [rnn.cell for rnn in model.rnns]
    return make_weights(model.cell, model.embedding.embeddings.numpy(),
                        [c.kernel.numpy() for c in cells],
                        [c.recurrent_kernel.numpy() for c in cells],
                        [c.bias.numpy() for c in cells],
                        model.dense.kernel.numpy(), model.dense.bias.numpy())


# --- the step, written once for both engines -------------------------------------
# ``ops`` is NumPy or TensorFlow behind the same few names, so the NumPy and XLA
# engines cannot drift apart.

class _NumpyOps:
    float32, int32, uint32 = np.float32, np.int32, np.uint32
    take = staticmethod(lambda a, i: a[i])
    tanh = staticmethod(np.tanh)
    exp = staticmethod(np.exp)
    split = staticmethod(lambda x, n: np.split(x, n, axis=1))
    concat = staticmethod(lambda xs: np.concatenate(xs, axis=1))
    cumsum = staticmethod(lambda x: np.cumsum(x, axis=1, dtype=np.float32))
    sum_last = staticmethod(lambda x: np.sum(x, axis=-1, dtype=np.float32))
    rmax = staticmethod(lambda x: np.max(x, axis=1, keepdims=True))
    rsum = staticmethod(lambda x, dtype=np.float32: np.sum(x, axis=1, dtype=dtype))
    argmax = staticmethod(lambda x: np.argmax(x, axis=1).astype(np.int32))
    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    cast = staticmethod(lambda x, dtype: np.asarray(x).astype(dtype))
    take_rows = staticmethod(lambda a, j: np.take_along_axis(a, j[:, None], axis=1)[:, 0])
    shr = staticmethod(np.right_shift)
    xor = staticmethod(np.bitwise_xor)

    @staticmethod
    def sigmoid(x):
        return np.float32(0.5) * (np.tanh(np.float32(0.5) * x) + np.float32(1))  # no overflow

    @staticmethod
    def top_k(x, k):
        # Stable, so ties keep the lower id first, exactly like tf.math.top_k.
        idx = np.argsort(-x, axis=1, kind="stable")[:, :k].astype(np.int32)
        return np.take_along_axis(x, idx, axis=1), idx


def _tf_ops():
    from charrnn.backend import tensorflow

    tf = tensorflow()

    class TFOps:
        float32, int32, uint32 = tf.float32, tf.int32, tf.uint32
        take = staticmethod(tf.gather)
        tanh = staticmethod(tf.tanh)
        sigmoid = staticmethod(tf.sigmoid)
        exp = staticmethod(tf.exp)
        split = staticmethod(lambda x, n: tf.split(x, n, axis=1))
        concat = staticmethod(lambda xs: tf.concat(xs, axis=1))
        cumsum = staticmethod(lambda x: tf.cumsum(x, axis=1))
        sum_last = staticmethod(lambda x: tf.reduce_sum(x, axis=-1))
        rmax = staticmethod(lambda x: tf.reduce_max(x, axis=1, keepdims=True))
        rsum = staticmethod(lambda x, dtype=tf.float32: tf.reduce_sum(tf.cast(x, dtype), axis=1))
        argmax = staticmethod(lambda x: tf.argmax(x, axis=1, output_type=tf.int32))
        where = staticmethod(tf.where)
        minimum = staticmethod(tf.minimum)
        cast = staticmethod(tf.cast)
        take_rows = staticmethod(lambda a, j: tf.gather(a, j, batch_dims=1))
        shr = staticmethod(tf.bitwise.right_shift)
        xor = staticmethod(tf.bitwise.bitwise_xor)
        top_k = staticmethod(lambda x, k: tf.math.top_k(x, k))

    return tf, TFOps


def _cell_step(ops, w, tok, states):
    """One step of every layer: symbol ids (batch,) and the flat state list ->
    logits (batch, vocab) and the new state list."""
    k = w.states_per_layer
    new, x = [], None
    for i, layer in enumerate(w.layers):
        h = states[i * k]
        if i == 0:
            xz = ops.take(w.table, tok)
        elif w.cell == "gru":
            xz = x @ layer["W"] + layer["b"]
        if w.cell == "gru":
            # Keras 3 GRU, reset_after=True; gates z, r, h.
            hz = h @ layer["U"] + layer["br"]
            xz_, xr, xh = ops.split(xz, 3)
            hz_, hr, hh = ops.split(hz, 3)
            z = ops.sigmoid(xz_ + hz_)
            r = ops.sigmoid(xr + hr)
            cand = ops.tanh(xh + r * hh)
            h = z * h + (1 - z) * cand
            new.append(h)
        else:
            if i == 0:
                a = xz + h @ layer["U"]
            else:  # one matmul for input and recurrent parts
                a = ops.concat([x, h]) @ layer["WU"] + layer["b"]
            if w.cell == "lstm":
                # Keras LSTM gate order: input, forget, cell candidate, output.
                ig, fg, cg, og = ops.split(a, 4)
                c = ops.sigmoid(fg) * states[i * k + 1] + ops.sigmoid(ig) * ops.tanh(cg)
                h = ops.sigmoid(og) * ops.tanh(c)
                new += [h, c]
            else:
                h = ops.tanh(a)
                new.append(h)
        x = h
    return x @ w.dense + w.dense_b, new


# Counter-based random numbers (Wellons' lowbias32 hash): the uniform for
# sample b at step t is a pure function of (seed, t, b), identical in NumPy and
# XLA, so output does not depend on how the steps are split into calls.
def _hash(ops, x):
    x = ops.xor(x, ops.shr(x, 16)) * ops.cast(0x7FEB352D, ops.uint32)
    x = ops.xor(x, ops.shr(x, 15)) * ops.cast(0x846CA68B, ops.uint32)
    return ops.xor(x, ops.shr(x, 16))


def _uniform(ops, seed_mix, t, lanes):
    """(batch,) float32 in [0, 1) for global step ``t``; ``lanes`` = uint32 0..batch-1."""
    h = _hash(ops, ops.xor(ops.cast(t, ops.uint32), seed_mix))
    x = _hash(ops, h + lanes * ops.cast(0x9E3779B9, ops.uint32))
    return ops.cast(ops.shr(x, 8), ops.float32) * (1.0 / (1 << 24))


PAIRWISE_MAX = 1 << 22  # batch x vocab x vocab up to this: find the nucleus without sorting


def _choose(ops, opt, logits, u):
    """Sample one id per row from ``logits`` with the options; ``u`` (batch,) uniforms."""
    if opt.temperature == 0:
        return ops.argmax(logits)
    vocab = logits.shape[1]
    pairwise = opt.top_p < 1 and not opt.top_k and logits.shape[0] * vocab * vocab <= PAIRWISE_MAX
    idx = None
    if (opt.top_k or opt.top_p < 1) and not pairwise:
        # Sorted descending (ties: lower id first); keep the top_k best.
        logits, idx = ops.top_k(logits, min(opt.top_k or vocab, vocab))
    z = logits * (1.0 / opt.temperature)
    p = ops.exp(z - ops.rmax(z))  # unnormalised probabilities
    if pairwise:
        # Nucleus without a sort (slow in XLA on a CPU): the mass ahead of each
        # symbol is that of the symbols more probable than it, or as probable
        # with a lower id -- the same order a stable descending sort gives.
        pi, pj = p[:, :, None], p[:, None, :]
        ahead = (pj > pi) | ((pj == pi) & _lower_id(vocab))
        before = ops.sum_last(ops.where(ahead, pj + 0.0 * pi, 0.0 * pi * pj))
        p = ops.where(before < opt.top_p * ops.sum_last(p)[:, None], p, 0.0 * p)
    elif opt.top_p < 1:
        # Nucleus: the smallest prefix whose mass reaches top_p (never empty,
        # since the first symbol's preceding mass is 0).
        cum = ops.cumsum(p)
        before = cum - p
        p = ops.where(before < opt.top_p * cum[:, -1:], p, 0.0 * p)
    cdf = ops.cumsum(p)
    # Inverse CDF: the first j with cdf[j] > u * total (p[j] > 0 there).
    j = ops.rsum(cdf <= u[:, None] * cdf[:, -1:], ops.int32)
    j = ops.minimum(j, logits.shape[1] - 1)
    return j if idx is None else ops.take_rows(idx, j)


def _lower_id(n):
    """(n, n) bool: [i, j] is j < i."""
    return np.tril(np.ones((n, n), bool), -1)


@dataclass(frozen=True)
class Options:
    temperature: float = 1.0
    top_k: int = 0          # 0: no top-k cut
    top_p: float = 1.0      # 1: no nucleus cut
    seed: int = 0

    def check(self):
        if not self.temperature >= 0:
            raise CharrnnError("--temperature must be 0 (greedy) or more, e.g. 0.8")
        if self.top_k < 0:
            raise CharrnnError("--top-k must be 0 (off) or a positive number of symbols")
        if not 0 < self.top_p <= 1:
            raise CharrnnError("--top-p must be in (0, 1], e.g. 0.9; 1 turns it off")


def _seed_mix(seed):
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    lo = _hash(_NumpyOps, np.array([s & 0xFFFFFFFF], np.uint32))
    return _hash(_NumpyOps, np.bitwise_xor(lo, np.uint32(s >> 32)) + np.uint32(0x632BE5AB))[0]


# --- the engines -------------------------------------------------------------------

class _XLAEngine:
    """The same loop as one XLA-compiled tf.while_loop over up to CHUNK steps."""

    def __init__(self, w: Weights, opt: Options, batch: int):
        tf, ops = _tf_ops()
        self.tf = tf
        # Weights are arguments, not captured constants: XLA compiles faster.
        arrays = {"table": w.table, "dense": w.dense, "dense_b": w.dense_b}
        for i, layer in enumerate(w.layers):
            for name, a in layer.items():
                if a is not None and not (name in ("W", "U") and "WU" in layer):
                    arrays[f"{i}/{name}"] = a
        self.arrays = {k: tf.constant(v) for k, v in arrays.items()}
        lanes = tf.constant(np.arange(batch, dtype=np.uint32))
        mix = tf.constant(_seed_mix(opt.seed), tf.uint32)

        def unpack(a):
            layers = []
            for i in range(len(w.layers)):
                layers.append({n: a.get(f"{i}/{n}") for n in ("W", "U", "b", "br", "WU")})
            return Weights(w.cell, a["table"], layers, a["dense"], a["dense_b"])

        # autograph=False: the loop is an explicit tf.while_loop and every Python `if`
        # is on a static option, so there is nothing to convert (and tracing is faster).
        @tf.function(jit_compile=True, autograph=False)
        def run(arrays, tok, states, t0, n, forced):
            ww = unpack(arrays)
            out = tf.TensorArray(tf.int32, size=CHUNK, element_shape=[batch])

            def body(i, tok, states, out):
                logits, states = _cell_step(ops, ww, tok, states)
                u = _uniform(ops, mix, t0 + i, lanes)
                choice = _choose(ops, opt, logits, u)
                f = forced[:, i]
                tok = tf.where(f >= 0, f, choice)
                return i + 1, tok, states, out.write(i, tok)

            _, tok, states, out = tf.while_loop(
                lambda i, *_: i < n, body, (tf.constant(0), tok, states, out),
                maximum_iterations=CHUNK)
            return tf.transpose(out.stack()), tok, states

        self.fn = run
        self.batch = batch
        self.n_states = len(w.layers) * w.states_per_layer
        self.units = w.units

    def warm_up(self):
        """Compile (a call that runs zero steps compiles the whole loop)."""
        states = [np.zeros((self.batch, self.units), np.float32)] * self.n_states
        self.run(np.zeros(self.batch, np.int32), states, 0, np.full((self.batch, 0), -1, np.int32))

    def run(self, tok, states, t0, forced):
        tf = self.tf
        n = forced.shape[1]
        assert n <= CHUNK
        buf = np.full((self.batch, CHUNK), -1, np.int32)
        buf[:, :n] = forced
        out, tok, states = self.fn(self.arrays, tf.constant(tok, tf.int32), list(states),
                                   tf.constant(t0, tf.int32), tf.constant(n, tf.int32),
                                   tf.constant(buf))
        return out.numpy()[:, :n], tok, states


# --- the sampler ------------------------------------------------------------------

def numpy_steps_for(w: Weights, batch=1):
    """How many steps the NumPy engine runs before XLA takes over: enough to cover
    TensorFlow's usual start-up in the child process (import and compile; measured
    on the 2-core test machine: as long as 60,000-110,000 NumPy steps of a 2x128 LSTM)
    from an estimate of NumPy's time per step for this shape (a fixed cost per step
    and per layer -- NumPy calls -- plus the multiply-adds).  Both scale with the
    machine alike, so the cover in steps is roughly machine-independent; it is never
    measured at run time, or the text would depend on timing."""
    seconds = 12e-6 + 8e-6 * len(w.layers) + 0.15e-9 * w.macs_per_step() * batch
    if w.cell != "lstm" or batch > 1:
        seconds += 15e-6 * len(w.layers)  # the generic step: more NumPy calls
    return int(max(64, min(200_000, NUMPY_COVER / seconds)))


class Sampler:
    """Generates ``batch`` independent streams of symbol ids from ``weights``.

    ``prime(ids)`` feeds symbols to set the state; ``generate(n)`` returns the next
    ``n`` sampled ids of every stream as an int32 array (batch, n).  With the same
    seed and options the ids are the same however the calls are split.

    ``engine``: "auto" (NumPy for the first ``numpy_steps`` steps, then XLA in a child
    process), "numpy" or "xla" (in this process).  Call ``close()`` when done.
    """

    def __init__(self, weights: Weights, batch=1, options=Options(), start_id=0,
                 engine="auto", numpy_steps=None):
        options.check()
        self.w, self.opt, self.batch = weights, options, int(batch)
        self.engine = engine
        self.t = 0
        self.tok = np.full(self.batch, start_id, np.int32)
        self.states = [np.zeros((self.batch, weights.units), np.float32)
                       for _ in range(len(weights.layers) * weights.states_per_layer)]
        self.pending = np.zeros(0, np.int32)  # primed ids not yet fed
        self.primed = False
        if numpy_steps is None:
            # The test hook moves the handover to where a test can afford to reach it.
            hook = os.environ.get(NUMPY_STEPS_ENV)
            numpy_steps = int(hook) if hook else numpy_steps_for(weights, self.batch)
        self.numpy_steps = {"auto": numpy_steps, "numpy": float("inf"), "xla": 0}[engine]
        from charrnn.numpy_engine import NumpyEngine

        self._np = NumpyEngine(weights, options, self.batch) if engine != "xla" else None
        self._xla = None

    def start_compiling(self):
        """Start TensorFlow's import and the compile (a child process in "auto" mode)."""
        if self._xla is None and self.engine == "auto":
            from charrnn import backend
            from charrnn.xla_process import XLAProcess

            self._xla = XLAProcess(self.w, self.opt, self.batch, verbose=backend._verbose)

    def _xla_engine(self):
        if self._xla is None:
            if self.engine == "auto":
                self.start_compiling()
            else:
                self._xla = _XLAEngine(self.w, self.opt, self.batch)
        return self._xla

    def close(self):
        """End the child process, if any (the sampler cannot generate after this)."""
        if self._xla is not None and hasattr(self._xla, "close"):
            self._xla.close()

    # -- feeding and generating
    def prime(self, ids):
        """Feed ``ids`` (1-D, the same for every stream) before generating."""
        ids = np.asarray(ids, np.int32).reshape(-1)
        if len(ids) == 0:
            return
        if not self.primed and len(self.pending) == 0 and self.t == 0:
            # The first prime symbol replaces the start symbol as the first input.
            self.tok[:] = ids[0]
            ids = ids[1:]
        self.primed = True
        self.pending = np.concatenate([self.pending, ids])

    def generate(self, n):
        """The next ``n`` ids of every stream, (batch, n) int32."""
        p = len(self.pending)
        forced = np.full((self.batch, p + n), -1, np.int32)
        forced[:, :p] = self.pending
        self.pending = self.pending[:0]
        outs, i = [], 0
        while i < forced.shape[1]:
            if self.t < self.numpy_steps:
                m = min(forced.shape[1] - i, self.numpy_steps - self.t)
                engine = self._np
            else:
                # The child process runs any number of steps per call; in this process
                # one call is at most CHUNK steps (the compiled buffer size).
                m = forced.shape[1] - i if self.engine == "auto" else min(forced.shape[1] - i, CHUNK)
                engine = self._xla_engine()
            out, self.tok, self.states = engine.run(self.tok, self.states, self.t, forced[:, i:i + m])
            if isinstance(engine, _XLAEngine):
                self.tok, self.states = self.tok.numpy(), [s.numpy() for s in self.states]
            outs.append(out)
            self.t += m
            i += m
        out = np.concatenate(outs, axis=1) if outs else np.zeros((self.batch, 0), np.int32)
        return out[:, p:]


# --- loading a run --------------------------------------------------------------------

@dataclass
class Loaded:
    weights: Weights
    vocab: object        # charrnn.text.Vocab
    meta: dict           # the dataset's meta.json as the run saved it ({} if missing)
    checkpoint: str      # the checkpoint prefix the weights came from


def load(run_path, checkpoint="best", on_warning=None, on_note=None) -> Loaded:
    """Weights, vocabulary and dataset meta of a run, without importing TensorFlow
    when the checkpoint can be read directly.  A damaged checkpoint falls back to the
    newest intact one (charrnn.checkpoints decides), saying so through ``on_warning``.
    ``run_path`` may also be a .safetensors weights file (charrnn.weightsfile): a model
    in one file.  ``on_note`` hears, once, how to speed up a run that has no weights files."""
    from pathlib import Path

    from charrnn import checkpoints, runs, weightsfile
    from charrnn.text import Vocab

    if weightsfile.is_weights_file(run_path):
        wf = weightsfile.read(run_path)
        return Loaded(weightsfile.sample_weights(wf), wf.vocab, wf.dataset_meta, str(run_path))

    args = runs.read_model_args(run_path)
    vocab = Vocab.load(Path(run_path) / runs.VOCAB_FILE)
    meta = runs.read_dataset_meta(run_path)
    missing = []

    def read(ck):
        # The checkpoint's portable weights file (checked against the manifest by
        # checkpoints.load); without one, TensorFlow restores the bundle.
        wf = weightsfile.read_beside(ck, args, vocab)
        if wf is not None:
            return weightsfile.sample_weights(wf)
        missing.append(ck)
        from charrnn.model import build_model

        model = build_model(**args)
        runs.restore_weights(model, ck.prefix)
        return weights_from_model(model)

    # need="all": a checkpoint whose TF bundle is damaged is passed over here as in
    # train and evaluate, though its weights file alone would do (crc32 of a 3x512
    # checkpoint: tens of milliseconds)
    weights, ck = checkpoints.load(run_path, checkpoint, read, need="all", on_warning=on_warning)
    if missing and on_note:
        on_note(f"Note: checkpoint {ck.name} has no portable weights file, so TensorFlow had "
                f"to load first; add them to the run with `charrnn export {run_path}`")
    return Loaded(weights, vocab, meta, ck.name)


# --- text in, text out ------------------------------------------------------------------

SEPARATOR = "\n\n----------------\n\n"


def start_id(vocab) -> int:
    """The input before the first symbol when there is no prime: a newline (text
    usually starts after one), else the most frequent symbol."""
    if "\n" in vocab.symbols:
        return vocab.symbols.index("\n")
    return int(np.argmax(vocab.counts)) if len(vocab.counts) else 0


class _Stream:
    """One sample's text: recomposed as it streams, cut at ``length`` characters or
    just after the stop string."""

    def __init__(self, vocab, length, stop):
        self.decoder = vocab.stream_decoder()
        self.left, self.stop = length, stop or None
        self.tail = ""       # the last len(stop) - 1 characters, to find a stop across chunks
        self.pending = ""    # text not yet written to the output
        self.done = length <= 0

    def feed(self, ids):
        if self.done:
            return
        text = self.decoder.feed(ids)
        if self.stop:
            hay = self.tail + text
            at = hay.find(self.stop)
            if at >= 0:
                text = text[:max(0, at + len(self.stop) - len(self.tail))]
                self.done = True
            self.tail = hay[-(len(self.stop) - 1):] if len(self.stop) > 1 else ""
        if len(text) >= self.left:
            text, self.done = text[:self.left], True
        self.left -= len(text)
        self.pending += text

    def take(self):
        text, self.pending = self.pending, ""
        return text


def write_samples(out, loaded: Loaded, prime="", length=1000, num_samples=1,
                  options=Options(), stop=None, echo_prime=True, unknown="error",
                  separator=SEPARATOR, engine="auto", numpy_steps=None, on_warning=None):
    """Generate ``num_samples`` samples of ``length`` characters after ``prime`` and
    write them to the text stream ``out`` as they come, flushing every chunk.

    The first sample streams live; the others (generated in the same batch) follow
    it, each preceded by ``separator``.  Returns the list of sample texts.
    """
    vocab = loaded.vocab
    if unknown not in ("error", "skip"):
        raise CharrnnError("--unknown must be error or skip")
    ids = vocab.encode(prime, unknown=unknown) if prime else np.zeros(0, np.int32)
    if prime and len(ids) == 0 and on_warning:
        on_warning("no character of the prime is in the vocabulary; sampling without a prime")
    sampler = Sampler(loaded.weights, num_samples, options, start_id=start_id(vocab),
                      engine=engine, numpy_steps=numpy_steps)
    sampler.prime(ids)
    meta = loaded.meta
    per_char = (meta.get("symbols") or 1) / (meta.get("chars") or 1) if vocab.jamo else 1.0
    # Will NumPy's share of the steps run out?  Then TensorFlow imports and compiles
    # in a child process from the start, on the other core.
    # (The jamo per character is the corpus' average: allow 20% more.)
    if len(ids) + length * per_char * (1.2 if vocab.jamo else 1) + 16 > sampler.numpy_steps:
        sampler.start_compiling()
    try:
        return _write(out, sampler, vocab, ids, length, num_samples, stop, echo_prime,
                      separator, per_char)
    finally:
        sampler.close()


def _write(out, sampler, vocab, ids, length, num_samples, stop, echo_prime, separator, per_char):
    streams = [_Stream(vocab, length, stop) for _ in range(num_samples)]
    shown_prime = ""
    if echo_prime:
        # The prime goes through each sample's decoder, so a final syllable the model
        # completes (prime "하", model "ᆫ") prints as the one syllable "한".
        for s in streams:
            shown_prime = s.decoder.feed(ids)
    texts = [""] * num_samples
    current = 0
    out.write(shown_prime)
    out.flush()
    n = 32  # a small first chunk: the first characters come at once
    while True:
        # Write what the current sample has; move on to the next when it is finished.
        while True:
            piece = streams[current].take()
            texts[current] += piece
            out.write(piece)
            if not streams[current].done or current + 1 == num_samples:
                break
            current += 1
            out.write(separator + shown_prime)
        out.flush()
        if all(s.done for s in streams):
            break
        most_left = max(s.left for s in streams if not s.done)
        ask = max(1, min(n, int(most_left * per_char) + 1))
        t = time.perf_counter()
        chunk = sampler.generate(ask)
        for s, row in zip(streams, chunk):
            s.feed(row)
        # Aim for ~0.1 s per chunk: smooth streaming at any model size.
        took = time.perf_counter() - t
        n = max(16, min(CHUNK * 4, int(ask * 0.1 / max(took, 1e-4))))
    return [shown_prime + t for t in texts]
