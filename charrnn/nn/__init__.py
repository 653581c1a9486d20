"""The network: the Keras model (model), its fused CPU recurrence (fused), the cells'
facts (cells), the one step in NumPy/TensorFlow (step) and the weights' names (tensors)."""
