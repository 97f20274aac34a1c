"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch
Training", Appendix A), from gradients a training loop already computes.

For a batch of B samples the expected squared gradient norm is
``E|G_B|^2 = |G|^2 + tr(Sigma)/B``. Two batch sizes ``b < B`` give unbiased estimates of
both terms::

    |G|^2      ~  (B*|G_B|^2 - b*|G_b|^2) / (B - b)
    tr(Sigma)  ~  (|G_b|^2 - |G_B|^2) / (1/b - 1/B)

and the simple noise scale is ``B_simple = tr(Sigma) / |G|^2``. With gradient
accumulation the micro-batches are the small batches and their mean is the big batch, so
the estimate needs no extra backward pass. Each estimate is noisy (the |G|^2 one can be
negative), so ``NoiseScale`` keeps separate exponential averages of the two and divides
the averages: the ratio of averages converges, an average of ratios is biased.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cadence.errors import CadenceError

__all__ = ["noise_scale", "NoiseScale"]


def _finite_non_negative(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise CadenceError(f"{name} must be a number >= 0; got {value!r}") from None
    if not math.isfinite(x) or x < 0:
        raise CadenceError(f"{name} must be a finite number >= 0; got {value!r}")
    return x


def noise_scale(small_sq_norms: "Sequence[float] | float", small_batch: float, big_sq_norm: float,
                big_batch: float) -> tuple[float, float]:
    """Unbiased ``(G2, trace_sigma)`` from squared gradient norms at two batch sizes.

    ``small_sq_norms``: |G_b|^2 of one or more batches of ``small_batch`` samples each (their
    mean is used); ``big_sq_norm``: |G_B|^2 of a batch of ``big_batch`` samples.
    """
    norms = [small_sq_norms] if isinstance(small_sq_norms, (int, float)) else list(small_sq_norms)
    if not norms:
        raise CadenceError("small_sq_norms must hold at least one squared gradient norm")
    small = sum(_finite_non_negative("small_sq_norms", x) for x in norms) / len(norms)
    big = _finite_non_negative("big_sq_norm", big_sq_norm)
    b = _finite_non_negative("small_batch", small_batch)
    B = _finite_non_negative("big_batch", big_batch)
    if not 0 < b < B:
        raise CadenceError(f"need 0 < small_batch < big_batch; got small_batch={small_batch!r}, big_batch={big_batch!r}")
    g2 = (B * big - b * small) / (B - b)
    trace_sigma = (small - big) / (1.0 / b - 1.0 / B)
    return g2, trace_sigma


class NoiseScale:
    """Running ``B_simple`` from exponential averages of G2 and trace_sigma (kept apart).

    State is a plain dict ``{"g2": float|None, "trace": float|None, "count": int}`` with
    bias-corrected averages as in Adam (so the first estimates are not pulled towards 0).
    ``beta`` is the averaging factor per observation.
    """

    def __init__(self, beta: float = 0.95) -> None:
        if not (isinstance(beta, (int, float)) and 0 <= beta < 1):
            raise CadenceError(f"beta must be a number in [0, 1); got {beta!r}")
        self.beta = float(beta)

    def init(self) -> dict:
        return {"g2": 0.0, "trace": 0.0, "count": 0}

    def update(self, state: dict, g2: float, trace_sigma: float) -> dict:
        if not (math.isfinite(g2) and math.isfinite(trace_sigma)):
            return dict(state)  # a non-finite estimate (an overflowed norm) is not averaged in
        beta = self.beta
        return {"g2": beta * state["g2"] + (1 - beta) * g2,
                "trace": beta * state["trace"] + (1 - beta) * trace_sigma,
                "count": state["count"] + 1}

    def averages(self, state: dict) -> tuple[float, float]:
        """Bias-corrected ``(G2, trace_sigma)`` averages; NaN before the first observation."""
        if state["count"] == 0:
            return math.nan, math.nan
        correction = 1 - self.beta ** state["count"]
        return state["g2"] / correction, state["trace"] / correction

    def b_simple(self, state: dict) -> float:
        """``trace_sigma / G2`` of the averages; NaN until G2's average is positive."""
        g2, trace = self.averages(state)
        if not (g2 > 0) or not math.isfinite(trace):
            return math.nan
        return max(trace, 0.0) / g2
