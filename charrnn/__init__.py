"""charrnn: character-level recurrent language models, from Python and the command line.

The package in layers; a module imports only from lower layers and its own subpackage
(tests/test_layering.py keeps it so):

    0  errors, backend, atomic, web    one error type; TensorFlow imported lazily and
                                       quietly; files written whole; the HTML templates
    1  text/      decode (encodings, newlines), jamo (the Hangul scheme), vocab
    2  nn/        cells, model (Keras), fused (the CPU recurrence), step (the one cell
                  step in NumPy/TF), tensors (the one naming of the weights)
    3  store/     dataset, prepare, rundir, lock, checkpoints, weightsfile, loaded +
                  loader (a run directory or .safetensors file -> a LoadedModel)
    4  generate/  choice (temperature/top-k/top-p), numpy_engine, xla_engine,
                  xla_process, sampler, write, interactive
    5  training/, analysis/, export/   what each command does
    6  serve/     the HTTP server (app, engine, request checks, run)
    7  api/ (the Python API: messages, datasets, training, models: prepare, train,
       load -> Model); runs, data, scoring: older names, re-exported
    8  cli/ (the Click layer over api: group, data, training, generation, inspection)

Read first: api/, cli/generation.py, then store/loader.py, nn/step.py,
generate/sampler.py, training/loop.py.

From Python (docs/python.md)::

    import charrnn
    model = charrnn.load("runs/quick")
    print(model.generate("ROMEO:", n=200, seed=1))

``import charrnn`` imports neither TensorFlow nor NumPy: the API's names below come
from charrnn.api when first used (PEP 562).
"""

from typing import Any

from charrnn.errors import CharrnnError, CharrnnWarning

__version__ = "0.1.0"

_API = ("Model", "Page", "TrainResult", "load", "prepare", "train")
__all__ = ["CharrnnError", "CharrnnWarning", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from charrnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
