"""The Python API's ``charrnn.runs`` (README, Python API): kept as a re-export.

A run directory or a .safetensors file -> a model: charrnn.store.loader; finding runs:
charrnn.store.rundir.
"""

from charrnn.store.loaded import LoadedModel as Run  # noqa: F401
from charrnn.store.loader import load, load_run  # noqa: F401
from charrnn.store.rundir import find_latest_run, read_config, read_model_args  # noqa: F401
