"""Live forecasts: "should I decay now?" for a run in its stable (constant-LR) phase.

Given a run's LR history up to its last logged step and one or more fitted laws,
:func:`forecast_live` builds, for each candidate start step, the whole LR sequence the run
would follow (its history, the constant LR until the start, then a cooldown of ``cooldown``
steps to ``final`` along ``shape``) and predicts the loss at the cooldown's last step.

The cooldown is exactly ``decay_from(<the run's schedule>, at=start, duration=cooldown,
final=final, shape=shape)`` trained for ``start + cooldown`` steps: step ``start`` still has
the constant LR (the shape's p=0) and the last step, ``start + cooldown - 1``, has p =
(cooldown-1)/cooldown.

Intervals (``low``, ``high``, at ``level``, 0.9 by default) hold every law's own interval
(``predict_interval``: its fit's uncertainty, calibrated on refits; a combined law's also
holds its members' disagreement) and reach at least the primary law's mean relative error
on the run's own measured losses so far (when given): a law already off on this run is off
after the cooldown too. A law file without recorded uncertainty (an older one) is widened
instead by the larger of that error and its largest per-curve error in its fit report. See
docs/forecast.md, "Live".
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from cadence.errors import ForecastError, LimitError
from cadence.forecast.curve import Curve, as_vector
from cadence.forecast.combined import CombinedLaw
from cadence.forecast.fitting import FittedLaw
from cadence.forecast.intervals import check_level
from cadence.forecast.limits import MAX_STEPS, shorten
from cadence.schedules.base import SHAPES, interpolate

__all__ = ["LivePoint", "LiveForecast", "forecast_live", "stable_phase", "cooldown_lrs", "later_starts", "range_notes",
           "MIN_LIVE_STEPS", "LATER"]

_LAW_TYPES = (FittedLaw, CombinedLaw)
MIN_LIVE_STEPS = 10  # a run shorter than this has too little history for a forecast worth giving
LATER = (0.10, 0.25, 0.50)  # later starts: now + this fraction of the steps so far
_REL_TOL = 1e-9  # LRs within this relative distance of the last one count as the same constant


@dataclass(frozen=True)
class LivePoint:
    """A cooldown starting at ``step``: predicted loss at its last step, inside [low, high]."""

    step: int
    loss: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"step": self.step, "loss": self.loss, "low": self.low, "high": self.high}


@dataclass
class LiveForecast:
    now: LivePoint
    later: list[LivePoint]
    cooldown: int
    shape: str
    final: float
    lr: float  # the run's constant LR
    stable_since: int  # the first step of the constant stretch at the end of the history
    band: float  # the relative widening applied to each law's prediction
    run_error: float | None  # the primary law's mean relative error on the run's measured losses
    fit_error: float | None  # its largest per-curve mean error on its own fitting curves
    laws: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    range_notes: list[list[str]] = field(default_factory=list)  # per law: how the cooldowns leave what it was fitted on

    def to_dict(self) -> dict:
        """The contract of ``cadence forecast live --json``: exactly ``now`` and ``later``."""
        return {"now": self.now.to_dict(), "later": [p.to_dict() for p in self.later]}


def stable_phase(lrs) -> tuple[float, int]:
    """(the constant LR, the first step of the constant stretch) at the end of ``lrs``.

    A one-line ForecastError when the history is too short, its last LR is 0, or the LR is
    still changing at its end (a warmup or a decay), saying what was found."""
    lrs = as_vector(lrs, "lrs")
    n = len(lrs)
    if n < MIN_LIVE_STEPS:
        raise ForecastError(f"the run has {n} logged step(s); a live forecast needs at least {MIN_LIVE_STEPS}")
    bad = ~np.isfinite(lrs) | (lrs < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ForecastError(f"lrs must be finite and >= 0; got {lrs[i]} at step {i}")
    last = float(lrs[-1])
    if last <= 0:
        raise ForecastError(f"the LR is 0 at the run's last step ({n - 1}): there is nothing to cool down from")
    same = np.abs(lrs - last) <= _REL_TOL * last
    since = n - int(np.argmin(same[::-1])) if not same.all() else 0
    if n - since < 2:
        prev = float(lrs[-2])
        rising = prev < last
        # Has the LR gone both ways after its first fall (a cyclic or re-warmed schedule)? One pass over the run.
        step = np.diff(lrs)
        falls = step < 0
        fell_at = int(np.argmax(falls)) if falls.any() else None
        cyclic = fell_at is not None and bool(np.any(step[fell_at:] > 0))
        del step, falls
        if rising:
            trend = "rising again after falling (a cyclic or re-warmed schedule)" if cyclic else "still rising (warmup?)"
        else:
            trend = "decaying, in a schedule that has also risen again (cyclic?)" if cyclic else "decaying"
        window = lrs[max(0, n - 10):]
        raise ForecastError(f"the run is not in a constant-LR phase at its end: its LR is {trend}; it "
                            f"{'rose' if rising else 'fell'} from {float(window[0]):.4g} to {last:.4g} over steps "
                            f"{n - len(window)}..{n - 1}; forecast live forecasts a cooldown from a constant LR (the "
                            "stable phase of a WSD-like run): give a run whose LR is held at its last steps")
    return last, since


def cooldown_lrs(history, start: int, cooldown: int, shape: str = "1-sqrt", final: float = 0.0) -> np.ndarray:
    """The run's LRs for ``start + cooldown`` steps: ``history``, its last LR held until
    ``start``, then the cooldown (as ``decay_from(..., at=start, duration=cooldown)``)."""
    history = as_vector(history, "lrs")
    lr, _ = stable_phase(history)
    start = _whole(start, "start", len(history))
    cooldown = _whole(cooldown, "cooldown", 1)
    _check_shape(shape, final, lr)
    total = start + cooldown
    if total > MAX_STEPS:
        raise LimitError(f"a cooldown of {cooldown:,} steps from step {start:,} ends at step {total - 1:,}; forecasts are "
                         f"limited to {MAX_STEPS:,} steps")
    out = np.empty(total)
    out[: len(history)] = history
    out[len(history): start] = lr
    out[start:] = interpolate(shape, lr, final, np.arange(cooldown) / cooldown)
    return out


def later_starts(now: int, fractions=LATER) -> list[int]:
    """Later start steps: ``now`` plus each fraction of the steps so far (rounded; distinct, after ``now``)."""
    steps = sorted({now + max(1, int(round(f * now))) for f in fractions})
    return [s for s in steps if s > now]


def forecast_live(lrs, laws, cooldown: int, *, shape: str = "1-sqrt", final: float = 0.0,
                  observed: Curve | None = None, fractions=LATER, level: float = 0.9) -> LiveForecast:
    """Predicted loss at the end of a cooldown started now (after the last step of ``lrs``)
    and at later starts (:func:`later_starts`), with an interval at ``level`` (module docstring).

    ``lrs`` is the LR of every step from 0 to the run's last logged step; ``laws`` one
    :class:`FittedLaw` or a list (the first is the primary: its prediction is ``loss``);
    ``observed`` the run's measured losses so far, used to measure the law's error on it.
    """
    history = as_vector(lrs, "lrs")
    lr, since = stable_phase(history)
    laws = _laws(laws)
    cooldown = _whole(cooldown, "cooldown", 1)
    _check_shape(shape, final, lr)
    now = len(history)
    starts = [now] + later_starts(now, fractions)
    if starts[-1] + cooldown > MAX_STEPS:
        raise LimitError(f"a cooldown of {cooldown:,} steps from step {starts[-1]:,} (the latest start asked) ends past "
                         f"the {MAX_STEPS:,} steps a forecast may cover")
    notes = []
    primary = laws[0]
    run_error = None
    if observed is not None:
        if not isinstance(observed, Curve):
            raise ForecastError(f"observed must be a Curve; got {type(observed).__name__}")
        keep = observed.steps < now
        if keep.any():
            pred = primary.predict(history, observed.steps[keep])
            run_error = float(np.mean(np.abs(pred / observed.losses[keep] - 1.0)))
            bias = float(np.mean(pred / observed.losses[keep] - 1.0))
            notes.append(f"the {primary.law} law's mean error on this run's {int(keep.sum())} measured losses so far: "
                         f"{100 * run_error:.2f}% (bias {100 * bias:+.2f}%)")
    level = check_level(level)
    fit_error = _fit_error(primary)
    known = [e for e in (run_error, fit_error) if e is not None]
    band = max(known) if known else 0.0  # for a law without recorded uncertainty
    if not all(law.has_interval for law in laws):
        notes.append("a law file records no uncertainty (fitted by an older version): its interval is its error on "
                     "the run and on its own fit instead; refit it for a calibrated one")
        if not known:
            notes.append("no error measure available (no measured losses, no fit report): that law's interval is a point")
    outside = range_notes(history, laws, cooldown, shape=shape, final=final, fractions=fractions)
    points = []
    for start in starts:
        seq = cooldown_lrs(history, start, cooldown, shape, final)
        lows, highs, preds = [], [], []
        for law in laws:
            pred, low, high = (float(v[0]) for v in law.predict_interval(seq, [len(seq) - 1], level))
            if not law.has_interval:
                low, high = pred * (1 - band), pred * (1 + band)
            preds.append(pred)
            lows.append(low)
            highs.append(high)
        run_band = run_error or 0.0
        points.append(LivePoint(start, preds[0], min(min(lows), preds[0] * (1 - run_band)),
                                max(max(highs), preds[0] * (1 + run_band))))
    return LiveForecast(points[0], points[1:], cooldown, shape, float(final), lr, since, band, run_error, fit_error,
                        [law.law for law in laws], notes, outside)


def range_notes(lrs, laws, cooldown: int, *, shape: str = "1-sqrt", final: float = 0.0,
                fractions=LATER) -> list[list[str]]:
    """For each law (one :class:`FittedLaw` or a list), ``FittedLaw.range_notes`` of the cooldowns
    :func:`forecast_live` predicts: those of the latest start (the most steps and LR area), then any
    other kind of note the first start has (its LR area may be below the earliest fitted). Linear
    in the run's length; the same refusals as :func:`forecast_live` for bad arguments."""
    history = as_vector(lrs, "lrs")
    lr, _ = stable_phase(history)  # the refusals in forecast_live's order
    laws = _laws(laws)
    cooldown = _whole(cooldown, "cooldown", 1)
    _check_shape(shape, final, lr)
    now = len(history)
    latest = ([now] + later_starts(now, fractions))[-1]
    if latest + cooldown > MAX_STEPS:
        raise LimitError(f"a cooldown of {cooldown:,} steps from step {latest:,} (the latest start asked) ends past "
                         f"the {MAX_STEPS:,} steps a forecast may cover")
    first, last = cooldown_lrs(history, now, cooldown, shape, final), cooldown_lrs(history, latest, cooldown, shape, final)
    out = []
    for law in laws:
        notes = law.range_notes_by_kind(last)
        kinds = {kind for kind, _ in notes}
        notes += [(kind, text) for kind, text in law.range_notes_by_kind(first) if kind not in kinds]
        out.append([text for _, text in notes])
    return out


def _laws(laws) -> list:
    """``laws`` as a non-empty list of fitted laws (one law is a list of one); a ForecastError otherwise."""
    if isinstance(laws, _LAW_TYPES):
        laws = [laws]
    if not isinstance(laws, (list, tuple)) or not laws or not all(isinstance(x, _LAW_TYPES) for x in laws):
        raise ForecastError("laws must be a fitted law (FittedLaw or CombinedLaw) or a non-empty list of them")
    return list(laws)


def _fit_error(law: FittedLaw) -> float | None:
    """The largest per-curve mean relative error (PredE) in the law's fit report, if it has one."""
    curves = law.report.get("curves") if isinstance(law.report, dict) else None
    if not isinstance(curves, dict):
        return None
    values = [s.get("pred_e") for s in curves.values() if isinstance(s, dict)]
    values = [float(v) for v in values if isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)]
    return max(values) if values else None


def _whole(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ForecastError(f"{name} must be a whole number of steps >= {low}; got {shorten(value)}")
    if value > MAX_STEPS:
        raise LimitError(f"{name} is {int(value):,} steps; forecasts are limited to {MAX_STEPS:,}")
    return int(value)


def _check_shape(shape, final, lr: float) -> None:
    if not isinstance(shape, str) or shape not in SHAPES:
        raise ForecastError(f"unknown cooldown shape {shorten(shape)}; allowed: {', '.join(SHAPES)}")
    if isinstance(final, bool) or not isinstance(final, numbers.Real) or not np.isfinite(final) or final < 0:
        raise ForecastError(f"the final LR must be a finite number >= 0; got {shorten(final)}")
    if final >= lr:
        raise ForecastError(f"the final LR {float(final):.4g} is not below the run's constant LR {lr:.4g}: that is no cooldown")
    if shape == "exp" and final <= 0:
        raise ForecastError("an 'exp' cooldown needs a final LR > 0")
