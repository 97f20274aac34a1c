"""Schedule families from the literature, each a pure, vectorised function of the step.

Conventions (shared by every family that has them):

* A run of ``T`` steps uses the values at steps ``i = 0 .. T-1``.
* ``warmup=W`` ramps linearly from 0: ``peak * (i / W)`` for ``i < W``.
* After warmup, progress is ``p = (i - W) / (T - W)``, clipped to [0, 1]; past the end of
  the run a decaying family holds its final value.
* Durations (``warmup``, ``decay``, ...) are an int (steps) or a string: ``'20%'``,
  ``'0.2dur'``, ``'3ep'``, ``'2Mtok'``; a fraction is a fraction of this schedule's span.
"""

from __future__ import annotations

import numpy as np

import math

from cadence.errors import CadenceError, LimitError, ScheduleError
from cadence.schedules.base import SHAPES, Schedule, interpolate, with_warmup
from cadence.schedules.limits import MAX_RESTARTS
from cadence.time import Context, Unit

__all__ = [
    "Constant", "Linear", "Cosine", "Rex", "Polynomial", "Exponential", "Step", "MultiStep",
    "SGDR", "InverseSqrt", "OneCycle", "Cyclic", "WSD", "Power", "Infinite", "Piecewise", "Ramp",
]


class _Decay(Schedule):
    """peak -> final over the run after warmup, along ``shape(p)``."""

    shape: str = "linear"

    def __init__(self, peak: float = 1.0, final: float = 0.0, warmup=0) -> None:
        super().__init__(peak=peak, final=final, warmup=warmup)
        self._init_decay(peak, final, warmup)

    def _init_decay(self, peak, final, warmup) -> None:
        self.peak = self._number("peak", peak, low=0)
        self.final = self._number("final", final, low=0)
        self.warmup = self._duration("warmup", warmup)

    def _check(self, ctx: Context) -> None:
        w = self._steps(ctx, "warmup", self.warmup)
        if w >= ctx.total:
            raise ScheduleError(f"{self.name}: warmup={w:g} steps leaves no steps to decay in a run of {ctx.total:g} steps")

    def _curve(self, p: np.ndarray) -> np.ndarray:
        return interpolate(self.shape, self.peak, self.final, p)

    def _evaluate(self, t, ctx):
        w = self._steps(ctx, "warmup", self.warmup)
        p = np.clip((t - w) / (ctx.total - w), 0.0, 1.0)
        return with_warmup(t, w, self._curve(p), self.peak)


class Constant(Schedule):
    name = "constant"
    formula = "value (after an optional linear warmup from 0)"
    source = "-"
    needs_total = False

    def __init__(self, value: float = 1.0, warmup=0) -> None:
        super().__init__(value=value, warmup=warmup)
        self.level = self._number("value", value, low=0)
        self.warmup = self._duration("warmup", warmup)

    def _check(self, ctx):
        self._fits(ctx, warmup=self._steps(ctx, "warmup", self.warmup))

    def _evaluate(self, t, ctx):
        w = self._steps(ctx, "warmup", self.warmup)
        return with_warmup(t, w, np.full_like(t, self.level), self.level)


class Linear(_Decay):
    name = "linear"
    formula = "final + (peak-final)*(1-p)"
    source = "Defazio et al. 2023, When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement"
    shape = "linear"


class Cosine(_Decay):
    name = "cosine"
    formula = "final + (peak-final)*(1+cos(pi*p))/2"
    source = "Loshchilov & Hutter 2017, SGDR (torch CosineAnnealingLR)"
    shape = "cosine"


class Rex(_Decay):
    name = "rex"
    formula = "final + (peak-final)*(1-p)/(1-p/2)"
    source = "Chen et al. 2022, REX: Revisiting Budgeted Training with an Improved Schedule"
    shape = "rex"


class Polynomial(_Decay):
    name = "polynomial"
    formula = "final + (peak-final)*(1-p)^power"
    source = "torch PolynomialLR; transformers polynomial decay"

    def __init__(self, peak: float = 1.0, final: float = 0.0, warmup=0, power: float = 1.0) -> None:
        Schedule.__init__(self, peak=peak, final=final, warmup=warmup, power=power)
        self._init_decay(peak, final, warmup)
        self.power = self._number("power", power, low=0, low_open=True)

    def _curve(self, p):
        return self.final + (self.peak - self.final) * (1.0 - p) ** self.power


class Exponential(Schedule):
    name = "exponential"
    formula = "peak*factor^u, or peak*(final/peak)^p when final is given"
    source = "torch ExponentialLR"
    needs_total = False

    def __init__(self, peak: float = 1.0, factor: float | None = None, final: float | None = None, warmup=0) -> None:
        super().__init__(peak=peak, factor=factor, final=final, warmup=warmup)
        if (factor is None) == (final is None):
            raise ScheduleError("exponential: give exactly one of factor (per-step multiplier) or final (value at the end)")
        self.peak = self._number("peak", peak, low=0, low_open=True)
        self.factor = None if factor is None else self._number("factor", factor, low=0, low_open=True)
        self.final = None if final is None else self._number("final", final, low=0, low_open=True)
        self.warmup = self._duration("warmup", warmup)

    def _check(self, ctx):
        if self.final is not None and ctx.total is None:
            raise ScheduleError("exponential: final= needs the run's total_steps; use factor= for an open-ended run")
        w = self._steps(ctx, "warmup", self.warmup)
        if ctx.total is not None and w >= ctx.total:
            raise ScheduleError(f"exponential: warmup={w:g} steps is not shorter than the run ({ctx.total:g} steps)")

    def _evaluate(self, t, ctx):
        w = self._steps(ctx, "warmup", self.warmup)
        u = np.maximum(t - w, 0.0)
        if self.factor is not None:
            body = self.peak * self.factor ** u
        else:
            body = interpolate("exp", self.peak, self.final, np.clip(u / (ctx.total - w), 0.0, 1.0))
        return with_warmup(t, w, body, self.peak)


class Step(Schedule):
    name = "step"
    formula = "peak*factor^floor(u/every), u = steps since warmup"
    source = "torch StepLR"
    needs_total = False

    def __init__(self, peak: float = 1.0, every=1000, factor: float = 0.1, warmup=0) -> None:
        super().__init__(peak=peak, every=every, factor=factor, warmup=warmup)
        self.peak = self._number("peak", peak, low=0)
        self.every = self._duration("every", every)
        self.factor = self._number("factor", factor, low=0)
        self.warmup = self._duration("warmup", warmup)

    def _check(self, ctx):
        if self._steps(ctx, "every", self.every) <= 0:
            raise ScheduleError("step: every must be > 0 steps")
        self._fits(ctx, warmup=self._steps(ctx, "warmup", self.warmup))

    def _evaluate(self, t, ctx):
        w = self._steps(ctx, "warmup", self.warmup)
        k = np.floor(np.maximum(t - w, 0.0) / self._steps(ctx, "every", self.every))
        return with_warmup(t, w, self.peak * self.factor ** k, self.peak)


class MultiStep(Schedule):
    name = "multistep"
    formula = "peak*factor^(number of milestones <= i); milestones are positions in the run"
    source = "torch MultiStepLR"
    needs_total = False

    def __init__(self, peak: float = 1.0, milestones=(), factor: float = 0.1, warmup=0) -> None:
        super().__init__(peak=peak, milestones=list(milestones) if isinstance(milestones, (list, tuple)) else milestones,
                         factor=factor, warmup=warmup)
        if not isinstance(milestones, (list, tuple)) or not milestones:
            raise ScheduleError(f"multistep: milestones must be a non-empty list of durations; got {milestones!r}")
        self.peak = self._number("peak", peak, low=0)
        self.milestones = [self._duration(f"milestones[{i}]", m) for i, m in enumerate(milestones)]
        self.factor = self._number("factor", factor, low=0)
        self.warmup = self._duration("warmup", warmup)

    def _positions(self, ctx):
        return np.array([self._steps(ctx, f"milestones[{i}]", m) for i, m in enumerate(self.milestones)])

    def _check(self, ctx):
        pos = self._positions(ctx)
        if np.any(np.diff(pos) <= 0):
            raise ScheduleError(f"multistep: milestones must increase; got {[str(m) for m in self.milestones]}")
        self._fits(ctx, warmup=self._steps(ctx, "warmup", self.warmup))

    def _evaluate(self, t, ctx):
        pos = self._positions(ctx)
        k = np.searchsorted(pos, t, side="right").astype(np.float64)
        w = self._steps(ctx, "warmup", self.warmup)
        return with_warmup(t, w, self.peak * self.factor ** k, self.peak)


class SGDR(Schedule):
    name = "sgdr"
    formula = "cosine from peak to final within each cycle; cycle k lasts period*mult^k steps"
    source = "Loshchilov & Hutter 2017, SGDR (torch CosineAnnealingWarmRestarts)"
    needs_total = False

    def __init__(self, peak: float = 1.0, period=1000, final: float = 0.0, mult: float = 1.0, warmup=0) -> None:
        super().__init__(peak=peak, period=period, final=final, mult=mult, warmup=warmup)
        self.peak = self._number("peak", peak, low=0)
        self.period = self._duration("period", period)
        self.final = self._number("final", final, low=0)
        self.mult = self._number("mult", mult, low=1)
        self.warmup = self._duration("warmup", warmup)

    def _check(self, ctx):
        period = self._steps(ctx, "period", self.period)
        if not period >= 1:  # as torch's T_0; a shorter cycle cannot be followed step by step
            raise ScheduleError(f"sgdr: period must be at least 1 step; period={self.period} is {period:g} steps")
        w = self._steps(ctx, "warmup", self.warmup)
        self._fits(ctx, warmup=w)
        if ctx.total is not None:
            self._cycles_before(period, ctx.total - w)

    def _cycles_before(self, period: float, u: float) -> int:
        """How many cycles start at or before ``u`` steps after warmup (mult > 1), or LimitError."""
        if self.mult == 1.0 or u <= 0:
            return 1
        # Cycle k starts at period*(mult^k - 1)/(mult - 1); +2 absorbs the log's rounding.
        k = math.log1p(u * (self.mult - 1.0) / period) / math.log(self.mult) + 2
        if not k <= MAX_RESTARTS:
            raise LimitError(f"sgdr: period={self.period} with mult={self.mult!r} restarts about {k:.3g} times by step "
                             f"{u:.0f} after warmup; at most {MAX_RESTARTS} restarts are allowed (raise period or mult)")
        return int(k)

    def _starts(self, period: float, umax: float) -> np.ndarray:
        """Cycle start positions up to the first one past ``umax``, enumerated exactly (a log
        formula misplaces boundaries) as torch does: lengths by repeated multiplication,
        starts by repeated addition. Cached: the schedule is immutable."""
        cached = self._cache
        if cached is not None and cached[0] == period and cached[1][-1] > umax:
            return cached[1]
        count = self._cycles_before(period, umax)
        while True:
            lengths = np.multiply.accumulate(np.r_[period, np.full(count, self.mult)])
            starts = np.concatenate([[0.0], np.add.accumulate(lengths)])
            if starts[-1] > umax:
                break
            count *= 2  # the estimate was short (rounding); its limit was checked already
            if count > 2 * MAX_RESTARTS:
                raise LimitError(f"sgdr: more than {MAX_RESTARTS} restarts before step {umax:.0f} after warmup")
        self._cache = (period, starts)
        return starts

    _cache = None

    def _evaluate(self, t, ctx):
        w = self._steps(ctx, "warmup", self.warmup)
        period = self._steps(ctx, "period", self.period)
        u = np.maximum(t - w, 0.0)
        if self.mult == 1.0:
            start, length = np.floor(u / period) * period, np.full_like(u, period)
        else:
            starts = self._starts(period, float(np.max(u, initial=0.0)))
            k = np.searchsorted(starts, u, side="right") - 1
            start, length = starts[k], starts[k + 1] - starts[k]
        body = interpolate("cosine", self.peak, self.final, (u - start) / length)
        return with_warmup(t, w, body, self.peak)


class InverseSqrt(Schedule):
    name = "inverse_sqrt"
    formula = "peak*sqrt(timescale/(u+timescale)), u = steps since warmup; timescale defaults to warmup"
    source = "Vaswani et al. 2017; transformers get_inverse_sqrt_schedule"
    needs_total = False

    def __init__(self, peak: float = 1.0, warmup=0, timescale=None) -> None:
        super().__init__(peak=peak, warmup=warmup, timescale=timescale)
        self.peak = self._number("peak", peak, low=0)
        self.warmup = self._duration("warmup", warmup)
        self.timescale = None if timescale is None else self._duration("timescale", timescale)

    def _check(self, ctx):
        self._fits(ctx, warmup=self._steps(ctx, "warmup", self.warmup))

    def _evaluate(self, t, ctx):
        w = self._steps(ctx, "warmup", self.warmup)
        tau = max(w, 1.0) if self.timescale is None else max(self._steps(ctx, "timescale", self.timescale), 1e-12)
        body = self.peak * np.sqrt(tau / (np.maximum(t - w, 0.0) + tau))
        return with_warmup(t, w, body, self.peak)


class OneCycle(Schedule):
    name = "onecycle"
    formula = "initial -> peak over warmup, then -> final; ends exactly at final on step T-1"
    source = "Smith & Topin 2019, Super-Convergence (torch OneCycleLR)"

    def __init__(self, peak: float = 1.0, warmup="30%", initial: float | None = None, final: float | None = None,
                 shape: str = "cos", three_phase: bool = False) -> None:
        super().__init__(peak=peak, warmup=warmup, initial=initial, final=final, shape=shape, three_phase=three_phase)
        self.peak = self._number("peak", peak, low=0)
        self.warmup = self._duration("warmup", warmup)
        self.initial = self.peak / 25.0 if initial is None else self._number("initial", initial, low=0)
        self.final = self.initial / 1e4 if final is None else self._number("final", final, low=0)
        self.shape = self._choice("shape", shape, ("cos", "linear"))
        if not isinstance(three_phase, bool):
            raise ScheduleError(f"onecycle: three_phase must be True or False; got {three_phase!r}")
        self.three_phase = three_phase

    def _phases(self, ctx):
        up = self._steps(ctx, "warmup", self.warmup) - 1.0
        last = ctx.total - 1.0
        if self.three_phase:
            return [(up, self.initial, self.peak), (2 * up, self.peak, self.initial), (last, self.initial, self.final)]
        return [(up, self.initial, self.peak), (last, self.peak, self.final)]

    def _check(self, ctx):
        ends = [0.0] + [e for e, _, _ in self._phases(ctx)]
        if any(b <= a for a, b in zip(ends, ends[1:])):
            raise ScheduleError(
                f"onecycle: warmup={self.warmup} gives phases that do not fit a run of {ctx.total:g} steps "
                "(each phase needs at least one step)"
            )

    def _evaluate(self, t, ctx):
        # Same phase rule as torch.optim.lr_scheduler.OneCycleLR: a step belongs to the first
        # phase whose end it has not passed; the last phase takes everything after.
        out = np.empty_like(t)
        begin = 0.0
        todo = np.ones(t.shape, dtype=bool)
        phases = self._phases(ctx)
        for i, (end, a, b) in enumerate(phases):
            mine = todo & ((t <= end) | (i == len(phases) - 1))
            pct = (t[mine] - begin) / (end - begin)  # each phase computed on its own steps only
            if i == len(phases) - 1:
                pct = np.minimum(pct, 1.0)  # past the last step hold final (torch raises there)
            if self.shape == "cos":
                out[mine] = b + (a - b) / 2.0 * (np.cos(np.pi * pct) + 1)
            else:
                out[mine] = (b - a) * pct + a
            todo &= ~mine
            begin = end
        return out


class Cyclic(Schedule):
    name = "cyclic"
    formula = "triangle between low and peak: up steps rising, down steps falling (triangular2 halves, exp_range decays)"
    source = "Smith 2017, Cyclical Learning Rates (torch CyclicLR)"
    needs_total = False

    def __init__(self, low: float = 0.0, peak: float = 1.0, up=2000, down=None, mode: str = "triangular",
                 gamma: float = 1.0) -> None:
        super().__init__(low=low, peak=peak, up=up, down=down, mode=mode, gamma=gamma)
        self.low = self._number("low", low, low=0)
        self.peak = self._number("peak", peak, low=0)
        self.up = self._duration("up", up)
        self.down = None if down is None else self._duration("down", down)
        self.mode = self._choice("mode", mode, ("triangular", "triangular2", "exp_range"))
        self.gamma = self._number("gamma", gamma, low=0, low_open=True)

    def _lengths(self, ctx):
        up = self._steps(ctx, "up", self.up)
        down = up if self.down is None else self._steps(ctx, "down", self.down)
        return up, down

    def _check(self, ctx):
        up, down = self._lengths(ctx)
        if up <= 0 or down < 0:
            raise ScheduleError("cyclic: up must be > 0 steps and down >= 0 steps")
        if not up + down >= 1:  # a shorter cycle cannot be followed step by step (and divides by ~0)
            raise ScheduleError(f"cyclic: a cycle (up + down) must last at least 1 step; got {up + down:g} steps")

    def _evaluate(self, t, ctx):
        up, down = self._lengths(ctx)
        size = up + down
        ratio = up / size
        cycle = np.floor(1 + t / size)
        x = 1.0 + t / size - cycle
        scale = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1) if ratio != 1 else 0.0)
        height = (self.peak - self.low) * scale
        if self.mode == "triangular":
            factor = 1.0
        elif self.mode == "triangular2":
            factor = 1.0 / (2.0 ** (cycle - 1))
        else:
            factor = self.gamma ** t
        return self.low + height * factor


class WSD(Schedule):
    name = "wsd"
    formula = "warmup, stable at peak until T-decay, then peak -> final along shape over the last decay steps"
    source = "Hu et al. 2024 (MiniCPM); Hägele et al. 2024, Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations"

    def __init__(self, peak: float = 1.0, warmup=0, decay="20%", final: float = 0.0, shape: str = "linear") -> None:
        super().__init__(peak=peak, warmup=warmup, decay=decay, final=final, shape=shape)
        self.peak = self._number("peak", peak, low=0)
        self.warmup = self._duration("warmup", warmup)
        self.decay = self._duration("decay", decay)
        self.final = self._number("final", final, low=0)
        self.shape = self._choice("shape", shape, SHAPES)
        if shape == "exp" and (self.final <= 0 or self.peak <= 0):
            raise ScheduleError("wsd: shape='exp' needs peak > 0 and final > 0 (a geometric decay never reaches 0)")

    def _check(self, ctx):
        self._fits(ctx, warmup=self._steps(ctx, "warmup", self.warmup), decay=self._steps(ctx, "decay", self.decay))

    def _evaluate(self, t, ctx):
        w = self._steps(ctx, "warmup", self.warmup)
        d = self._steps(ctx, "decay", self.decay)
        start = ctx.total - d
        p = np.clip((t - start) / d, 0.0, 1.0) if d > 0 else np.zeros_like(t)
        body = np.where(t < start, self.peak, interpolate(self.shape, self.peak, self.final, p))
        return with_warmup(t, w, body, self.peak)


class Power(Schedule):
    name = "power"
    formula = "min(peak, batch*a*n^b), n = tokens seen; linear warmup to it, optional final decay"
    source = "Shen et al. 2024, Power Scheduler: A Batch Size and Token Number Agnostic Learning Rate Scheduler"
    needs_total = False

    def __init__(self, peak: float = 0.02, a: float = 4.6, b: float = -0.51, batch: float = 1.0, warmup=0, decay=0,
                 final: float = 0.0, shape: str = "linear", per: str = "tok") -> None:
        super().__init__(peak=peak, a=a, b=b, batch=batch, warmup=warmup, decay=decay, final=final, shape=shape, per=per)
        self.peak = self._number("peak", peak, low=0, low_open=True)
        self.a = self._number("a", a, low=0, low_open=True)
        self.b = self._number("b", b, high=0)
        self.batch = self._number("batch", batch, low=0, low_open=True)
        self.warmup = self._duration("warmup", warmup)
        self.decay = self._duration("decay", decay)
        self.final = self._number("final", final, low=0)
        self.shape = self._choice("shape", shape, SHAPES)
        self.per = self._choice("per", per, ("tok", "sa", "st"))

    def _check(self, ctx):
        d = self._steps(ctx, "decay", self.decay)
        if d > 0 and ctx.total is None:
            raise ScheduleError("power: a decay phase needs the run's total_steps")
        self._fits(ctx, warmup=self._steps(ctx, "warmup", self.warmup), decay=d)
        with np.errstate(divide="ignore"):
            self._stable(np.zeros(1), ctx)  # fails early if the rate for `per` is missing

    def _stable(self, t, ctx):
        try:
            per_step = ctx.rates.per_step(Unit(self.per), what="power()")
        except Exception as e:
            raise ScheduleError(f"{e} (power() counts n in {self.per!r}; pass rates or per='st')") from None
        n = t * per_step
        return np.minimum(self.peak, self.batch * self.a * n ** self.b)

    def _evaluate(self, t, ctx):
        w = self._steps(ctx, "warmup", self.warmup)
        d = self._steps(ctx, "decay", self.decay)
        body = self._stable(t, ctx)
        if d > 0:
            start = ctx.total - d
            v0 = float(self._stable(np.array([start]), ctx)[0])
            body = np.where(t < start, body, interpolate(self.shape, v0, self.final, np.clip((t - start) / d, 0.0, 1.0)))
        target = float(self._stable(np.array([w]), ctx)[0]) if w > 0 else 0.0
        return with_warmup(t, w, body, target)


class Infinite(Schedule):
    name = "infinite"
    formula = "warmup to peak, cooldown to constant, hold, anneal to final over the last anneal steps"
    source = "Ibrahim et al. 2024, Simple and Scalable Strategies to Continually Pre-train Large Language Models"

    def __init__(self, peak: float = 1.0, constant: float = 0.1, final: float = 0.0, warmup=0, cooldown="10%",
                 anneal="10%", cooldown_shape: str = "cosine", anneal_shape: str = "linear") -> None:
        super().__init__(peak=peak, constant=constant, final=final, warmup=warmup, cooldown=cooldown, anneal=anneal,
                         cooldown_shape=cooldown_shape, anneal_shape=anneal_shape)
        self.peak = self._number("peak", peak, low=0)
        self.constant = self._number("constant", constant, low=0)
        self.final = self._number("final", final, low=0)
        self.warmup = self._duration("warmup", warmup)
        self.cooldown = self._duration("cooldown", cooldown)
        self.anneal = self._duration("anneal", anneal)
        self.cooldown_shape = self._choice("cooldown_shape", cooldown_shape, SHAPES)
        self.anneal_shape = self._choice("anneal_shape", anneal_shape, SHAPES)
        if anneal_shape == "exp" and (self.final <= 0 or self.constant <= 0):
            raise ScheduleError("infinite: anneal_shape='exp' needs constant > 0 and final > 0")
        if cooldown_shape == "exp" and (self.constant <= 0 or self.peak <= 0):
            raise ScheduleError("infinite: cooldown_shape='exp' needs peak > 0 and constant > 0")

    def _lengths(self, ctx):
        return (self._steps(ctx, "warmup", self.warmup), self._steps(ctx, "cooldown", self.cooldown),
                self._steps(ctx, "anneal", self.anneal))

    def _check(self, ctx):
        w, c, a = self._lengths(ctx)
        self._fits(ctx, warmup=w, cooldown=c, anneal=a)

    def _evaluate(self, t, ctx):
        w, c, a = self._lengths(ctx)
        cool = interpolate(self.cooldown_shape, self.peak, self.constant, np.clip((t - w) / c, 0.0, 1.0)) if c > 0 else self.constant
        start = ctx.total - a
        ann = interpolate(self.anneal_shape, self.constant, self.final, np.clip((t - start) / a, 0.0, 1.0)) if a > 0 else self.constant
        body = np.where(t < w + c, cool, np.where(t < start, self.constant, ann))
        return with_warmup(t, w, body, self.peak)


class Piecewise(Schedule):
    name = "piecewise"
    formula = "linear between [position, value] points; constant before the first and after the last"
    source = "-"

    def __init__(self, points=()) -> None:
        if not isinstance(points, (list, tuple)) or len(points) < 1 or \
                not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
            raise ScheduleError(f"piecewise: points must be a non-empty list of [position, value] pairs; got {points!r}")
        super().__init__(points=[list(p) for p in points])
        self.positions = [self._duration(f"points[{i}] position", p[0]) for i, p in enumerate(points)]
        self.values_ = np.array([self._number(f"points[{i}] value", p[1], low=0) for i, p in enumerate(points)])
        self.needs_total = any(d.unit.value == "dur" for d in self.positions)

    def _where(self, ctx):
        return np.array([self._steps(ctx, f"points[{i}] position", d) for i, d in enumerate(self.positions)])

    def _check(self, ctx):
        if np.any(np.diff(self._where(ctx)) <= 0):
            raise ScheduleError("piecewise: point positions must increase")

    def _evaluate(self, t, ctx):
        return np.interp(t, self._where(ctx), self.values_)


RAMP_SHAPES = ("linear", "cosine", "exp", "doubling")


class Ramp(Schedule):
    name = "ramp"
    formula = ("start -> end over `duration` (linear, cosine, exp, or doubling: start * 2**floor(p * log2(end/start))), "
               "then end; for batch-size warmup")
    source = "Merrill et al. 2025, Critical Batch Size Revisited (batch-size warmup); McCandlish et al. 2018"
    needs_total = False

    def __init__(self, start: float, end: float, duration, shape: str = "linear") -> None:
        super().__init__(start=start, end=end, duration=duration, shape=shape)
        self.start = self._number("start", start, low=0)
        self.end = self._number("end", end, low=0)
        self.duration = self._duration("duration", duration)
        self.shape = self._choice("shape", shape, RAMP_SHAPES)
        self.needs_total = self.duration.unit is Unit.FRACTION
        if shape in ("exp", "doubling") and not 0 < self.start <= self.end:
            raise ScheduleError(f"ramp: shape={shape!r} needs 0 < start <= end; got start={self.start:g}, end={self.end:g}")
        if shape == "doubling" and not float(np.log2(self.end / self.start)).is_integer():
            raise ScheduleError(f"ramp: shape='doubling' needs end to be start times a power of 2; got "
                                f"start={self.start:g}, end={self.end:g}")

    def _check(self, ctx):
        if self._steps(ctx, "duration", self.duration) <= 0:
            raise ScheduleError("ramp: duration must be longer than 0")

    def _evaluate(self, t, ctx):
        d = self._steps(ctx, "duration", self.duration)
        p = np.clip(t / d, 0.0, 1.0)
        if self.shape == "doubling":
            k = np.floor(p * np.log2(self.end / self.start))
            return np.minimum(self.start * 2.0 ** k, self.end)
        if self.shape == "exp":
            return self.start * (self.end / self.start) ** p
        return interpolate(self.shape, self.start, self.end, p)
