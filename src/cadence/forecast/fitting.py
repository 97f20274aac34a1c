"""Fit a loss-curve law to runs, predict other schedules, score, save and load.

Fitting minimises the mean Huber loss of log-loss residuals (``log pred - log loss``,
delta 1e-3, as in the Multi-Power Law paper) in float64 with L-BFGS-B inside the law's
bounds, from several starting points picked by a scrambled Sobol sequence with a fixed
seed: the same curves always give the same fit.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.stats import qmc
from threadpoolctl import threadpool_limits

from cadence import __version__
from cadence._atomic import atomic_write
from cadence.errors import LimitError
from cadence.forecast.curve import Curve, ForecastError, as_vector
from cadence.forecast.combined import COMBINED, CombinedLaw
from cadence.forecast.intervals import calibrate, check_uncertainty, predict_interval, uncertainty
from cadence.forecast.laws import LAWS, WARMUP, Law, check_warmup
from cadence._files import read_json
from cadence.forecast.limits import MAX_FIT_POINTS, MAX_LAW_BYTES, MAX_STEPS, number, regular_file, shorten

__all__ = ["fit", "FittedLaw", "load", "scores", "fitted_range", "RANGE_ABOVE", "RANGE_BELOW", "RANGE_LONGER",
           "RANGE_LOW_LR", "RANGE_LOW_SHARE"]

LAW_FORMAT = _FORMAT = "cadence.forecast.law/1"

# How far a schedule may go beyond what a law was fitted on before FittedLaw.range_notes says so
# (docs/forecast.md, "Limits and validation"). A peak LR more than 10% above the largest fitted LR;
# a peak below half of it (a law fitted at a different peak); more than 4x the steps or the LR area
# of the longest fitted curve (the published 72,000-step cosine predicted from 24,000-step fits is
# 3x in steps and 1.7x in area, a use the laws were published with); LRs after the peak below a
# tenth of the smallest LR the fitted curves reached after theirs, at more than 1% of the steps
# from the peak on (the last step of a decay to 0 alone changes nothing worth a note).
RANGE_ABOVE, RANGE_BELOW, RANGE_LONGER, RANGE_LOW_LR, RANGE_LOW_SHARE = 1.1, 0.5, 4.0, 0.1, 0.01
# The fields of a fit report's "range" (older law files have none: the range is then unknown).
_RANGE_FIELDS = {"lr_min": "the smallest LR after the peak", "steps": "the most steps of a fitted curve",
                 "area": "the largest LR area of a fitted curve, in steps at lr_scale",
                 "first_area": "the LR area before the first fitted measurement, in steps at lr_scale"}


def scores(pred: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    """R², PredE (mean |pred-loss|/loss) and WorstE (max of the same).

    Computed on losses divided by the largest one (R² does not change), so that losses near
    the float range do not overflow; a prediction off by more than that range scores inf
    (R² -inf), and R² is nan when every loss is equal."""
    scale = float(np.max(np.abs(losses))) or 1.0
    with np.errstate(all="ignore"):  # a prediction beyond the float range scores inf, as it should
        p, l = pred / scale, losses / scale
        rel = np.abs(p - l) / l
        ss_tot = float(np.sum((l - l.mean()) ** 2))
        r2 = 1.0 - float(np.sum((p - l) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
        return {"r2": r2, "pred_e": float(rel.mean()), "worst_e": float(rel.max())}


@dataclass
class FittedLaw:
    """A law with fitted parameters. ``predict(lrs, steps)`` works for any schedule.

    Construction checks every field: a known law, each of its parameters a finite number
    inside the law's domain (``Law.domain``), ``lr_scale`` finite and > 0, a known warmup
    convention; a one-line ForecastError names the first that is not.
    """

    law: str
    params: dict[str, float]
    lr_scale: float
    report: dict = field(default_factory=dict)
    warmup: str = "skip"

    def __post_init__(self) -> None:
        if not isinstance(self.law, str) or self.law not in LAWS:
            raise ForecastError(f"unknown law {shorten(self.law)}; known: {', '.join(LAWS)}")
        self.params = LAWS[self.law].check(self.params)
        self.lr_scale = number(self.lr_scale, "lr_scale")
        if self.lr_scale <= 0:
            raise ForecastError(f"lr_scale must be > 0 (the largest LR of the fitted runs); got {self.lr_scale!r}")
        if not isinstance(self.report, dict):
            raise ForecastError(f"report must be a dict; got {type(self.report).__name__}")
        _check_range(self.report)
        check_uncertainty(self.report, LAWS[self.law].params)
        check_warmup(self.warmup)

    @property
    def fitted_range(self) -> dict[str, float] | None:
        """What the law was fitted on (``fit`` records it in ``report["range"]``): ``lr_min``, the
        smallest LR its curves reached after their peak; ``steps``, the most steps of one curve;
        ``area``, the largest LR area (sum of LRs) of one curve and ``first_area``, the smallest LR
        area before a curve's first fitted measurement, both in steps at ``lr_scale`` (LR area /
        lr_scale: never overflows). None when unknown (older law files; laws built directly)."""
        return _check_range(self.report)

    def range_notes(self, lrs) -> list[str]:
        """One plain sentence for each way the schedule ``lrs`` (the LR of every step) is outside what
        the law was fitted on; empty when it is inside, or when nothing can be said (lrs that
        ``predict`` refuses). Linear in ``len(lrs)``. The peak LR is compared with ``lr_scale``
        (every law has it); steps, LR area and low LRs only when ``fitted_range`` is known. The
        thresholds are ``RANGE_ABOVE``, ``RANGE_BELOW``, ``RANGE_LONGER``, ``RANGE_LOW_LR`` and
        ``RANGE_LOW_SHARE``."""
        return [text for _, text in self.range_notes_by_kind(lrs)]

    def range_notes_by_kind(self, lrs) -> list[tuple[str, str]]:
        """``range_notes`` as (kind, sentence) pairs, the kind one of ``peak``, ``steps``, ``area``,
        ``early`` and ``low``: a caller that checks several schedules keeps one note of each kind."""
        try:
            lrs = as_vector(lrs, "lrs")
        except ForecastError:
            return []
        if len(lrs) == 0 or not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
            return []
        top = int(np.argmax(lrs))
        peak = float(lrs[top])
        if peak <= 0:
            return []
        notes = []
        scale = self.lr_scale
        with np.errstate(all="ignore"):  # a ratio beyond the float range is inf, which still reads as "far above"
            ratio = float(np.float64(peak) / scale)
            area = float(np.sum(lrs) / np.float64(scale))
        if ratio > RANGE_ABOVE:
            notes.append(("peak", f"the schedule's peak LR {peak:.3g} is {_times(ratio)} the largest LR the {self.law} law "
                                  f"was fitted on ({scale:.3g})"))
        elif ratio < RANGE_BELOW:
            notes.append(("peak", f"the schedule's peak LR {peak:.3g} is {_times(ratio)} the peak LR the {self.law} law was "
                                  f"fitted at ({scale:.3g}): a law fitted at a different peak"))
        fitted = self.fitted_range
        if not fitted:
            return notes
        if "steps" in fitted and len(lrs) > RANGE_LONGER * fitted["steps"]:
            notes.append(("steps", f"the schedule runs {len(lrs):,} steps, {_times(len(lrs) / fitted['steps'])} the longest "
                                   f"curve the law was fitted on ({int(fitted['steps']):,}); beyond {RANGE_LONGER:g}x it "
                                   "is a long extrapolation"))
        if fitted.get("area", 0) > 0 and area > RANGE_LONGER * fitted["area"]:
            notes.append(("area", f"the schedule's LR area (sum of its LRs) is {_times(area / fitted['area'])} the largest "
                                  f"of the curves the law was fitted on ({fitted['area'] * scale:.4g}); beyond "
                                  f"{RANGE_LONGER:g}x it is a long extrapolation"))
        if "first_area" in fitted and area < fitted["first_area"]:
            notes.append(("early", f"the schedule's LR area at its last step ({area * scale:.4g}) is below that before "
                                   f"the first loss the law was fitted on ({fitted['first_area'] * scale:.4g}): the law "
                                   "was not fitted that early in training"))
        if fitted.get("lr_min", 0) > 0:
            floor = RANGE_LOW_LR * fitted["lr_min"]
            low, after = int(np.count_nonzero(lrs[top:] < floor)), len(lrs) - top
            if low > RANGE_LOW_SHARE * after:
                notes.append(("low", f"{low:,} of the schedule's {after:,} steps from its peak on "
                                     f"({100 * low / after:.2g}%) have an LR below {floor:.3g}, a tenth of the smallest "
                                     f"LR the law was fitted on ({fitted['lr_min']:.3g})"))
        return notes

    def _outside(self, lrs: np.ndarray) -> str:
        """Why a schedule is outside what the law can describe, for an error message."""
        return "; ".join([f"largest LR {float(lrs.max()):.3g}, {len(lrs):,} steps; the law was fitted with LRs up to "
                          f"{self.lr_scale:.3g}"] + self.range_notes(lrs))

    def _law(self) -> Law:
        return LAWS[self.law](warmup=self.warmup)

    def predict(self, lrs, steps) -> np.ndarray:
        """Predicted losses at ``steps`` for a run with LR ``lrs[i]`` at step i: finite numbers, or a
        one-line ForecastError. Steps before any LR has been applied (the LR is 0 up to there) have no
        prediction: the laws describe the loss as a function of the LR area, which is 0 there."""
        lrs = as_vector(lrs, "lrs")
        if len(lrs) == 0:
            raise ForecastError("lrs must be a non-empty 1-D array (the LR of every step)")
        bad = ~np.isfinite(lrs) | (lrs < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ForecastError(f"lrs must be finite and >= 0; got {lrs[i]} at step {i}")
        del bad
        steps = _steps(steps)
        last = int(steps.max())
        if last >= len(lrs):
            raise ForecastError(f"lrs covers steps 0..{len(lrs) - 1} but a prediction is asked at step {last}")
        started = lrs[: last + 1] > 0
        first = int(np.argmax(started)) if started.any() else None
        del started
        if first is None or steps.min() < first:
            zero = "every step" if first is None else "step 0" if first == 1 else f"steps 0..{first - 1}"
            raise ForecastError(f"no prediction at step {int(steps.min())}: the LR is 0 at {zero}, and the "
                                f"{self.law} law describes the loss only after some training (LR area > 0)")
        model = self._law()
        with np.errstate(all="ignore"):  # overflow shows as inf or nan in the result, checked below
            scaled = np.divide(lrs[: last + 1], self.lr_scale)
            prepared = model.prepare(scaled)
            del scaled  # long predictions: hold as few step-long arrays at once as possible
            pred = model.evaluate(self.params, prepared, steps)
            del prepared
        if not np.all(np.isfinite(pred)):
            i = int(np.argmax(~np.isfinite(pred)))
            raise ForecastError(
                f"the {self.law} law's prediction overflows at step {int(steps[i])} (it gives {pred[i]}): its parameters "
                f"do not describe this schedule ({self._outside(lrs)})")
        if np.any(pred <= 0):  # a loss is > 0: a law that goes below 0 is far outside what it was fitted on
            i = int(np.argmax(pred <= 0))
            raise ForecastError(
                f"the {self.law} law predicts a loss of {float(pred[i]):.4g} at step {int(steps[i])}, and a loss is > 0: "
                f"this schedule is outside what the law can describe ({self._outside(lrs)})")
        return pred

    def predict_interval(self, lrs, steps, level: float = 0.9):
        """``(prediction, low, high)`` at ``steps``: the prediction and an interval meant to hold the
        loss a run with this schedule measures there with probability ``level`` (see the intervals
        module for how it is made and docs/forecast.md for how often it held). A law without
        recorded uncertainty (built by hand, or fitted with ``intervals=False``, or an older file)
        gives low = high = prediction."""
        return predict_interval(self, lrs, steps, level)

    @property
    def has_interval(self) -> bool:
        return bool(self.report.get("uncertainty"))

    def score(self, curve: Curve) -> dict[str, float]:
        return scores(self.predict(curve.lrs, curve.steps), curve.losses)

    def to_dict(self) -> dict:
        return {"format": _FORMAT, "law": self.law, "params": self.params, "lr_scale": self.lr_scale,
                "warmup": self.warmup, "report": self.report, "cadence": __version__}

    def save(self, path: "str | Path") -> Path:
        """Write the law as JSON (atomically: a reader sees the old file or the new one)."""
        return save_law(self, path)


def save_law(law, path: "str | Path") -> Path:
    """Write ``law.to_dict()`` as JSON to ``path``, atomically (a reader sees the old file or the new one)."""
    try:
        text = json.dumps(law.to_dict(), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ForecastError(f"cannot save this law: its report is not plain JSON data ({e})") from None
    try:
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as e:
        raise ForecastError(f"cannot write {path}: {e.strerror or e}", field="out") from None
    except ValueError as e:  # a NUL byte in the name
        raise ForecastError(f"cannot write {shorten(str(path))}: {e}", field="out") from None


def _times(ratio: float) -> str:
    """A ratio as "3.25x", "0.25x" or "1,000x"."""
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def _check_range(report: dict, where: str = "") -> dict[str, float] | None:
    """``report["range"]`` checked (each field present a finite number >= 0, ``steps`` a whole
    number >= 1); None when absent. A one-line ForecastError for anything else."""
    fitted = report.get("range")
    if fitted is None:
        return None
    if not isinstance(fitted, dict):
        raise ForecastError(f"{where}report range must be an object of {', '.join(_RANGE_FIELDS)}; got "
                            f"{type(fitted).__name__}")
    out = {}
    for key in _RANGE_FIELDS:
        if key in fitted:
            value = number(fitted[key], f"report range {key}", where)
            if value < 0 or (key == "steps" and (value < 1 or value != int(value))):
                raise ForecastError(f"{where}report range {key} ({_RANGE_FIELDS[key]}) must be "
                                    f"{'a whole number >= 1' if key == 'steps' else '>= 0'}; got {value!r}")
            out[key] = value
    return out


def fitted_range(curves: "list[Curve]", lr_scale: float) -> dict[str, float]:
    """What a fit on ``curves`` covers, as ``FittedLaw.fitted_range`` gives it back (areas in steps
    at ``lr_scale``, so that they cannot overflow). Linear in the curves' lengths."""
    lr_min = min(float(c.lrs[int(np.argmax(c.lrs)):].min()) for c in curves)
    with np.errstate(all="ignore"):
        area = max(float(np.sum(c.lrs / lr_scale)) for c in curves)
        first = min(float(np.sum(c.lrs[: c.steps[0] + 1] / lr_scale)) for c in curves)
    return {"lr_min": lr_min, "steps": max(int(c.steps[-1]) + 1 for c in curves), "area": area, "first_area": first}


def _flat(curves: "list[Curve]") -> float | None:
    """The one loss every measurement of every curve has, if they all have the same (else None)."""
    first = float(curves[0].losses[0])
    return first if all(np.all(c.losses == first) for c in curves) else None


def _steps(steps) -> np.ndarray:
    """Prediction steps as a non-empty int64 array of whole numbers in 0..MAX_STEPS-1."""
    if isinstance(steps, np.ndarray) and steps.dtype.kind in "iu" and steps.ndim == 1 and len(steps) <= MAX_STEPS:
        if len(steps) and steps.min() >= 0 and steps.max() < MAX_STEPS:
            return steps.astype(np.int64, copy=False)  # integer steps (np.arange): no float copy
    array = as_vector(steps, "steps")
    if len(array) == 0:
        raise ForecastError("steps must be a non-empty 1-D array of whole numbers >= 0")
    whole = np.isfinite(array) & (array >= 0) & (array == np.round(array)) & (array < MAX_STEPS)
    if not whole.all():
        raise ForecastError(f"steps must be whole numbers in 0..{MAX_STEPS - 1:,}; got {array[np.argmin(whole)]:g}")
    return array.astype(np.int64)


def load(path: "str | Path") -> FittedLaw:
    """Read a law saved by :meth:`FittedLaw.save` (plain JSON; nothing is executed).

    Every field is checked (docs/forecast.md, "Limits and validation"): a file larger than
    ``MAX_LAW_BYTES``, not UTF-8 JSON, nested too deeply, of another format, or with a
    parameter that is missing, not a finite number or outside its law's domain is refused
    with a one-line ForecastError.
    """
    path, _ = regular_file(path, MAX_LAW_BYTES, "law file")
    where = f"{path}: "
    data = read_json(path, MAX_LAW_BYTES, "law file", ForecastError)
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ForecastError(f"{path} is not a {_FORMAT} law file (format: {shorten(found)}); refit it with this version")
    return from_dict(data, where)


def from_dict(data: dict, where: str = "", nested: bool = False):
    """The law (a FittedLaw or a CombinedLaw) that ``data``, a law file's content, holds: every field
    checked as :func:`load` checks a file (the ``format`` key is the caller's to check)."""
    law = data.get("law") if isinstance(data, dict) else None
    if law == COMBINED and not nested:
        members = data.get("members")
        if not isinstance(members, list) or len(members) < 2 or len(members) > len(LAWS) * len(WARMUP):
            raise ForecastError(f"{where}a {COMBINED} law needs 'members', a list of 2 to {len(LAWS) * len(WARMUP)} laws")
        report = data.get("report", {})
        if not isinstance(report, dict):
            raise ForecastError(f"{where}report must be a JSON object; got {type(report).__name__}")
        _check_range(report, where)
        return CombinedLaw([from_dict(m, f"{where}member {i + 1}: ", nested=True) for i, m in enumerate(members)],
                           report)
    if not isinstance(data, dict):
        raise ForecastError(f"{where}a law must be a JSON object; got {type(data).__name__}")
    if not isinstance(law, str) or law not in LAWS:
        raise ForecastError(f"{where}unknown law {shorten(law)}; known: {', '.join(LAWS)}"
                            + ("" if nested else f", {COMBINED}"))
    for key in ("params", "lr_scale"):
        if key not in data:
            raise ForecastError(f"{where}the law file has no {key!r}")
    params = LAWS[law].check(data["params"], where)
    lr_scale = number(data["lr_scale"], "lr_scale", where)
    if lr_scale <= 0:
        raise ForecastError(f"{where}lr_scale must be > 0; got {lr_scale!r}")
    warmup = check_warmup(data.get("warmup", "skip"), where)  # older files skipped the warmup
    report = data.get("report", {})
    if not isinstance(report, dict):
        raise ForecastError(f"{where}report must be a JSON object; got {type(report).__name__}")
    _check_range(report, where)  # older files have no range: it is unknown, not an error
    check_uncertainty(report, LAWS[law].params, where)
    return FittedLaw(law, params, lr_scale, report, warmup=warmup)


def _huber(r: np.ndarray, delta: float):
    a = np.abs(r)
    quad = a <= delta
    value = np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta))
    grad = np.where(quad, r, delta * np.sign(r))
    return value, grad


def _thin(steps: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` measurements, evenly spaced in steps (the first and last kept)."""
    if len(steps) <= limit:
        return np.arange(len(steps))
    idx = np.searchsorted(steps, np.linspace(steps[0], steps[-1], limit))
    return np.unique(np.minimum(idx, len(steps) - 1))


def _whole(value, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ForecastError(f"{name} must be a whole number >= {low}; got {shorten(value)}")
    return int(value)


def fit(curves: "list[Curve] | Curve", law: str = "multipower", *, starts: int = 3, candidates: int = 128,
        seed: int = 0, delta: float = 1e-3, max_iter: int = 2000, fixed: dict[str, float] | None = None,
        strict: bool = True, max_residual: float = 0.01, warmup: str = "skip",
        max_points: int = MAX_FIT_POINTS, intervals: bool = True, _init: dict | None = None):
    """Fit ``law`` to one or more curves; returns a :class:`FittedLaw`.

    ``law="combined"`` fits every law to the same curves and returns a
    :class:`~cadence.forecast.combined.CombinedLaw` that predicts their geometric mean (the
    same keywords apply to each member; a member that cannot be fitted fails the whole fit).

    With ``intervals`` (default) the fit also measures how far off its predictions can be and
    records it in ``report["uncertainty"]`` for ``predict_interval`` (see the intervals module):
    the parameters' covariance and the residual scatter, then refits on parts of the curves
    (each curve's first two thirds; all curves but one, for up to three curves) asked about
    the parts they did not see. The refits start from this fit's parameters, so they cost a
    fraction of the first fit.

    ``warmup="count"`` counts the LR rises of the initial warmup in the decrement terms, as
    the Multi-Power Law authors' code does; the default leaves them out (see the laws module).

    ``fixed`` pins parameters (e.g. ``{"lam": 0.999}``). With ``strict`` a fit that cannot
    describe its own training curves (mean relative residual above ``max_residual``) raises a
    ForecastError that reports the residuals, instead of returning
    a poor law silently; the error gives the likeliest cause in the runs' terms (a loss that
    does not fall, too noisy, still in its first phase, an optimiser that did not converge)
    and what to do. A fit with no more points than free parameters is refused, and with
    ``strict`` so is one where no curve's LR decays (nothing then shows the decay terms).

    A curve with more than ``max_points`` measurements is fitted on ``max_points`` of them,
    evenly spaced in steps (the fit's cost grows with the number of points); the report's
    ``points`` gives, per curve, the points fitted and the points measured, and its scores
    are over every measured point.
    """
    if isinstance(curves, Curve):
        curves = [curves]
    if not isinstance(curves, (list, tuple)) or not curves or not all(isinstance(c, Curve) for c in curves):
        raise ForecastError("fit needs a non-empty list of Curve objects")
    if law == COMBINED:
        if warmup != "skip" or fixed:
            raise ForecastError(f"the {COMBINED} law fits each law under both warmup conventions, with no parameter "
                                "fixed: fit one law to count the warmup or to fix a parameter")
        members, skipped = [], []
        for name in LAWS:
            if LAWS[name].fit_steps is not None and sum(len(c.lrs) for c in curves) > LAWS[name].fit_steps:
                skipped.append(f"{name}: the curves have more than the {LAWS[name].fit_steps:,} steps of LR its fit "
                               "is limited to")
                continue
            for convention in WARMUP:
                try:
                    members.append(fit(curves, name, starts=starts, candidates=candidates, seed=seed, delta=delta,
                                       max_iter=max_iter, strict=strict, max_residual=max_residual,
                                       warmup=convention, max_points=max_points, intervals=intervals))
                except ForecastError as e:
                    raise type(e)(f"{COMBINED} law, fitting its {name} member (warmup {convention}): {e}",
                                  field=e.field) from None
        combined = CombinedLaw(members)
        combined.report = {"skipped": skipped,"curves": {n: combined.score(c) for n, c in zip(members[0].report["curves"], curves)},
                           "range": members[0].report["range"], "points": members[0].report["points"]}
        return combined
    if not isinstance(law, str) or law not in LAWS:
        raise ForecastError(f"unknown law {shorten(law)}; known: {', '.join(LAWS)}, {COMBINED}")
    if not isinstance(intervals, bool):
        raise ForecastError(f"intervals must be True or False; got {shorten(intervals)}")
    starts, candidates, max_iter = _whole(starts, "starts"), _whole(candidates, "candidates"), _whole(max_iter, "max_iter")
    max_points, seed = _whole(max_points, "max_points", 2), _whole(seed, "seed", 0)
    delta, max_residual = number(delta, "delta"), number(max_residual, "max_residual")
    if delta <= 0 or max_residual <= 0:
        raise ForecastError(f"delta and max_residual must be > 0; got {delta!r} and {max_residual!r}")
    model = LAWS[law](warmup=warmup)
    if fixed is not None and not isinstance(fixed, dict):
        raise ForecastError(f"fixed must be a dict of parameter values; got {type(fixed).__name__}")
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(model.params)
    if unknown:
        raise ForecastError(f"cannot fix {', '.join(sorted(map(shorten, unknown)))}: the {law} law has "
                            f"{', '.join(model.params)}")
    fixed = {k: v for k, v in model.check({**{n: 0.5 for n in model.params}, **fixed}).items() if k in fixed}
    if len(fixed) == len(model.params):
        raise ForecastError(f"every parameter of the {law} law is fixed: nothing to fit (build a FittedLaw directly)")
    names, unique = [], set()
    for i, c in enumerate(curves):  # report keys: one per curve, even when two curves share a name
        name = c.name or f"curve{i}"
        while name in unique:
            name = f"{c.name or 'curve'}#{i}"
            i += len(curves)
        unique.add(name)
        names.append(name)
    steps_in_lrs = sum(len(c.lrs) for c in curves)
    if model.fit_steps is not None and steps_in_lrs > model.fit_steps:
        raise LimitError(f"a fit of the {law} law is limited to {model.fit_steps:,} steps of LR over all its curves "
                         f"(each of its thousands of evaluations passes over every step); these have {steps_in_lrs:,}: "
                         "fit the multipower law, whose cost does not grow with the run's length")
    lr_scale = max(float(c.lrs.max()) for c in curves)
    if lr_scale <= 0:
        raise ForecastError("every LR is 0: nothing to fit")
    for c in curves:
        if not np.any(c.lrs[: c.steps[0] + 1] > 0):  # (a sum of LRs near 1e308 would overflow)
            raise ForecastError(f"curve {c.name!r}: the first measured step has no LR area before it (all LRs 0)")
    kept = [_thin(c.steps, max_points) for c in curves]
    n_total = sum(len(k) for k in kept)
    free_count = len(model.params) - len(fixed)
    if n_total <= free_count:
        raise ForecastError(f"too few points to fit: the {law} law has {free_count} free parameters but the curves have "
                            f"only {n_total} measured losses after warmup; train longer or measure the loss more often "
                            f"(at least {2 * free_count} points over all curves give a fit worth having)")
    decay_terms = [n for n in _DECAY_TERMS.get(law, ()) if n not in fixed]
    if strict and decay_terms and not any(_decays(c) for c in curves):
        raise ForecastError(f"no curve's LR decays after its warmup, so nothing shows what a decay does to the loss (the "
                            f"{law} law's {', '.join(decay_terms)}): add a run whose LR decays, such as a cosine one")
    with np.errstate(all="ignore"):
        prepared = [(model.prepare(c.lrs / lr_scale), c.steps[k], np.log(c.losses[k])) for c, k in zip(curves, kept)]
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
        values = np.array(theta, dtype=np.float64)
        values[is_log] = np.exp(values[is_log])  # only these: L0 may be searched up to a loss of 1e308
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

    # One BLAS thread: L-BFGS-B's vectors have a few entries, and OpenBLAS threads spinning on
    # them cost ten times the CPU (a 10-point fit: 19 s of CPU with 2 threads, 1.5 s with one).
    with threadpool_limits(limits=1, user_api="blas"):
        sampler = qmc.Sobol(d=len(free), scramble=True, seed=seed)
        # random_base2: the first 2**m points, as random(2**m) gives them, without the warning
        # scipy issues for a count that is not a power of 2.
        points = qmc.scale(sampler.random_base2(max(0, math.ceil(math.log2(candidates))))[:candidates], lo_t, hi_t)
        if _init is not None:  # a refit for the intervals: from the full fit's parameters only
            points = np.array([[math.log(max(_init[n], 1e-300)) if log else _init[n] for n, log in zip(free, is_log)]])
            points = np.clip(points, lo_t, hi_t)
        values = np.array([objective(x)[0] for x in points])
        best = None
        for x0 in points[np.argsort(values)[:starts]]:
            res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lo_t, hi_t)),
                           options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-12})
            if best is None or res.fun < best.fun:
                best = res
    params, _ = decode(best.x)
    fitted = FittedLaw(law, {k: float(params[k]) for k in model.params}, lr_scale, warmup=warmup)
    per_curve = {name: fitted.score(c) for name, c in zip(names, curves)}
    mean_e = sum(s["pred_e"] for s in per_curve.values()) / len(per_curve)  # Python floats: inf, not a warning
    worst = max(per_curve.items(), key=lambda kv: kv[1]["worst_e"])
    for s in per_curve.values():  # R² is undefined (nan) for a curve whose losses are all equal
        s.update({k: (v if math.isfinite(v) else None) for k, v in s.items()})
    fitted.report = {"objective": float(best.fun), "converged": bool(best.success), "message": str(best.message),
                     "iterations": int(best.nit), "curves": per_curve, "fixed": sorted(fixed),
                     "points": {name: [len(k), len(c.steps)] for name, k, c in zip(names, kept, curves)},
                     "range": fitted_range(curves, lr_scale)}
    if intervals:
        fitted.report["uncertainty"] = _uncertainty(fitted, curves, kept, box, fixed, dict(
            candidates=candidates, seed=seed, delta=delta, max_iter=max_iter, fixed=fixed or None, warmup=warmup,
            max_points=max_points))
    flat = _flat(curves) if strict else None
    if flat is not None:
        raise ForecastError(f"every measured loss is {flat:.6g} ({sum(len(c.losses) for c in curves):,} measurements): a "
                            "loss that never changes shows nothing a law can fit; check the loss column (is it the "
                            "loss, and does the run learn?)")
    if strict and (mean_e > max_residual or not math.isfinite(mean_e)):
        why = _why(law, params, box, best, curves, names, max_residual)
        raise ForecastError(
            f"the {law} law does not fit these curves (training residuals: mean {100 * mean_e:.2f}%, worst "
            f"{100 * worst[1]['worst_e']:.2f}% on {worst[0]}, against a {100 * max_residual:g}% limit): {why}"
        )
    return fitted


REFIT_POINTS = 200  # a calibration refit uses at most this many measurements per curve (its cost grows with them)


def _uncertainty(fitted: FittedLaw, curves: list[Curve], kept: list[np.ndarray], box: dict, fixed: dict,
                 settings: dict) -> dict:
    """``report["uncertainty"]``: the fit's own uncertainty, calibrated by refits on parts of the curves."""
    points = [Curve(c.steps[k], c.losses[k], c.lrs, name=c.name) for c, k in zip(curves, kept)]
    info = uncertainty(fitted, points, box, fixed)
    decay_terms = [n for n in _DECAY_TERMS.get(fitted.law, ()) if n not in fixed]

    def refit(part: list[Curve]) -> FittedLaw:
        if decay_terms and not any(_decays(c) for c in part):
            raise ForecastError("no decaying LR in this part")  # (a fold the law cannot be fitted on: skipped)
        law = fit(part, fitted.law, starts=1, strict=False, intervals=False, _init=fitted.params,
                  **{**settings, "max_points": min(settings["max_points"], REFIT_POINTS)})
        law.report["uncertainty"] = uncertainty(law, part, box, fixed)
        return law

    info.update(calibrate(refit, points))
    return info


# The parameters of each law that only a decaying LR can show (the annealing term).
_DECAY_TERMS = {"multipower": ("B", "C", "beta", "gamma"), "annealing": ("C", "lam")}


def _decays(curve: Curve) -> bool:
    """Whether the curve's LR falls by at least 1% below its peak after reaching it, by its last measurement."""
    lrs = curve.lrs  # (ends at the last measured step)
    top = int(np.argmax(lrs))
    return bool(np.min(lrs[top:]) < 0.99 * lrs[top])


def _noise(curve: Curve) -> float:
    """The scatter of the curve's log-losses around a smooth trend (a robust standard deviation from
    second differences: white noise of deviation s gives second differences of deviation s*sqrt(6));
    0 for a curve of fewer than 5 points."""
    if len(curve.losses) < 5:
        return 0.0
    second = np.diff(np.log(curve.losses), 2)
    return float(np.median(np.abs(second)) / 0.6745 / math.sqrt(6))


def _why(law: str, params: dict, box: dict, best, curves: list[Curve], names: list[str], max_residual: float) -> str:
    """Why a fit failed and what to do, in the terms of the runs rather than the optimiser, most likely cause first."""
    rising = []
    for name, c in zip(names, curves):
        third = max(1, len(c.losses) // 3)
        first, last = float(np.median(c.losses[:third])), float(np.median(c.losses[-third:]))
        if len(c.losses) >= 2 and last >= first:
            rising.append(f"{name} from {first:.4g} to {last:.4g}")
    if rising:
        return (f"the loss does not decrease ({'; '.join(rising[:3])}), and these laws describe a falling loss; check "
                "that the run learns (its LR, its data), or leave it out")
    noise = {name: _noise(c) for name, c in zip(names, curves)}
    noisy = max(noise, key=noise.get)
    if 0.8 * noise[noisy] > 0.5 * max_residual:  # the mean |error| of a perfect fit to noise of deviation s is 0.8 s
        return (f"the loss is too noisy: it scatters by about {100 * noise[noisy]:.2g}% around its trend between "
                f"measurements ({noisy}); measure it on more data, average over seeds or over more steps, or use "
                "the validation loss rather than the training loss")
    if "L0" in params and "L0" in box and params["L0"] <= box["L0"][0] + 1e-9 * max(1.0, box["L0"][1]):
        return ("the loss is still falling too steadily to show where it levels off (the fitted floor L0 is at 0), "
                "as in the first phase of training, which these laws do not describe; train the runs longer, or "
                "leave out their first part")
    if not best.success:
        return (f"the optimiser did not converge ({str(best.message).strip(': ') or 'no reason given'}); give longer "
                "runs or more measurements, or try the other law")
    return "the law's shape does not match these curves; try the other law, or longer runs"
