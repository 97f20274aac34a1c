"""Find a non-increasing schedule that minimises a fitted law's predicted final loss.

The schedule after warmup is ``peak * f(t)``, with ``f`` piecewise linear between
``knots`` points and ``f_j = exp(-sum_(i<=j) exp(z_i))``: positive and non-increasing for
any ``z``, so L-BFGS-B searches without constraints. As in the Multi-Power Law paper the
result is then compared with the nearest ordinary schedules.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from cadence.errors import CadenceError
from cadence.forecast.curve import ForecastError
from cadence.forecast.combined import CombinedLaw
from cadence.forecast.fitting import FittedLaw
from cadence.forecast.limits import MAX_OPTIMIZE_STEPS, check_total, number, shorten
from cadence.schedules import parse

__all__ = ["optimize_schedule", "nearest_specs", "as_spec", "check_request", "range_notes"]


_BAD = 1e300  # the search's value for a schedule the law gives no loss for


def _knots(z: np.ndarray, total: int, warmup: int):
    f = np.concatenate([[1.0], np.exp(-np.cumsum(np.exp(z)))])
    return np.linspace(warmup, total - 1, len(f)), f


def _schedule(z: np.ndarray, total: int, warmup: int, peak: float) -> np.ndarray:
    knots, f = _knots(z, total, warmup)
    t = np.arange(total, dtype=np.float64)
    lrs = peak * np.interp(t, knots, f)
    lrs[:warmup] = peak * (np.arange(warmup) / max(warmup, 1))
    return lrs


def as_spec(lrs: np.ndarray, total: int, warmup: int, knots: int = 48) -> str:
    """The optimised schedule as a ``piecewise`` spec (exact: it is linear between its knots)."""
    where = np.unique(np.concatenate([[0], np.linspace(warmup, total - 1, knots + 1).round()]).astype(int))
    points = ", ".join(f"[{int(w)}, {float(lrs[w]):.6g}]" for w in where)
    return f"piecewise(points=[{points}])"


def _z_of(f: np.ndarray) -> np.ndarray:
    """The z whose knots reproduce the non-increasing fractions ``f[1:]`` (f[0] = 1)."""
    steps = -np.diff(np.log(np.clip(f, 1e-6, 1.0)))
    return np.clip(np.log(np.maximum(steps, np.exp(-12.0))), -12.0, 3.0)


def check_request(law: FittedLaw, total, peak, warmup) -> tuple[int, float, int]:
    """The arguments of an optimisation, checked: ``total`` in 2..MAX_OPTIMIZE_STEPS, ``peak``
    finite and > 0, ``warmup`` a whole number with at least 2 steps after it."""
    if not isinstance(law, (FittedLaw, CombinedLaw)):
        raise ForecastError(f"law must be a FittedLaw or CombinedLaw (from fit or load); got {type(law).__name__}")
    total = check_total(total, limit=MAX_OPTIMIZE_STEPS, what="forecast optimize")
    if total < 2:
        raise ForecastError(f"forecast optimize needs a run of at least 2 steps; got {total}", field="total")
    peak = number(peak, "the peak LR")
    if peak <= 0:
        raise ForecastError(f"the peak LR must be > 0; got {peak!r}", field="peak")
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral):
        raise ForecastError(f"the warmup must be a whole number of steps; got {shorten(warmup)}", field="warmup")
    if not 0 <= warmup <= total - 2:
        raise ForecastError(f"the warmup must leave at least 2 steps to shape: 0 <= warmup <= total - 2 = {total - 2}; "
                            f"got {shorten(warmup)}", field="warmup")
    return total, peak, int(warmup)


def optimize_schedule(law: FittedLaw, total: int, peak: float, warmup: int = 0, knots: int = 48) -> tuple[np.ndarray, float]:
    """(per-step LRs, predicted final loss) of the best non-increasing schedule found.

    L-BFGS-B runs from several shapes (exponential, cosine, linear, and WSD with 10-50%
    cooldowns) and the best result is kept, so no start shape beats it under the law.
    ``total`` is at most ``MAX_OPTIMIZE_STEPS``: the search evaluates the law tens of
    thousands of times, each in time linear in ``total``.
    """
    total, peak, warmup = check_request(law, total, peak, warmup)
    if isinstance(knots, bool) or not isinstance(knots, numbers.Integral) or not 1 <= knots <= 1000:
        raise ForecastError(f"knots must be a whole number in 1..1000; got {shorten(knots)}")
    knots = min(knots, total - 1 - warmup)  # more knots than steps after the warmup shape nothing more
    last = np.array([total - 1])
    # a combined law predicts the geometric mean of its members' predictions
    members = [(m._law(), m) for m in getattr(law, "members", [law])]
    law.predict(_schedule(np.zeros(knots), total, warmup, peak), last)  # a one-line error if the law overflows here

    def loss(z):
        # The schedules built here are finite and >= 0 with LR area before the last step, so the
        # checks of FittedLaw.predict are skipped; a result that is not a loss (non-finite, or <= 0
        # where the law leaves what it can describe) is a bad point, never the best one.
        lrs = _schedule(z, total, warmup, peak)
        with np.errstate(all="ignore"):
            values = [float(model.predict(m.params, lrs / m.lr_scale, last)[0]) for model, m in members]
            value = float(CombinedLaw.combine(values)) if isinstance(law, CombinedLaw) else values[0]
        return value if np.isfinite(value) and value > 0 else _BAD

    x = np.linspace(0.0, 1.0, knots + 1)
    floor = 1e-3
    shapes = [np.exp(np.log(0.05) * x), floor + (1 - floor) * (1 + np.cos(np.pi * x)) / 2, np.maximum(1 - x, floor)]
    for cool in (0.1, 0.2, 0.3, 0.5):
        shapes.append(np.where(x < 1 - cool, 1.0, np.maximum(1 - (x - (1 - cool)) / cool, floor)))
    best = None
    with threadpool_limits(limits=1, user_api="blas"):  # small vectors: BLAS threads only spin (see fitting.fit)
        for f in shapes:
            res = minimize(loss, _z_of(f), method="L-BFGS-B", bounds=[(-12.0, 3.0)] * knots, options={"maxiter": 300})
            if best is None or res.fun < best.fun:
                best = res
    if best.fun >= _BAD:
        raise ForecastError(f"no schedule the search tried has a prediction the {law.law} law can give (each was not "
                            f"finite or not > 0): the run is outside what it can describe "
                            f"({law._outside(_schedule(np.array([-12.0]), total, warmup, peak))})")
    lrs = _schedule(best.x, total, warmup, peak)
    return lrs, float(law.predict(lrs, last)[0])


def range_notes(law: FittedLaw, total: int, peak: float, warmup: int = 0, lrs=None) -> list[str]:
    """``law.range_notes`` of the widest schedule the search can propose (warmup, then ``peak``
    to the end: the most LR area): its peak, length and LR area against what the law was fitted
    on. With ``lrs`` (the search's result), the notes of ``lrs`` of other kinds than those: the
    LRs the search picked below the peak."""
    total, peak, warmup = check_request(law, total, peak, warmup)
    widest = law.range_notes_by_kind(_schedule(np.array([-12.0]), total, warmup, peak))
    if lrs is None:
        return [text for _, text in widest]
    kinds = {kind for kind, _ in widest}
    return [text for kind, text in law.range_notes_by_kind(lrs) if kind not in kinds]


def nearest_specs(law: FittedLaw, lrs: np.ndarray, total: int, peak: float,
                  warmup: int) -> list[tuple[str, float, float | str]]:
    """For WSD, cosine and linear: the spec closest to ``lrs`` (RMS of LR), its distance and predicted final
    loss, or, where the law refuses to predict that spec (a loss that would be <= 0, say), why, as a string."""
    total, peak, warmup = check_request(law, total, peak, warmup)
    candidates = {"wsd": [], "cosine": [], "linear": []}
    for frac in range(5, 65, 5):
        for shape in ("linear", "cosine", "1-sqrt"):
            candidates["wsd"].append(f"wsd(peak={peak!r}, warmup={warmup}, decay='{frac}%', shape='{shape}')")
    for final in (0.0, 0.01, 0.1):
        candidates["cosine"].append(f"cosine(peak={peak!r}, final={peak * final!r}, warmup={warmup})")
        candidates["linear"].append(f"linear(peak={peak!r}, final={peak * final!r}, warmup={warmup})")

    def distance(values):  # RMS of the LR difference, computed in units of peak (no overflow near 1e308)
        return peak * float(np.sqrt(np.mean(((values - lrs) / peak) ** 2)))

    lrs = np.asarray(lrs, dtype=np.float64)
    if lrs.shape != (total,):
        raise ForecastError(f"lrs must have one LR per step ({total}); got shape {lrs.shape}")
    out = []
    for specs in candidates.values():
        best = None
        for spec in specs:
            try:
                values = parse(spec).values(total)
            except CadenceError:  # a cooldown too short for this run, say
                continue
            d = distance(values)
            if best is None or d < best[1]:
                best = (spec, d, values)
        if best is not None:
            try:
                out.append((best[0], best[1], float(law.predict(best[2], [total - 1])[0])))
            except ForecastError as e:
                out.append((best[0], best[1], str(e)))
    return out
