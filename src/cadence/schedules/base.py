"""The schedule contract and the pieces every family shares.

A schedule is a pure function of the run's clock. ``_evaluate(t, ctx)`` maps a float64
array of step indices to values; everything else (one step, the whole run, a range of it
in chunks, the torch binding) goes through it, so a value never depends on how it was
asked for.

Robustness contract (docs/schedules.md, "Limits" and "Values"): every public method raises
only :mod:`cadence.errors` types for bad input; a schedule gives finite values >= 0 at
every step it is asked for, or the call raises ScheduleError naming the step; work
is linear in the number of values and in the size of the spec, and the limits in
:mod:`cadence.schedules.limits` bound the rest.
"""

from __future__ import annotations

import abc
import inspect
import math
from typing import Any, ClassVar

import numpy as np

from cadence.errors import CadenceError, DurationError, LimitError, ScheduleError
from cadence.schedules import registry
from cadence.schedules.limits import CHUNK, MAX_DEPTH, MAX_ITEMS, MAX_TOTAL_STEPS, MAX_VALUES, SUMMARY_POINTS
from cadence.time import Context, Duration, Rates, Unit, parse_duration

__all__ = ["Schedule", "SHAPES", "WARMUP_SHAPES", "interpolate", "with_warmup", "evaluate_with"]

_BLOCK = 4096  # steps evaluated at once by value(): one numpy call per block keeps a step cheap
_FIRST_BAD_SCAN = 2**20  # bind() looks for the first bad step among this many when a probe fails

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


def evaluate_with(schedule: "Schedule", t: np.ndarray, ctx: Context, *points: float):
    """``schedule`` at the steps ``t`` and at a few more ``points``, in one call.

    A combinator that needs its child's value at an anchor (where a warmup ramps to, where
    a decay starts) asks for it together with the child's values: one call per level keeps
    nested combinators linear in their depth; two calls per level would double per level.
    Returns (values at t, values at points).
    """
    n = t.shape[0]
    both = np.broadcast_to(schedule._evaluate(np.concatenate([t, np.asarray(points, dtype=np.float64)]), ctx),
                           (n + len(points),))
    return both[:n], both[n:]


def groups(index: np.ndarray, count: int):
    """(k, positions of ``index == k``) for each k in range(count) that occurs, in O(n log n + count)."""
    order = np.argsort(index, kind="stable")
    edges = np.searchsorted(index[order], np.arange(count + 1))
    for k in range(count):
        if edges[k + 1] > edges[k]:
            yield k, order[edges[k]:edges[k + 1]]


def short(text: str, limit: int = 80) -> str:
    """A spec cut to a readable length for a one-line message (a spec may be 100,000 characters)."""
    return text if len(text) <= limit else f"{text[:limit - 4]} ..."


def _format(value: Any) -> str:
    if isinstance(value, Schedule):
        return value.spec()
    if isinstance(value, Duration):
        return repr(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return repr(value.item())  # 3, not np.int64(3): the spec must parse back
    return repr(value)


def _children(value: Any):
    if isinstance(value, Schedule):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, Schedule):
                yield v


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class Schedule(abc.ABC):
    """Base class: a pure function of the step, vectorised over numpy arrays.

    Subclasses set ``name`` (the spec name), ``formula`` and ``source`` (for ``cadence list``),
    call ``super().__init__(**params)`` with their constructor arguments as given, validate
    them, and implement ``_evaluate`` and, when the run's length matters, ``_check``.

    Every value parameter of a built-in schedule is >= 0 (``clip``'s floor and ceiling and
    ``scale``'s factor included), so every built-in schedule is >= 0 at every step.
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    source: ClassVar[str] = ""
    needs_total: ClassVar[bool] = True  # False for open-ended families (step, SGDR, ...)
    stateful: ClassVar[bool] = False  # True for controllers: their value depends on what they observed
    monitors: tuple[str, ...] = ()  # signals update() reads (a controller sets its own)
    inputs: tuple[str, ...] = ()  # other channels whose values value() reads

    def __init__(self, **params: Any) -> None:
        self.params = params
        for key, value in params.items():
            if isinstance(value, (list, tuple)) and len(value) > MAX_ITEMS:
                raise LimitError(f"{self.name}: {key} has {len(value)} entries; at most {MAX_ITEMS} are allowed")
        self.depth = 1 + max((c.depth for v in params.values() for c in _children(v)), default=0)
        if self.depth > MAX_DEPTH:
            raise LimitError(f"{self.name}: schedules are nested {self.depth} deep; at most {MAX_DEPTH} levels are allowed")

    # -- the contract -----------------------------------------------------------------
    @abc.abstractmethod
    def _evaluate(self, t: np.ndarray, ctx: Context) -> np.ndarray:
        """Values at the 1-D float64 step array ``t`` in the run described by ``ctx``.

        May return anything that broadcasts to ``t.shape``. ``t`` may hold negative
        positions (a piece's clock before it starts); values there are discarded by the
        caller. Evaluate each child once per call (see :func:`evaluate_with`).
        """

    def _check(self, ctx: Context) -> None:
        """Raise ScheduleError if the schedule does not fit the run in ``ctx``."""

    def _validate(self, ctx: Context) -> None:
        """``_check``, once per context: a schedule is immutable, so a context it fitted once it
        always fits. Combinators check children through this; without it a child checked
        against two plans (``replanned``) would be checked 2**depth times when nested."""
        checked = self.__dict__.setdefault("_checked", set())
        if ctx in checked:
            return
        self._check(ctx)
        if len(checked) < 64:
            checked.add(ctx)

    def bind(self, total_steps: int | None = None, rates: Rates | None = None) -> Context:
        """Validate against a run and return its context.

        Besides the run's shape, the values at step 0, the last step and seven steps between
        are computed: a schedule that overflows, goes NaN or negative there is refused here,
        not during training.
        """
        if total_steps is not None:
            if not _is_int(total_steps) or total_steps < 1:
                raise ScheduleError(f"total_steps must be a positive int; got {_short_value(total_steps)}",
                                    field="total_steps")
            if total_steps > MAX_TOTAL_STEPS:
                raise LimitError(f"total_steps is {_short_value(total_steps)}; at most {MAX_TOTAL_STEPS} (2**53) steps "
                                 "are counted exactly", field="total_steps")
            total_steps = int(total_steps)
        elif self.needs_total:
            raise ScheduleError(f"{self.name}() needs the run's total_steps", field="total_steps")
        if rates is not None and not isinstance(rates, Rates):
            raise ScheduleError(f"rates must be a cadence.time.Rates; got {type(rates).__name__}")
        return self.check(Context(total_steps, rates or Rates()))

    def check(self, ctx: Context) -> Context:
        """Validate against a run described by ``ctx`` (any clock unit) and return it; see :meth:`bind`."""
        if ctx.total is None and self.needs_total:
            raise ScheduleError(f"{self.name}() needs the run's length (a horizon)", field="horizon")
        if ctx.total is not None and not 0 < ctx.total <= MAX_TOTAL_STEPS:
            raise LimitError(f"{self.name}(): a run of {_short_value(ctx.total)} is outside (0, {MAX_TOTAL_STEPS}] "
                             "(2**53, the most counted exactly)", field="horizon")
        total_steps = None if ctx.total is None else int(math.ceil(ctx.total))
        try:
            self._validate(ctx)
        except (ArithmeticError, TypeError, ValueError) as e:  # a registered subclass's own check
            if isinstance(e, CadenceError):
                raise
            raise ScheduleError(f"{short(self.spec())} cannot be checked: "
                                f"{type(e).__name__}: {short(str(e), 200)}") from None
        if total_steps is not None:
            probes = np.unique(np.round(np.linspace(0, total_steps - 1, 9)))
            try:
                self.evaluate(probes, ctx)
            except ScheduleError:
                # Name the first bad step, not the probe that found it, when that is cheap to find.
                for lo, hi in zip(probes, probes[1:]):
                    if hi > _FIRST_BAD_SCAN:
                        break
                    self.evaluate(np.arange(lo, hi + 1), ctx)
                raise
        return ctx

    def evaluate(self, steps, ctx: Context) -> np.ndarray:
        """Values at ``steps`` (any array of step indices >= 0) in a context from :meth:`bind`.

        Long arrays are evaluated ``CHUNK`` steps at a time, so memory beyond the result
        stays bounded. Raises ScheduleError at the first step whose value is not finite or
        is negative.
        """
        try:
            t = np.asarray(steps, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise ScheduleError(f"steps must be numbers; got {_short_value(steps)}") from None
        if t.size > MAX_VALUES:
            raise LimitError(f"{t.size} steps asked for at once; at most {MAX_VALUES} values are made in one call "
                             "(use chunks() for longer ranges)")
        flat = t.ravel()
        bad = ~((flat >= 0) & (flat <= MAX_TOTAL_STEPS))  # also catches NaN
        if bad.any():
            raise ScheduleError(f"steps must lie in [0, {MAX_TOTAL_STEPS}]; got {float(flat[np.argmax(bad)])!r}")
        out = np.empty_like(flat)
        for lo in range(0, flat.size, CHUNK):
            out[lo:lo + CHUNK] = self._evaluate_checked(flat[lo:lo + CHUNK], ctx)
        return out.reshape(t.shape)

    def _evaluate_checked(self, t: np.ndarray, ctx: Context) -> np.ndarray:
        with np.errstate(all="ignore"):
            try:
                out = np.broadcast_to(np.asarray(self._evaluate(t, ctx), dtype=np.float64), t.shape)
            except (ArithmeticError, ValueError, TypeError) as e:
                if isinstance(e, CadenceError):
                    raise
                raise ScheduleError(f"{short(self.spec())} cannot be evaluated: "
                                    f"{type(e).__name__}: {short(str(e), 200)}") from None
        bad = ~((out >= 0) & (out < np.inf))  # NaN fails both
        if bad.any():
            i = int(np.argmax(bad))
            v = float(out[i])
            rule = "finite" if not math.isfinite(v) else ">= 0"
            raise ScheduleError(f"{short(self.spec())} gives {v!r} at step {_step_text(t[i])}; a schedule's values "
                                f"must be {rule} (change the parameter that makes it so, or shorten the run)")
        return out

    def values(self, total_steps: int, rates: Rates | None = None, *, start: int = 0, stop: int | None = None) -> np.ndarray:
        """One value per optimizer step ``start..stop-1`` (default: the whole run, 0..total_steps-1).

        Equal, bit for bit, to the same steps of the whole run. At most ``MAX_VALUES`` values
        per call; :meth:`chunks` streams any range.
        """
        ctx = self.bind(total_steps, rates)
        start, stop = self._range(ctx, start, stop)
        if stop - start > MAX_VALUES:
            field = "total_steps" if (start, stop) == (0, ctx.total) else "stop"
            raise LimitError(f"{stop - start} values asked for; at most {MAX_VALUES} (2**26) are made in one call "
                             "(stream longer runs with chunks())", field=field)
        out = np.empty(stop - start)  # filled piece by piece: no second full-size array of step indices
        for lo in range(start, stop, CHUNK):
            hi = min(lo + CHUNK, stop)
            out[lo - start:hi - start] = self._evaluate_checked(np.arange(lo, hi, dtype=np.float64), ctx)
        return out

    def chunks(self, total_steps: int, rates: Rates | None = None, *, start: int = 0, stop: int | None = None,
               size: int = CHUNK):
        """The values of steps ``start..stop-1`` as ``(first_step, array)`` pieces of ``size`` steps.

        Same numbers as :meth:`values`; memory stays at one piece whatever the range. The run
        is validated here, before the first piece is made.
        """
        ctx = self.bind(total_steps, rates)
        start, stop = self._range(ctx, start, stop)
        if not _is_int(size) or not 1 <= size <= MAX_VALUES:
            raise ScheduleError(f"size must be an int in [1, {MAX_VALUES}]; got {_short_value(size)}")
        size = int(size)

        def pieces():
            for lo in range(start, stop, size):
                hi = min(lo + size, stop)
                yield lo, self.evaluate(np.arange(lo, hi, dtype=np.float64), ctx)
        return pieces()

    def _range(self, ctx: Context, start, stop) -> tuple[int, int]:
        if stop is None:
            if ctx.total is None:
                raise ScheduleError(f"{self.name}(): give stop (or total_steps) to say which steps", field="stop")
            stop = ctx.total
        for name, v in (("start", start), ("stop", stop)):
            if not _is_int(v) or not 0 <= v <= MAX_TOTAL_STEPS:
                raise ScheduleError(f"{name} must be an int in [0, {MAX_TOTAL_STEPS}]; got {_short_value(v)}", field=name)
        if stop < start:
            raise ScheduleError(f"stop ({stop}) is before start ({start})", field="stop")
        return int(start), int(stop)

    def value_at(self, step: int, total_steps: int | None = None, rates: Rates | None = None) -> float:
        """The value at one step; equal to ``values(total_steps)[step]`` bit for bit."""
        ctx = self.bind(total_steps, rates)
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, float, np.integer, np.floating)):
            raise ScheduleError(f"step must be a number >= 0; got {_short_value(step)}", field="step")
        return float(self.evaluate(np.array([_finite_float(step)], dtype=np.float64), ctx)[0])

    def at(self, step: int, total_steps: int | None = None, rates: Rates | None = None) -> float:
        """Alias of :meth:`value_at`, kept for code written before 0.2 (``join``, ``decay_from``
        and ``rewarm`` used to hide it behind their ``at`` parameter)."""
        return self.value_at(step, total_steps, rates)

    def __call__(self, step, total_steps: int | None = None, rates: Rates | None = None):
        ctx = self.bind(total_steps, rates)
        out = self.evaluate(step, ctx)
        return float(out) if np.ndim(step) == 0 else out

    def summary(self, total_steps: int, rates: Rates | None = None) -> dict[str, Any]:
        """first, last, max (and its step) and mean of the run, in bounded memory.

        Exact for runs of at most ``MAX_VALUES`` steps (streamed in chunks); a longer run is
        summarised from ``SUMMARY_POINTS`` evenly spaced steps, and ``sampled`` says how many.
        """
        if total_steps is None:
            raise ScheduleError("summary() needs the run's total_steps", field="total_steps")
        ctx = self.bind(total_steps, rates)
        total = ctx.total
        if total <= MAX_VALUES:
            best, best_at, acc = -np.inf, 0, 0.0
            for lo, v in self.chunks(total, rates):
                i = int(np.argmax(v))
                if v[i] > best:
                    best, best_at = float(v[i]), lo + i
                acc += float(np.sum(v / total))  # each term <= max / total: the sum cannot overflow
            ends = self.evaluate(np.array([0.0, total - 1.0]), ctx)
            return {"first": float(ends[0]), "last": float(ends[1]), "max": best, "argmax": best_at,
                    "mean": acc, "sampled": None}
        steps = np.unique(np.round(np.linspace(0, total - 1, SUMMARY_POINTS)))
        v = self.evaluate(steps, ctx)
        i = int(np.argmax(v))
        return {"first": float(v[0]), "last": float(v[-1]), "max": float(v[i]), "argmax": int(steps[i]),
                "mean": float(np.sum(v / v.size)), "sampled": int(steps.size)}

    # -- the controller protocol (docs/plans.md) --------------------------------------------
    # A schedule is a controller without state: init() is None, update() changes nothing, and
    # value() is the schedule at the clock's position. Controllers (cadence.controllers)
    # override all three; their state is plain data.
    def init(self) -> Any:
        """The state before any observation: plain, JSON-safe data (None for a schedule)."""
        return None

    def update(self, state: Any, clock, signals: dict) -> Any:
        """The state after observing ``signals`` at ``clock`` (the clock before the step they
        came from). A schedule has nothing to update."""
        return state

    diagnostic_names: tuple[str, ...] = ()  # what diagnose() reports about a controller's state

    def diagnose(self, state: Any) -> dict[str, float | None]:
        """Numbers that say what a controller's state is doing (logged by the runner); none for a schedule."""
        return {}

    def check_state(self, state: Any) -> str | None:
        """Why ``state`` (of the right shape, from a checkpoint) is not one this controller can
        be in, or None when it can. A schedule has no state to check."""
        return None

    def value(self, state: Any, clock, inputs: "dict[str, float] | None" = None) -> float:
        """The value for the step about to run at ``clock`` (a :class:`cadence.time.Clock`)."""
        return self._value_on(clock.context, clock.position)

    def _value_on(self, ctx: Context, position: float) -> float:
        """The value at ``position`` of a clock in ``ctx``, bit-identical to :meth:`evaluate`.

        On a step clock the values of the next ``_BLOCK`` steps are computed in one call and
        kept (a memo of a pure function), never across the horizon: a value past its end is
        never computed for a step of the run.
        """
        memo = self.__dict__.get("_memo")
        if memo is not None and memo[1] <= position < memo[2] and (memo[0] is ctx or memo[0] == ctx):
            return memo[3][int(position - memo[1])]
        if ctx.unit is not Unit.STEP or position != int(position):
            return float(self.evaluate(np.array([float(position)]), ctx)[0])
        lo = int(position) - int(position) % _BLOCK
        hi = lo + _BLOCK
        if ctx.total is not None:
            total = int(math.ceil(ctx.total))
            lo, hi = (lo, min(hi, total)) if position < total else (max(lo, total), hi)
        hi = min(hi, MAX_TOTAL_STEPS + 1)
        try:
            values = self.evaluate(np.arange(lo, hi, dtype=np.float64), ctx)
        except CadenceError:
            # a bad value ahead in the block must not refuse this step: compute it alone
            lo, hi = int(position), int(position) + 1
            values = self.evaluate(np.array([float(position)]), ctx)
        values = values.tolist()  # Python floats: indexing a list is cheaper than a numpy array, every step
        self.__dict__["_memo"] = (ctx, lo, hi, values)
        return values[int(position) - lo]

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
        scale = registry.lookup("scale")  # combinators.Scale, found by name: base never imports combinators
        return scale(self, other)

    __rmul__ = __mul__

    @classmethod
    def parameters(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [n for n, p in sig.parameters.items() if n != "self" and p.kind is not p.VAR_KEYWORD]

    # -- validation helpers for subclasses -------------------------------------------------
    def _number(self, what: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ScheduleError(f"{self.name}: {what} must be a number; got {_short_value(value)}")
        value = _finite_float(value)
        if not math.isfinite(value):
            raise ScheduleError(f"{self.name}: {what} must be finite; got {value!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise ScheduleError(f"{self.name}: {what} must be {'>' if low_open else '>='} {low:g}; got {value:g}")
        if high is not None and (value >= high if high_open else value > high):
            raise ScheduleError(f"{self.name}: {what} must be {'<' if high_open else '<='} {high:g}; got {value:g}")
        return value

    def _duration(self, what: str, value: Any) -> Duration:
        try:
            return parse_duration(value, what=f"{self.name}: {what}")
        except DurationError as e:
            raise ScheduleError(str(e)) from None

    def _choice(self, what: str, value: Any, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ScheduleError(f"{self.name}: {what} must be one of {', '.join(map(repr, allowed))}; "
                                f"got {_short_value(value)}")
        return value

    def _schedule(self, what: str, value: Any) -> "Schedule":
        if not isinstance(value, Schedule):
            raise ScheduleError(f"{self.name}: {what} must be a schedule; got {_short_value(value)}")
        if value.stateful and not self.stateful:
            raise ScheduleError(f"{self.name}: {what} is {value.name}(), a controller: it keeps state, so it can only "
                                f"be wrapped by another controller; put it outside, as in {value.name}({self.name}(...))")
        return value

    def _steps(self, ctx: Context, what: str, duration: Duration) -> float:
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


def _short_value(value: Any, limit: int = 60) -> str:
    """repr of a user's value, one readable piece of it (ints too long to print as text included)."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python converts to text
        return f"an int of {value.bit_length()} bits"
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-3:]} ({len(text)} characters)"


def _finite_float(value: Any) -> float:
    """float(value); an int too large for a float is inf (float() would raise OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _step_text(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else repr(float(t))
