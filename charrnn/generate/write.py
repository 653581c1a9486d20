"""Text out: samples written as they are generated, recomposed, cut at a length or a stop."""

import time

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.generate.choice import Options
from charrnn.generate.sampler import CHUNK, Sampler, start_id

SEPARATOR = "\n\n----------------\n\n"


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


def write_samples(out, loaded, prime="", length=1000, num_samples=1,
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
    per_char = loaded.symbols_per_char if vocab.jamo else 1.0
    # Will NumPy's share of the steps run out?  Then TensorFlow imports and compiles
    # in a child process from the start, on the other core.
    # (The jamo per character is the corpus' average: allow 20% more.)
    if len(ids) + length * per_char * (1.2 if vocab.jamo else 1) + 16 > sampler.numpy_steps:
        sampler.start_compiling()
    try:
        return _stream_out(out, sampler, vocab, ids, length, num_samples, stop, echo_prime,
                      separator, per_char)
    finally:
        sampler.close()


def _stream_out(out, sampler, vocab, ids, length, num_samples, stop, echo_prime, separator, per_char):
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
