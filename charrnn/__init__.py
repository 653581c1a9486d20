"""charrnn: character-level recurrent language models from the command line.

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
    5  train/, analysis/, export/      what each command does
    6  serve/     the HTTP server (app, engine, request checks, run)
    7  cli/ (the Click layer: group, data, training, generation, inspection); runs, data,
       scoring: the Python API's names, re-exported

Read first: cli/generation.py, then store/loader.py, nn/step.py, generate/sampler.py, train/loop.py.
"""

__version__ = "0.1.0"
