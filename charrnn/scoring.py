"""The Python API's ``charrnn.scoring`` (docs/python.md): kept as a re-export of
charrnn.analysis.scoring, the one scoring definition."""

from charrnn.analysis.scoring import Scored, figures, score_text, symbol_nats

__all__ = ["Scored", "figures", "score_text", "symbol_nats"]
