"""Controllers that read other values: the batch size from the gradient noise scale, and a
schedule scaled by another channel.

``noise_batch(start, max, ...)``: the global batch size in samples, grown towards the
measured ``B_simple = trace(Sigma) / |G|^2`` (McCandlish et al. 2018). It reads the
signals ``noise_g2`` and ``noise_trace`` (the unbiased per-step estimates a runner makes
from its micro-batches, see :func:`cadence.controllers.noise_scale`), keeps separate
exponential averages of the two and divides them. The rule, applied after every
observation once ``min_observations`` have been averaged:

    batch <- max(batch, min(B_simple, batch * growth, max))

so the batch never shrinks, grows by at most ``growth`` per step, and never passes
``max``. The state holds the unrounded batch; a plan rounds the value it gives down to
a whole number of micro-batches.

``scale_with(schedule, channel='batch', power=0.5, reference=...)``: ``schedule *
(channel / reference) ** power``, for example the square-root LR scaling rule for a
growing batch (Krizhevsky 2014; Malladi et al. 2022 for Adam), declared in the plan, not
hidden in code.
"""

from __future__ import annotations

import math

import numpy as np

from cadence.controllers.base import Controller, finite
from cadence.controllers.noise import NoiseScale
from cadence.errors import ScheduleError
from cadence.schedules.base import Schedule

__all__ = ["NoiseBatch", "ScaleWith", "NOISE_SIGNALS"]

NOISE_SIGNALS = ("noise_g2", "noise_trace")


class NoiseBatch(Controller):
    name = "noise_batch"
    formula = "batch <- max(batch, min(B_simple, batch*growth, max)); B_simple = EMA(trace) / EMA(|G|^2)"
    source = "McCandlish et al. 2018, An Empirical Model of Large-Batch Training (Appendix A)"

    def __init__(self, start: float, max: float, beta: float = 0.95, growth: float = 1.1,
                 min_observations: int = 20) -> None:
        super().__init__(None, start=start, max=max, beta=beta, growth=growth, min_observations=min_observations)
        self.start = self._number("start", start, low=1)
        self.max = self._number("max", max, low=self.start)
        self.beta = self._number("beta", beta, low=0, high=1, high_open=True)
        self.growth = self._number("growth", growth, low=1)
        self.min_observations = int(self._number("min_observations", min_observations, low=1))
        if self.min_observations != min_observations:
            raise ScheduleError(f"noise_batch: min_observations must be a whole number; got {min_observations!r}")
        self.noise = NoiseScale(self.beta)
        self.monitors = NOISE_SIGNALS
        self.diagnostic_names = ("b_simple",)

    def _check(self, ctx) -> None:
        pass

    def _evaluate(self, t, ctx):
        return np.full_like(t, self.start)

    def init(self) -> dict:
        return {"noise": self.noise.init(), "batch": self.start, "b_simple": None}

    def update(self, state: dict, clock, signals: dict) -> dict:
        g2, trace = finite(signals.get("noise_g2")), finite(signals.get("noise_trace"))
        if g2 is None or trace is None:
            return state
        noise = self.noise.update(state["noise"], g2, trace)
        batch, b = state["batch"], self.noise.b_simple(noise)
        b_simple = b if math.isfinite(b) else None
        if b_simple is not None and noise["count"] >= self.min_observations:
            batch = max(batch, min(b_simple, batch * self.growth, self.max))
        return {"noise": noise, "batch": batch, "b_simple": b_simple}

    def value(self, state: dict, clock, inputs=None) -> float:
        return float(state["batch"])

    def diagnose(self, state: dict) -> dict:
        return {"b_simple": state["b_simple"]}

    def check_state(self, state: dict) -> str | None:
        batch, count = state["batch"], state["noise"]["count"]
        if not (isinstance(batch, (int, float)) and self.start <= batch <= self.max):
            return f"batch must lie in [start, max] = [{self.start:g}, {self.max:g}]; got {batch!r}"
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return f"the count of observations must be a whole number >= 0; got {count!r}"
        return None


class ScaleWith(Controller):
    name = "scale_with"
    formula = "schedule * (channel / reference) ** power"
    source = "Krizhevsky 2014 (square-root scaling); Malladi et al. 2022, On the SDEs and Scaling Rules for Adaptive Gradient Algorithms"

    def __init__(self, schedule: Schedule, reference: float, channel: str = "batch", power: float = 0.5) -> None:
        super().__init__(schedule, reference=reference, channel=channel, power=power)
        if self.schedule is None:
            raise ScheduleError("scale_with: give the schedule to scale")
        if not isinstance(channel, str) or not channel.strip() or len(channel) > 100:
            raise ScheduleError(f"scale_with: channel must name another channel of the plan, such as 'batch'; "
                                f"got {channel!r:.60}")
        self.reference = self._number("reference", reference, low=0, low_open=True)
        self.power = self._number("power", power, low=0, high=4)
        self.channel = channel
        self._watch(channel=channel)

    def init(self) -> dict:
        return {"inner": self.inner_init()}

    def update(self, state: dict, clock, signals: dict) -> dict:
        return {"inner": self.inner_update(state, clock, signals)}

    def check_state(self, state: dict) -> str | None:
        return self.schedule.check_state(state["inner"])

    def preview(self, t, ctx, inputs: dict):
        base = super().preview(t, ctx, inputs)
        other = inputs.get(self.channel)
        if other is None:
            return base
        # the same Python arithmetic as value(), once per distinct value: numpy's power may differ in the last bit
        distinct, index = np.unique(np.asarray(other, dtype=np.float64), return_inverse=True)
        factors = np.array([(float(x) / self.reference) ** self.power for x in distinct])
        return base * factors[index]

    def value(self, state: dict, clock, inputs=None) -> float:
        base = self.inner_value(state, clock, inputs)
        other = finite((inputs or {}).get(self.channel))
        if other is None:
            return base  # outside a plan: as if the channel sat at its reference
        try:
            return base * (other / self.reference) ** self.power
        except OverflowError:
            raise ScheduleError(f"scale_with: channel {self.channel!r} is {other:g}; ({other:g} / {self.reference:g}) ** "
                                f"{self.power:g} is too large for a number") from None
