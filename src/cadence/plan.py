"""The Plan: every channel of a run bound to one clock, one horizon and recorded state.

``Plan(channels, horizon, unit='step', rates=None)`` binds named channels (``lr``, any
optimizer field, ``batch``, loss coefficients such as ``loss.z``) to a :class:`Clock`
counted in the plan's primary unit (optimizer steps, samples or tokens). Each channel is
a schedule or a controller, written as a spec string, an object, or a plain number. The
loop that drives it does, per optimizer step (docs/plans.md)::

    values = plan.values()        # the values for the step about to run
    ...                           # apply them, run the micro-batches, reduce signals, guards
    plan.observe(signals)         # controllers see what the step measured
    plan.advance(samples=..., tokens=...)   # the clock moves; a skipped step calls skip()

The data channels (``mixture``, ``curriculum``, ``sample_weights``; docs/data.md) are channels
like the others. ``mixture`` gives a weight per domain of the run (``Plan(..., domains=[...])``):
an object ``{domain: number or schedule}`` or a vector controller (``odm()``, ...), shown in
``values()`` as ``mixture/<domain>``; a bandit ``curriculum`` likewise gives a weight per
difficulty bucket (``curriculum/0`` ... ``curriculum/3``).

Guards (:mod:`cadence.guards`, ``guards={'loss_spike': {'sigma': 6}}``) judge a step between
its gradients and its optimizer step: ``plan.guard(signals)`` is ``'apply'``, ``'skip'`` (the
loop calls ``skip()`` instead of stepping) or ``'rollback'``; their state is saved with the plan's.

The value used at a step is a function of the clock before it and of the controllers'
recorded state only: never of how often anything was called. ``state_dict()`` is plain
JSON-safe data tagged ``cadence.plan/1``; ``load_state_dict()`` refuses a state of other
channels, another unit or another horizon, and leaves the plan unchanged when it refuses.

Rules a plan enforces when it is built (each a one-line :class:`PlanError`, or the
schedule's own error):

* the horizon is a whole, positive number of units (a duration string is converted);
* a duration in another unit is converted with the run's rates, and refused when it
  cannot be (optimizer steps on a sample or token clock whose batch changes);
* the ``batch`` channel starts at a whole number of micro-batches (``micro_batch``); its
  later values are rounded down to one, and never below one micro-batch;
* a channel that reads another (``scale_with``) names one that exists, without a cycle.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cadence.errors import CadenceError, DurationError, LimitError, PlanError, TrainingDiverged
from cadence.guards import LossSpike, Rollback, make_guards
from cadence.schedules import Replanned, Schedule, parse
from cadence.schedules.base import _short_value
from cadence.schedules.families import Constant
from cadence.schedules.limits import MAX_ITEMS, MAX_TOTAL_STEPS
from cadence.time import Clock, Duration, Rates, Unit, parse_count, parse_duration

__all__ = ["Plan", "FORMAT", "BATCH", "MIXTURE", "CURRICULUM", "SAMPLE_WEIGHTS", "DATA_CHANNELS", "BUCKETS", "UNITS", "MAX_CHANNELS", "PLAN_KEYS", "PLAN_SUFFIXES", "is_plan_file",
           "read_plan_file", "MAX_PLAN_FILE_BYTES"]

FORMAT = "cadence.plan/1"
BATCH = "batch"
MIXTURE = "mixture"
# channels that act on the data, not on the optimizer: a weight per domain (mixture), how much of the data
# a curriculum opens (curriculum), the strength of per-sample loss weights (sample_weights)
DATA_CHANNELS = (MIXTURE, "curriculum", "sample_weights")  # (CURRICULUM and SAMPLE_WEIGHTS below)
CURRICULUM, SAMPLE_WEIGHTS = "curriculum", "sample_weights"
VECTOR_CHANNELS = (MIXTURE, CURRICULUM)  # channels whose value may be a weight per key: shown as '<channel>/<key>'
BUCKETS = 4  # difficulty buckets (quartiles of the data, easiest first) a bandit curriculum chooses among
MAX_CHANNELS = 64
MAX_BATCH = 2**40  # samples in one step's batch: beyond it the counters could not add a step exactly
MAX_PREVIEW_STEPS = 2**20  # optimizer steps one preview() covers (about 60 MB of arrays, a second of CPU)
MAX_PLAN_NODES = 100_000  # values (after YAML anchors are expanded) a plan file may hold
MAX_PLAN_DEPTH = 32  # brackets nested in a plan file (YAML's and JSON's parsers recurse on them)
UNITS = {"step": Unit.STEP, "st": Unit.STEP, "steps": Unit.STEP, "sample": Unit.SAMPLE, "sa": Unit.SAMPLE,
         "samples": Unit.SAMPLE, "token": Unit.TOKEN, "tok": Unit.TOKEN, "tokens": Unit.TOKEN}
_UNIT_NAME = {Unit.STEP: "step", Unit.SAMPLE: "sample", Unit.TOKEN: "token"}
_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$")
_MODES = ("replan", "stretch")
PLAN_KEYS = ("unit", "horizon", "channels", "guards")
PLAN_SUFFIXES = (".yaml", ".yml", ".json")  # a plan file's name ends in one of these
MAX_PLAN_FILE_BYTES = 1 << 20


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def unit_of(unit: "str | Unit") -> Unit:
    """The plan unit a name (``step``, ``sample``, ``token`` or st/sa/tok) stands for."""
    if isinstance(unit, Unit) and unit in _UNIT_NAME:
        return unit
    if isinstance(unit, str) and unit in UNITS:
        return UNITS[unit]
    raise PlanError(f"a plan's unit must be 'step', 'sample' or 'token'; got {_short_value(unit)}", field="unit")


def _is_count_literal(text: str) -> bool:
    """A plain decimal number ("256", "1e-4"), which a channel takes as a constant."""
    try:
        return math.isfinite(float(text)) and "_" not in text and text.strip() == text
    except ValueError:
        return False


def _is_count(text: str) -> bool:
    try:
        parse_count(text)
    except DurationError:
        return False
    return True


def _schedule(name: str, value) -> Schedule:
    if isinstance(value, Mapping):
        if name != MIXTURE:
            raise PlanError(f"channel {name!r} takes one schedule, not an object of weights (only {MIXTURE!r} takes "
                            "a weight per domain)", field="channels")
        from cadence.controllers.mixture import Mix

        try:
            return Mix(**{str(k): v for k, v in value.items()})
        except CadenceError as e:
            raise type(e)(f"channel {name!r}: {e}", field=e.field) from None
    if isinstance(value, str) and _is_count_literal(value):  # "256" in a YAML file or on a command line
        value = float(value)
    if _is_number(value):
        try:
            value = Constant(float(value))
        except OverflowError:
            raise PlanError(f"channel {name!r}: {_short_value(value)} is too large for a value", field="channels") \
                from None
    try:
        return parse(value)
    except CadenceError as e:
        raise type(e)(f"channel {name!r}: {e}", field=e.field) from None


def _channel_difference(theirs, mine: dict) -> str:
    """What differs between a saved plan's channels and this plan's, naming channels first."""
    if not isinstance(theirs, dict):
        return f"its channels are {_short_value(theirs)}"
    missing = [n for n in mine if n not in theirs]
    extra = [str(n) for n in theirs if n not in mine]
    changed = [n for n in mine if n in theirs and theirs[n] != mine[n]]
    parts = []
    if missing:
        parts.append(f"it has no channel {', '.join(map(repr, missing))}")
    if extra:
        parts.append(f"it has channel {', '.join(repr(n[:40]) for n in extra[:5])} that this plan lacks")
    for n in changed[:3]:
        parts.append(f"its {n!r} is {_short_value(theirs[n], 120)}, here {_short_value(mine[n], 120)}")
    return "; ".join(parts)


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain JSON data (what a controller's state must be)."""
    if depth > 16:
        return False
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)):
        return not isinstance(value, float) or math.isfinite(value)
    if isinstance(value, list):
        return len(value) <= 1_000_000 and all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _same_shape(model: Any, value: Any, records: bool = False) -> bool:
    """A loaded state has the keys of a fresh one, recursively (leaf values may differ). ``records``: a field
    that starts as None may later hold a record (a dict or list), for controllers whose check_state checks it."""
    if isinstance(model, dict):
        return isinstance(value, dict) and set(model) == set(value) and all(
            _same_shape(model[k], value[k], records) for k in model)
    if model is None:  # not known yet: a number (or, with records, a dict or list the controller fills later)
        return value is None or _is_number(value) or value in ("inf", "-inf") or (
            records and isinstance(value, (dict, list)))
    if _is_number(model):  # a number that may be unknown (None) or infinite ("inf", "-inf")
        return value is None or _is_number(value) or value in ("inf", "-inf")
    if isinstance(model, list):
        return isinstance(value, list)
    return type(value) is type(model)


class Plan:
    """Channels on one clock. See the module docstring and docs/plans.md.

    Args:
        channels: ``{name: spec string | Schedule | controller | number}``.
        horizon: the run's length in ``unit`` (an int), or a duration string in any unit
            the rates convert (``'2Mtok'``, ``'3ep'``); None for an open-ended plan whose
            channels do not need a length.
        unit: the primary unit, ``'step'``, ``'sample'`` or ``'token'``.
        rates: the run's :class:`Rates` at its starting batch (samples per step, tokens per
            sample, steps per epoch).
        micro_batch: samples per micro-batch, when a ``batch`` channel is realised by
            gradient accumulation: batch values are whole multiples of it.
        guards: ``{name: settings}`` of :mod:`cadence.guards` (``loss_spike``, ``grad_spike``,
            ``rollback``), or guard objects; see :meth:`guard`.
    """

    def __init__(self, channels: Mapping[str, Any], horizon: "int | str | None" = None, unit: "str | Unit" = "step",
                 rates: Rates | None = None, *, micro_batch: int | None = None,
                 guards: "Mapping[str, Any] | None" = None, domains: "Sequence[str] | None" = None) -> None:
        if not isinstance(channels, Mapping) or not channels:
            raise PlanError("a plan needs at least one channel, as in {'lr': 'cosine(peak=3e-4)'}", field="channels")
        if len(channels) > MAX_CHANNELS:
            raise LimitError(f"a plan has at most {MAX_CHANNELS} channels; got {len(channels)}", field="channels")
        for name in channels:
            if not isinstance(name, str) or not _CHANNEL.fullmatch(name):
                raise PlanError(f"a channel name is an optimizer field or a dotted name such as 'lr', 'batch' or "
                                f"'loss.z'; got {_short_value(name)}", field="channels")
        if rates is not None and not isinstance(rates, Rates):
            raise PlanError(f"rates must be a cadence.Rates; got {type(rates).__name__}", field="rates")
        if micro_batch is not None and (not _is_int(micro_batch) or not 1 <= micro_batch <= MAX_BATCH):
            raise PlanError(f"micro_batch must be a whole number of samples from 1 to 2**40; got "
                            f"{_short_value(micro_batch)}", field="micro_batch")
        self.unit = unit_of(unit)
        self.rates = rates or Rates()
        self.micro_batch = None if micro_batch is None else int(micro_batch)
        self.schedules: dict[str, Schedule] = {name: _schedule(name, s) for name, s in channels.items()}
        self.domains = self._bind_keys(domains)
        self.guards = make_guards(guards)
        self._spikes = [(n, g) for n, g in self.guards.items() if isinstance(g, LossSpike)]  # worked out once
        self.guard_states = {name: g.init() for name, g in self.guards.items()}
        self._order = self._dependency_order()
        self.monitors: dict[str, list[str]] = {}
        for name in self._order:
            for signal in self.schedules[name].monitors:
                self.monitors.setdefault(signal, []).append(name)
        self._frame = self._make_frame()
        self.horizon = self._horizon(horizon)
        self._records: list[list] = [[0, self.horizon, "replan"]] if self.horizon is not None else []
        self._bind()
        self._tick = 0  # moves whenever the clock or the states do: the key of the values cache
        self.clock = dataclasses.replace(self._frame, horizon=self.horizon)
        self.states = {name: self.schedules[name].init() for name in self._order}
        self._cache: tuple[int, dict] | None = None
        self._check_first_batch()
        if self.domains is not None and any(getattr(s, "vector", False) for s in self.schedules.values()):
            self._values()  # a mixture whose weights are all zero at the start is refused now, not at step 0
        self._fixed_counts = self._constant_counts()

    # -- the clock --------------------------------------------------------------------------
    # The counters live in the plan as plain ints (the hot path adds to them); the Clock
    # object is built from them when asked for, and kept until they move.
    @property
    def clock(self) -> Clock:
        c = self._clock
        if c is None:
            c = self._clock = self._frame_now.advanced_to(self._step, self._samples, self._tokens, self._skipped)
        return c

    @clock.setter
    def clock(self, value: Clock) -> None:
        self._frame_now = value  # what a rebuilt clock copies its frame (unit, horizon, rates) from
        self._ctx = value.context
        self._step, self._samples, self._tokens, self._skipped = value.step, value.samples, value.tokens, value.skipped
        self._clock = value
        self._tick += 1

    def _position(self) -> int:
        unit = self.unit
        return self._step if unit is Unit.STEP else (self._samples if unit is Unit.SAMPLE else self._tokens)

    # -- building -------------------------------------------------------------------------
    def _dependency_order(self) -> list[str]:
        order, state = [], {}

        def visit(name, path):
            if state.get(name) == "done":
                return
            if state.get(name) == "open":
                raise PlanError(f"channels read each other in a cycle: {' -> '.join([*path, name])}", field="channels")
            state[name] = "open"
            for other in self.schedules[name].inputs:
                if other not in self.schedules:
                    raise PlanError(f"channel {name!r} reads channel {other!r}, which this plan does not have "
                                    f"(channels: {', '.join(self.schedules)})", field="channels")
                visit(other, [*path, name])
            state[name] = "done"
            order.append(name)

        for name in self.schedules:
            visit(name, [])
        return order

    def _bind_keys(self, domains) -> "tuple[str, ...] | None":
        """Give each vector channel (``mixture``) its keys, the run's domains; refuse a vector where one
        number is wanted and one number where a weight per domain is."""
        if domains is not None:
            if isinstance(domains, str) or not isinstance(domains, Sequence) or not all(
                    isinstance(d, str) and d for d in domains) or len(set(domains)) != len(domains):
                raise PlanError(f"domains must be distinct names; got {_short_value(domains)}", field="domains")
            domains = tuple(domains)
        for name, s in self.schedules.items():
            vector = getattr(s, "vector", False)
            if name == SAMPLE_WEIGHTS and not hasattr(s, "weights"):
                raise PlanError(f"channel {name!r} takes reweight(strategy=...), whose strategy turns a batch's losses "
                                f"into weights; got {s.spec()}", field=name)
            if vector and getattr(s, "drives", name) != name:
                raise PlanError(f"channel {name!r}: {s.name}() drives the {s.drives!r} channel", field=name)
            if name == CURRICULUM:
                if vector:
                    s.bind_keys(tuple(str(k) for k in range(BUCKETS)))
                elif s.stateful:
                    raise PlanError(f"channel {name!r} takes pace(...) (how much of the data, easiest first, a step "
                                    f"draws from) or a bandit over difficulty buckets (sec(), dump()); got {s.spec()}",
                                    field=name)
                continue
            if name == MIXTURE and not vector:
                raise PlanError(f"channel {name!r} takes a weight per domain: an object such as {{code: 0.5, prose: "
                                f"0.5}}, mix(...) or a mixing controller (odm(), doremi(...), aioli()); got {s.spec()}",
                                field=name)
            if vector and name not in VECTOR_CHANNELS:
                raise PlanError(f"channel {name!r}: {s.name}() gives a weight per domain or difficulty bucket; it "
                                f"drives the {getattr(s, 'drives', MIXTURE)!r} channel", field="channels")
            if vector:
                if domains is None:
                    raise PlanError(f"channel {name!r} needs the run's domains (a workload with domains, such as "
                                    "text)", field=name)
                if len(domains) < 2:
                    raise PlanError(f"channel {name!r} mixes two or more domains; the run has "
                                    f"{len(domains)} ({', '.join(domains)})", field=name)
                try:
                    s.bind_keys(domains)
                except CadenceError as e:
                    raise PlanError(f"channel {name!r}: {e}" if not str(e).startswith("the mixture") else str(e),
                                    field=name) from None
        return domains

    def _batch_is_constant(self) -> bool:
        s = self.schedules.get(BATCH)
        return s is None or (type(s) is Constant and s.warmup.value == 0)

    def _make_frame(self) -> Clock:
        """The clock's frame: rates per unit, and the length of one optimizer step in units."""
        r = self.rates
        per_step = r.samples_per_step
        if BATCH in self.schedules:
            per_step = self.schedules[BATCH].level if self._batch_is_constant() else None
        tps = r.tokens_per_sample
        samples_per_epoch = None
        if r.steps_per_epoch is not None and r.samples_per_step is not None:
            samples_per_epoch = float(r.steps_per_epoch) * float(r.samples_per_step)
        if self.unit is not Unit.STEP and per_step is not None and not float(per_step).is_integer():
            raise PlanError(f"a plan on a {_UNIT_NAME[self.unit]} clock needs a whole number of samples per step; "
                            f"got {per_step!r}", field="samples_per_step")
        if self.unit is Unit.STEP:
            rates = Rates(samples_per_step=per_step, tokens_per_sample=tps,
                          steps_per_epoch=None if not per_step or samples_per_epoch is None  # no batch, or 0
                          else samples_per_epoch / per_step)
            length = 1.0
        elif self.unit is Unit.SAMPLE:
            rates = Rates(samples_per_step=1.0, tokens_per_sample=tps, steps_per_epoch=samples_per_epoch)
            length = per_step
        else:
            if tps is None:
                raise PlanError("a plan on a token clock needs the run's tokens per sample", field="tokens_per_sample")
            if not float(tps).is_integer():
                raise PlanError(f"a plan on a token clock needs a whole number of tokens per sample; got {tps!r}",
                                field="tokens_per_sample")
            rates = Rates(samples_per_step=1.0 / tps, tokens_per_sample=tps,
                          steps_per_epoch=None if samples_per_epoch is None else samples_per_epoch * tps)
            length = None if per_step is None else per_step * tps
        return Clock(unit=self.unit, rates=rates, step_length=length, samples_per_epoch=samples_per_epoch,
                     batch_moves=BATCH in self.schedules and not self._batch_is_constant())

    def _horizon(self, horizon) -> int | None:
        if horizon is None:
            needy = [n for n, s in self.schedules.items() if s.needs_total]
            if needy:
                raise PlanError(f"channel {needy[0]!r} needs the run's length: give the plan a horizon", field="horizon")
            return None
        if _is_int(horizon) or (isinstance(horizon, float) and horizon.is_integer()):
            units = float(horizon) if horizon <= MAX_TOTAL_STEPS else math.inf
            if units == math.inf:
                raise LimitError(f"the horizon is {_short_value(horizon)} {_UNIT_NAME[self.unit]}s; at most "
                                 f"{MAX_TOTAL_STEPS} (2**53) are counted exactly", field="horizon")
        elif isinstance(horizon, str) and _is_count(horizon):  # a count without a unit ('600K'): the plan's unit
            units = parse_count(horizon, what="horizon")
            if not units.is_integer():
                raise PlanError(f"the horizon must be a whole number of {_UNIT_NAME[self.unit]}s; got {horizon!r}",
                                field="horizon")
        else:
            try:
                duration = parse_duration(horizon, what="horizon")
            except CadenceError as e:
                raise PlanError(str(e), field="horizon") from None
            if duration.unit is Unit.FRACTION:
                raise PlanError(f"the horizon is the whole run: give it in {_UNIT_NAME[self.unit]}s or another unit, "
                                f"not as a fraction ({horizon!r})", field="horizon")
            try:
                units = self._frame.context.steps(duration, what="horizon")
            except DurationError as e:
                raise PlanError(str(e), field="horizon") from None
        if not math.isfinite(units) or units < 1:
            raise PlanError(f"the horizon must be at least one {_UNIT_NAME[self.unit]}; got {_short_value(horizon)}",
                            field="horizon")
        if units > MAX_TOTAL_STEPS:
            raise LimitError(f"the horizon is {units:.6g} {_UNIT_NAME[self.unit]}s; at most {MAX_TOTAL_STEPS} (2**53) "
                             "are counted exactly", field="horizon")
        return int(math.ceil(units))

    def _bind(self) -> None:
        """Build what is evaluated for the horizon records and check every channel against it."""
        effective = {}
        ctx = dataclasses.replace(self._frame, horizon=self.horizon).context
        for name in self._order:
            s = self.schedules[name]
            if len(self._records) > 1:
                s = Replanned(s, self._records)
            try:
                s.check(ctx)
            except CadenceError as e:
                raise type(e)(f"channel {name!r}: {e}", field=e.field) from None
            effective[name] = s
        self._effective = effective

    def _constant_counts(self) -> tuple[int, int] | None:
        """(samples, tokens) of every step when the batch cannot change and both are whole; else None."""
        if BATCH in self.schedules or self.unit is not Unit.STEP:
            return None
        per, tps = self.rates.samples_per_step, self.rates.tokens_per_sample
        samples = 0 if per is None else per
        tokens = 0 if per is None or tps is None else per * tps
        if not (float(samples).is_integer() and float(tokens).is_integer() and tokens <= MAX_TOTAL_STEPS):
            return None
        if tps is not None and per is not None and not float(tps).is_integer() and math.floor(per * tps) != per * tps:
            return None
        return int(samples), int(tokens)

    def _check_first_batch(self) -> None:
        if BATCH not in self.schedules:
            return
        values = self._values()  # the channels the batch may read, and a check that it gives a batch at all
        first = self._effective[BATCH].value(self.states[BATCH], self.clock, values)  # before rounding
        if self.micro_batch is not None and (first < self.micro_batch or first % self.micro_batch):
            raise PlanError(f"channel 'batch' starts at {first:g} samples, which is not a whole number of "
                            f"micro-batches of {self.micro_batch}", field="batch")

    # -- the loop ---------------------------------------------------------------------------
    def values(self) -> dict[str, float]:
        """The value of every channel for the step about to run (the clock as it is now)."""
        return dict(self._values())

    def _values(self) -> dict[str, float]:
        """:meth:`values` without the copy (callers must not change it)."""
        cached = self._cache
        if cached is not None and cached[0] == self._tick:
            return cached[1]
        out: dict[str, float] = {}
        states, effective, ctx, position = self.states, self._effective, self._ctx, self._position()
        for name in self._order:
            s = effective[name]
            try:
                # a schedule's value is _value_on the clock; calling it directly saves a call per channel
                v = s.value(states[name], self.clock, out) if s.stateful else s._value_on(ctx, position)
            except CadenceError as e:
                raise type(e)(f"{name}: {e}", field=e.field) from None
            if name == BATCH:
                v = self._whole_batch(v)
            elif type(v) is dict:  # a weight per key (mixture): shown as '<channel>/<key>'
                for k, w in v.items():
                    out[f"{name}/{k}"] = w
                continue
            out[name] = v
        self._cache = (self._tick, out)
        return out

    @property
    def diagnostics(self) -> list[str]:
        """Names of what the controllers report about their state (``<channel>.<name>``), e.g. ``lr.scale``."""
        return [*(f"{name}.{key}" for name in self._order for key in self.schedules[name].diagnostic_names),
                *(f"{name}.skipped" for name, g in self.guards.items() if isinstance(g, LossSpike))]

    def diagnose(self) -> dict[str, float | None]:
        """The controllers' reports now (see :attr:`diagnostics`): numbers, None when unknown."""
        out = {}
        for name in self._order:
            s = self.schedules[name]
            if s.diagnostic_names:
                report = s.diagnose(self.states[name])
                for key in s.diagnostic_names:
                    out[f"{name}.{key}"] = report.get(key)
        for name, g in self.guards.items():
            if isinstance(g, LossSpike):
                out[f"{name}.skipped"] = self.guard_states[name]["skipped"]
        return out

    def _whole_batch(self, v: float) -> int:
        """A batch value as whole micro-batches: rounded down, at least one micro-batch."""
        if not math.isfinite(v) or v > MAX_BATCH:
            raise PlanError(f"channel 'batch' gives {v!r} samples at {self._where()}; a batch is a finite number of "
                            f"samples up to {MAX_BATCH} (2**40)", field="batch")
        m = self.micro_batch or 1
        return max(m, int(v // m) * m)

    def _where(self) -> str:
        return f"{_UNIT_NAME[self.unit]} {self.clock.position}"

    def observe(self, signals: Mapping[str, Any]) -> None:
        """Let every controller see the signals of the step that just ran (before :meth:`advance`).

        ``signals`` maps names to numbers (None or a missing name: not measured this step).
        Controllers also see the values that step used, under their channel names.
        """
        if not isinstance(signals, Mapping):
            raise PlanError(f"signals must be a mapping of names to numbers; got {type(signals).__name__}",
                            field="signals")
        for key, value in signals.items():
            if not isinstance(key, str) or not (value is None or _is_number(value)):
                raise PlanError(f"signal {_short_value(key)} must be a number or None; got {_short_value(value)}",
                                field="signals")
        seen = dict(self._values())
        for key, value in signals.items():  # numbers as floats (an int too large for one is infinite)
            if value is None or isinstance(value, float):
                seen[key] = value
            else:
                try:
                    seen[key] = float(value)
                except OverflowError:
                    seen[key] = math.inf if value > 0 else -math.inf
        states = dict(self.states)
        for name in self._order:
            s = self._effective[name]
            if s.stateful:
                states[name] = s.update(states[name], self.clock, seen)
        self.states = states
        self._tick += 1

    def advance(self, samples: int | None = None, tokens: int | None = None) -> Clock:
        """Count one optimizer step that used ``samples`` and ``tokens``; returns the new clock.

        By default ``samples`` is the step's batch (the ``batch`` channel, else the rates'
        samples per step) and ``tokens`` is samples times tokens per sample, when known.
        """
        if samples is None and tokens is None and self._fixed_counts is not None:  # a constant batch
            self._advance_fixed()
            return self.clock
        per, tps = self.rates.samples_per_step, self.rates.tokens_per_sample
        if samples is None:
            if BATCH in self.schedules:
                samples = self._values()[BATCH]
            elif per is not None:  # whole samples: the clock after k steps holds floor(k * samples_per_step)
                samples = math.floor((self._step + 1) * per) - math.floor(self._step * per)
            elif self.unit is not Unit.STEP:
                raise PlanError(f"advance: this plan counts {_UNIT_NAME[self.unit]}s; say how many samples the "
                                "step used", field="samples")
            else:
                samples = 0
        samples = self._whole("samples", samples)
        if tokens is None:
            if tps is None and self.unit is Unit.TOKEN:
                raise PlanError("advance: this plan counts tokens; say how many the step used", field="tokens")
            # tokens seen = floor(samples seen * tokens per sample), whole at every step
            tokens = 0 if tps is None else math.floor((self._samples + samples) * tps) - math.floor(self._samples * tps)
        tokens = self._whole("tokens", tokens)
        for name, total in (("samples", self._samples + samples), ("tokens", self._tokens + tokens)):
            if total > MAX_TOTAL_STEPS:
                raise LimitError(f"advance: the clock would count {total} {name}; at most {MAX_TOTAL_STEPS} (2**53) "
                                 "are counted exactly", field=name)
        # the counters move in place (the frame does not change); the Clock is built when asked for
        self._step += 1
        self._samples += samples
        self._tokens += tokens
        self._clock = None
        self._tick += 1
        return self.clock

    @staticmethod
    def _whole(name: str, value) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            if 0 <= value <= MAX_TOTAL_STEPS:
                return int(value)
        elif _is_number(value) and math.isfinite(value) and float(value).is_integer() and 0 <= value <= MAX_TOTAL_STEPS:
            return int(value)
        raise PlanError(f"advance: {name} must be a whole number from 0 to 2**53; got {_short_value(value)}", field=name)

    def counters_at(self, step: int) -> dict[str, int]:
        """The clock's counters after ``step`` steps at the run's constant rates (no ``batch`` channel):
        samples = floor(step * samples_per_step), tokens = floor(samples * tokens_per_sample), as advance()
        and preview() count them."""
        per, tps = self.rates.samples_per_step, self.rates.tokens_per_sample
        samples = 0 if per is None else math.floor(step * per)
        return {"step": step, "samples": samples, "tokens": 0 if tps is None else math.floor(samples * tps),
                "skipped": self._skipped}

    def _advance_fixed(self, steps: int = 1) -> None:
        """advance() of a plan whose every step has the same counts, without building the new Clock
        (the hot path of a Scheduler step); ``steps=-1`` counts the last such step back."""
        samples, tokens = self._fixed_counts[0] * steps, self._fixed_counts[1] * steps
        if self._samples + samples > MAX_TOTAL_STEPS or self._tokens + tokens > MAX_TOTAL_STEPS:
            raise LimitError(f"advance: the clock would count more than {MAX_TOTAL_STEPS} (2**53) samples or tokens",
                             field="samples")
        self._step += steps
        self._samples += samples
        self._tokens += tokens
        self._clock = None
        self._tick += 1

    def skip(self) -> Clock:
        """Count a step that a guard skipped: no value, state or counter moves but ``skipped``."""
        self.clock = self.clock.skipped_one()
        return self.clock

    def guard(self, signals: Mapping[str, Any]) -> str:
        """The guards' verdict on the step about to be applied: ``'apply'``, ``'skip'`` or ``'rollback'``.

        Called once per step, after its gradients and signals and before its optimizer step.
        On ``'skip'`` the loop does not apply the update and calls :meth:`skip`; on
        ``'rollback'`` it restores its last checkpoint (or, with none, skips). Each spike guard
        reads its signal from ``signals`` (None or missing: not measured). Raises
        TrainingDiverged when more than a guard's ``max_in_a_row`` steps in a row were skipped.
        A plan without guards always answers ``'apply'``.
        """
        if not self.guards:
            return "apply"
        if not isinstance(signals, Mapping):
            raise PlanError(f"signals must be a mapping of names to numbers; got {type(signals).__name__}",
                            field="signals")
        states = self.guard_states
        spikes = self._spikes
        fired = {n: g.check(states[n], signals.get(g.signal)) for n, g in spikes}
        skip = any(fired.values())
        new = dict(states)
        for n, g in spikes:
            new[n] = g.record(states[n], signals.get(g.signal), applied=not skip, fired=fired[n])
        verdict = "skip" if skip else "apply"
        rollback = self.guards.get("rollback")
        if isinstance(rollback, Rollback):
            roll, new["rollback"] = rollback.record(states["rollback"], self._step + self._skipped, skip)
            if roll:
                verdict = "rollback"
        for n, g in spikes:  # giving up changes nothing: a resumed run gives up at the same step
            if g.gives_up(new[n]):
                raise TrainingDiverged(f"{new[n]['in_a_row']} steps in a row were skipped by the guards (more than "
                                       f"{n}'s max_in_a_row={g.max_in_a_row}, the last at step {self._step}): the "
                                       f"{g.signal} stays high")
        self.guard_states = new
        self._tick += 1
        return verdict

    @property
    def done(self) -> bool:
        """The clock has reached the horizon."""
        return self.clock.done

    @property
    def channels(self) -> "dict[str, str | dict]":
        """Each channel's spec string; a mixture of weights per domain as its object ``{domain: weight or spec}``."""
        return {name: s.spec_object() if hasattr(s, "spec_object") else s.spec() for name, s in self.schedules.items()}

    def mixture(self) -> "dict[str, float] | None":
        """The ``mixture`` channel's weight per domain for the step about to run (None without one)."""
        if MIXTURE not in self.schedules:
            return None
        values = self._values()
        return {d: values[f"{MIXTURE}/{d}"] for d in self.domains}

    # -- looking ahead ----------------------------------------------------------------------
    def preview(self, stop: int | None = None) -> dict[str, np.ndarray]:
        """Every channel over the optimizer steps from the clock's start to the horizon (or ``stop`` steps),
        before any observation: controllers as they start (see :mod:`cadence.controllers.base`).
        At most ``MAX_PREVIEW_STEPS`` (2**20) steps per call: give ``stop`` for a longer plan.

        Returns arrays ``step``, ``samples``, ``tokens`` (the counters before each step) and
        one per channel. Vectorised: on a step clock each channel is one evaluation of all
        steps; when a ``batch`` channel moves the clock, the steps are found in blocks between
        batch changes. At most ``MAX_VALUES`` steps.
        """
        from cadence.schedules.limits import MAX_VALUES

        if stop is not None and (not _is_int(stop) or stop < 1):
            raise PlanError(f"preview: stop must be a whole number of steps >= 1; got {_short_value(stop)}", field="stop")
        ctx = dataclasses.replace(self._frame, horizon=self.horizon).context
        if self.horizon is None and stop is None:
            raise PlanError("preview: an open-ended plan (no horizon) needs stop", field="stop")
        self._walked = None
        positions, samples, tokens = self._preview_clock(ctx, stop, MAX_PREVIEW_STEPS)
        walked, self._walked = self._walked, None
        out = {"step": np.arange(positions.size, dtype=np.int64), "samples": samples, "tokens": tokens}
        at = {Unit.STEP: out["step"], Unit.SAMPLE: samples, Unit.TOKEN: tokens}[self.unit].astype(np.float64)
        for name in self._order:
            s = self._effective[name]
            if name == BATCH and walked is not None:  # the walk of the clock already evaluated it
                out[name] = walked[:at.size]
                continue
            try:
                values = s.preview(at, ctx, out) if s.stateful else s.evaluate(at, ctx)
            except CadenceError as e:
                raise type(e)(f"{name}: {e}", field=e.field) from None
            if name == BATCH:
                values = self._whole_batches(values)
            elif isinstance(values, dict):
                for k, v in values.items():
                    out[f"{name}/{k}"] = v
                continue
            out[name] = values
        return out

    def _whole_batches(self, values: np.ndarray) -> np.ndarray:
        if values.size and not np.all(values <= MAX_BATCH):
            raise PlanError(f"channel 'batch' gives {float(np.max(values))!r} samples; a batch is a finite number of "
                            f"samples up to {MAX_BATCH} (2**40)", field="batch")
        m = self.micro_batch or 1
        return np.maximum(m, np.floor(values / m) * m).astype(np.int64)

    def _preview_clock(self, ctx, stop, limit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (in the unit), samples and tokens before each step, over the preview's steps."""
        tps = self.rates.tokens_per_sample
        if BATCH not in self.schedules:
            per = self.rates.samples_per_step
            if self.unit is not Unit.STEP and not per:
                raise PlanError("preview: this plan counts samples or tokens but knows no batch size (rates)",
                                field="rates")
            length = 1.0 if self.unit is Unit.STEP else (per if self.unit is Unit.SAMPLE else per * tps)
            count = stop if self.horizon is None else int(math.ceil(self.horizon / length))
            if count is None:
                raise PlanError("preview: an open-ended plan needs stop", field="stop")
            count = count if stop is None else min(count, stop)
            if count > limit:
                raise LimitError(f"preview: {count} steps; at most {limit} (2**20) are previewed at once: give stop",
                                 field="stop")
            k = np.arange(count, dtype=np.int64)
            if not per:
                zeros = np.zeros(count, dtype=np.int64)
                return k.astype(np.float64) * length, zeros, zeros.copy()
            samples = k * int(per) if float(per).is_integer() else np.floor(k * per).astype(np.int64)
            tokens = samples * int(tps) if tps and float(tps).is_integer() else np.floor(samples * (tps or 0)).astype(np.int64)
            position = {Unit.STEP: k.astype(np.float64), Unit.SAMPLE: samples.astype(np.float64),
                        Unit.TOKEN: tokens.astype(np.float64)}[self.unit]
            return position, samples, tokens
        # the batch moves the clock: walk it in blocks of steps that share one batch size; a block
        # that holds one batch doubles the next block's length, a block cut short halves it
        batch = self._effective[BATCH]
        if batch.inputs:
            raise PlanError("preview: the batch channel reads another channel; preview it step by step", field="batch")
        per_unit = {Unit.STEP: None, Unit.SAMPLE: 1.0, Unit.TOKEN: float(tps or 0)}[self.unit]
        per_token = int(tps or 0)  # whole on a token clock (checked when the plan is built)
        pos, n_samples, n_tokens, steps, block = 0.0, 0, 0, 0, 256
        chunks = []
        end = math.inf if self.horizon is None else self.horizon
        cap = limit + 1 if stop is None else min(stop, limit + 1)
        b = None
        while pos < end and steps < cap:
            if b is None:
                first = batch.preview(np.array([pos]), ctx, {}) if batch.stateful else batch.evaluate(np.array([pos]), ctx)
                b = int(self._whole_batches(first)[0])
            step_units = 1.0 if per_unit is None else b * per_unit
            size = min(block, cap - steps)
            cand = pos + np.arange(size, dtype=np.float64) * step_units
            vals = batch.preview(cand, ctx, {}) if batch.stateful else batch.evaluate(cand, ctx)
            whole = self._whole_batches(vals)
            differs = whole != b
            run = int(np.argmax(differs)) if differs.any() else size
            run = max(run, 1)
            if cand[run - 1] >= end:
                run = max(int(np.searchsorted(cand[:run], end, side="left")), 1)
            this, b = b, (int(whole[run]) if run < size else None)  # the next block starts at cand[run]
            block = min(block * 2, 1 << 16) if run == size else max(block // 2, 64)
            k = np.arange(run, dtype=np.int64)
            chunks.append((cand[:run], n_samples + this * k, n_tokens + this * per_token * k,
                           np.full(run, this, np.int64)))
            steps += run
            pos = float(cand[run - 1] + step_units)
            n_samples += this * run
            n_tokens += this * per_token * run
        if steps > limit:
            raise LimitError(f"preview: more than {limit} (2**20) steps; give stop", field="stop")
        self._walked = np.concatenate([c[3] for c in chunks])
        samples = np.concatenate([c[1] for c in chunks])
        tokens = (np.concatenate([c[2] for c in chunks]) if self.unit is Unit.TOKEN or not tps
                  else np.floor(samples * tps).astype(np.int64))  # tokens seen = floor(samples seen * tokens per sample)
        return np.concatenate([c[0] for c in chunks]), samples, tokens

    # -- changing the horizon ---------------------------------------------------------------
    def set_horizon(self, horizon: int, mode: str = "replan") -> None:
        """Change the run's length from the clock's position on; values already used never change.

        ``mode='replan'``: from now on every channel is the one planned for ``horizon``.
        ``mode='stretch'``: what remained of the current plan is stretched onto the new
        remaining units (continuous). Controllers keep their state.
        """
        if not _is_int(horizon):
            raise PlanError(f"set_horizon: the horizon must be a whole number of {_UNIT_NAME[self.unit]}s; "
                            f"got {_short_value(horizon)}", field="horizon")
        if not isinstance(mode, str) or mode not in _MODES:
            raise PlanError(f"set_horizon: mode must be one of {', '.join(map(repr, _MODES))}; got {_short_value(mode)}",
                            field="mode")
        if horizon > MAX_TOTAL_STEPS:
            raise LimitError(f"set_horizon: the horizon is {_short_value(horizon)}; at most {MAX_TOTAL_STEPS} (2**53) "
                             f"{_UNIT_NAME[self.unit]}s are counted exactly", field="horizon")
        at = self.clock.position
        if horizon <= at:
            raise PlanError(f"set_horizon: the new horizon ({horizon}) must be past the clock ({at})", field="horizon")
        if any(s.stateful for s in self.schedules.values()) and self._records:
            raise PlanError("set_horizon: a plan with controllers cannot change its horizon yet; start a new plan",
                            field="horizon")
        record = [at, int(horizon), mode] if self._records else [0, int(horizon), "replan"]
        old = [list(r) for r in self._records], self.horizon
        if self._records and self._records[-1][0] == at:
            if len(self._records) == 1:
                record[2] = "replan"
            self._records[-1] = record
        else:
            self._records.append(record)
        self.horizon = int(horizon)
        try:
            self._bind()
        except CadenceError:
            self._records, self.horizon = old
            self._bind()
            raise
        self.clock = dataclasses.replace(self.clock, horizon=self.horizon)

    @property
    def horizons(self) -> list[list]:
        """The horizon records ``[position, horizon, mode]``, the first at 0."""
        return [list(r) for r in self._records]

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data: everything needed to resume exactly."""
        return {
            "format": FORMAT,
            "unit": _UNIT_NAME[self.unit],
            "horizon": self.horizon,
            "horizons": self.horizons,
            "channels": self.channels,
            "clock": self.clock.counters(),
            "states": json.loads(json.dumps(self.states)),
            **({"guards": {n: {"config": g.config(), "state": json.loads(json.dumps(self.guard_states[n]))}
                           for n, g in self.guards.items()}} if self.guards else {}),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; refuses (one line, nothing changed) a state of another plan."""
        found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        if not (isinstance(found, str) and found == FORMAT):
            raise PlanError(f"expected a {FORMAT} state; got {_short_value(found)}", field="state")
        missing = [k for k in ("unit", "horizon", "horizons", "channels", "clock", "states") if k not in state]
        if missing:
            raise PlanError(f"the plan state has no {', '.join(missing)}", field="state")
        if state["channels"] != self.channels:
            raise PlanError(f"the state belongs to a plan with other channels: "
                            f"{_channel_difference(state['channels'], self.channels)}; this plan has "
                            f"{', '.join(self.channels)}", field="state")
        if state["unit"] != _UNIT_NAME[self.unit]:
            raise PlanError(f"the state belongs to a plan on a {_short_value(state['unit'])} clock; this plan counts "
                            f"{_UNIT_NAME[self.unit]}s", field="state")
        records = state["horizons"]
        if not (isinstance(records, list) and len(records) <= MAX_ITEMS and all(
                isinstance(r, list) and len(r) == 3 and _is_int(r[0]) and _is_int(r[1]) and r[2] in _MODES
                for r in records)):
            raise PlanError("the plan state's horizons must be [position, horizon, mode] records", field="state")
        if records and (records[0][0] != 0 or state["horizon"] != records[-1][1]):
            raise PlanError("the plan state's horizon records must start at position 0 and end at its horizon",
                            field="state")
        if not records and state["horizon"] is not None:
            raise PlanError("the plan state has a horizon but no horizon records", field="state")
        first = records[0][1] if records else None
        if first != (self._records[0][1] if self._records else None):
            # set_horizon() at position 0 replaces the first record: such a state is another plan's
            raise PlanError(f"the state belongs to a plan with horizon {_short_value(first)}; this plan's horizon "
                            f"is {_short_value(self._records[0][1] if self._records else None)}", field="state")
        states = state["states"]
        if not (isinstance(states, dict) and set(states) == set(self.schedules) and _plain(states) and all(
                _same_shape(self.schedules[n].init(), states[n], getattr(self.schedules[n], "vector", False))
                for n in self.schedules)):
            raise PlanError("the plan state's controller states do not fit this plan's controllers", field="state")
        for name, s in self.schedules.items():
            problem = s.check_state(states[name]) if s.stateful else None
            if problem:
                raise PlanError(f"the plan state of channel {name!r} is not one {s.name}() can be in: {problem}",
                                field="state")
        guard_states = self._guard_states_of(state)
        old = (self._records, self.horizon, self.clock, self.states, self._effective)
        try:
            self._records = [[int(a), int(b), str(m)] for a, b, m in records]
            self.horizon = self._records[-1][1] if self._records else None
            self._bind()
            try:
                clock = dataclasses.replace(self._frame, horizon=self.horizon).with_counters(state["clock"])
            except (DurationError, TypeError) as e:
                raise PlanError(f"the plan state's clock is not valid: {e}", field="state") from None
            self.clock, self.states = clock, json.loads(json.dumps(states))
            self.values()
            self.guard_states = guard_states
        except Exception as e:  # noqa: BLE001 - whatever a bad state breaks, the plan is left as it was
            self._records, self.horizon, self.clock, self.states, self._effective = old
            if isinstance(e, PlanError):
                raise
            if isinstance(e, CadenceError):
                raise PlanError(f"the plan state does not fit this plan: {e}", field="state") from None
            raise PlanError(f"the plan state does not fit this plan ({type(e).__name__}: {e})", field="state") from None

    def _guard_states_of(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The guard states in a plan state, checked against this plan's guards."""
        theirs = state.get("guards", {})
        mine = {n: g.config() for n, g in self.guards.items()}
        if not isinstance(theirs, dict) or not all(isinstance(v, dict) and set(v) == {"config", "state"}
                                                   for v in theirs.values()):
            raise PlanError("the plan state's guards must map names to {config, state}", field="state")
        if {n: v["config"] for n, v in theirs.items()} != mine:
            def show(d):
                return ", ".join(f"{n}({', '.join(f'{k}={v}' for k, v in c.items())})" if isinstance(c, dict)
                                 else f"{n}(?)" for n, c in d.items())[:400] or "none"
            raise PlanError(f"the state belongs to a plan with other guards ({show({n: v['config'] for n, v in theirs.items()})}); "
                            f"this plan's guards: {show(mine)}", field="state")
        out = {}
        for name, g in self.guards.items():
            value = theirs[name]["state"]
            problem = g.check_state(value) if _plain(value) else "it is not plain data"
            if problem:
                raise PlanError(f"the plan state of guard {name!r} is not valid: {problem}", field="state")
            out[name] = json.loads(json.dumps(value))
        return out

    def __repr__(self) -> str:
        driven = ", ".join(f"{n}={s.spec()}" for n, s in self.schedules.items())
        return f"Plan({_UNIT_NAME[self.unit]} {self.clock.position} of {self.horizon}, {driven})"


def is_plan_file(text: str) -> bool:
    """Whether a command-line value names a plan file (it ends in .yaml, .yml or .json) rather than a spec:
    the rule of ``cadence bench --candidate`` and ``cadence forecast rank --schedule``."""
    return isinstance(text, str) and text.strip().lower().endswith(PLAN_SUFFIXES)


def read_plan_file(path, extra_keys: "tuple[str, ...]" = ()) -> dict[str, Any]:
    """The mapping in a plan file (``.yaml``/``.yml`` or ``.json``), checked but not yet bound.

    Keys: ``unit``, ``horizon``, ``channels`` and any of ``extra_keys`` (a runner's
    settings). YAML is read with ``yaml.safe_load``: a plan file is data, never code. At most
    ``MAX_PLAN_FILE_BYTES``. Raises PlanError naming the first thing that is wrong.
    """
    import os

    import yaml

    name = str(path)
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in PLAN_SUFFIXES:
        raise PlanError(f"a plan file is .yaml, .yml or .json; got {_short_value(name)}", field="plan")
    if not os.path.lexists(name):
        raise PlanError(f"the plan file {_short_value(name)} does not exist (No such file or directory)", field="plan")
    if os.path.isdir(name):
        raise PlanError(f"cannot read the plan file {_short_value(name)}: it is a folder, not a file", field="plan")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PLAN_FILE_BYTES + 1)
    except OSError as e:
        raise PlanError(f"cannot read the plan file {_short_value(name)}: {e.strerror or type(e).__name__}",
                        field="plan") from None
    if len(raw) > MAX_PLAN_FILE_BYTES:
        raise LimitError(f"the plan file {_short_value(name)} is larger than {MAX_PLAN_FILE_BYTES:,} bytes", field="plan")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PlanError(f"the plan file {_short_value(name)} is not UTF-8 text", field="plan") from None
    depth = _bracket_depth(text)
    if depth > MAX_PLAN_DEPTH:
        raise LimitError(f"the plan file {_short_value(name)} nests brackets {depth} deep; at most {MAX_PLAN_DEPTH}",
                         field="plan")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates) if suffix == ".json" else yaml.load(text, _yaml_loader())
    except PlanError as e:  # a key given twice (raised by the loaders below)
        raise PlanError(f"the plan file {_short_value(name)} {e}; give each key once", field="plan") from None
    except (ValueError, yaml.YAMLError, RecursionError) as e:
        first = " ".join(str(e).split())[:160]
        raise PlanError(f"the plan file {_short_value(name)} is not valid {suffix[1:].upper()}: {first}",
                        field="plan") from None
    if _too_many_values(data):
        raise LimitError(f"the plan file {_short_value(name)} holds more than {MAX_PLAN_NODES:,} values once its "
                         "YAML anchors are expanded", field="plan")
    if not isinstance(data, dict):
        raise PlanError(f"a plan file holds a mapping with keys {', '.join(PLAN_KEYS)}; {_short_value(name)} holds "
                        f"{type(data).__name__}", field="plan")
    allowed = (*PLAN_KEYS, *extra_keys)
    unknown = [str(k) for k in data if k not in allowed]
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PlanError(f"the plan file has an unknown key {_short_value(unknown[0])}{hint}; allowed: "
                        f"{', '.join(allowed)}", field="plan")
    if "channels" not in data:
        raise PlanError("the plan file has no channels (for example channels: {lr: \"cosine(peak=1e-3)\"})",
                        field="plan")
    channels = data["channels"]
    if not isinstance(channels, dict) or not channels:
        raise PlanError("the plan file's channels must map names to schedule specs or numbers", field="channels")
    for key, value in channels.items():
        if key == MIXTURE and isinstance(value, dict):
            for domain, weight in value.items():
                if isinstance(weight, bool) or not isinstance(weight, (str, int, float)):
                    raise PlanError(f"the plan file's {key} gives domain {_short_value(domain)} the weight "
                                    f"{_short_value(weight)}; a weight is a number >= 0 or a schedule spec",
                                    field=key)
            continue
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise PlanError(f"the plan file's channel {_short_value(key)} must be a schedule spec or a number; got "
                            f"{_short_value(value)}", field="channels")
    if "unit" in data:
        unit_of(data["unit"])
    if "guards" in data:
        make_guards(data["guards"])
    horizon = data.get("horizon")
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, (int, str))):
        raise PlanError(f"the plan file's horizon must be a whole number or a duration such as '2Mtok'; got "
                        f"{_short_value(horizon)}", field="horizon")
    return data


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise PlanError(f"gives {_short_value(key)} twice")
        out[key] = value
    return out


@functools.lru_cache(maxsize=1)
def _yaml_loader():
    """yaml.SafeLoader that refuses a key given twice in one mapping (safe_load keeps the last); built once."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise PlanError(f"gives {_short_value(key)} twice")
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)
    return Loader


def _too_many_values(data) -> bool:
    """Whether ``data`` holds more than MAX_PLAN_NODES values, counting a value each time an alias repeats it
    (an anchor bomb is refused after that many steps, never expanded)."""
    stack, seen = [data], 0
    while stack:
        value = stack.pop()
        seen += 1
        if seen > MAX_PLAN_NODES:
            return True
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and len(value) > MAX_PLAN_FILE_BYTES:
            return True
    return False


def _bracket_depth(text: str) -> int:
    """The deepest nesting of [ and { in ``text`` (quotes not parsed: brackets in a spec count too)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest
