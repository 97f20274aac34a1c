"""Combinators: build schedules out of schedules.

A child that runs for part of the run (a joined piece, the part after a warmup or a
re-warm) sees its own clock, starting at 0 where it begins, and its own span as the
run's length: a fraction inside it is a fraction of its piece. Values at a step depend
only on the step, so every combination resumes exactly.
"""

from __future__ import annotations

import numpy as np

from cadence.errors import ScheduleError
from cadence.schedules.base import SHAPES, WARMUP_SHAPES, Schedule, interpolate, with_warmup
from cadence.time import Context

__all__ = ["Warmup", "Join", "Scale", "Clip", "DecayFrom", "Rewarm", "Replanned"]


def _piece(ctx: Context, length: float | None) -> Context:
    return ctx.span(length)


def _value_at(schedule: Schedule, step: float, ctx: Context) -> float:
    return float(schedule.evaluate(np.array([step]), ctx)[0])


class Warmup(Schedule):
    name = "warmup"
    formula = "start -> schedule's first value over `duration` (linear, cosine or exp), then the schedule on its own clock"
    source = "Goyal et al. 2017, Accurate, Large Minibatch SGD"
    needs_total = False

    def __init__(self, schedule: Schedule, duration=0, shape: str = "linear", start: float = 0.0) -> None:
        super().__init__(schedule=schedule, duration=duration, shape=shape, start=start)
        self.schedule = self._schedule("schedule", schedule)
        self.duration = self._duration("duration", duration)
        self.shape = self._choice("shape", shape, WARMUP_SHAPES)
        self.start = self._number("start", start, low=0)
        if shape == "exp" and self.start <= 0:
            raise ScheduleError("warmup: shape='exp' needs start > 0 (a geometric ramp cannot start at 0)")

    def _inner(self, ctx):
        w = self._steps(ctx, "duration", self.duration)
        return w, _piece(ctx, None if ctx.total is None else ctx.total - w)

    def _check(self, ctx):
        w, inner = self._inner(ctx)
        if ctx.total is not None and w >= ctx.total:
            raise ScheduleError(f"warmup: duration={w:g} steps is not shorter than the run ({ctx.total:g} steps)")
        if inner.total is None and self.schedule.needs_total:
            raise ScheduleError(f"warmup: the inner {self.schedule.name}() needs the run's total_steps")
        self.schedule._check(inner)

    def _evaluate(self, t, ctx):
        w, inner = self._inner(ctx)
        body = self.schedule._evaluate(t - w, inner)
        target = _value_at(self.schedule, 0.0, inner)
        return with_warmup(t, w, body, target, self.shape, self.start)


class Join(Schedule):
    name = "join"
    formula = "schedule k runs from at[k-1] to at[k], on a clock that starts at 0 at its boundary"
    source = "optax join_schedules; torch SequentialLR"
    needs_total = False

    def __init__(self, *schedules: Schedule, at=()) -> None:
        super().__init__(schedules=list(schedules), at=list(at) if isinstance(at, (list, tuple)) else at)
        if len(schedules) < 2:
            raise ScheduleError("join: give at least two schedules")
        self.schedules = [self._schedule(f"schedules[{i}]", s) for i, s in enumerate(schedules)]
        if not isinstance(at, (list, tuple)) or len(at) != len(schedules) - 1:
            raise ScheduleError(f"join: at must list {len(schedules) - 1} boundaries (one fewer than the schedules); got {at!r}")
        self.at = [self._duration(f"at[{i}]", b) for i, b in enumerate(at)]

    def spec(self) -> str:
        from cadence.schedules.base import _format

        return f"join({', '.join(s.spec() for s in self.schedules)}, at={_format(self.params['at'])})"

    def _bounds(self, ctx):
        return [0.0] + [self._steps(ctx, f"at[{i}]", b) for i, b in enumerate(self.at)]

    def _pieces(self, ctx):
        b = self._bounds(ctx)
        ends = b[1:] + [ctx.total]
        return [(start, _piece(ctx, None if end is None else end - start)) for start, end in zip(b, ends)]

    def _check(self, ctx):
        b = self._bounds(ctx)
        if any(y <= x for x, y in zip(b, b[1:])):
            raise ScheduleError(f"join: boundaries must increase and start after step 0; got {[str(a) for a in self.at]}")
        if ctx.total is not None and b[-1] >= ctx.total:
            raise ScheduleError(f"join: the last boundary ({b[-1]:g}) must fall inside the run ({ctx.total:g} steps)")
        for s, (_, inner) in zip(self.schedules, self._pieces(ctx)):
            if inner.total is None and s.needs_total and s is self.schedules[-1]:
                raise ScheduleError(f"join: the last piece {s.name}() needs the run's total_steps")
            s._check(inner)

    def _evaluate(self, t, ctx):
        out = np.zeros_like(t)
        pieces = self._pieces(ctx)
        for i, (s, (start, inner)) in enumerate(zip(self.schedules, pieces)):
            mine = t >= start
            if i + 1 < len(pieces):
                mine &= t < pieces[i + 1][0]
            if i == 0:
                mine |= t < start
            out = np.where(mine, s._evaluate(t - start, inner), out)
        return out


class Scale(Schedule):
    name = "scale"
    formula = "schedule * by (a number or another schedule)"
    source = "-"
    needs_total = False

    def __init__(self, schedule: Schedule, by=1.0) -> None:
        super().__init__(schedule=schedule, by=by)
        self.schedule = self._schedule("schedule", schedule)
        self.by = by if isinstance(by, Schedule) else self._number("by", by, low=0)
        self.needs_total = schedule.needs_total or (isinstance(by, Schedule) and by.needs_total)

    def _check(self, ctx):
        self.schedule._check(ctx)
        if isinstance(self.by, Schedule):
            self.by._check(ctx)

    def _evaluate(self, t, ctx):
        factor = self.by._evaluate(t, ctx) if isinstance(self.by, Schedule) else self.by
        return self.schedule._evaluate(t, ctx) * factor


class Clip(Schedule):
    name = "clip"
    formula = "min(max(schedule, floor), ceiling)"
    source = "-"
    needs_total = False

    def __init__(self, schedule: Schedule, floor: float | None = None, ceiling: float | None = None) -> None:
        super().__init__(schedule=schedule, floor=floor, ceiling=ceiling)
        self.schedule = self._schedule("schedule", schedule)
        self.floor = None if floor is None else self._number("floor", floor)
        self.ceiling = None if ceiling is None else self._number("ceiling", ceiling)
        if self.floor is None and self.ceiling is None:
            raise ScheduleError("clip: give floor, ceiling or both")
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise ScheduleError(f"clip: floor ({self.floor:g}) is above ceiling ({self.ceiling:g})")
        self.needs_total = schedule.needs_total

    def _check(self, ctx):
        self.schedule._check(ctx)

    def _evaluate(self, t, ctx):
        return np.clip(self.schedule._evaluate(t, ctx), self.floor, self.ceiling)


class DecayFrom(Schedule):
    name = "decay_from"
    formula = "schedule until `at`; then from its value at `at` -> final along shape over `duration` (default: to the end)"
    source = "Hägele et al. 2024 (anytime cooldown of WSD); OLMo-core override_decay"

    def __init__(self, schedule: Schedule, at=0, duration=None, final: float = 0.0, shape: str = "linear") -> None:
        super().__init__(schedule=schedule, at=at, duration=duration, final=final, shape=shape)
        self.schedule = self._schedule("schedule", schedule)
        self.at = self._duration("at", at)
        self.duration = None if duration is None else self._duration("duration", duration)
        self.final = self._number("final", final, low=0)
        self.shape = self._choice("shape", shape, SHAPES)
        self.needs_total = duration is None or schedule.needs_total

    def _span(self, ctx):
        at = self._steps(ctx, "at", self.at)
        d = ctx.total - at if self.duration is None else self._steps(ctx, "duration", self.duration)
        return at, d

    def _check(self, ctx):
        self.schedule._check(ctx)
        at, d = self._span(ctx)
        if ctx.total is not None and at >= ctx.total:
            raise ScheduleError(f"decay_from: at={at:g} is not inside the run ({ctx.total:g} steps)")
        if d <= 0:
            raise ScheduleError("decay_from: the decay needs at least one step")
        self._fits(ctx, at=at, duration=d)
        if self.shape == "exp" and (self.final <= 0 or _value_at(self.schedule, at, ctx) <= 0):
            raise ScheduleError("decay_from: shape='exp' needs a positive value at `at` and final > 0")

    def _evaluate(self, t, ctx):
        at, d = self._span(ctx)
        v0 = _value_at(self.schedule, at, ctx)
        decay = interpolate(self.shape, v0, self.final, np.clip((t - at) / d, 0.0, 1.0))
        return np.where(t < at, self.schedule._evaluate(t, ctx), decay)


class Rewarm(Schedule):
    name = "rewarm"
    formula = "before until `at`; then ramp from its value at `at` to after's first value over `warmup`, then after"
    source = "Ibrahim et al. 2024 (re-warming for continual pre-training); Gupta et al. 2023"

    def __init__(self, before: Schedule, after: Schedule, at=0, warmup=0, shape: str = "linear") -> None:
        super().__init__(before=before, after=after, at=at, warmup=warmup, shape=shape)
        self.before = self._schedule("before", before)
        self.after = self._schedule("after", after)
        self.at = self._duration("at", at)
        self.warmup = self._duration("warmup", warmup)
        self.shape = self._choice("shape", shape, WARMUP_SHAPES)
        self.needs_total = before.needs_total or after.needs_total

    def _parts(self, ctx):
        at = self._steps(ctx, "at", self.at)
        w = self._steps(ctx, "warmup", self.warmup)
        rest = _piece(ctx, None if ctx.total is None else ctx.total - at)
        after_ctx = _piece(ctx, None if ctx.total is None else ctx.total - at - w)
        return at, w, rest, after_ctx

    def _check(self, ctx):
        at, w, rest, after_ctx = self._parts(ctx)
        if at <= 0:
            raise ScheduleError("rewarm: at must be after step 0")
        if ctx.total is not None and at + w >= ctx.total:
            raise ScheduleError(f"rewarm: at={at:g} + warmup={w:g} steps leaves nothing of a run of {ctx.total:g} steps")
        self.before._check(ctx)
        self.after._check(after_ctx)

    def _evaluate(self, t, ctx):
        at, w, rest, after_ctx = self._parts(ctx)
        u = t - at
        start = _value_at(self.before, at, ctx)
        target = _value_at(self.after, 0.0, after_ctx)
        after = with_warmup(u, w, self.after._evaluate(u - w, after_ctx), target, self.shape, start) if w > 0 \
            else self.after._evaluate(u, after_ctx)
        return np.where(t < at, self.before._evaluate(t, ctx), after)


class Replanned(Schedule):
    """A schedule whose planned total changed during the run; values already used never change.

    ``totals`` lists ``[step, total]`` or ``[step, total, mode]`` records, the first at step 0.
    From record k's step on, the run is planned to last ``total`` steps:

    * ``mode='replan'`` (default): the schedule is evaluated as if the run had always been
      planned to the new total. WSD, constant and warmup phases continue smoothly; a
      schedule whose shape depends on the total (cosine) may jump at the change.
    * ``mode='stretch'``: what remained of the previous plan is stretched (or squeezed) onto
      the new remaining steps, so the value is continuous at the change.
    """

    name = "replanned"
    formula = "piecewise by planned total: each record re-plans the remaining steps ('replan' or 'stretch')"
    source = "-"

    def __init__(self, schedule: Schedule, totals=()) -> None:
        super().__init__(schedule=schedule, totals=[list(r) for r in totals] if isinstance(totals, (list, tuple)) else totals)
        self.schedule = self._schedule("schedule", schedule)
        if not isinstance(totals, (list, tuple)) or not totals:
            raise ScheduleError("replanned: totals must be a non-empty list of [step, total] or [step, total, mode]")
        records = []
        for i, r in enumerate(totals):
            if not isinstance(r, (list, tuple)) or len(r) not in (2, 3):
                raise ScheduleError(f"replanned: totals[{i}] must be [step, total] or [step, total, mode]; got {r!r}")
            step = int(self._number(f"totals[{i}] step", r[0], low=0))
            total = int(self._number(f"totals[{i}] total", r[1], low=1))
            mode = self._choice(f"totals[{i}] mode", r[2] if len(r) == 3 else "replan", ("replan", "stretch"))
            records.append((step, total, mode))
        if records[0][0] != 0:
            raise ScheduleError("replanned: the first record must be at step 0 (the original plan)")
        for (s0, t0, _), (s1, t1, m1) in zip(records, records[1:]):
            if s1 <= s0:
                raise ScheduleError(f"replanned: record steps must increase; got {s0} then {s1}")
            if t1 <= s1:
                raise ScheduleError(f"replanned: a new total ({t1}) must be larger than the step it is set at ({s1})")
            if m1 == "stretch" and t0 <= s1:
                raise ScheduleError(f"replanned: cannot stretch at step {s1}: the previous plan ended at {t0}; use mode='replan'")
        self.records = records

    def _check(self, ctx):
        for _, total, _ in self.records:
            self.schedule._check(ctx.span(total))

    def _segment(self, k: int, t: np.ndarray, ctx: Context) -> np.ndarray:
        """Values of the plan in force from record k on, at positions t (>= that record's step)."""
        step, total, mode = self.records[k]
        if k == 0 or mode == "replan":
            return self.schedule._evaluate(t, ctx.span(total))
        previous_total = self.records[k - 1][1]
        u = step + (t - step) * (previous_total - step) / (total - step)
        return self._segment(k - 1, u, ctx)

    def _evaluate(self, t, ctx):
        out = np.zeros_like(t)
        for k, (step, _, _) in enumerate(self.records):
            mine = t >= step
            if k + 1 < len(self.records):
                mine &= t < self.records[k + 1][0]
            out = np.where(mine, self._segment(k, t, ctx), out)
        return out

    @property
    def total(self) -> int:
        return self.records[-1][1]
