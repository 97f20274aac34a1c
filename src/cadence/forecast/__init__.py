"""Forecasting: fit loss-curve laws to runs and predict the loss of any other schedule.

``Curve(steps=..., losses=..., lrs=...)`` holds one run; ``fit(curves, law="multipower")``
returns a :class:`FittedLaw` with ``.predict(lrs, steps)``, ``.params``, ``.save(path)``;
``load(path)`` reads one back; ``.predict_interval(lrs, steps, level=0.9)`` gives an interval
too. Laws: ``multipower`` (Luo et al. 2025) and ``annealing`` (Tissue et al. 2024), and
``combined``, both fitted to the same runs predicting together (a :class:`CombinedLaw`); add
another with :func:`register_law`.
"""

from cadence.forecast.combined import CombinedLaw
from cadence.forecast.curve import Curve, ForecastError
from cadence.forecast.fitting import FittedLaw, fit, load, scores
from cadence.forecast.laws import LAWS, Annealing, Law, MultiPower, register_law

__all__ = ["Curve", "ForecastError", "FittedLaw", "CombinedLaw", "fit", "load", "scores", "LAWS", "Law", "MultiPower", "Annealing",
           "register_law"]
