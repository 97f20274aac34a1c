"""The schedule contract and the pieces every family shares.

A schedule is a pure function of the run's clock. ``_evaluate(t, ctx)`` maps a float64
array of step indices to values; everything else (one step, the whole run, the torch
binding) goes through it, so a value never depends on how it was asked for.
"""

from __future__ import annotations

import abc
import inspect
import math
from typing import Any, ClassVar

import numpy as np

from cadence.errors import ScheduleError
from cadence.time import Context, Duration, Rates, parse_duration

__all__ = ["Schedule", "SHAPES", "WARMUP_SHAPES", "interpolate", "with_warmup"]

# Decay shapes go from a (p=0) to b (p=1).
SHAPES = ("linear", "cosine", "1-sqrt", "exp", "rex")
WARMUP_SHAPES = ("linear", "cosine", "exp")


def interpolate(shape: str, a: float, b, p: np.ndarray) -> np.ndarray:
    """Move from ``a`` at p=0 to ``b`` at p=1 along ``shape``; ``p`` is already in [0, 1]."""
    if shape == "linear":
        return b + (a - b) * (1.0 - p)
    if shape == "cosine":
        return b + (a - b) * (1.0 + np.cos(np.pi * p)) / 2.0
    if shape == "1-sqrt":
        return b + (a - b) * (1.0 - np.sqrt(p))
    if shape == "rex":
        return b + (a - b) * (1.0 - p) / (1.0 - p / 2.0)
    if shape == "exp":
        return a * (b / a) ** p
    raise ScheduleError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")


def with_warmup(t: np.ndarray, warmup: float, values: np.ndarray, target, shape: str = "linear", start: float = 0.0):
    """Replace the first ``warmup`` steps by a ramp from ``start`` to ``target``.

    The linear ramp is ``start + (target - start) * (t / warmup)``: from 0 this is
    ``peak * (i / W)``, the convention of transformers' warmup schedules.
    """
    if warmup <= 0:
        return values
    q = np.clip(t / warmup, 0.0, 1.0)
    if shape == "linear":
        ramp = start + (target - start) * q
    elif shape == "cosine":
        ramp = start + (target - start) * (1.0 - np.cos(np.pi * q)) / 2.0
    elif shape == "exp":
        ramp = start * (target / start) ** q
    else:
        raise ScheduleError(f"unknown warmup shape {shape!r}; allowed: {', '.join(WARMUP_SHAPES)}")
    return np.where(t < warmup, ramp, values)


def _format(value: Any) -> str:
    if isinstance(value, Schedule):
        return value.spec()
    if isinstance(value, Duration):
        return repr(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return repr(value)


class Schedule(abc.ABC):
    """Base class: a pure function of the step, vectorised over numpy arrays.

    Subclasses set ``name`` (the spec name), ``formula`` and ``source`` (for ``cadence list``),
    call ``super().__init__(**params)`` with their constructor arguments as given, validate
    them, and implement ``_evaluate`` and, when the run's length matters, ``_check``.
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    source: ClassVar[str] = ""
    needs_total: ClassVar[bool] = True  # False for open-ended families (step, SGDR, ...)

    def __init__(self, **params: Any) -> None:
        self.params = params

    # -- the contract -----------------------------------------------------------------
    @abc.abstractmethod
    def _evaluate(self, t: np.ndarray, ctx: Context) -> np.ndarray:
        """Values at the float64 step array ``t`` in the run described by ``ctx``."""

    def _check(self, ctx: Context) -> None:
        """Raise ScheduleError if the schedule does not fit the run in ``ctx``."""

    def bind(self, total_steps: int | None = None, rates: Rates | None = None) -> Context:
        """Validate against a run and return its context."""
        if total_steps is not None:
            if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
                raise ScheduleError(f"total_steps must be a positive int; got {total_steps!r}")
            total_steps = int(total_steps)
        elif self.needs_total:
            raise ScheduleError(f"{self.name}() needs the run's total_steps")
        ctx = Context(total_steps, rates or Rates())
        self._check(ctx)
        return ctx

    def evaluate(self, steps, ctx: Context) -> np.ndarray:
        """Values at ``steps`` (any array of step indices) in an already bound context."""
        t = np.asarray(steps, dtype=np.float64)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            out = self._evaluate(t, ctx)
        return np.broadcast_to(np.asarray(out, dtype=np.float64), t.shape).copy()

    def values(self, total_steps: int, rates: Rates | None = None) -> np.ndarray:
        """One value per optimizer step 0..total_steps-1."""
        ctx = self.bind(total_steps, rates)
        return self.evaluate(np.arange(ctx.total, dtype=np.float64), ctx)

    def at(self, step: int, total_steps: int | None = None, rates: Rates | None = None) -> float:
        """The value at one step; equal to ``values(total_steps)[step]`` bit for bit."""
        ctx = self.bind(total_steps, rates)
        return float(self.evaluate(np.array([step], dtype=np.float64), ctx)[0])

    def __call__(self, step, total_steps: int | None = None, rates: Rates | None = None):
        ctx = self.bind(total_steps, rates)
        out = self.evaluate(step, ctx)
        return float(out) if np.ndim(step) == 0 else out

    # -- description --------------------------------------------------------------------
    def spec(self) -> str:
        """The spec string that rebuilds this schedule with ``cadence.schedules.parse``."""
        args = ", ".join(f"{k}={_format(v)}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def __repr__(self) -> str:
        return self.spec()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and other.spec() == self.spec()

    def __hash__(self) -> int:
        return hash(self.spec())

    # -- arithmetic sugar (the combinators live in combinators.py) -----------------------
    def __mul__(self, other):
        from cadence.schedules.combinators import Scale

        return Scale(self, other)

    __rmul__ = __mul__

    @classmethod
    def parameters(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [n for n, p in sig.parameters.items() if n != "self" and p.kind is not p.VAR_KEYWORD]

    # -- validation helpers for subclasses -------------------------------------------------
    def _number(self, what: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ScheduleError(f"{self.name}: {what} must be a number; got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ScheduleError(f"{self.name}: {what} must be finite; got {value!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise ScheduleError(f"{self.name}: {what} must be {'>' if low_open else '>='} {low:g}; got {value:g}")
        if high is not None and (value >= high if high_open else value > high):
            raise ScheduleError(f"{self.name}: {what} must be {'<' if high_open else '<='} {high:g}; got {value:g}")
        return value

    def _duration(self, what: str, value: Any) -> Duration:
        from cadence.errors import DurationError

        try:
            return parse_duration(value, what=f"{self.name}: {what}")
        except DurationError as e:
            raise ScheduleError(str(e)) from None

    def _choice(self, what: str, value: Any, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise ScheduleError(f"{self.name}: {what} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
        return value

    def _schedule(self, what: str, value: Any) -> "Schedule":
        if not isinstance(value, Schedule):
            raise ScheduleError(f"{self.name}: {what} must be a schedule; got {value!r}")
        return value

    def _steps(self, ctx: Context, what: str, duration: Duration) -> float:
        from cadence.errors import DurationError

        try:
            return ctx.steps(duration, what=f"{self.name}: {what}")
        except DurationError as e:
            raise ScheduleError(str(e)) from None

    def _fits(self, ctx: Context, **lengths: float) -> None:
        """Raise if phases (lengths in steps) add up to more than the run."""
        if ctx.total is None:
            return
        used = sum(lengths.values())
        if used > ctx.total:
            parts = " + ".join(f"{k}={v:g}" for k, v in lengths.items())
            raise ScheduleError(f"{self.name}: {parts} steps is longer than the run ({ctx.total:g} steps)")
