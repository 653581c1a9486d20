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
from charrnn.stepmath import (Options, Weights, cell_step, choose, seed_mix, tf_ops, uniform,
                              weights_from_model)

CHUNK = 1024          # most steps one XLA call runs (the compiled buffer size)
NUMPY_STEPS_ENV = "CHARRNN_TEST_NUMPY_STEPS"  # test hook: NumPy's share of the steps
NUMPY_COVER = 6.5     # seconds of estimated NumPy work before XLA takes over (numpy_steps_for)


# --- the engines -------------------------------------------------------------------

class _XLAEngine:
    """The same loop as one XLA-compiled tf.while_loop over up to CHUNK steps."""

    def __init__(self, w: Weights, opt: Options, batch: int):
        tf, ops = tf_ops()
        self.tf = tf
        # Weights are arguments, not captured constants: XLA compiles faster.
        arrays = {"table": w.table, "dense": w.dense, "dense_b": w.dense_b}
        for i, layer in enumerate(w.layers):
            for name, a in layer.items():
                if a is not None and not (name in ("W", "U") and "WU" in layer):
                    arrays[f"{i}/{name}"] = a
        self.arrays = {k: tf.constant(v) for k, v in arrays.items()}
        lanes = tf.constant(np.arange(batch, dtype=np.uint32))
        mix = tf.constant(seed_mix(opt.seed), tf.uint32)

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
                logits, states = cell_step(ops, ww, tok, states)
                u = uniform(ops, mix, t0 + i, lanes)
                choice = choose(ops, opt, logits, u)
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
