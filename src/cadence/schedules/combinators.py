"""Combinators: build schedules out of schedules.

A child that runs for part of the run (a joined piece, the part after a warmup or a
re-warm) sees its own clock, starting at 0 where it begins, and its own span as the
run's length: a fraction inside it is a fraction of its piece. Values at a step depend
only on the step, so every combination resumes exactly.

Each combinator evaluates each child once per call (anchor values such as "where the
warmup ramps to" ride along with the child's other steps, see ``evaluate_with``), and a
piece only on its own steps, so evaluation is linear in the nesting depth.
"""

from __future__ import annotations

import numpy as np

from cadence.errors import LimitError, ScheduleError
from cadence.schedules.base import (
    SHAPES, WARMUP_SHAPES, Schedule, _short_value, evaluate_with, groups, interpolate, with_warmup,
)
from cadence.time import MAX_TOTAL_STEPS, Context

__all__ = ["Warmup", "Join", "Scale", "Clip", "DecayFrom", "Rewarm", "Replanned"]


def _piece(ctx: Context, length: float | None) -> Context:
    return ctx.span(length)


def _value_at(schedule: Schedule, step: float, ctx: Context) -> float:
    """One value of a child, for a check (evaluation uses evaluate_with instead)."""
    with np.errstate(all="ignore"):
        return float(np.broadcast_to(schedule._evaluate(np.array([float(step)]), ctx), (1,))[0])


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
        self.schedule._validate(inner)

    def _evaluate(self, t, ctx):
        w, inner = self._inner(ctx)
        body, (target,) = evaluate_with(self.schedule, t - w, inner, 0.0)
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
        self.boundaries = [self._duration(f"at[{i}]", b) for i, b in enumerate(at)]

    def spec(self) -> str:
        from cadence.schedules.base import _format

        return f"join({', '.join(s.spec() for s in self.schedules)}, at={_format(self.params['at'])})"

    def _bounds(self, ctx):
        return [0.0] + [self._steps(ctx, f"at[{i}]", b) for i, b in enumerate(self.boundaries)]

    def _pieces(self, ctx):
        b = self._bounds(ctx)
        ends = b[1:] + [ctx.total]
        return [(start, _piece(ctx, None if end is None else end - start)) for start, end in zip(b, ends)]

    def _check(self, ctx):
        b = self._bounds(ctx)
        if any(y <= x for x, y in zip(b, b[1:])):
            raise ScheduleError(f"join: boundaries must increase and start after step 0; got {[str(a) for a in self.boundaries]}")
        if ctx.total is not None and b[-1] >= ctx.total:
            raise ScheduleError(f"join: the last boundary ({b[-1]:g}) must fall inside the run ({ctx.total:g} steps)")
        for s, (_, inner) in zip(self.schedules, self._pieces(ctx)):
            if inner.total is None and s.needs_total and s is self.schedules[-1]:
                raise ScheduleError(f"join: the last piece {s.name}() needs the run's total_steps")
            s._validate(inner)

    def _evaluate(self, t, ctx):
        # Piece k owns [start_k, start_k+1); the first also owns anything before 0.
        out = np.empty_like(t)
        pieces = self._pieces(ctx)
        index = np.searchsorted(np.array([start for start, _ in pieces[1:]]), t, side="right")
        for k, mine in groups(index, len(pieces)):
            start, inner = pieces[k]
            out[mine] = self.schedules[k]._evaluate(t[mine] - start, inner)
        return out


class Scale(Schedule):
    name = "scale"
    formula = "schedule * by (a number or another schedule)"
    source = "-"
    needs_total = False

    def __init__(self, schedule: Schedule, by=1.0) -> None:
        super().__init__(schedule=schedule, by=by)
        self.schedule = self._schedule("schedule", schedule)
        self.by = by if isinstance(by, Schedule) else self._number("by", by, low=0)  # values stay >= 0
        self.needs_total = schedule.needs_total or (isinstance(by, Schedule) and by.needs_total)

    def _check(self, ctx):
        self.schedule._validate(ctx)
        if isinstance(self.by, Schedule):
            self.by._validate(ctx)

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
        # >= 0 like every value parameter: a negative ceiling would train with a negative LR.
        self.floor = None if floor is None else self._number("floor", floor, low=0)
        self.ceiling = None if ceiling is None else self._number("ceiling", ceiling, low=0)
        if self.floor is None and self.ceiling is None:
            raise ScheduleError("clip: give floor, ceiling or both")
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise ScheduleError(f"clip: floor ({self.floor:g}) is above ceiling ({self.ceiling:g})")
        self.needs_total = schedule.needs_total

    def _check(self, ctx):
        self.schedule._validate(ctx)

    def _evaluate(self, t, ctx):
        return np.clip(self.schedule._evaluate(t, ctx), self.floor, self.ceiling)


class DecayFrom(Schedule):
    name = "decay_from"
    formula = "schedule until `at`; then from its value at `at` -> final along shape over `duration` (default: to the end)"
    source = "Hägele et al. 2024 (anytime cooldown of WSD); OLMo-core override_decay"

    def __init__(self, schedule: Schedule, at=0, duration=None, final: float = 0.0, shape: str = "linear") -> None:
        super().__init__(schedule=schedule, at=at, duration=duration, final=final, shape=shape)
        self.schedule = self._schedule("schedule", schedule)
        self.decay_at = self._duration("at", at)
        self.duration = None if duration is None else self._duration("duration", duration)
        self.final = self._number("final", final, low=0)
        self.shape = self._choice("shape", shape, SHAPES)
        self.needs_total = duration is None or schedule.needs_total

    def _span(self, ctx):
        at = self._steps(ctx, "at", self.decay_at)
        d = ctx.total - at if self.duration is None else self._steps(ctx, "duration", self.duration)
        return at, d

    def _check(self, ctx):
        self.schedule._validate(ctx)
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
        before, (v0,) = evaluate_with(self.schedule, t, ctx, at)
        decay = interpolate(self.shape, v0, self.final, np.clip((t - at) / d, 0.0, 1.0))
        return np.where(t < at, before, decay)


class Rewarm(Schedule):
    name = "rewarm"
    formula = ("before until `at`; then ramp from its value at `at` to after's first value over `warmup`, then after "
               "(at=0: a run started from a finished one re-warms from before's first value)")
    source = "Ibrahim et al. 2024 (re-warming for continual pre-training); Gupta et al. 2023"

    def __init__(self, before: Schedule, after: Schedule, at=0, warmup=0, shape: str = "linear") -> None:
        super().__init__(before=before, after=after, at=at, warmup=warmup, shape=shape)
        self.before = self._schedule("before", before)
        self.after = self._schedule("after", after)
        self.rewarm_at = self._duration("at", at)
        self.warmup = self._duration("warmup", warmup)
        self.shape = self._choice("shape", shape, WARMUP_SHAPES)
        self.needs_total = before.needs_total or after.needs_total

    def _parts(self, ctx):
        at = self._steps(ctx, "at", self.rewarm_at)
        w = self._steps(ctx, "warmup", self.warmup)
        rest = _piece(ctx, None if ctx.total is None else ctx.total - at)
        after_ctx = _piece(ctx, None if ctx.total is None else ctx.total - at - w)
        return at, w, rest, after_ctx

    def _check(self, ctx):
        at, w, rest, after_ctx = self._parts(ctx)
        if at < 0:
            raise ScheduleError("rewarm: at must be at step 0 or later")
        # at=0: a run that starts from another's weights (--init) re-warms from before's first value
        # (the LR the finished run ended at, as constant(...)) to after's peak
        if ctx.total is not None and at + w >= ctx.total:
            raise ScheduleError(f"rewarm: at={at:g} + warmup={w:g} steps leaves nothing of a run of {ctx.total:g} steps")
        self.before._validate(ctx)
        self.after._validate(after_ctx)
        if self.shape == "exp" and w > 0 and not (_value_at(self.before, at, ctx) > 0 and _value_at(self.after, 0.0, after_ctx) > 0):
            raise ScheduleError("rewarm: shape='exp' needs before's value at `at` and after's first value to be > 0")

    def _evaluate(self, t, ctx):
        at, w, rest, after_ctx = self._parts(ctx)
        u = t - at
        before, (start,) = evaluate_with(self.before, t, ctx, at)
        if w > 0:
            body, (target,) = evaluate_with(self.after, u - w, after_ctx, 0.0)
            after = with_warmup(u, w, body, target, self.shape, start)
        else:
            after = self.after._evaluate(u, after_ctx)
        return np.where(t < at, before, after)


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
        super().__init__(schedule=schedule, totals=[list(r) if isinstance(r, (list, tuple)) else r for r in totals]
                         if isinstance(totals, (list, tuple)) else totals)
        self.schedule = self._schedule("schedule", schedule)
        if not isinstance(totals, (list, tuple)) or not totals:
            raise ScheduleError("replanned: totals must be a non-empty list of [step, total] or [step, total, mode]")
        records = []
        for i, r in enumerate(totals):
            if not isinstance(r, (list, tuple)) or len(r) not in (2, 3):
                raise ScheduleError(f"replanned: totals[{i}] must be [step, total] or [step, total, mode]; "
                                    f"got {_short_value(r)}")
            step = self._whole(f"totals[{i}] step", r[0], low=0)
            total = self._whole(f"totals[{i}] total", r[1], low=1)
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
        self._maps = self._plan_maps(records)

    def _whole(self, what: str, value, low: int) -> int:
        number = self._number(what, value, low=low)
        if number > MAX_TOTAL_STEPS:
            raise LimitError(f"replanned: {what} is {number:g}; at most {MAX_TOTAL_STEPS} (2**53) steps are counted exactly")
        if not number.is_integer():
            raise ScheduleError(f"replanned: {what} must be a whole number of steps; got {number!r}")
        return int(number)

    @staticmethod
    def _plan_maps(records) -> list[tuple[int, float, float, float, int]]:
        """Per record k: where its steps fall in the plan that is really evaluated.

        A 'stretch' record maps its step t onto the previous plan at
        ``step + (t - step) * (prev_total - step) / (total - step)``; a chain of them is one
        affine map ``a + (t - step) * num / den`` onto the last 'replan' record's plan. Built
        once, in order, from the records up to k only: a record added later never changes
        the numbers of earlier steps. Returns (step, a, num, den, plan total) per record.
        """
        maps = []
        for k, (step, total, mode) in enumerate(records):
            if k == 0 or mode == "replan":
                maps.append((step, float(step), 1.0, 1.0, total))
                continue
            p_step, p_a, p_num, p_den, plan = maps[-1]
            a = p_a + (step - p_step) * p_num / p_den  # the previous map at this record's step: continuous
            ratio = p_num / p_den
            num = (records[k - 1][1] - step) * ratio if ratio != 1.0 else float(records[k - 1][1] - step)
            maps.append((step, a, num, float(total - step), plan))
        return maps

    def _check(self, ctx):
        for total in sorted({total for _, total, _ in self.records}):
            self.schedule._validate(ctx.span(total))

    def _evaluate(self, t, ctx):
        out = np.empty_like(t)
        index = np.searchsorted(np.array([step for step, _, _ in self.records[1:]], dtype=np.float64), t, side="right")
        for k, mine in groups(index, len(self.records)):
            step, a, num, den, plan = self._maps[k]
            u = t[mine]
            if (num, den) != (1.0, 1.0):
                u = a + (u - step) * num / den
            out[mine] = self.schedule._evaluate(u, ctx.span(plan))
        return out

    @property
    def total(self) -> int:
        return self.records[-1][1]
