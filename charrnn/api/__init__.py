"""charrnn from Python: ``prepare`` a corpus, ``train`` a run, ``load`` a model and ask it
for text, scores, a page or a file.  The command line is a layer over these calls
(charrnn.cli), so a call and the command it mirrors run the same code and give the same
result: the same seed and options give the same text as ``charrnn sample``, the same
text the same figures as ``charrnn evaluate``.

    >>> import charrnn, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> ds = charrnn.prepare("data/shakespeare.txt", out=f"{tmp}/plays")
    >>> ds
    Dataset('.../plays', vocabulary 75, 472,069 symbols of text)
    >>> result = charrnn.train(
    ...     "quick",
    ...     data=ds.path,
    ...     out=f"{tmp}/run",
    ...     overrides={"train.max_steps": 30, "model.rnn_size": 32, "train.max_time": None},
    ...     progress=False,
    ... )
    >>> result.status, result.step
    ('done', 30)
    >>> model = result.load()
    >>> model
    Model('.../run', lstm 2x32, 75 symbols, step 30, val loss ... nats/symbol)
    >>> text = model.generate("ROMEO:", n=40, seed=1)
    >>> text.startswith("ROMEO:"), len(text)
    (True, 46)
    >>> text == model.generate("ROMEO:", n=40, seed=1)
    True
    >>> "".join(model.stream("ROMEO:", n=40, seed=1)) == text
    True
    >>> model.score("To be, or not to be")["total"]["bits_per_char"] > 0
    True

Library calls print nothing on stdout.  Messages for people go to the ``charrnn``
logger (progress and notes at INFO; warnings at WARNING, each also a
:class:`CharrnnWarning`); errors are :class:`CharrnnError`, with the command line's
messages.  TensorFlow is imported by the calls that need it (training, scoring, a Keras
model), never by ``import charrnn``.
"""

from charrnn.api.datasets import human_size, prepare, summary_lines
from charrnn.api.messages import OptionError, info, logger, warn
from charrnn.api.models import Model, Page, export_model, load, make_request
from charrnn.api.training import TrainResult, train, train_resolved
from charrnn.errors import CharrnnError, CharrnnWarning

__all__ = [
    "CharrnnError",
    "CharrnnWarning",
    "Model",
    "export_model",
    "OptionError",
    "Page",
    "TrainResult",
    "human_size",
    "info",
    "load",
    "logger",
    "make_request",
    "prepare",
    "summary_lines",
    "train",
    "train_resolved",
    "warn",
]
