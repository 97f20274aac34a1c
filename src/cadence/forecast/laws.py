"""Loss-curve laws: the loss of a run as a function of its whole LR schedule.

A law is a class with named parameters, bounds for fitting, and a vectorised
``predict(params, lrs, steps)``. Register a new one with :func:`register_law`: a third law
fits in one file.

LRs are divided by ``lr_scale`` (the largest LR seen when fitting) before they enter a law,
so the fitted parameters do not depend on the LR's unit.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np
from scipy.signal import lfilter

from cadence.forecast.curve import ForecastError
from cadence.forecast.limits import MAX_ANNEALING_FIT_STEPS, number, shorten

__all__ = ["Law", "MultiPower", "Annealing", "LAWS", "WARMUP", "check_warmup", "register_law"]

WARMUP = ("skip", "count")

# Where each kind of parameter is defined: the formula is finite there for every schedule
# with finite LRs, and each term has the sign the law gives it (a loss floor L0 below 0 means
# nothing for a loss, which is > 0); the fit's search box is a sub-box of it.
_DOMAINS = {
    "finite": (lambda v: True, "any finite number"),
    ">=0": (lambda v: v >= 0, ">= 0"),
    ">0": (lambda v: v > 0, "> 0"),
    "[0,1)": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


def check_warmup(value: str, where: str = "") -> str:
    """``value`` if it is a warmup convention; a one-line ForecastError otherwise."""
    if not isinstance(value, str) or value not in WARMUP:
        raise ForecastError(f"{where}warmup must be one of {', '.join(WARMUP)}, not {shorten(value)}")
    return value

LAWS: dict[str, type["Law"]] = {}


def register_law(cls: type["Law"]) -> type["Law"]:
    LAWS[cls.name] = cls
    return cls


class Law(abc.ABC):
    """Base class. ``params`` are named; ``bounds`` give the fitting box (``log_params`` are searched in log space).

    ``prepare(lrs)`` does the work that does not depend on the parameters (areas,
    decrements); ``evaluate(p, prepared, steps, jac)`` returns the predicted losses at
    ``steps`` and, with ``jac=True``, their derivatives with respect to each parameter
    (shape ``len(steps) x len(params)``), which makes fitting fast.

    ``warmup`` says what the decrement terms do with the LR rises of the initial warmup:
    ``"skip"`` (default) leaves them out; ``"count"`` counts them as negative decrements, as
    the Multi-Power Law authors' code does (needed to use their published parameters).
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    source: ClassVar[str] = ""
    params: ClassVar[tuple[str, ...]] = ()
    log_params: ClassVar[tuple[str, ...]] = ()
    domain: ClassVar[dict[str, str]] = {}  # parameter -> a key of _DOMAINS ("finite" when absent)
    fit_steps: ClassVar[int | None] = None  # a limit on the LR steps of a fit's curves, for a law whose every
    # evaluation passes over every step (None: evaluations cost O(measured points))

    def __init__(self, warmup: str = "skip") -> None:
        self.warmup = check_warmup(warmup)

    @classmethod
    def check(cls, params, where: str = "") -> dict[str, float]:
        """``params`` as {name: float} in the law's order if every parameter is present, a
        finite number and inside the law's domain; a one-line ForecastError otherwise."""
        if not isinstance(params, dict) or set(params) != set(cls.params):
            raise ForecastError(f"{where}the {cls.name} law needs parameters {', '.join(cls.params)}"
                                + (f"; got {', '.join(map(shorten, params))}" if isinstance(params, dict) else ""))
        out = {}
        for name in cls.params:
            value = number(params[name], f"parameter {name}", where)
            ok, allowed = _DOMAINS[cls.domain.get(name, "finite")]
            if not ok(value):
                raise ForecastError(f"{where}parameter {name} of the {cls.name} law must be {allowed}; got {value!r}")
            out[name] = value
        return out

    def decrements(self, lrs: np.ndarray) -> np.ndarray:
        return _decrements(lrs, skip_warmup=self.warmup == "skip")

    @abc.abstractmethod
    def bounds(self, max_loss: float) -> dict[str, tuple[float, float]]:
        """The search box; ``max_loss`` is the largest loss in the data (L0 can exceed the
        lowest loss, since annealing takes the loss below L0)."""

    @abc.abstractmethod
    def prepare(self, lrs: np.ndarray):
        """Everything about ``lrs`` that does not depend on the parameters."""

    @abc.abstractmethod
    def evaluate(self, p: dict[str, float], prepared, steps: np.ndarray, jac: bool = False):
        """Predicted losses at ``steps`` (and, with ``jac``, their parameter derivatives)."""

    def predict(self, p: dict[str, float], lrs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """The raw formula (no input checks; :meth:`FittedLaw.predict` is the checked entry point).
        Overflow gives inf or nan here, which the callers detect."""
        with np.errstate(all="ignore"):
            return self.evaluate(p, self.prepare(np.asarray(lrs, dtype=np.float64)), np.asarray(steps, dtype=np.int64))


def _area(lrs: np.ndarray) -> np.ndarray:
    """P[t] = sum of lrs[0..t] (inclusive)."""
    return np.cumsum(lrs)


def _power_law(p: dict[str, float], area: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """L0 + A * S1(t)^(-alpha) at ``steps``, in one new array (long predictions hold few copies)."""
    out = area[steps]
    np.power(out, -p["alpha"], out=out)
    out *= p["A"]
    out += p["L0"]
    return out


def _decrements(lrs: np.ndarray, skip_warmup: bool = True) -> np.ndarray:
    """d[k] = lr_(k-1) - lr_k (d[0] = 0), by default without the rises of the initial warmup.

    Both laws describe annealing after warmup: the LR increases of the initial
    non-decreasing stretch do not count (a later re-warm does). Counting them adds a
    penalty to every schedule with a warmup, biasing comparisons with one without.
    """
    d = np.zeros_like(lrs)
    np.subtract(lrs[:-1], lrs[1:], out=d[1:])
    if not skip_warmup:
        return d
    falls = d > 0
    warm_end = int(np.argmax(falls)) if falls.any() else len(lrs)
    del falls
    d[:warm_end] = 0.0
    return d


@register_law
class Annealing(Law):
    name = "annealing"
    formula = "L(s) = L0 + A*S1^(-alpha) - C*S2;  S1 = sum lr_i,  S2 = sum m_i,  m_i = lam*m_(i-1) + (lr_(i-1) - lr_i)"
    source = "Tissue et al. 2024, Scaling Law with Learning Rate Annealing"
    params = ("L0", "A", "alpha", "C", "lam")
    log_params = ("A", "C")
    domain = {"L0": ">=0", "A": ">=0", "alpha": ">=0", "C": ">=0", "lam": "[0,1)"}
    fit_steps = MAX_ANNEALING_FIT_STEPS  # S2 is a filter over every step: a fit's thousands of evaluations each pass over them

    def bounds(self, max_loss):
        return {"L0": (0.0, max_loss), "A": (1e-4, 1e3), "alpha": (0.01, 3.0), "C": (1e-6, 1e3), "lam": (0.9, 0.99999)}

    def prepare(self, lrs):
        return _area(lrs), self.decrements(lrs), {}  # {}: D = cumsum(d), computed once when a fit needs it

    def evaluate(self, p, prepared, steps, jac=False):
        area, d, cache = prepared
        lam = p["lam"]
        m = lfilter([1.0], [1.0, -lam], d)  # m_i = lam*m_(i-1) + d_i, one O(T) pass
        if not jac:
            s2 = np.cumsum(m, out=m)[steps]
            s2 *= p["C"]
            pred = _power_law(p, area, steps)
            pred -= s2
            return pred
        # A fit evaluates the law thousands of times on the same LRs, each pass over every step:
        # S2(t) = sum_(k<=t) d_k (1 - lam^(t-k+1)) / (1 - lam) = (D(t) - lam*m_t) / (1 - lam) with
        # D = cumsum(d) needs m only at the measured steps, and its derivative in lam needs
        # dm_t = d m_t / d lam only there too: two filter passes per evaluation, no sums.
        if "D" not in cache:
            cache["D"] = np.cumsum(d)
        dm = lfilter([0.0, 1.0], [1.0, -lam], m)[steps]  # dm_i = m_(i-1) + lam * dm_(i-1)
        m = m[steps]
        s2 = (cache["D"][steps] - lam * m) / (1.0 - lam)
        s1 = area[steps]
        power = s1 ** (-p["alpha"])
        pred = p["L0"] + p["A"] * power - p["C"] * s2
        d_s2 = (s2 - m - lam * dm) / (1.0 - lam)
        J = np.column_stack([np.ones_like(pred), power, -p["A"] * power * np.log(s1), -s2, -p["C"] * d_s2])
        return pred, J


class _Decrements:
    """The LR decrements of a schedule, grouped into at most ``max_bins`` bins.

    Each bin holds a run of same-sign decrements with its total ``D``, its weighted mean
    log-LR (for ``lr_k^-gamma``), the weighted mean area before it (for ``S_k(t)``) and the
    weighted mean step (when it starts to count). With fewer decrements than ``max_bins``
    every decrement is its own bin and the sum is exact. An LR of exactly 0 after a drop
    counts as the smallest positive float (its log would be -inf).

    Arrays of one entry per decrement are freed as soon as they are used: a schedule that
    changes at every step has as many decrements as steps.
    """

    def __init__(self, lrs: np.ndarray, area: np.ndarray, skip_warmup: bool, max_bins: int | None) -> None:
        d = _decrements(lrs, skip_warmup)
        at = d != 0  # decrement d_k = lr_(k-1) - lr_k at step k; d[0] is always 0
        dk = d[at]
        del d
        tiny = np.finfo(float).tiny
        if max_bins is None or len(dk) <= max_bins:
            k = np.flatnonzero(at)
            self.D, self.log_lr = dk, np.log(np.maximum(lrs[k], tiny))
            self.before, self.start = area[k - 1], k.astype(np.float64)  # area[k-1]: the area up to step k-1
            return
        w = np.abs(dk)
        negative = dk < 0
        sign_change = np.flatnonzero(negative[1:] != negative[:-1]) + 1
        del negative
        mass = np.cumsum(w)
        cuts = np.searchsorted(mass, np.linspace(0, w.sum(), max_bins + 1)[1:-1])
        del mass
        starts = np.unique(np.concatenate([[0], sign_change, cuts]))
        starts = starts[starts < len(dk)]
        W = np.add.reduceat(w, starts)
        self.D = np.add.reduceat(dk, starts)
        del dk

        def mean(values):  # the w-weighted mean of values over each bin, computed in place
            values *= w
            return np.add.reduceat(values, starts) / W

        log_lr = lrs[at]
        self.log_lr = mean(np.log(np.maximum(log_lr, tiny, out=log_lr), out=log_lr))
        del log_lr
        self.before = mean(area[:-1][at[1:]])
        self.start = mean(np.flatnonzero(at).astype(np.float64))


@register_law
class MultiPower(Law):
    name = "multipower"
    formula = ("L(t) = L0 + A*(S1(t)+S_W)^(-alpha) - LD(t);  LD(t) = B * sum_k (lr_(k-1)-lr_k) * G(lr_k^(-gamma) * S_k(t)),"
               "  G(x) = 1 - (C*x+1)^(-beta)")
    source = "Luo et al. 2025, A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules"
    params = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
    log_params = ("A", "B", "C")
    # gamma may be any finite number: lr_k^-gamma is capped, and G stays in [0, 1) for any x >= 0
    # when beta > 0, so gamma only changes how fast each decrement's benefit saturates.
    domain = {"L0": ">=0", "A": ">=0", "alpha": ">=0", "B": ">=0", "C": ">=0", "beta": ">0"}
    max_bins: int | None = 384
    chunk = 1 << 21  # entries of the (steps x bins) block evaluated at once
    dense = 8192  # longer predictions evaluate LD exactly on a grid and interpolate between its points

    def bounds(self, max_loss):
        return {"L0": (0.0, max_loss), "A": (1e-4, 1e3), "alpha": (0.01, 3.0), "B": (1e-4, 1e4), "C": (1e-4, 1e4),
                "beta": (0.01, 5.0), "gamma": (0.0, 2.0)}

    def prepare(self, lrs):
        area = _area(lrs)
        return area, _Decrements(lrs, area, self.warmup == "skip", self.max_bins)

    def evaluate(self, p, prepared, steps, jac=False):
        area, bins = prepared
        if not jac and len(steps) > self.dense:
            # LD(t) is smooth except where a decrement starts to count: it jumps there (its first
            # step already has area) and then rises fast. Exact on a uniform grid plus, for each
            # bin, the step before it starts and 0, 1, 3, 7, ... steps after; bins that carry a
            # large share of the total decrement (abrupt drops) get every step for 32 steps,
            # then a x1.25 spacing.
            lo, hi = int(steps.min()), int(steps.max())
            coarse = np.concatenate([[-1], 2 ** np.arange(17) - 1])
            fine = np.unique(np.concatenate([[-1], np.arange(32), np.round(32 * 1.25 ** np.arange(40))]))
            big = np.abs(bins.D) >= 0.001 * np.abs(bins.D).sum()
            first = np.ceil(bins.start)
            after = np.concatenate([(first[~big][:, None] + coarse[None, :]).ravel(),
                                    (first[big][:, None] + fine[None, :]).ravel()])
            grid = np.unique(np.concatenate([np.linspace(lo, hi, self.dense).round(), after[(after >= lo) & (after <= hi)],
                                             [lo, hi]])).astype(np.int64)
            ld = np.interp(steps, grid, self._ld(p, area, bins, grid, False))
            ld *= p["B"]
            pred = _power_law(p, area, steps)
            pred -= ld
            return pred
        return self._evaluate(p, area, bins, steps, jac)

    def _ld(self, p, area, bins, steps, jac):
        """LD(t)/B at ``steps`` (and, with ``jac``, its derivatives in C, beta and gamma)."""
        n = len(steps)
        ld = np.empty(n)
        if jac:
            d_c, d_beta, d_gamma = np.empty(n), np.empty(n), np.empty(n)
        # lr_k^-gamma per bin; capped at e^700 so that it stays finite (x = 0 where S_k(t) = 0).
        lr_pow = np.exp(np.minimum(-p["gamma"] * bins.log_lr, 700.0))
        beta, c = p["beta"], p["C"]
        rows = max(1, self.chunk // max(len(bins.D), 1))
        for a in range(0, n, rows):
            s = steps[a:a + rows]
            x = np.maximum(area[s][:, None] - bins.before[None, :], 0.0) * lr_pow[None, :]  # lr_k^-gamma * S_k(t)
            weight = np.where(s[:, None] >= bins.start[None, :], bins.D[None, :], 0.0)
            log_u = np.log1p(c * x)  # u = 1 + C*x
            u_neg_beta = np.exp(-beta * log_u)
            ld[a:a + rows] = (weight * (1.0 - u_neg_beta)).sum(axis=1)
            if jac:
                dg_du = beta * u_neg_beta / (1.0 + c * x)
                d_c[a:a + rows] = (weight * dg_du * x).sum(axis=1)
                d_beta[a:a + rows] = (weight * u_neg_beta * log_u).sum(axis=1)
                d_gamma[a:a + rows] = (weight * dg_du * c * x * -bins.log_lr[None, :]).sum(axis=1)
        return (ld, d_c, d_beta, d_gamma) if jac else ld

    def _evaluate(self, p, area, bins, steps, jac):
        if not jac:
            ld = self._ld(p, area, bins, steps, False)
        else:
            ld, d_c, d_beta, d_gamma = self._ld(p, area, bins, steps, True)
        s1 = area[steps]
        power = s1 ** (-p["alpha"])
        pred = p["L0"] + p["A"] * power - p["B"] * ld
        if not jac:
            return pred
        J = np.column_stack([np.ones(len(steps)), power, -p["A"] * power * np.log(s1), -ld, -p["B"] * d_c,
                             -p["B"] * d_beta, -p["B"] * d_gamma])
        return pred, J


def describe(name: str) -> str:
    law = LAWS[name]
    return f"{law.name}: {law.formula} ({law.source})"
