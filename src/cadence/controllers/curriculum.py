"""Curricula: how much of the data, easiest first, a step may draw (docs/curriculum-reference.md).

``pace(shape, start, full, ...)``: the ``curriculum`` channel's scalar form, the *competence*
c in (0, 1], the fraction of the data, sorted easiest first, that the step may draw from
(c = 1: all of it). A pure function of the clock, like any schedule family:

* ``linear``:   c = min(1, start + (1 - start) * t / full)
* ``root``:     c = min(1, sqrt(t * (1 - start**2) / full + start**2))
  (Platanios et al. 2019, Competence-based Curriculum Learning for Neural Machine Translation)
* ``step``:     baby steps: c = start + (1 - start) * floor(stages * t / full) / stages, 1 from ``full`` on
* ``cyclical``: Kesgin & Amasyali 2023, Cyclical Curriculum Learning (IEEE TNNLS): the data
  fraction moves geometrically between ``start`` and ``peak`` and back, by ``factor`` per stage,
  following the paper's rule (its code, ``get_cycle_sizes``): from n, go up to
  ``min(n / factor, peak)`` when n is the minimum or n rose last time and is not the maximum,
  else down to ``max(n * factor, start)``. A stage at fraction c is one pass over that
  c of the data, so it lasts ``c * every`` (``every``: one pass over all of it, an epoch).

``sec()`` and ``dump()``: vector controllers over difficulty buckets (keys bound by the plan,
easiest first), whose value is a probability per bucket. Both read ``bucket_loss/<key>`` (the
mean training loss of this step's samples from a bucket; None when none was drawn) and score
a bucket by its *learning progress*: the absolute change of its loss between consecutive
observations of it, divided by the mean of those changes over the buckets observed in the
same step (the papers' reward, the absolute advantage, is unit-free; a loss change is not).

* ``sec``: Self-Evolving Curriculum (Chen et al. 2025): Q_k <- Q_k + alpha * (r_k - Q_k) (TD(0)),
  p = softmax(Q / tau).
* ``dump``: DUMP (Wang et al. 2025): UCB score = mean of the last ``window`` rewards of the bucket
  + sqrt(2 ln(N + 1) / (n_k + 1)), p = softmax(score / temperature); n_k counts the bucket's
  observations, N all of them.

Both mix in a floor: p = floor + (1 - B * floor) * softmax(...), so every bucket keeps being
drawn. State is plain data (lists of floats and ints); a value depends on the state alone.
"""

from __future__ import annotations

import math

import numpy as np

from cadence.controllers.base import VectorController, finite
from cadence.errors import ScheduleError
from cadence.schedules.base import Schedule

__all__ = ["Pace", "SEC", "DUMP", "CURRICULA", "PACE_SHAPES", "BUCKET_SIGNAL"]

PACE_SHAPES = ("linear", "root", "step", "cyclical")
BUCKET_SIGNAL = "bucket_loss"
_SLACK = 1 + 1e-9  # rewards and Q lie in [0, B]; an average of them may pass B by a rounding
_MAX_STAGES = 10_000  # stages in one cycle of the cyclical shape: a factor near 1 would make the cycle huge


class Pace(Schedule):
    name = "pace"
    formula = ("competence c in (0, 1]: linear start+(1-start)*t/full; root sqrt(t*(1-start^2)/full+start^2); "
               "step in `stages` equal rises; cyclical start <-> peak by `factor` per stage")
    source = ("Platanios et al. 2019, Competence-based Curriculum Learning for NMT (root, linear); "
              "Kesgin & Amasyali 2023, Cyclical Curriculum Learning (cyclical)")
    needs_total = False

    def __init__(self, shape: str = "linear", start: float = 0.2, full="50%", stages: int | None = None,
                 peak: float | None = None, factor: float | None = None, every=None) -> None:
        super().__init__(shape=shape, start=start, full=full, stages=stages, peak=peak, factor=factor, every=every)
        self.shape = self._choice("shape", shape, PACE_SHAPES)
        self.start = self._number("start", start, low=0, high=1, low_open=True)
        self.full = self._duration("full", full)
        for what, value, owner in (("stages", stages, "step"), ("peak", peak, "cyclical"),
                                   ("factor", factor, "cyclical"), ("every", every, "cyclical")):
            if value is not None and self.shape != owner:
                raise ScheduleError(f"pace: {what} applies to shape={owner!r} only; shape is {self.shape!r}")
        self.stages = 4 if stages is None else self._whole("stages", stages)
        if self.shape == "cyclical":
            self.peak = 1.0 if peak is None else self._number("peak", peak, low=0, high=1, low_open=True)
            if self.peak < self.start:
                raise ScheduleError(f"pace: peak must be >= start (the cycle runs from start up to peak); "
                                    f"got start={self.start:g}, peak={self.peak:g}")
            self.factor = 0.5 if factor is None else self._number("factor", factor, low=0, high=1,
                                                                    low_open=True, high_open=True)
            self.every = self._duration("every", "1ep" if every is None else every)
            self.cycle = _cycle(self.start, self.peak, self.factor)

    def _whole(self, what: str, value) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= _MAX_STAGES:
            raise ScheduleError(f"pace: {what} must be a whole number from 1 to {_MAX_STAGES}; got {value!r:.60}")
        return int(value)

    def _check(self, ctx) -> None:
        if self.shape == "cyclical":
            if self._steps(ctx, "every", self.every) <= 0:
                raise ScheduleError(f"pace: every must be more than 0 steps; every={self.every} is not")
            return
        f = self._steps(ctx, "full", self.full)
        if f <= 0:
            raise ScheduleError(f"pace: full must be more than 0 steps (when all the data is in); full={self.full} is not")
        if ctx.total is not None and f > ctx.total:
            raise ScheduleError(f"pace: full={f:g} steps is past the end of the run ({ctx.total:g} steps): "
                                "the curriculum would never reach all of the data")

    def _evaluate(self, t, ctx):
        if self.shape == "cyclical":
            return self._cyclical(t, ctx)
        u = np.clip(t / self._steps(ctx, "full", self.full), 0.0, 1.0)
        c0 = self.start
        if self.shape == "linear":
            c = c0 + (1.0 - c0) * u
        elif self.shape == "root":
            c = np.sqrt(u * (1.0 - c0 * c0) + c0 * c0)
        else:  # step
            c = c0 + (1.0 - c0) * np.floor(u * self.stages) / self.stages
        # rounding may leave 1 - 1e-16 where the formula gives 1; competence is exactly 1 from `full` on
        return np.where(u >= 1.0, 1.0, np.minimum(c, 1.0))

    def _cyclical(self, t, ctx):
        levels = np.asarray(self.cycle)
        ends = np.cumsum(levels * self._steps(ctx, "every", self.every))
        r = np.mod(np.maximum(t, 0.0), ends[-1])
        i = np.minimum(np.searchsorted(ends, r, side="right"), len(levels) - 1)
        return levels[i]


def _cycle(low: float, high: float, factor: float) -> list[float]:
    """One period of the paper's data fractions, starting at ``low``.

    The rule of Kesgin & Amasyali's ``get_cycle_sizes``: from n, up to min(n / factor, high)
    when n is the minimum, or when n rose last time and is not the maximum; else down to
    max(n * factor, low). With low=0.25, high=1, factor=0.5: 0.25, 0.5, 1, 0.5 (then 0.25 again).
    """
    out, prev, n = [low], None, low
    while True:
        up = n == low or (prev is not None and prev < n and n != high)
        nxt = min(n / factor, high) if up else max(n * factor, low)
        if nxt == low:
            return out
        prev, n = n, nxt
        out.append(n)
        if len(out) > _MAX_STAGES:
            raise ScheduleError(f"pace: a cycle from start={low:g} to peak={high:g} by factor={factor:g} has more "
                                f"than {_MAX_STAGES} stages; use a smaller factor")


# -- bandits over difficulty buckets ----------------------------------------------------------

class _Bandit(VectorController):
    """What ``sec`` and ``dump`` share: the buckets' signals, the learning-progress reward, the floor."""

    drives = "curriculum"  # the channel a plan lets it drive

    needs_total = False

    def __init__(self, floor: float, **params) -> None:
        super().__init__(None, **params, floor=floor)
        self.floor = self._number("floor", floor, low=0, high=1, high_open=True)

    def _check(self, ctx) -> None:
        pass

    def bind_keys(self, keys) -> None:
        super().bind_keys(keys)
        if self.floor * len(self.keys) >= 1.0:
            raise ScheduleError(f"{self.name}: floor={self.floor:g} for each of {len(self.keys)} buckets leaves nothing "
                                f"to learn; floor must be < 1/{len(self.keys)}")
        self.monitors = tuple(f"{BUCKET_SIGNAL}/{k}" for k in self.keys)
        self.diagnostic_names = tuple(f"score/{k}" for k in self.keys)

    def _keys(self) -> tuple:
        if self.keys is None:
            raise ScheduleError(f"{self.name}: the buckets are not bound yet (a plan binds them; or call bind_keys)")
        return self.keys

    def _progress(self, last: list, signals: dict) -> "tuple[list, list, list]":
        """(the buckets' rewards this step, None where there is none; the new last losses;
        whether each bucket was observed).

        A bucket's reward is the absolute change of its loss since its previous observation,
        divided by the mean change over the buckets that have one this step.
        """
        last = list(last)
        change: list = [None] * len(last)
        observed = [False] * len(last)
        for i, key in enumerate(self._keys()):
            loss = finite(signals.get(f"{BUCKET_SIGNAL}/{key}"))
            if loss is None:
                continue
            observed[i] = True
            if last[i] is not None:
                d = abs(loss - last[i])
                change[i] = d if math.isfinite(d) else None
            last[i] = loss
        seen = [d for d in change if d is not None]
        scale = sum(d / len(seen) for d in seen) if seen else 0.0
        # d / scale <= len(seen) but for rounding among subnormal changes; the cap keeps rewards in [0, B]
        reward = [None if d is None else (min(d / scale, float(len(seen))) if scale > 0 else 0.0) for d in change]
        return reward, last, observed

    def _policy(self, scores: list, temperature: float) -> list:
        top = max(scores)
        e = [math.exp((s - top) / temperature) for s in scores]
        total = sum(e)
        share = 1.0 - self.floor * len(scores)
        return [self.floor + share * x / total for x in e]

    def value(self, state, clock, inputs=None) -> "dict[str, float]":
        return dict(zip(self._keys(), self._policy(self._scores(state), self._temperature())))

    def start_value(self, state) -> "dict[str, float]":
        return self.value(state, None)

    def diagnose(self, state) -> dict:
        return {f"score/{k}": s for k, s in zip(self._keys(), self._scores(state))}

    def _check_last(self, last) -> str | None:
        n = len(self._keys())
        if not isinstance(last, list) or len(last) != n:
            return f"last must be a list of {n} losses (or None); got {last!r:.60}"
        if not all(x is None or (_real(x) and math.isfinite(x)) for x in last):
            return f"last losses must be finite numbers or None; got {last!r:.60}"
        return None


def _real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class SEC(_Bandit):
    name = "sec"
    formula = "p = floor + (1-B*floor)*softmax(Q/tau); Q_k <- Q_k + alpha*(r_k - Q_k), r_k = |change of bucket k's loss| (normalised)"
    source = "Chen et al. 2025, Self-Evolving Curriculum for LLM Reasoning (arXiv 2505.14970)"

    def __init__(self, alpha: float = 0.5, tau: float = 1.0, floor: float = 0.01) -> None:
        super().__init__(floor, alpha=alpha, tau=tau)
        self.alpha = self._number("alpha", alpha, low=0, high=1, low_open=True)
        self.tau = self._number("tau", tau, low=0, low_open=True)

    def _temperature(self) -> float:
        return self.tau

    def init(self) -> dict:
        n = len(self._keys())
        return {"q": [0.0] * n, "last": [None] * n}

    def update(self, state: dict, clock, signals: dict) -> dict:
        reward, last, _ = self._progress(state["last"], signals)
        q = [v if r is None else v + self.alpha * (r - v) for v, r in zip(state["q"], reward)]
        return {"q": q, "last": last}

    def _scores(self, state) -> list:
        return list(state["q"])

    def check_state(self, state) -> str | None:
        n = len(self._keys())
        if not isinstance(state, dict) or set(state) != {"q", "last"}:
            return "the state must be an object with exactly q and last"
        q = state["q"]
        if not isinstance(q, list) or len(q) != n or not all(_real(x) and 0 <= x <= n * _SLACK for x in q):
            return f"q must be a list of {n} numbers in [0, {n}]; got {q!r:.60}"
        return self._check_last(state["last"])


class DUMP(_Bandit):
    name = "dump"
    formula = ("p = floor + (1-B*floor)*softmax(UCB/temperature); UCB_k = mean of bucket k's last `window` rewards "
               "+ sqrt(2 ln(N+1)/(n_k+1)); r_k = |change of bucket k's loss| (normalised)")
    source = "Wang et al. 2025, DUMP: Automated Distribution-Level Curriculum Learning for RL-based LLM Post-training"

    def __init__(self, window: int = 300, temperature: float = 0.1, floor: float = 0.01) -> None:
        super().__init__(floor, window=window, temperature=temperature)
        if isinstance(window, float) and window.is_integer():
            window = int(window)
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= 100_000:
            raise ScheduleError(f"dump: window must be a whole number from 1 to 100000 (observations); got {window!r:.60}")
        self.window = int(window)
        self.temperature = self._number("temperature", temperature, low=0, low_open=True)

    def _temperature(self) -> float:
        return self.temperature

    def init(self) -> dict:
        n = len(self._keys())
        return {"rewards": [[] for _ in range(n)], "count": [0] * n, "last": [None] * n}

    def update(self, state: dict, clock, signals: dict) -> dict:
        reward, last, observed = self._progress(state["last"], signals)
        rewards = [list(old) if r is None else [*old, r][-self.window:] for old, r in zip(state["rewards"], reward)]
        count = [n + 1 if seen else n for n, seen in zip(state["count"], observed)]
        return {"rewards": rewards, "count": count, "last": last}

    def _scores(self, state) -> list:
        total = sum(state["count"])
        out = []
        for window, n in zip(state["rewards"], state["count"]):
            mean = sum(window) / len(window) if window else 0.0
            out.append(mean + math.sqrt(2.0 * math.log(total + 1) / (n + 1)))
        return out

    def check_state(self, state) -> str | None:
        n = len(self._keys())
        if not isinstance(state, dict) or set(state) != {"rewards", "count", "last"}:
            return "the state must be an object with exactly rewards, count and last"
        rewards, count = state["rewards"], state["count"]
        if not isinstance(rewards, list) or len(rewards) != n or not all(
                isinstance(w, list) and len(w) <= self.window and all(_real(x) and 0 <= x <= n * _SLACK for x in w)
                for w in rewards):
            return f"rewards must be {n} lists of at most {self.window} numbers in [0, {n}]"
        if not isinstance(count, list) or len(count) != n or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in count):
            return f"count must be a list of {n} whole numbers >= 0; got {count!r:.60}"
        return self._check_last(state["last"])


CURRICULA = (Pace, SEC, DUMP)
