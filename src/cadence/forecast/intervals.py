"""Prediction intervals for fitted laws.

A fit records how uncertain it is in its report, under ``"uncertainty"`` (all in log-loss
units, plain JSON):

* ``cov`` over ``params``: the Gauss-Newton covariance ``s^2 (J'J)^-1`` of the free
  parameters (``J`` the Jacobian of the log-prediction at the fitted points; parameters the
  law searches in log space taken in log space; a parameter at a bound of the search box
  counts as fixed), with ``s^2`` the mean squared residual inflated for autocorrelation:
  neighbouring residuals of a loss curve are not independent, so the effective number of
  points is ``n (1 - rho) / (1 + rho)``, ``rho`` their lag-1 correlation (``rho``, ``n_eff``);
* ``scatter``: the RMS of the fit's residuals, how far one measured loss strays from a curve;
* ``extra`` and ``scale``, from refits on parts of the training curves asked about what they
  did not see (:func:`calibrate`): later steps of each curve (each curve's first
  ``HOLDOUT`` share of steps fitted), and whole other schedules (all curves but one, for up
  to ``FOLDS`` curves). ``extra`` is the RMS error of those predictions, an error the fit's
  own residuals cannot show (another run, another schedule, a longer run); ``scale`` (>= 1)
  widens the interval until it holds the level's share of those errors.

The interval at a prediction is ``pred * exp(+-h)``, ``h = z * scale * sqrt(g' cov g +
scatter^2 + extra^2)``, ``g`` the Jacobian of the log-prediction there (the delta method),
``z`` the normal quantile of the level. How often it held on runs no fit saw is measured,
not assumed: docs/forecast.md, "Validation".
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from cadence.forecast.curve import Curve, ForecastError
from cadence.forecast.limits import number

__all__ = ["uncertainty", "calibrate", "predict_interval", "check_level", "check_uncertainty", "HOLDOUT", "FOLDS"]

HOLDOUT = 2 / 3  # a calibration refit sees each training curve's measurements up to this share of its steps
FOLDS = 3  # at most this many leave-one-curve-out refits
GRID = 4096  # a longer prediction computes the parameter part of its interval at this many steps and interpolates


def check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ForecastError(f"an interval's level must be a number between 0 and 1 (such as 0.9); got {level!r}")
    return float(level)


def check_uncertainty(report: dict, law_params, where: str = "") -> None:
    """A one-line ForecastError unless ``report["uncertainty"]`` (when present) is well formed."""
    info = report.get("uncertainty")
    if info is None:
        return
    bad = f"{where}report uncertainty "
    if not isinstance(info, dict):
        raise ForecastError(f"{bad}must be an object; got {type(info).__name__}")
    names = info.get("params", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n in law_params for n in names) \
            or len(set(names)) != len(names):
        raise ForecastError(f"{bad}params must be a list of distinct parameters of the law ({', '.join(law_params)})")
    cov = info.get("cov", [])
    if not isinstance(cov, list) or len(cov) != len(names) or \
            not all(isinstance(row, list) and len(row) == len(names) for row in cov):
        raise ForecastError(f"{bad}cov must be a {len(names)} x {len(names)} matrix (one row per parameter)")
    for row in cov:
        for v in row:
            number(v, "report uncertainty cov", where)
    for key in ("scatter", "extra", "scale"):
        if info.get(key) is not None:
            v = number(info[key], f"report uncertainty {key}", where)
            if v < 0 or (key == "scale" and v < 1):
                raise ForecastError(f"{bad}{key} must be {'>= 1' if key == 'scale' else '>= 0'}; got {v!r}")


def _log_jacobian(law, lrs, steps, names):
    """log-prediction and its derivatives in the named parameters (log-space parameters in log space)."""
    model = law._law()
    with np.errstate(all="ignore"):
        prepared = model.prepare(np.asarray(lrs, dtype=np.float64) / law.lr_scale)
        pred, J = model.evaluate(law.params, prepared, np.asarray(steps, dtype=np.int64), jac=True)
    cols = [model.params.index(n) for n in names]
    G = J[:, cols] / pred[:, None]
    for j, n in enumerate(names):
        if n in model.log_params:
            G[:, j] *= law.params[n]
    return pred, G


def uncertainty(law, curves: list[Curve], box: dict[str, tuple[float, float]], fixed=()) -> dict:
    """``cov``, ``params``, ``scatter``, ``rho``, ``n_eff`` and ``points`` of ``law`` fitted to ``curves``
    inside the search box ``box`` (``fixed``: parameters the fit held)."""
    model = law._law()
    free = []
    for n in model.params:
        if n in fixed:
            continue
        lo, hi, v = box[n][0], box[n][1], law.params[n]
        if n in model.log_params and lo > 0 and v > 0:
            lo, hi, v = math.log(lo), math.log(hi), math.log(v)
        if min(v - lo, hi - v) > 1e-6 * (hi - lo):  # at a bound: held there, as if fixed
            free.append(n)
    residuals, rows, lag, total = [], [], 0.0, 0.0
    for c in curves:
        pred, G = _log_jacobian(law, c.lrs, c.steps, free)
        r = np.log(c.losses) - np.log(pred)
        residuals.append(r)
        rows.append(G)
        if len(r) > 2:
            d = r - r.mean()
            lag += float(d[1:] @ d[:-1])
            total += float(d @ d)
    r = np.concatenate(residuals)
    n = len(r)
    rho = min(max(lag / total, 0.0), 0.95) if total > 0 else 0.0
    n_eff = max(len(free) + 1.0, n * (1 - rho) / (1 + rho))
    cov = np.zeros((len(free), len(free)))
    if free and np.all(np.isfinite(r)):
        G = np.vstack(rows)
        if np.all(np.isfinite(G)):
            s2 = float(r @ r) / max(1, n - len(free))
            cov = np.linalg.pinv(G.T @ G, rcond=1e-12) * s2 * (n / n_eff)
    return {"params": free, "cov": cov.tolist(), "scatter": math.sqrt(float(r @ r) / n) if np.all(np.isfinite(r)) else 0.0,
            "rho": rho, "n_eff": n_eff, "points": n}


def _variance(law, lrs, steps, info: dict) -> np.ndarray:
    """The raw variance of the log-prediction at ``steps``: parameters, scatter and extra (no scale).
    More than ``GRID`` steps: the parameter part is computed at ``GRID`` evenly spaced ones (the first
    and last kept) and interpolated, so that its cost does not grow with a long prediction."""
    var = np.full(len(steps), float(info["scatter"]) ** 2 + float(info.get("extra") or 0.0) ** 2)
    names = list(info["params"])
    if names:
        cov = np.asarray(info["cov"], dtype=np.float64)
        at = steps if len(steps) <= GRID else np.unique(steps[np.linspace(0, len(steps) - 1, GRID).round().astype(int)])
        _, G = _log_jacobian(law, lrs, at, names)
        part = np.einsum("ij,jk,ik->i", G, cov, G)
        var += part if len(at) == len(steps) else np.interp(steps, at, part)
    return np.maximum(var, 0.0)


def _split(c: Curve, share: float):
    """The curve's measurements up to ``share`` of its measured steps, and the rest (None if too few)."""
    cut = c.steps[0] + share * (c.steps[-1] - c.steps[0])
    k = c.steps <= cut
    if k.sum() < 3 or (~k).sum() < 1:
        return None
    last = int(c.steps[k][-1])
    return Curve(c.steps[k], c.losses[k], c.lrs[: last + 1], name=c.name), Curve(c.steps[~k], c.losses[~k], c.lrs, name=c.name)


def calibrate(refit, curves: list[Curve], level: float = 0.9) -> dict:
    """``extra``, ``scale`` and ``folds`` from refits on parts of ``curves`` (see the module).

    ``refit(curves)`` returns a law fitted to them with its raw uncertainty recorded, or raises
    ForecastError for a part it cannot be fitted on (one with no decaying LR, say): that fold is
    skipped. With no fold possible (a single short curve), ``extra`` is 0 and ``scale`` 1, and
    ``folds`` says so."""
    folds = []
    parts = [_split(c, HOLDOUT) for c in curves]
    if all(p is not None for p in parts):
        folds.append(([p[0] for p in parts], [p[1] for p in parts]))
    if len(curves) >= 3:  # a fit to one curve is far weaker than one to two: its errors would not be the full fit's
        for i in range(min(len(curves), FOLDS)):
            folds.append(([c for j, c in enumerate(curves) if j != i], [curves[i]]))
    errors, raw = [], []
    for train, test in folds:
        try:
            law = refit(train)
            e = np.concatenate([np.log(c.losses / law.predict(c.lrs, c.steps)) for c in test])
            v = np.concatenate([_variance(law, c.lrs, c.steps, law.report["uncertainty"]) for c in test])
        except ForecastError:
            continue
        if np.all(np.isfinite(e)) and np.all(np.isfinite(v)):
            errors.append(e)
            raw.append(v)
    if not errors:
        return {"extra": 0.0, "scale": 1.0, "folds": 0}
    extra = float(np.sqrt(np.mean([np.mean(e ** 2) for e in errors])))  # each fold counts once
    z = np.abs(np.concatenate(errors)) / np.sqrt(np.concatenate(raw) + extra ** 2)
    scale = max(1.0, float(np.quantile(z, level)) / float(norm.ppf(0.5 + level / 2)))
    return {"extra": extra, "scale": scale, "folds": len(errors)}


def predict_interval(law, lrs, steps, level: float = 0.9):
    """``(prediction, low, high)`` at ``steps`` for a run with LR ``lrs[i]`` at step i. A law
    without recorded uncertainty gives an interval of zero width around the prediction."""
    level = check_level(level)
    pred = law.predict(lrs, steps)
    info = law.report.get("uncertainty")
    if not info:
        return pred, pred.copy(), pred.copy()
    var = _variance(law, lrs, np.asarray(steps, dtype=np.int64), info)
    half = norm.ppf(0.5 + level / 2) * float(info.get("scale") or 1.0) * np.sqrt(var)
    return pred, pred * np.exp(-half), pred * np.exp(half)
