"""Schedule refinement: the LR schedule a finished run's gradient norms call for.

Defazio, Cutkosky, Mehta & Mishchenko 2023, "When, Why and How Much? Adaptive Learning
Rate Scheduling by Refinement" (arXiv 2310.07831). Their last-iterate bound for a run of
``T`` steps with gradients ``g_t`` is smallest for the schedule

    lr_t  proportional to  w_t * sum_(s>t) w_s,
    w_t = 1/||g_t||_2^2   (SGD)        w_t = 1/||g_t||_1   (Adam-type, coordinate-wise updates),

so the last step's LR is 0, and with constant norms it is linear decay to zero:
``lr_t = peak * (T-1-t)/(T-1)``. The norm sequence is first smoothed with a median filter
whose width is the fraction ``tau`` of the run (odd; default ``tau = 0.1``), padded at the
start by repeating the first norm and at the end by reflecting the last ones (the padding
the authors publish with their code). The result is scaled so its largest value after ``warmup`` is
``peak``; the first ``warmup`` steps become a linear ramp ``lr_W * i/W``.

Norms: a cadence run logs the l2 norm of the whole gradient (torch's ``clip_grad_norm_``,
before any clipping), not the l1 norm the paper prescribes for Adam. ``refine_run`` uses
what is logged, and the result says so (``norm="l2"``): for an AdamW run the weights are
``1/||g_t||_2``, an approximation of the paper's rule that is exact only when the ratio of
the two norms stays constant over the run.

Work and memory are linear in the run length (the median filter is a running rank filter);
a sequence longer than ``MAX_STEPS`` (10,000,000) is refused with a LimitError.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter

from cadence.errors import ForecastError, LimitError, RunError
from cadence.forecast.limits import MAX_STEPS, number, shorten

__all__ = ["Refined", "refine", "refine_run", "smooth", "weights", "MIN_STEPS", "MAX_POINTS", "OPTIMIZERS", "NORMS"]

MIN_STEPS = 10        # fewer gradient norms say nothing about the shape of a schedule
MAX_POINTS = 1000     # knots of the printed piecewise spec (about 30 characters each)
TAU = 0.1             # default median-filter width, as a fraction of the run
OPTIMIZERS = ("adamw", "sgd")
NORMS = ("l2", "l1")
_RUN_FORMAT = "cadence.run/1"
_MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True, eq=False)
class Refined:
    """A refined schedule. ``lrs`` has one LR per step; ``steps``/``values`` are the knots of
    ``spec``, a ``piecewise(...)`` spec that equals ``lrs`` exactly at each knot (the values
    are written with ``repr``, which round-trips) and is linear in between."""

    lrs: np.ndarray        # refined LR at steps 0..T-1
    steps: np.ndarray      # knot steps of the spec (int)
    values: np.ndarray     # knot values of the spec: lrs[steps]
    spec: str
    grad_norms: np.ndarray  # the norms as given
    smoothed: np.ndarray   # after the median filter
    optimizer: str
    norm: str              # which norm the input holds: "l2" (what cadence logs) or "l1"
    peak: float
    warmup: int
    filter_width: int
    logged_lrs: np.ndarray | None = None  # the run's own LR per step (refine_run only)

    @property
    def total(self) -> int:
        return len(self.lrs)


def _whole(value, name: str, low: int, high: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ForecastError(f"{name} must be a whole number; got {shorten(value)}", field=name)
    if not low <= value <= high:
        raise ForecastError(f"{name} must be from {low} to {high} ({why}); got {value}", field=name)
    return int(value)


def _norms(grad_norms) -> np.ndarray:
    """The gradient norms as a float64 array: 1-D, MIN_STEPS..MAX_STEPS long, finite and > 0."""
    try:
        n = len(grad_norms)
    except TypeError:
        raise ForecastError(f"grad_norms must be a sequence of numbers; got {shorten(grad_norms)}",
                            field="grad_norms") from None
    if n > MAX_STEPS:
        raise LimitError(f"refinement is limited to {MAX_STEPS:,} steps of gradient norms; got {n:,}",
                         field="grad_norms")
    try:
        g = np.asarray(grad_norms, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ForecastError(f"grad_norms must be a sequence of numbers; got {shorten(grad_norms)}",
                            field="grad_norms") from None
    if g.ndim != 1:
        raise ForecastError(f"grad_norms must be one number per step (1-D); got shape {g.shape}", field="grad_norms")
    if len(g) < MIN_STEPS:
        raise ForecastError(f"refinement needs the gradient norms of at least {MIN_STEPS} steps; got {len(g)}",
                            field="grad_norms")
    bad = ~(np.isfinite(g) & (g > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ForecastError(f"gradient norms must be finite and > 0; got {g[i]:g} at step {i}", field="grad_norms")
    return g


def smooth(grad_norms: np.ndarray, width: int) -> np.ndarray:
    """Median filter of odd ``width``: the first norm repeated before the start, the last
    ones reflected after the end (the authors' padding). O(T log width)."""
    g = np.asarray(grad_norms, dtype=np.float64)
    if width <= 1:
        return g.copy()
    padded = np.pad(g, (0, width), mode="reflect")
    return median_filter(padded, size=width, mode="nearest")[:len(g)]


def weights(norms: np.ndarray, optimizer: str) -> np.ndarray:
    """``w_t``: ``1/||g_t||^2`` for SGD, ``1/||g_t||`` for Adam-type optimizers, divided by
    their largest value (a constant factor changes no normalised schedule; in (0, 1] nothing
    overflows)."""
    with np.errstate(over="ignore", under="ignore"):  # a ratio beyond float64 gives a weight of 0
        scaled = np.asarray(norms, dtype=np.float64) / np.min(norms)  # >= 1
        return scaled ** -2.0 if optimizer == "sgd" else 1.0 / scaled


def _shape(w: np.ndarray) -> np.ndarray:
    """``w_t * sum_(s>t) w_s``; 0 at the last step."""
    tail = np.cumsum(w[::-1])[::-1]  # tail[t] = sum_(s>=t) w_s
    out = np.zeros_like(w)
    out[:-1] = w[:-1] * tail[1:]
    return out


def _knots(lrs: np.ndarray, warmup: int, points: int) -> np.ndarray:
    """At most ``points`` knot steps: evenly spaced from the end of warmup to the last step,
    plus step 0 and the step of the peak, so the spec starts and peaks where ``lrs`` does."""
    total = len(lrs)
    even = np.linspace(warmup, total - 1, points - 2).round().astype(np.int64)
    peak_step = warmup + int(np.argmax(lrs[warmup:]))
    return np.unique(np.concatenate([[0, peak_step], even]))


def refine(grad_norms, *, optimizer: str = "adamw", peak: float, warmup: int = 0, filter_width: int | None = None,
           points: int = 64, norm: str = "l2") -> Refined:
    """The refined LR schedule of a run whose step ``t`` had gradient norm ``grad_norms[t]``.

    ``optimizer``: ``"sgd"`` (``w_t = 1/g_t^2``) or ``"adamw"`` (``w_t = 1/g_t``; the paper
    uses the l1 norm for Adam). ``peak``: the largest LR after warmup (> 0). ``warmup``:
    steps replaced by a linear ramp to the refined LR at step ``warmup`` (0..T-2).
    ``filter_width``: the median filter's width in steps, odd, 1..T (1: no smoothing);
    default ``2*floor(0.1*T/2)+1``. ``points``: knots of the spec, 4..MAX_POINTS. ``norm``:
    a label for which norm ``grad_norms`` holds (``"l2"``, what cadence runs log, or
    ``"l1"``); it changes no number, it is kept with the result.

    Errors are ForecastError (LimitError beyond ``MAX_STEPS``), each naming its parameter.
    """
    if optimizer not in OPTIMIZERS:
        raise ForecastError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {shorten(optimizer)}",
                            field="optimizer")
    if norm not in NORMS:
        raise ForecastError(f"norm must be one of {', '.join(NORMS)}; got {shorten(norm)}", field="norm")
    g = _norms(grad_norms)
    total = len(g)
    try:
        peak = number(peak, "peak")
    except ForecastError as e:
        raise ForecastError(str(e), field="peak") from None
    if peak <= 0:
        raise ForecastError(f"peak must be an LR > 0; got {peak:g}", field="peak")
    warmup = _whole(warmup, "warmup", 0, total - 2, f"it must leave at least 2 of the {total} steps")
    if filter_width is None:
        filter_width = 2 * (int(TAU * total) // 2) + 1
    filter_width = _whole(filter_width, "filter_width", 1, total, "an odd number of steps, at most the run's length")
    if filter_width % 2 == 0:
        raise ForecastError(f"filter_width must be odd (a median filter centred on each step); got {filter_width}",
                            field="filter_width")
    points = _whole(points, "points", 4, MAX_POINTS, "knots of the spec")

    smoothed = smooth(g, filter_width)
    with np.errstate(under="ignore"):
        shape = _shape(weights(smoothed, optimizer))
    top = float(np.max(shape[warmup:]))  # each term <= T: no overflow
    if not top > 0:  # weights that underflowed to 0: norms more than ~1e154 apart
        raise ForecastError("the gradient norms span too wide a range for float64 weights", field="grad_norms")
    lrs = peak * (shape / top)
    if warmup:
        lrs[:warmup] = lrs[warmup] * (np.arange(warmup) / warmup)
    steps = _knots(lrs, warmup, points)
    values = lrs[steps]
    spec = "piecewise(points=[" + ", ".join(f"[{s}, {v!r}]" for s, v in zip(steps.tolist(), values.tolist())) + "])"
    return Refined(lrs=lrs, steps=steps, values=values, spec=spec, grad_norms=g, smoothed=smoothed,
                   optimizer=optimizer, norm=norm, peak=peak, warmup=warmup, filter_width=filter_width)


def _manifest(folder: Path) -> dict:
    from cadence._files import read_json

    path = folder / "run.json"
    if not os.path.lexists(path):
        raise RunError(f"{folder} is not a cadence run folder (it has no run.json)")
    data = read_json(path, _MAX_MANIFEST_BYTES, "cadence run manifest", RunError)
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != _RUN_FORMAT or not isinstance(config, dict):
        raise RunError(f"{path} is not a cadence run manifest (format {_RUN_FORMAT})")
    if data.get("status") != "complete":
        raise RunError(f"{folder} is a run that has not finished (status {shorten(data.get('status'))}); "
                       "refinement needs a complete run")
    steps = data.get("step")  # the steps the run trained, whatever unit its length was planned in
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise RunError(f"{path}: step must be the positive whole number of steps trained; got {shorten(steps)}")
    if steps > MAX_STEPS:
        raise LimitError(f"{folder} is a run of {steps:,} steps; refinement is limited to {MAX_STEPS:,}")
    return data


def refine_run(run: "str | Path", *, optimizer: str | None = None, peak: float | None = None, warmup: int = 0,
               filter_width: int | None = None, points: int = 64) -> Refined:
    """:func:`refine` applied to a complete cadence run folder.

    The gradient norms are ``metrics.csv``'s ``grad_norm`` column, which holds the **l2**
    norm of the whole gradient before clipping (the paper wants the l1 norm for Adam; the
    result's ``norm`` is ``"l2"``). ``optimizer``: default the run's (``run.json``
    ``config.optimizer``). ``peak``: default the largest LR the run logged (``lr`` column).
    Only those columns are read (pandas' C reader, as ``cadence.forecast.io`` reads curves).
    A folder that is not a complete run, or a metrics file without a row for every step,
    is a RunError; a file that is not a CSV of numbers a ForecastError.
    """
    from cadence.forecast.io import _header, _read

    try:
        folder = Path(run)
        is_dir = folder.is_dir()
    except (TypeError, ValueError, OSError):
        raise RunError(f"cannot read {shorten(run)}: not a folder name") from None
    if not is_dir:
        raise RunError(f"{folder} is not a cadence run folder (no such folder)")
    data = _manifest(folder)
    total = data["step"]
    if optimizer is None:
        optimizer = data["config"].get("optimizer")
        if optimizer not in OPTIMIZERS:
            raise RunError(f"{folder}/run.json: config.optimizer must be one of {', '.join(OPTIMIZERS)}; "
                           f"got {shorten(optimizer)}")
    metrics = folder / "metrics.csv"
    if not os.path.lexists(metrics):
        raise RunError(f"cannot read {metrics}: the run folder has no metrics file")
    header = _header(metrics)  # a regular UTF-8 file of at most MAX_CSV_BYTES, unique column names
    for name in ("step", "grad_norm", "lr"):
        if name not in header:
            raise RunError(f"{metrics} has no {name} column; refinement needs the per-step gradient norm and LR")
    wanted = ["step", "grad_norm", "lr"]
    columns = _read(metrics, len(header), [header.index(c) for c in wanted], wanted)  # pandas' C reader
    steps = columns["step"]
    if len(steps) != total or not np.array_equal(steps, np.arange(total)):
        raise RunError(f"{metrics} must have one row for each step 0..{total - 1}; it has {len(steps)} rows")
    logged = columns["lr"]
    if peak is None:
        finite = logged[np.isfinite(logged)]
        peak = float(finite.max()) if finite.size else 0.0
        if not peak > 0:
            raise RunError(f"{metrics}: the logged lr is never > 0, so it gives no peak; give one", field="peak")
    result = refine(columns["grad_norm"], optimizer=optimizer, peak=peak, warmup=warmup, filter_width=filter_width,
                    points=points, norm="l2")
    return replace(result, logged_lrs=logged)
