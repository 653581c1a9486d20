"""Everything on disk: datasets, run directories and their lock, checkpoints, the weights
file, and the one loader."""
