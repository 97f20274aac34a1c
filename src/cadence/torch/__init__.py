"""Drive any PyTorch optimizer field from cadence schedules.

``Scheduler(optimizer, schedule, total_steps=...)`` speaks the
``torch.optim.lr_scheduler.LRScheduler`` protocol (``step()``, ``get_last_lr()``,
``state_dict()``, ``load_state_dict()``) and is an instance of that class, so it drops into
plain loops, the transformers Trainer and Lightning. Unlike torch's schedulers it never
wraps ``optimizer.step`` and never updates a value from the previous one: the value for
step k is ``schedule(k) * ratio`` for each param group, a pure function of the clock.

Every value it sets is finite and >= 0 (schedules refuse anything else at the step that
gives it), so no optimizer is ever handed a negative learning rate. Bad arguments and
malformed checkpoint states raise :mod:`cadence.errors` types and leave the scheduler as
it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from cadence.errors import CadenceError, LimitError
from cadence.schedules import Replanned, Schedule, parse
from cadence.schedules.base import _short_value
from cadence.schedules.limits import MAX_ITEMS, MAX_TOTAL_STEPS
from cadence.time import Rates

__all__ = ["Scheduler"]

_FORMAT = "cadence.torch.Scheduler/1"
_BLOCK = 4096  # steps evaluated at once; one numpy call per block keeps step() cheap
_MODES = ("replan", "stretch")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and value.dtype != torch.bool and not value.is_complex()
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _accessor(field: str):
    """(read, write) functions for a param-group field; beta1/beta2 address ``betas``."""
    index = {"betas": 0, "beta1": 0, "beta2": 1}.get(field)
    if index is None:
        def read(group):
            return group[field]

        def write(group, value):
            current = group[field]
            if isinstance(current, torch.Tensor):
                current.fill_(value)
            else:
                group[field] = value
        return "field", read, write

    def read_beta(group):
        return group["betas"][index]

    def write_beta(group, value):
        betas = list(group["betas"])
        if isinstance(betas[index], torch.Tensor):
            betas[index].fill_(value)
        else:
            betas[index] = value
        group["betas"] = tuple(betas)
    return "betas", read_beta, write_beta


class Scheduler(LRScheduler):
    """Set optimizer param-group fields from schedules, one step at a time.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        schedule: a schedule or spec string (drives ``field``), or a mapping
            ``{field: schedule}`` to drive several fields (``lr``, ``weight_decay``,
            ``momentum``, ``beta1``/``betas``, ``beta2``, or any numeric group key).
        total_steps: the planned number of optimizer steps (needed by every schedule
            whose shape depends on the run's length).
        rates: the run's :class:`cadence.Rates`, for durations in samples, tokens or epochs.
        ratios: per-field list of per-group multipliers. By default each group keeps its
            ratio to the largest initial value of that field across groups (a group built
            with half the base LR stays at half); if every group starts at 0, all get 1.

    Right after construction the groups hold the values for step 0; after the k-th
    ``step()`` they hold the values for step k.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: "Schedule | str | Mapping[str, Schedule | str]",
                 total_steps: int | None = None, *, field: str = "lr", rates: Rates | None = None,
                 ratios: "Mapping[str, list[float]] | None" = None) -> None:
        # LRScheduler.__init__ is deliberately not called: it wraps optimizer.step and takes a step.
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise CadenceError(f"Scheduler needs a torch.optim.Optimizer; got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if isinstance(schedule, Mapping):
            if not schedule:
                raise CadenceError("Scheduler: the schedule mapping is empty; give at least one {field: schedule}")
            pairs = dict(schedule)
        else:
            if not isinstance(field, str):
                raise CadenceError(f"Scheduler: field must be the name of a param-group key; got {_short_value(field)}")
            pairs = {field: schedule}
        for name in pairs:
            if not isinstance(name, str) or not name or name == "params":
                raise CadenceError(f"Scheduler: a field to drive must be a param-group key other than 'params'; "
                                   f"got {_short_value(name)}")
        self.schedules: dict[str, Schedule] = {name: parse(s) for name, s in pairs.items()}
        if rates is not None and not isinstance(rates, Rates):
            raise CadenceError(f"Scheduler: rates must be a cadence.time.Rates; got {type(rates).__name__}")
        self.rates = rates or Rates()
        self._io = {}
        for name in self.schedules:
            kind, read, write = _accessor(name)
            for i, group in enumerate(optimizer.param_groups):
                key = "betas" if kind == "betas" else name
                if key not in group:
                    hint = " (Adam-style optimizers keep momentum in betas: drive 'beta1')" if name == "momentum" else ""
                    raise CadenceError(f"Scheduler: param group {i} has no {key!r} field to drive{hint}")
                if kind == "betas" and not (isinstance(group["betas"], (tuple, list)) and len(group["betas"]) == 2):
                    raise CadenceError(f"Scheduler: param group {i} has betas {_short_value(group['betas'])}, not a pair")
                if not _is_number(read(group)):
                    raise CadenceError(f"Scheduler: param group {i}'s {name!r} is {_short_value(read(group))}, "
                                       "not a number a schedule can drive")
            self._io[name] = (read, write)
        if total_steps is not None and (not _is_int(total_steps) or total_steps < 1):
            raise CadenceError(f"Scheduler: total_steps must be a positive int; got {_short_value(total_steps)}",
                               field="total_steps")
        self._totals: list[list] = [[0, int(total_steps), "replan"]] if total_steps is not None else []
        self._bind()
        self.ratios = {name: self._default_ratios(name) for name in self.schedules}
        if ratios is not None:
            if not isinstance(ratios, Mapping):
                raise CadenceError(f"Scheduler: ratios must be a mapping {{field: [ratio per group]}}; "
                                   f"got {type(ratios).__name__}")
            for name, r in ratios.items():
                self._set_ratios(name, r)
        self.base_lrs = [float(g.get("lr", 0.0)) for g in optimizer.param_groups]
        self._step = 0
        self._cache: dict[str, tuple[int, np.ndarray]] = {}
        self._apply()

    # -- clock ------------------------------------------------------------------------------
    @property
    def last_epoch(self) -> int:
        """The current step (torch's name for it)."""
        return self._step

    @last_epoch.setter
    def last_epoch(self, value: int) -> None:  # torch code sometimes assigns it
        self._step = self._valid_step(value, "last_epoch")
        self._cache.clear()

    @staticmethod
    def _valid_step(step, what: str) -> int:
        if not _is_int(step) or step < 0:
            raise CadenceError(f"Scheduler.{what}: step must be an int >= 0; got {_short_value(step)}")
        if step > MAX_TOTAL_STEPS:
            raise LimitError(f"Scheduler.{what}: step {step} is past {MAX_TOTAL_STEPS} (2**53), the last step counted exactly")
        return int(step)

    @property
    def total_steps(self) -> int | None:
        return self._totals[-1][1] if self._totals else None

    def step(self, step: int | None = None) -> None:  # noqa: D401 - torch's name
        """Advance the clock by one step, or set it to ``step``, and update the optimizer."""
        if step is None and self._step < MAX_TOTAL_STEPS:
            new = self._step + 1  # the hot path: no validation needed
        else:
            new = self._valid_step(self._step + 1 if step is None else step, "step")
        old, self._step = self._step, new
        try:
            self._apply()
        except CadenceError:
            self._step = old  # the clock only moves to a step whose values are valid
            raise

    def set_total(self, total_steps: int, mode: str = "replan") -> None:
        """Change the planned length from the current step on; values of earlier steps never change.

        ``mode='replan'``: from now on the schedule is the one planned for ``total_steps``
        (a WSD run in its stable phase just moves its decay). ``mode='stretch'``: the rest
        of the current plan is stretched onto the new remaining steps (continuous).
        The current step's value, not yet used by ``optimizer.step()``, follows the new plan.
        """
        if not _is_int(total_steps):
            raise CadenceError(f"set_total: total_steps must be an int; got {_short_value(total_steps)}")
        if not isinstance(mode, str) or mode not in _MODES:
            raise CadenceError(f"set_total: mode must be one of {', '.join(map(repr, _MODES))}; got {_short_value(mode)}")
        if total_steps <= self._step:
            raise CadenceError(f"set_total: the new total ({total_steps}) must be larger than the current step ({self._step})")
        record = [self._step, int(total_steps), mode]
        if not self._totals:
            record[0] = 0
        old = [list(r) for r in self._totals]
        if self._totals and self._totals[-1][0] == self._step:
            if len(self._totals) == 1:
                record[2] = "replan"
            self._totals[-1] = record
        else:
            self._totals.append(record)
        try:
            self._bind()
            self._cache.clear()
            self._apply()
        except CadenceError:
            self._totals = old
            self._bind()
            self._cache.clear()
            raise

    # -- values -----------------------------------------------------------------------------
    def _bind(self) -> None:
        """Build and check what is evaluated for ``self._totals``; nothing changes if it raises."""
        effective, contexts = {}, {}
        total = self._totals[-1][1] if self._totals else None
        for name, s in self.schedules.items():
            if len(self._totals) > 1:
                s = Replanned(s, self._totals)
            contexts[name] = s.bind(total, self.rates)
            effective[name] = s
        self._effective, self._contexts = effective, contexts

    def value(self, field: str, step: int) -> float:
        """The schedule's value for ``field`` at ``step`` (before the per-group ratio).

        Values are computed ``_BLOCK`` steps at a time, never across the end of the run:
        steps of the run are never refused because of a value past its end.
        """
        if field not in self._effective:
            raise CadenceError(f"Scheduler.value: no schedule drives {_short_value(field)}; "
                               f"driven: {', '.join(self._effective)}")
        return self._value(field, self._valid_step(step, "value"))

    def _value(self, field: str, step: int) -> float:
        cached = self._cache.get(field)
        if cached is not None and cached[0] <= step < cached[1]:
            return float(cached[2][step - cached[0]])
        lo, hi = step - step % _BLOCK, step - step % _BLOCK + _BLOCK
        total = self.total_steps
        if total is not None:
            lo, hi = (lo, min(hi, total)) if step < total else (max(lo, total), hi)
        schedule, ctx = self._effective[field], self._contexts[field]
        try:
            values = schedule.evaluate(np.arange(lo, hi, dtype=np.float64), ctx)
        except CadenceError:
            # A bad value ahead in the block must not refuse this step: compute it alone.
            lo, hi = step, step + 1
            try:
                values = schedule.evaluate(np.array([float(step)]), ctx)
            except CadenceError as e:
                raise type(e)(f"Scheduler: {field}: {e}", field=e.field) from None
        cached = (lo, hi, values)
        self._cache[field] = cached
        return float(cached[2][step - cached[0]])

    def _values_now(self) -> dict[str, list[float]]:
        out = {}
        for name in self.schedules:
            v = self._value(name, self._step)
            out[name] = [v if r == 1.0 else v * r for r in self.ratios[name]]
        return out

    def _apply(self) -> None:
        groups = self.optimizer.param_groups
        for name, vals in self._values_now().items():
            write = self._io[name][1]
            for group, v in zip(groups, vals):
                write(group, v)
        self._last_lr = [float(g["lr"]) if not isinstance(g["lr"], torch.Tensor) else g["lr"].clone() for g in groups]

    def get_lr(self) -> list[float]:
        """The learning rates for the current step (no side effects)."""
        vals = self._values_now()
        if "lr" in vals:
            return vals["lr"]
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return self._last_lr

    def get_last_values(self) -> dict[str, list[float]]:
        """Every driven field's current value per param group."""
        return {name: [float(read(g)) for g in self.optimizer.param_groups] for name, (read, _) in self._io.items()}

    # -- ratios -----------------------------------------------------------------------------
    def _default_ratios(self, name: str) -> list[float]:
        read = self._io[name][0]
        bases = [float(read(g)) for g in self.optimizer.param_groups]
        top = max(bases)
        if top <= 0:
            return [1.0] * len(bases)
        return [b / top for b in bases]

    def _set_ratios(self, name: str, ratios: list[float]) -> None:
        if name not in self.schedules:
            raise CadenceError(f"Scheduler: ratios given for {name!r}, which no schedule drives ({', '.join(self.schedules)})")
        n = len(self.optimizer.param_groups)
        if not isinstance(ratios, (list, tuple)) or len(ratios) != n or not all(
                _is_number(r) and not isinstance(r, torch.Tensor) and math.isfinite(r) and r >= 0 for r in ratios):
            raise CadenceError(f"Scheduler: ratios[{name!r}] must be {n} finite numbers >= 0 (one per param group); "
                               f"got {_short_value(ratios)}")
        self.ratios[name] = [float(r) for r in ratios]

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data (ints, floats, strings, lists): safe for ``torch.load(weights_only=True)``."""
        return {
            "format": _FORMAT,
            "step": self._step,
            "totals": [list(r) for r in self._totals],
            "schedules": {name: s.spec() for name, s in self.schedules.items()},
            "ratios": {name: list(r) for name, r in self.ratios.items()},
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`. A state that is not one, or is for other schedules,
        raises CadenceError and leaves this scheduler unchanged."""
        found = state_dict.get("format") if isinstance(state_dict, Mapping) else type(state_dict).__name__
        if not (isinstance(found, str) and found == _FORMAT):
            raise CadenceError(f"Scheduler.load_state_dict: expected a {_FORMAT} state; got {_short_value(found)}")
        missing = [k for k in ("step", "totals", "schedules", "ratios") if k not in state_dict]
        if missing:
            raise CadenceError(f"Scheduler.load_state_dict: the state has no {', '.join(missing)}")
        mine = {name: s.spec() for name, s in self.schedules.items()}
        theirs = state_dict["schedules"]
        if not (isinstance(theirs, Mapping) and all(isinstance(v, str) for v in theirs.values()) and dict(theirs) == mine):
            raise CadenceError(f"Scheduler.load_state_dict: the checkpoint drives {_short_value(state_dict['schedules'], 300)}, "
                               f"this scheduler drives {_short_value(mine, 300)}")
        step = self._valid_step(state_dict["step"], "load_state_dict")
        totals = state_dict["totals"]
        if not isinstance(totals, (list, tuple)) or len(totals) > MAX_ITEMS or not all(
                isinstance(r, (list, tuple)) and len(r) == 3 and _is_int(r[0]) and _is_int(r[1])
                and isinstance(r[2], str) and r[2] in _MODES for r in totals):
            raise CadenceError("Scheduler.load_state_dict: totals must be a list of at most "
                               f"{MAX_ITEMS} [step, total, mode] records; got {_short_value(totals)}")
        ratios = state_dict["ratios"]
        if not isinstance(ratios, Mapping):
            raise CadenceError(f"Scheduler.load_state_dict: ratios must be a mapping; got {type(ratios).__name__}")
        old = (self._totals, dict(self.ratios), self._step)
        try:
            self._totals = [[int(a), int(b), str(m)] for a, b, m in totals]
            self._bind()
            for name, r in ratios.items():
                self._set_ratios(name, r)
            self._step = step
            self._cache.clear()
            self._apply()
        except CadenceError:
            self._totals, self.ratios, self._step = old
            self._bind()
            self._cache.clear()
            raise

    def __repr__(self) -> str:
        driven = ", ".join(f"{n}={s.spec()}" for n, s in self.schedules.items())
        return f"Scheduler(step={self._step}, total_steps={self.total_steps}, {driven})"
