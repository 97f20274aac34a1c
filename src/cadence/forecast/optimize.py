"""Find a non-increasing schedule that minimises a fitted law's predicted final loss.

The schedule after warmup is ``peak * f(t)``, with ``f`` piecewise linear between
``knots`` points and ``f_j = exp(-sum_(i<=j) exp(z_i))``: positive and non-increasing for
any ``z``, so L-BFGS-B searches without constraints. As in the Multi-Power Law paper the
result is then compared with the nearest ordinary schedules.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from cadence.forecast.fitting import FittedLaw
from cadence.schedules import parse

__all__ = ["optimize_schedule", "nearest_specs", "as_spec"]


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


def optimize_schedule(law: FittedLaw, total: int, peak: float, warmup: int = 0, knots: int = 48) -> tuple[np.ndarray, float]:
    """(per-step LRs, predicted final loss) of the best non-increasing schedule found.

    L-BFGS-B runs from several shapes (exponential, cosine, linear, and WSD with 10-50%
    cooldowns) and the best result is kept, so no start shape beats it under the law.
    """
    last = np.array([total - 1])

    def loss(z):
        return float(law.predict(_schedule(z, total, warmup, peak), last)[0])

    x = np.linspace(0.0, 1.0, knots + 1)
    floor = 1e-3
    shapes = [np.exp(np.log(0.05) * x), floor + (1 - floor) * (1 + np.cos(np.pi * x)) / 2, np.maximum(1 - x, floor)]
    for cool in (0.1, 0.2, 0.3, 0.5):
        shapes.append(np.where(x < 1 - cool, 1.0, np.maximum(1 - (x - (1 - cool)) / cool, floor)))
    best = None
    for f in shapes:
        res = minimize(loss, _z_of(f), method="L-BFGS-B", bounds=[(-12.0, 3.0)] * knots, options={"maxiter": 300})
        if best is None or res.fun < best.fun:
            best = res
    lrs = _schedule(best.x, total, warmup, peak)
    return lrs, loss(best.x)


def nearest_specs(law: FittedLaw, lrs: np.ndarray, total: int, peak: float, warmup: int) -> list[tuple[str, float, float]]:
    """For WSD, cosine and linear: the spec closest to ``lrs`` (RMS of LR), its distance and predicted final loss."""
    candidates = {"wsd": [], "cosine": [], "linear": []}
    for frac in range(5, 65, 5):
        for shape in ("linear", "cosine", "1-sqrt"):
            candidates["wsd"].append(f"wsd(peak={peak!r}, warmup={warmup}, decay='{frac}%', shape='{shape}')")
    for final in (0.0, 0.01, 0.1):
        candidates["cosine"].append(f"cosine(peak={peak!r}, final={peak * final!r}, warmup={warmup})")
        candidates["linear"].append(f"linear(peak={peak!r}, final={peak * final!r}, warmup={warmup})")
    out = []
    for family, specs in candidates.items():
        best = min(specs, key=lambda s: float(np.sqrt(np.mean((parse(s).values(total) - lrs) ** 2))))
        values = parse(best).values(total)
        out.append((best, float(np.sqrt(np.mean((values - lrs) ** 2))), float(law.predict(values, [total - 1])[0])))
    return out
