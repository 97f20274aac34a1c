"""``reweight(strategy, burn_in, ...)``: loss-based sample weights, the ``sample_weights`` channel.

Sow et al. 2025 (ICLR), Dynamic Loss-Based Sample Reweighting for Improved Large Language
Model Pretraining (arXiv 2502.06733; code: sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025).
For one batch's per-sample losses l_i, with delta = 1 as in the paper's code:

    h_i = 2 (l_i - l_min) / max(l_max - l_min, 1e-6) - 1      losses mapped onto [-1, 1]
    g_i = strategy(h_i):  linupper  min(h_i + 1, 1)   low losses down, high losses capped
                          quadratic 1 - h_i**2        medium losses up, both extremes down
                          extremes  |h_i|             both extremes up
    w_i = B * exp((g_i - max g) / r) / sum_j exp((g_j - max g) / r)      mean 1 over the batch

The paper's weights sum to 1 and its loss multiplies by the batch size; here they average 1,
the same thing. ``r`` is the paper's temperature (``kl_reg`` in its code, 1.0 in its GPT-2
configs). The paper trains unweighted for its first ``burnout_steps`` (1000 of 20000 in those
configs) so that losses mean something before they steer.

The schedule's value is the *strength* s in [0, 1]: 0 before ``burn_in``, then 1 (or a linear
ramp over ``ramp``, an addition: 0 by default, the paper's switch). :meth:`Reweight.weights`
blends: w = u + s (w_strategy - u), u the uniform weights. Samples whose loss is not finite
get weight 0 and the rest average B / (number of finite losses), so the batch's weights still
average 1 (the caller must drop those samples' losses: 0 * inf is NaN).
"""

from __future__ import annotations

import numpy as np

from cadence.errors import ScheduleError
from cadence.schedules.base import Schedule

__all__ = ["Reweight", "REWEIGHTS", "STRATEGIES"]

STRATEGIES = ("linupper", "quadratic", "extremes")
_MIN_SPREAD = 1e-6  # the paper's floor under l_max - l_min: nearly equal losses give nearly equal weights


class Reweight(Schedule):
    name = "reweight"
    formula = ("strength: 0 before burn_in, then 1 (linear over ramp); weights ~ exp(strategy(h)/temperature), "
               "h = losses min-max mapped to [-1, 1], mean 1, blended with uniform by strength")
    source = ("Sow et al. 2025, Dynamic Loss-Based Sample Reweighting for Improved Large Language Model "
              "Pretraining (ICLR; arXiv 2502.06733)")
    needs_total = False

    def __init__(self, strategy: str = "linupper", burn_in="10%", ramp=0, temperature: float = 1.0) -> None:
        super().__init__(strategy=strategy, burn_in=burn_in, ramp=ramp, temperature=temperature)
        self.strategy = self._choice("strategy", strategy, STRATEGIES)
        self.burn_in = self._duration("burn_in", burn_in)
        self.ramp = self._duration("ramp", ramp)
        self.temperature = self._number("temperature", temperature, low=0, low_open=True)

    def _check(self, ctx) -> None:
        b = self._steps(ctx, "burn_in", self.burn_in)
        r = self._steps(ctx, "ramp", self.ramp)
        if ctx.total is not None and b >= ctx.total:
            raise ScheduleError(f"reweight: burn_in={b:g} steps is not shorter than the run ({ctx.total:g} steps): "
                                "the weights would never move")
        self._fits(ctx, burn_in=b, ramp=r)

    def _evaluate(self, t, ctx):
        b = self._steps(ctx, "burn_in", self.burn_in)
        r = self._steps(ctx, "ramp", self.ramp)
        if r <= 0:
            return np.where(t >= b, 1.0, 0.0)
        return np.clip((t - b) / r, 0.0, 1.0)

    def weights(self, losses, strength: float) -> np.ndarray:
        """Per-sample weights (mean 1 over the batch) for one batch's per-sample ``losses`` at ``strength``."""
        try:
            loss = np.asarray(losses, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise ScheduleError("reweight: losses must be a 1-D array of numbers") from None
        if loss.ndim != 1:
            raise ScheduleError(f"reweight: losses must be a 1-D array (one loss per sample); got shape {loss.shape}")
        s = self._number("strength", strength, low=0, high=1)
        n = loss.size
        ok = np.isfinite(loss)
        m = int(ok.sum())
        if m == 0:
            return np.ones(n)
        uniform = np.where(ok, n / m, 0.0)
        if s == 0 or m == 1:
            return uniform
        x = loss[ok]
        # h = 2 (x - lo) / max(hi - lo, 1e-6) - 1, on halves so that no difference overflows
        half, lo2 = x * 0.5, x.min() * 0.5
        spread = x.max() * 0.5 - lo2
        h = ((half - lo2) - 0.5 * spread) / (0.5 * max(spread, _MIN_SPREAD / 2))
        g = _strategy(self.strategy, h)
        e = np.exp((g - g.max()) / self.temperature)
        w = uniform.copy()
        w[ok] = uniform[ok] + s * (e * (n / e.sum()) - uniform[ok])
        return w


def _strategy(name: str, h: np.ndarray) -> np.ndarray:
    if name == "linupper":
        return np.minimum(h + 1.0, 1.0)
    if name == "quadratic":
        return 1.0 - h * h
    return np.abs(h)


REWEIGHTS = (Reweight,)
