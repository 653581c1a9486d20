"""Generating text: the symbol choice (choice), the NumPy and XLA engines, the sampler
that runs them, text out (write) and `sample -i` (interactive)."""
