"""``mix(code=0.5, prose=linear(...), ...)``: a mixture over domains from a weight or a schedule per domain.

The ``mixture`` channel's value is a weight per domain. Written in a plan file as an object
(``mixture: {code: 0.5, prose: "linear(peak=0.2, final=0.4)", tests: 0.3}``) or on a command
line as ``mix(code=0.5, ...)``, each domain's weight is a number or any schedule; at every
step the weights are evaluated on the clock and divided by their sum. A mixture that names a
domain the run does not have, or misses one it has, is refused when the plan is built; so is
a step at which every weight is zero.

A mixing controller (``odm``, ``doremi``, ``aioli``) is the other way to drive the channel:
its weights follow what the run measures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cadence.controllers.base import VectorController
from cadence.errors import CadenceError, PlanError, ScheduleError
from cadence.schedules.base import Schedule, _format, _short_value
from cadence.schedules.families import Constant

__all__ = ["Mix", "MAX_DOMAINS"]

MAX_DOMAINS = 256  # domains one mixture weighs
_UNIT = {"st": "step", "sa": "sample", "tok": "token"}


def _part(domain: str, value: Any) -> Schedule:
    """A domain's weight as a schedule: a number >= 0, a spec string or a Schedule."""
    from cadence.schedules import parse

    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            value = text
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise ScheduleError(f"mix: the weight of domain {domain!r} must be a number >= 0 or a schedule; got "
                            f"{_short_value(value)}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or value < 0:
            raise ScheduleError(f"mix: the weight of domain {domain!r} must be a finite number >= 0; got {value!r}")
        return Constant(value)
    if isinstance(value, Schedule):
        if value.stateful:
            raise ScheduleError(f"mix: the weight of domain {domain!r} must be a number or a schedule, not a "
                                f"controller ({value.name}); drive the whole mixture with a mixing controller instead")
        return value
    try:
        part = parse(value)
    except CadenceError as e:
        raise type(e)(f"mix: domain {domain!r}: {e}", field=e.field) from None
    if part.stateful or getattr(part, "vector", False):
        raise ScheduleError(f"mix: the weight of domain {domain!r} must be a number or a schedule, not a controller "
                            f"({part.name}); drive the whole mixture with a mixing controller instead")
    return part


class Mix(VectorController):
    """A weight or schedule per domain, normalised at every step (see the module docstring)."""

    name = "mix"
    formula = "p_d(t) = w_d(t) / sum_e w_e(t), each w_d a number or a schedule"
    source = "cadence"
    needs_total = False

    def __init__(self, **weights: Any) -> None:
        if not weights:
            raise ScheduleError("mix: give a weight per domain, as in mix(code=0.5, prose=0.3, tests=0.2)")
        if len(weights) > MAX_DOMAINS:
            raise ScheduleError(f"mix: at most {MAX_DOMAINS} domains; got {len(weights)}")
        parts = {str(d): _part(str(d), w) for d, w in weights.items()}
        super().__init__(None, **parts)
        self.parts = parts
        self.needs_total = any(p.needs_total for p in parts.values())
        self.keys = tuple(parts)

    def spec_object(self) -> dict[str, "str | float"]:
        """The mixture as a plan file writes it: ``{domain: number or spec string}``."""
        out = {}
        for d, p in self.parts.items():
            out[d] = p.level if type(p) is Constant and p.warmup.value == 0 else p.spec()
        return out

    def spec(self) -> str:
        """``mix(code=0.5, prose=linear(...))``; a plan file writes :meth:`spec_object` instead (any domain name)."""
        return "mix(" + ", ".join(f"{d}={_format(v) if isinstance(v, float) else v}"
                                  for d, v in self.spec_object().items()) + ")"

    def bind_keys(self, keys) -> None:
        keys = tuple(keys)
        unknown = [d for d in self.parts if d not in keys]
        missing = [d for d in keys if d not in self.parts]
        if unknown or missing:
            said = []
            if unknown:
                said.append(f"names {', '.join(map(repr, unknown[:5]))}, which the run does not have")
            if missing:
                said.append(f"has no weight for {', '.join(map(repr, missing[:5]))}")
            raise PlanError(f"the mixture {' and '.join(said)}; the domains: {', '.join(keys)}", field="mixture")
        super().bind_keys(keys)

    def _check(self, ctx) -> None:
        for p in self.parts.values():
            p._validate(ctx)

    def init(self) -> None:
        return None

    def update(self, state, clock, signals) -> None:
        return None

    def _total(self, values: dict):
        """The sum of the weights, added in the domains' order: the same additions for value() and preview()."""
        total = values[self.keys[0]]
        for d in self.keys[1:]:
            total = total + values[d]
        return total

    def value(self, state, clock, inputs=None) -> dict[str, float]:
        ctx, position = clock.context, clock.position
        raw = {d: self.parts[d]._value_on(ctx, position) for d in self.keys}
        total = self._total(raw)
        if not total > 0:
            if ctx.total is not None and position >= ctx.total:  # at the horizon (a schedule decayed to 0): no step
                return {d: 1.0 / len(self.keys) for d in self.keys}  # draws from it; a finished plan still loads
            raise PlanError(f"weights are all zero at {_UNIT.get(ctx.unit.value, 'position')} {position:g}; at least "
                            "one domain needs a weight > 0", field="mixture")
        return {d: v / total for d, v in raw.items()}

    def preview(self, t: np.ndarray, ctx, inputs: dict) -> dict[str, np.ndarray]:
        values = {d: self.parts[d].evaluate(t, ctx) for d in self.keys}
        total = self._total(values)
        zero = ~(total > 0)
        if ctx.total is not None:
            zero &= np.asarray(t) < ctx.total  # at the horizon: uniform, as value() gives
        if np.any(zero):
            i = int(np.argmax(zero))
            raise PlanError(f"weights are all zero at {_UNIT.get(ctx.unit.value, 'position')} "
                            f"{float(np.ravel(t)[i]):g}; at least one domain needs a weight > 0", field="mixture")
        safe = np.where(total > 0, total, 1.0)
        return {d: np.where(total > 0, values[d] / safe, 1.0 / len(self.keys)) for d in self.keys}
