"""The old name of :mod:`stmt.inference` (renamed in issue 27: ``stmt predict`` is
Lightning's prediction loop, not this module). Kept only for the scripts that still
import it (``benchmarks/eval_cross_source.py``, ``benchmarks/eval_realmix.py``); new code
imports :mod:`stmt.inference`."""

from stmt.inference import Classifier, Prediction

__all__ = ["Classifier", "Prediction"]
