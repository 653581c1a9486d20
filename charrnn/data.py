"""The Python API's ``charrnn.data`` (docs/python.md): kept as a re-export of
charrnn.store.prepare (writing datasets) and charrnn.store.dataset (reading them)."""

from charrnn.store.dataset import Dataset, iter_dump, load_dataset
from charrnn.store.prepare import prepare

__all__ = ["Dataset", "iter_dump", "load_dataset", "prepare"]
