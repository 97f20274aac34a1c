"""The time model: units of training progress, durations and the rates that convert them.

A run advances one optimizer step at a time. Progress can also be counted in samples,
tokens, epochs, or as a fraction of the planned run; the rates of a run (samples per
step, tokens per sample, steps per epoch) turn those into steps. A conversion whose rate
is unknown is an error, never a guess.

Duration strings: ``"500st"``, ``"20%"``, ``"0.2dur"``, ``"3ep"``, ``"2Mtok"``, ``"64Ksa"``;
``K``, ``M``, ``B``, ``T`` multiply by 1e3, 1e6, 1e9, 1e12. A plain int is a number of steps.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from cadence.errors import DurationError

__all__ = ["Unit", "Duration", "Rates", "Context", "parse_duration", "parse_count"]


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
_NUMBER = r"(?P<num>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?P<mult>[KkMBGT]?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[a-z%]*)\s*$")
_COUNT = re.compile(rf"^\s*{_NUMBER}\s*$")
_ALLOWED = "an int (steps) or a string like '500st', '20%', '0.2dur', '3ep', '2Mtok', '64Ksa'"


@dataclass(frozen=True)
class Duration:
    """A length of training in one unit. ``FRACTION`` values lie in (0, 1]."""

    value: float
    unit: Unit

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


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def parse_duration(value: "int | str | Duration", what: str = "duration") -> Duration:
    """Parse an int (steps) or a duration string. ``what`` names the parameter in errors."""
    if isinstance(value, Duration):
        return value
    if isinstance(value, bool):
        raise DurationError(f"{what} must be {_ALLOWED}; got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise DurationError(f"{what} must be >= 0 steps; got {value}")
        return Duration(float(value), Unit.STEP)
    if isinstance(value, float):
        if math.isfinite(value) and value >= 0 and value.is_integer():
            return Duration(value, Unit.STEP)
        raise DurationError(
            f"{what} must be {_ALLOWED}; got the float {value!r} (write a fraction as '20%' or '0.2dur')"
        )
    if not isinstance(value, str):
        raise DurationError(f"{what} must be {_ALLOWED}; got {type(value).__name__} {value!r}")
    m = _PATTERN.match(value)
    if not m:
        raise DurationError(f"{what}: cannot read {value!r}; expected {_ALLOWED}")
    number = float(m["num"]) * _MULTIPLIERS[m["mult"]]
    unit_name = m["unit"] or "st"
    if unit_name not in _UNIT_NAMES:
        known = ", ".join(sorted({u.value for u in Unit} | {"%"}))
        raise DurationError(f"{what}: unknown unit {unit_name!r} in {value!r}; known units: {known}")
    unit = _UNIT_NAMES[unit_name]
    if unit_name == "%":
        if m["mult"]:
            raise DurationError(f"{what}: {value!r} mixes a K/M/B/T multiplier with '%'")
        number /= 100.0
    if unit is Unit.FRACTION and not 0.0 < number <= 1.0:
        raise DurationError(f"{what}: fraction {value!r} is outside (0, 1] (that is, above 0% and at most 100%)")
    if unit is Unit.STEP and not number.is_integer():
        raise DurationError(f"{what}: {value!r} is not a whole number of steps")
    if not math.isfinite(number):
        raise DurationError(f"{what}: {value!r} is not finite")
    return Duration(number, unit)


def parse_count(value: "str | int | float", what: str = "count") -> float:
    """A positive count without a unit, with the same K/M/B/T multipliers: ``1e9``, ``350M``, ``2T``."""
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and (m := _COUNT.match(value)):
        number = float(m["num"]) * _MULTIPLIERS[m["mult"]]
    if not math.isfinite(number) or number <= 0:
        raise DurationError(f"{what} must be a positive number such as 1e9, 350M, 1.5B or 2T; got {value!r}")
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
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
                raise DurationError(f"{name} must be a positive finite number; got {v!r}")

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
        return amount / self.per_step(unit, what)

    def from_steps(self, steps, unit: Unit, what: str = "conversion"):
        """Steps (a number or numpy array) converted to ``unit``."""
        return steps * self.per_step(unit, what)


@dataclass(frozen=True)
class Context:
    """What a schedule needs to know about the run it is evaluated in."""

    total: float | None = None
    rates: Rates = Rates()

    def steps(self, duration: Duration, what: str = "duration") -> float:
        return duration.to_steps(self.total, self.rates, what)

    def span(self, total: float | None) -> "Context":
        """The same run seen by a piece that lasts ``total`` steps."""
        return Context(total, self.rates)
