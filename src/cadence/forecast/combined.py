"""The combined forecast: several laws fitted to the same runs, predicting together.

``fit(curves, law="combined")`` fits every registered law to the same curves (the
multipower and annealing laws), each under both warmup conventions (the warmup's LR rises
left out, and counted as negative decrements: the laws module), and returns a
:class:`CombinedLaw` whose prediction is the geometric mean of its four members' (the mean of
their log-losses, equal weights: a rule fixed in advance, which looks at no held-out run).
Its interval holds each member's own interval and widens by the members' disagreement, the
part of the uncertainty about the law itself that no single fit can see (docs/forecast.md,
"Validation" measures both choices).

A combined law saves to the same format as a single one (``law: "combined"``, the members in
``members``) and is read by the same :func:`cadence.forecast.load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadence import __version__
from cadence.forecast.curve import Curve, ForecastError
from cadence.forecast.intervals import check_level

__all__ = ["CombinedLaw", "COMBINED"]

COMBINED = "combined"


@dataclass
class CombinedLaw:
    """Laws fitted to the same runs (``members``, at least two, each a different law or warmup
    convention) predicting together."""

    members: list
    report: dict = field(default_factory=dict)

    law = COMBINED

    def __post_init__(self) -> None:
        from cadence.forecast.fitting import FittedLaw

        if not isinstance(self.members, list) or len(self.members) < 2 or \
                not all(isinstance(m, FittedLaw) for m in self.members):
            raise ForecastError("a combined law needs a list of at least two fitted laws (FittedLaw)")
        names = [f"{m.law} (warmup {m.warmup})" for m in self.members]
        if len(set(names)) != len(names):
            raise ForecastError(f"a combined law's members must be different laws or warmup conventions; got "
                                f"{', '.join(names)}")
        scales = {m.lr_scale for m in self.members}
        if len(scales) != 1:
            raise ForecastError("a combined law's members must be fitted on the same runs (their lr_scale differ: "
                                f"{', '.join(f'{s:g}' for s in sorted(scales))})")
        if not isinstance(self.report, dict):
            raise ForecastError(f"report must be a dict; got {type(self.report).__name__}")

    @property
    def lr_scale(self) -> float:
        return self.members[0].lr_scale

    @property
    def has_interval(self) -> bool:
        return True  # the members' disagreement at least

    @property
    def fitted_range(self):
        return self.members[0].fitted_range

    def range_notes(self, lrs) -> list[str]:
        return self.members[0].range_notes(lrs)

    def range_notes_by_kind(self, lrs) -> list[tuple[str, str]]:
        return self.members[0].range_notes_by_kind(lrs)

    def _outside(self, lrs) -> str:
        return self.members[0]._outside(lrs)

    @property
    def params(self) -> dict[str, float]:
        """Every member's parameters, as ``law.name`` (``law/count.name`` for a member that counts the warmup)."""
        return {f"{m.law}{'/count' if m.warmup == 'count' else ''}.{k}": v for m in self.members for k, v in m.params.items()}

    @staticmethod
    def combine(predictions) -> np.ndarray:
        """The combined forecast from the members' predictions (one array each, in member order): their
        geometric mean, equal weights. The one place the rule lives (``forecast optimize`` calls it too)."""
        return np.exp(np.mean(np.log(predictions), axis=0))

    def predict(self, lrs, steps) -> np.ndarray:
        """:meth:`combine` of the members' predictions (each checked as FittedLaw.predict checks it)."""
        return self.combine([m.predict(lrs, steps) for m in self.members])

    def predict_interval(self, lrs, steps, level: float = 0.9):
        """``(prediction, low, high)``: in log space, the half-width is the members' largest own
        half-width and their spread (largest minus smallest log-prediction) added in quadrature."""
        level = check_level(level)
        out = [m.predict_interval(lrs, steps, level) for m in self.members]
        logs = np.log([o[0] for o in out])
        pred = self.combine([o[0] for o in out])
        own = np.max([np.log(o[2] / o[0]) for o in out], axis=0)
        spread = logs.max(axis=0) - logs.min(axis=0)
        half = np.sqrt(own ** 2 + spread ** 2)
        return pred, pred * np.exp(-half), pred * np.exp(half)

    def score(self, curve: Curve) -> dict[str, float]:
        from cadence.forecast.fitting import scores

        return scores(self.predict(curve.lrs, curve.steps), curve.losses)

    def to_dict(self) -> dict:
        from cadence.forecast.fitting import _FORMAT

        return {"format": _FORMAT, "law": COMBINED, "members": [m.to_dict() for m in self.members],
                "lr_scale": self.lr_scale, "report": self.report, "cadence": __version__}

    def save(self, path: "str | Path") -> Path:
        """Write the law as JSON (atomically), in the format :func:`cadence.forecast.load` reads."""
        from cadence.forecast.fitting import save_law

        return save_law(self, path)
