"""The time model: units of training progress, durations and the rates that convert them.

A run advances one optimizer step at a time. Progress can also be counted in samples,
tokens, epochs, or as a fraction of the planned run; the rates of a run (samples per
step, tokens per sample, steps per epoch) turn those into steps. A conversion whose rate
is unknown is an error, never a guess.

Duration strings: ``"500st"``, ``"20%"``, ``"0.2dur"``, ``"3ep"``, ``"2Mtok"``, ``"64Ksa"``;
``K``, ``M``, ``B``, ``T`` multiply by 1e3, 1e6, 1e9, 1e12. A plain int is a number of steps.

Steps are counted in float64, which holds every whole number up to ``MAX_TOTAL_STEPS``
(2**53) exactly; a run, a step or a duration in steps beyond it is refused (LimitError).
The duration grammar is matched by a regular expression without nested or adjacent
repetition, so reading a string takes time linear in its length.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from dataclasses import dataclass

import numpy as np

from cadence.errors import DurationError, LimitError

__all__ = ["Unit", "Duration", "Rates", "Context", "Clock", "PRIMARY_UNITS", "parse_duration", "parse_count", "MAX_TOTAL_STEPS"]

MAX_TOTAL_STEPS = 2**53  # the largest step count float64 holds exactly, with every whole number below it


class Unit(enum.Enum):
    STEP = "st"
    SAMPLE = "sa"
    TOKEN = "tok"
    EPOCH = "ep"
    FRACTION = "dur"


_UNIT_NAMES = {
    "st": Unit.STEP, "step": Unit.STEP, "steps": Unit.STEP, "ba": Unit.STEP,
    "sa": Unit.SAMPLE, "sample": Unit.SAMPLE, "samples": Unit.SAMPLE,
    "tok": Unit.TOKEN, "token": Unit.TOKEN, "tokens": Unit.TOKEN,
    "ep": Unit.EPOCH, "epoch": Unit.EPOCH, "epochs": Unit.EPOCH,
    "dur": Unit.FRACTION, "%": Unit.FRACTION,
}
_MULTIPLIERS = {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
# Matched against the stripped string. No two repetitions can share a character (the old
# ``[0-9]*\.?[0-9]+`` and ``\s*[KkMBGT]?\s*`` could, which made a long string take cubic time).
_NUMBER = r"(?P<num>(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?:\s*(?P<mult>[KkMBGT]))?"
_PATTERN = re.compile(rf"{_NUMBER}\s*(?P<unit>[a-z%]*)")
_COUNT = re.compile(_NUMBER)
_ALLOWED = "an int (steps) or a string like '500st', '20%', '0.2dur', '3ep', '2Mtok', '64Ksa'"


@dataclass(frozen=True)
class Duration:
    """A length of training in one unit. ``FRACTION`` values lie in (0, 1]."""

    value: float
    unit: Unit

    def __post_init__(self) -> None:
        if not isinstance(self.unit, Unit):
            raise DurationError(f"a Duration's unit must be a cadence.time.Unit; got {_short(self.unit)}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float, np.integer, np.floating)) \
                or not 0 <= _float(self.value) < math.inf:
            raise DurationError(f"a Duration's value must be a finite number >= 0; got {_short(self.value)}")
        if self.unit is Unit.FRACTION and not 0 < self.value <= 1:
            raise DurationError(f"a fraction of the run must lie in (0, 1]; got {_short(self.value)}")
        if self.unit is Unit.STEP and self.value > MAX_TOTAL_STEPS:
            raise LimitError(f"a duration of {_short(self.value)} steps is more than {MAX_TOTAL_STEPS} (2**53) steps")

    def __str__(self) -> str:
        if self.unit is Unit.STEP:
            return str(int(self.value))
        return f"{_fmt(self.value)}{self.unit.value}"

    def to_steps(self, total: float | None = None, rates: "Rates | None" = None, what: str = "duration") -> float:
        """This duration in optimizer steps (may be fractional for samples and tokens)."""
        if self.unit is Unit.STEP:
            return float(self.value)
        if self.unit is Unit.FRACTION:
            if total is None:
                raise DurationError(f"{what}={self} is a fraction of the run, but the run's total length is not known here")
            return self.value * float(total)
        rates = rates or Rates()
        return rates.to_steps(self.value, self.unit, what=f"{what}={self}")


def _check_steps(number: float, what: str, value) -> None:
    if number > MAX_TOTAL_STEPS:
        raise LimitError(f"{what}: {_short(value)} is more than {MAX_TOTAL_STEPS} steps (2**53, the most cadence counts exactly)")


def _float(value) -> float:
    """float(value), with ints too large for a float as infinity (float() raises OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def parse_duration(value: "int | str | Duration", what: str = "duration") -> Duration:
    """Parse an int (steps) or a duration string. ``what`` names the parameter in errors."""
    if isinstance(value, Duration):
        return value
    if isinstance(value, bool):
        raise DurationError(f"{what} must be {_ALLOWED}; got {_short(value)}")
    if isinstance(value, (int, np.integer)):
        value = int(value)
        if value < 0:
            raise DurationError(f"{what} must be >= 0 steps; got {_short(value)}")
        _check_steps(value, what, value)
        return Duration(float(value), Unit.STEP)
    if isinstance(value, float):
        if math.isfinite(value) and value >= 0 and value.is_integer():
            _check_steps(value, what, value)
            return Duration(value, Unit.STEP)
        raise DurationError(
            f"{what} must be {_ALLOWED}; got the float {_short(value)} (write a fraction as '20%' or '0.2dur')"
        )
    if not isinstance(value, str):
        raise DurationError(f"{what} must be {_ALLOWED}; got {type(value).__name__} {_short(value)}")
    m = _PATTERN.fullmatch(value.strip())
    if not m:
        raise DurationError(f"{what}: cannot read {_short(value)}; expected {_ALLOWED}")
    number = float(m["num"]) * _MULTIPLIERS[m["mult"] or ""]
    unit_name = m["unit"] or "st"
    if unit_name not in _UNIT_NAMES:
        known = ", ".join(sorted({u.value for u in Unit} | {"%"}))
        raise DurationError(f"{what}: unknown unit {_short(unit_name)} in {_short(value)}; known units: {known}")
    unit = _UNIT_NAMES[unit_name]
    if not math.isfinite(number):
        raise DurationError(f"{what}: {_short(value)} is not finite")
    if unit_name == "%":
        if m["mult"]:
            raise DurationError(f"{what}: {_short(value)} mixes a K/M/B/T multiplier with '%'")
        number /= 100.0
    if unit is Unit.FRACTION and not 0.0 < number <= 1.0:
        raise DurationError(f"{what}: fraction {_short(value)} is outside (0, 1] (that is, above 0% and at most 100%)")
    if unit is Unit.STEP:
        if not number.is_integer():
            raise DurationError(f"{what}: {_short(value)} is not a whole number of steps")
        _check_steps(number, what, value)
    return Duration(number, unit)


def _short(value, limit: int = 60) -> str:
    """repr of a user's value, cut to one readable piece (a duration string may be very long)."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python converts to text
        return f"an int of {value.bit_length()} bits"
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-3:]} ({len(text)} characters)"


def parse_count(value: "str | int | float", what: str = "count") -> float:
    """A positive count without a unit, with the same K/M/B/T multipliers: ``1e9``, ``350M``, ``2T``."""
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = _float(value)
    elif isinstance(value, str) and (m := _COUNT.fullmatch(value.strip())):
        number = float(m["num"]) * _MULTIPLIERS[m["mult"] or ""]
    if not math.isfinite(number) or number <= 0:
        raise DurationError(f"{what} must be a positive number such as 1e9, 350M, 1.5B or 2T; got {_short(value)}")
    return number


@dataclass(frozen=True)
class Rates:
    """How a run's steps relate to samples, tokens and epochs. Unknown rates stay None."""

    samples_per_step: float | None = None
    tokens_per_sample: float | None = None
    steps_per_epoch: float | None = None

    def __post_init__(self) -> None:
        for name in ("samples_per_step", "tokens_per_sample", "steps_per_epoch"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
                                  or not 0 < _float(v) < math.inf):
                raise DurationError(f"{name} must be a positive finite number; got {_short(v)}", field=name)
        if self.tokens_per_step is not None and not 0 < self.tokens_per_step < math.inf:
            raise DurationError(f"samples_per_step * tokens_per_sample must be a positive finite number of tokens per "
                                f"step; {self.samples_per_step!r} * {self.tokens_per_sample!r} gives {self.tokens_per_step!r}",
                                field="tokens_per_sample")
        for name in ("samples_per_step", "tokens_per_sample", "steps_per_epoch"):
            v = getattr(self, name)
            if v is not None and _float(v) > MAX_TOTAL_STEPS:
                raise LimitError(f"{name} is {_short(v)}; at most {MAX_TOTAL_STEPS} (2**53)", field=name)
        if self.steps_per_epoch is not None and not 1.0 / float(self.steps_per_epoch) > 0:
            raise DurationError(f"steps_per_epoch is too large to convert epochs; got {self.steps_per_epoch!r}",
                                field="steps_per_epoch")

    @property
    def tokens_per_step(self) -> float | None:
        if self.samples_per_step is None or self.tokens_per_sample is None:
            return None
        return self.samples_per_step * self.tokens_per_sample

    def per_step(self, unit: Unit, what: str = "conversion") -> float:
        """How many ``unit`` one optimizer step is worth."""
        if unit is Unit.STEP:
            return 1.0
        if unit is Unit.SAMPLE:
            if self.samples_per_step is None:
                raise DurationError(f"{what} is in samples, but samples_per_step is not known for this run")
            return float(self.samples_per_step)
        if unit is Unit.TOKEN:
            if self.tokens_per_step is None:
                missing = " and ".join(
                    n for n in ("samples_per_step", "tokens_per_sample") if getattr(self, n) is None
                )
                verb = "are" if " and " in missing else "is"
                raise DurationError(f"{what} is in tokens, but {missing} {verb} not known for this run")
            return float(self.tokens_per_step)
        if unit is Unit.EPOCH:
            if self.steps_per_epoch is None:
                raise DurationError(f"{what} is in epochs, but steps_per_epoch is not known for this run")
            return 1.0 / float(self.steps_per_epoch)
        raise DurationError(f"{what}: a fraction of the run has no per-step rate")

    def to_steps(self, amount: float, unit: Unit, what: str = "conversion") -> float:
        steps = amount / self.per_step(unit, what)
        if not math.isfinite(steps):
            raise DurationError(f"{what} is too many steps to count at this run's rates ({steps!r})")
        return steps

    def from_steps(self, steps, unit: Unit, what: str = "conversion"):
        """Steps (a number or numpy array) converted to ``unit``."""
        return steps * self.per_step(unit, what)


@dataclass(frozen=True)
class Context:
    """What a schedule needs to know about the run it is evaluated in.

    A schedule's clock counts ``unit``: optimizer steps by default, or samples or tokens
    on a plan whose primary unit is one of those. ``total`` is the horizon in that unit and
    ``rates`` say what one unit is worth (on a token clock ``rates.per_step(Unit.TOKEN)``
    is 1). ``step_length`` is how many units one optimizer step is, when that is fixed
    (a constant batch); when the batch changes it is None and a duration in optimizer
    steps cannot be placed on the clock.
    """

    total: float | None = None
    rates: Rates = Rates()
    unit: Unit = Unit.STEP
    step_length: float | None = None
    batch_moves: bool = False  # a batch channel changes the batch: samples per step are not fixed

    def steps(self, duration: Duration, what: str = "duration") -> float:
        """``duration`` in this context's unit (optimizer steps unless the clock counts otherwise)."""
        if self.batch_moves and self.unit is Unit.STEP and duration.value != 0 \
                and duration.unit in (Unit.SAMPLE, Unit.TOKEN, Unit.EPOCH):
            raise DurationError(
                f"{what}={duration} is in {duration.unit.name.lower()}s, but this plan counts optimizer steps and "
                "its batch size changes, so a step holds no fixed number of them; put the plan on a sample or token "
                "clock (unit), or give it in steps or as a fraction of the run ('10%')")
        if self.unit is Unit.STEP or duration.unit is not Unit.STEP or duration.value == 0:
            return duration.to_steps(self.total, self.rates, what)
        if self.step_length is None:
            name = "tokens" if self.unit is Unit.TOKEN else "samples"
            raise DurationError(
                f"{what}={duration} is in optimizer steps, but this plan's clock counts {name} and its batch size "
                f"changes, so a step has no fixed length in {name}; give it in {name} ('2Mtok', '64Ksa') or as a "
                "fraction of the run ('10%')")
        return float(duration.value) * self.step_length

    def span(self, total: float | None) -> "Context":
        """The same run seen by a piece that lasts ``total`` units."""
        return Context(total, self.rates, self.unit, self.step_length, self.batch_moves)


PRIMARY_UNITS = (Unit.STEP, Unit.SAMPLE, Unit.TOKEN)
_COUNTERS = ("step", "samples", "tokens", "skipped")


@dataclass(frozen=True)
class Clock:
    """Where a run is: cumulative optimizer steps, samples and tokens, and skipped steps.

    ``unit`` is the plan's primary unit and ``position`` the clock read in it; ``horizon``
    is the run's length in that unit (None: open-ended). ``rates`` are the run's rates per
    *unit* (see :class:`Context`); ``samples_per_epoch`` turns samples into ``epoch``
    when the data says how large an epoch is.

    A clock never changes: :meth:`advanced` returns the clock after one more optimizer
    step, with the samples and tokens that step really used. A skipped step (a guard
    refused it) is :meth:`skipped_one`: it counts in ``skipped`` and moves nothing else,
    so every value stays where it was.
    """

    unit: Unit = Unit.STEP
    horizon: float | None = None
    rates: Rates = Rates()
    step_length: float | None = None
    batch_moves: bool = False
    samples_per_epoch: float | None = None
    step: int = 0
    samples: int = 0
    tokens: int = 0
    skipped: int = 0

    def __post_init__(self) -> None:
        if self.unit not in PRIMARY_UNITS:
            raise DurationError(f"a clock counts steps, samples or tokens; got {_short(self.unit)}", field="unit")
        for name in _COUNTERS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= MAX_TOTAL_STEPS:
                raise DurationError(f"the clock's {name} must be a whole number from 0 to 2**53; got {_short(v)}",
                                    field=name)
        object.__setattr__(self, "context", Context(self.horizon, self.rates, self.unit, self.step_length,
                                                    self.batch_moves))

    @property
    def position(self) -> int:
        """The clock read in its unit: the number of units before the step about to run."""
        return self.step if self.unit is Unit.STEP else (self.samples if self.unit is Unit.SAMPLE else self.tokens)

    @property
    def epoch(self) -> float | None:
        return None if not self.samples_per_epoch else self.samples / self.samples_per_epoch

    @property
    def done(self) -> bool:
        """The clock has reached the horizon (never, when the run is open-ended)."""
        return self.horizon is not None and self.position >= self.horizon

    def advanced(self, samples: int = 0, tokens: int = 0) -> "Clock":
        """The clock after one optimizer step that used ``samples`` and ``tokens`` (whole numbers >= 0).

        The hot path of every training step: the new clock shares this one's frame (and its
        ``context`` object) and is not validated again.
        """
        return self.advanced_to(self.step + 1, self.samples + samples, self.tokens + tokens, self.skipped)

    def advanced_to(self, step: int, samples: int, tokens: int, skipped: int) -> "Clock":
        """This clock's frame with other counters (whole numbers >= 0, not checked again)."""
        new = object.__new__(Clock)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields["step"], fields["samples"], fields["tokens"], fields["skipped"] = step, samples, tokens, skipped
        return new

    def skipped_one(self) -> "Clock":
        """The clock after a skipped step: ``skipped`` + 1, every other counter as it was."""
        return dataclasses.replace(self, skipped=self.skipped + 1)

    def counters(self) -> dict:
        """The counters as plain data (what a checkpoint keeps)."""
        return {name: int(getattr(self, name)) for name in _COUNTERS}

    def with_counters(self, counters) -> "Clock":
        """This clock's frame with counters from :meth:`counters` (validated)."""
        if not isinstance(counters, dict) or set(counters) != set(_COUNTERS):
            raise DurationError(f"clock counters must be an object with exactly {', '.join(_COUNTERS)}; "
                                f"got {_short(counters)}", field="clock")
        return dataclasses.replace(self, **counters)
