"""Generating text: the symbol choice (choice), --allow's mask (constraints), the NumPy and
XLA engines, the sampler that runs them, beam search (beam), a sample's text as it comes
(textstream), a request's samples for every caller (write) and `sample -i` (interactive)."""
