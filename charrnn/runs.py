"""The Python API's ``charrnn.runs`` (docs/python.md): kept as a re-export.

A run directory or a .safetensors file -> a model (a charrnn.store.loaded.LoadedModel):
charrnn.store.loader; finding runs: charrnn.store.rundir.
"""

from charrnn.store.loaded import LoadedModel
from charrnn.store.loader import load, load_run
from charrnn.store.rundir import find_latest_run, read_config, read_model_args

# What load_run returns, under the name this module has always exported it by (code written
# against charrnn.runs may annotate with it); charrnn itself says LoadedModel.
Run = LoadedModel

__all__ = ["Run", "find_latest_run", "load", "load_run", "read_config", "read_model_args"]
