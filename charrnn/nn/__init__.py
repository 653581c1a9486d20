"""The network: the cells, one module each (cells), the Keras model (model), the fused CPU
training passes' toolkit (fused), NumPy and TensorFlow behind one set of names (ops), the one
step every engine runs (step) and the weights' names and homes (tensors)."""
