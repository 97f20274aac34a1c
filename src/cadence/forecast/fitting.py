"""Fit a loss-curve law to runs, predict other schedules, score, save and load.

Fitting minimises the mean Huber loss of log-loss residuals (``log pred - log loss``,
delta 1e-3, as in the Multi-Power Law paper) in float64 with L-BFGS-B inside the law's
bounds, from several starting points picked by a scrambled Sobol sequence with a fixed
seed: the same curves always give the same fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.stats import qmc

from cadence import __version__
from cadence._atomic import atomic_write
from cadence.forecast.curve import Curve, ForecastError
from cadence.forecast.laws import LAWS, Law, check_warmup

__all__ = ["fit", "FittedLaw", "load", "scores"]

_FORMAT = "cadence.forecast.law/1"


def scores(pred: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    """R², PredE (mean |pred-loss|/loss) and WorstE (max of the same)."""
    rel = np.abs(pred - losses) / losses
    ss_tot = float(np.sum((losses - losses.mean()) ** 2))
    r2 = 1.0 - float(np.sum((pred - losses) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    return {"r2": r2, "pred_e": float(rel.mean()), "worst_e": float(rel.max())}


@dataclass
class FittedLaw:
    """A law with fitted parameters. ``predict(lrs, steps)`` works for any schedule."""

    law: str
    params: dict[str, float]
    lr_scale: float
    report: dict = field(default_factory=dict)
    warmup: str = "skip"

    def __post_init__(self) -> None:
        check_warmup(self.warmup)

    def _law(self) -> Law:
        return LAWS[self.law](warmup=self.warmup)

    def predict(self, lrs, steps) -> np.ndarray:
        lrs = np.asarray(lrs, dtype=np.float64)
        steps = np.asarray(steps)
        if lrs.ndim != 1 or len(lrs) == 0:
            raise ForecastError("lrs must be a non-empty 1-D array (the LR of every step)")
        if not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
            raise ForecastError("lrs must be finite and >= 0")
        if steps.ndim != 1 or len(steps) == 0 or np.any(steps < 0) or np.any(steps != np.round(steps)):
            raise ForecastError("steps must be a non-empty 1-D array of whole numbers >= 0")
        steps = steps.astype(np.int64)
        if steps.max() >= len(lrs):
            raise ForecastError(f"lrs covers steps 0..{len(lrs) - 1} but a prediction is asked at step {steps.max()}")
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            return self._law().predict(self.params, lrs / self.lr_scale, steps)

    def score(self, curve: Curve) -> dict[str, float]:
        return scores(self.predict(curve.lrs, curve.steps), curve.losses)

    def to_dict(self) -> dict:
        return {"format": _FORMAT, "law": self.law, "params": self.params, "lr_scale": self.lr_scale,
                "warmup": self.warmup, "report": self.report, "cadence": __version__}

    def save(self, path: "str | Path") -> Path:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def load(path: "str | Path") -> FittedLaw:
    """Read a law saved by :meth:`FittedLaw.save` (plain JSON; nothing is executed)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ForecastError(f"cannot read {path}: {e.strerror}") from None
    except ValueError:
        raise ForecastError(f"{path} is not JSON") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ForecastError(f"{path} is not a {_FORMAT} law file (format: {found!r}); refit it with this version")
    law = data.get("law")
    if law not in LAWS:
        raise ForecastError(f"{path}: unknown law {law!r}; known: {', '.join(LAWS)}")
    params = data.get("params", {})
    if set(params) != set(LAWS[law].params) or not all(isinstance(v, (int, float)) for v in params.values()):
        raise ForecastError(f"{path}: the {law} law needs parameters {', '.join(LAWS[law].params)}")
    warmup = check_warmup(data.get("warmup", "skip"), f"{path}: ")  # older files skipped the warmup
    return FittedLaw(law, {k: float(v) for k, v in params.items()}, float(data["lr_scale"]), data.get("report", {}),
                     warmup=warmup)


def _huber(r: np.ndarray, delta: float):
    a = np.abs(r)
    quad = a <= delta
    value = np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta))
    grad = np.where(quad, r, delta * np.sign(r))
    return value, grad


def fit(curves: "list[Curve] | Curve", law: str = "multipower", *, starts: int = 6, candidates: int = 128,
        seed: int = 0, delta: float = 1e-3, max_iter: int = 2000, fixed: dict[str, float] | None = None,
        strict: bool = True, max_residual: float = 0.01, warmup: str = "skip") -> FittedLaw:
    """Fit ``law`` to one or more curves; returns a :class:`FittedLaw`.

    ``warmup="count"`` counts the LR rises of the initial warmup in the decrement terms, as
    the Multi-Power Law authors' code does; the default leaves them out (see the laws module).

    ``fixed`` pins parameters (e.g. ``{"lam": 0.999}``). With ``strict`` a fit that cannot
    describe its own training curves (mean relative residual above ``max_residual``) raises a
    ForecastError that reports the residuals and the optimiser's status, instead of returning
    a poor law silently.
    """
    if isinstance(curves, Curve):
        curves = [curves]
    if not curves or not all(isinstance(c, Curve) for c in curves):
        raise ForecastError("fit needs a non-empty list of Curve objects")
    if law not in LAWS:
        raise ForecastError(f"unknown law {law!r}; known: {', '.join(LAWS)}")
    model = LAWS[law](warmup=warmup)
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(model.params)
    if unknown:
        raise ForecastError(f"cannot fix {', '.join(sorted(unknown))}: the {law} law has {', '.join(model.params)}")
    lr_scale = max(float(c.lrs.max()) for c in curves)
    if lr_scale <= 0:
        raise ForecastError("every LR is 0: nothing to fit")
    for c in curves:
        if c.lrs[: c.steps[0] + 1].sum() <= 0:
            raise ForecastError(f"curve {c.name!r}: the first measured step has no LR area before it (all LRs 0)")
    prepared = [(model.prepare(c.lrs / lr_scale), c.steps, np.log(c.losses)) for c in curves]
    n_total = sum(len(c.steps) for c in curves)
    max_loss = max(float(c.losses.max()) for c in curves)
    box = model.bounds(max_loss)
    free = [name for name in model.params if name not in fixed]
    is_log = np.array([name in model.log_params for name in free])
    lo = np.array([box[n][0] for n in free], dtype=np.float64)
    hi = np.array([box[n][1] for n in free], dtype=np.float64)
    lo_t = np.where(is_log, np.log(np.maximum(lo, 1e-300)), lo)
    hi_t = np.where(is_log, np.log(hi), hi)
    index = [model.params.index(n) for n in free]

    def decode(theta):
        values = np.where(is_log, np.exp(theta), theta)
        p = dict(fixed)
        p.update(zip(free, values.tolist()))
        return p, values

    def objective(theta):
        p, values = decode(theta)
        total, grad = 0.0, np.zeros(len(free))
        with np.errstate(all="ignore"):
            for prep, steps, log_loss in prepared:
                pred, J = model.evaluate(p, prep, steps, jac=True)
                if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
                    return 1e6, np.zeros(len(free))
                h, dh = _huber(np.log(pred) - log_loss, delta)
                total += h.sum()
                grad += (dh / pred) @ J[:, index]
        grad = np.where(is_log, grad * values, grad)
        if not np.all(np.isfinite(grad)):
            return 1e6, np.zeros(len(free))
        # Divided by delta^2: residuals of 1e-4 still give an objective of order 1, so the
        # optimiser's tolerances do not stop it in a flat valley (the minimiser is unchanged).
        norm = n_total * delta * delta
        return total / norm, grad / norm

    sampler = qmc.Sobol(d=len(free), scramble=True, seed=seed)
    points = qmc.scale(sampler.random(candidates), lo_t, hi_t)
    values = np.array([objective(x)[0] for x in points])
    best = None
    for x0 in points[np.argsort(values)[:starts]]:
        res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lo_t, hi_t)),
                       options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-12})
        if best is None or res.fun < best.fun:
            best = res
    params, _ = decode(best.x)
    fitted = FittedLaw(law, {k: float(params[k]) for k in model.params}, lr_scale, warmup=warmup)
    per_curve = {}
    for i, c in enumerate(curves):
        per_curve[c.name or f"curve{i}"] = fitted.score(c)
    mean_e = float(np.mean([s["pred_e"] for s in per_curve.values()]))
    worst = max(per_curve.items(), key=lambda kv: kv[1]["worst_e"])
    fitted.report = {"objective": float(best.fun), "converged": bool(best.success), "message": str(best.message),
                     "iterations": int(best.nit), "curves": per_curve, "fixed": sorted(fixed)}
    if strict and (mean_e > max_residual or not math.isfinite(mean_e)):
        state = "converged" if best.success else f"did not converge: {best.message}"
        raise ForecastError(
            f"the {law} law does not fit these curves (optimiser {state}); training residuals: mean "
            f"{100 * mean_e:.2f}%, worst {100 * worst[1]['worst_e']:.2f}% on {worst[0]}"
        )
    return fitted
