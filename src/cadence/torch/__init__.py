"""Drive any PyTorch optimizer field from cadence schedules, controllers or a whole Plan.

``Scheduler(optimizer, schedule, total_steps=...)`` (or ``Scheduler(optimizer, plan)``) is a
thin client of a :class:`cadence.Plan`: the plan keeps the clock and the controllers'
state, the scheduler writes the plan's optimizer channels into the param groups. It speaks the
``torch.optim.lr_scheduler.LRScheduler`` protocol (``step()``, ``get_last_lr()``,
``state_dict()``, ``load_state_dict()``) and is an instance of that class, so it drops into
plain loops, the transformers Trainer and Lightning. Unlike torch's schedulers it never
wraps ``optimizer.step`` and never updates a value from the previous one: the value for
step k is ``schedule(k) * ratio`` for each param group, a pure function of the clock.

Every value it sets is finite and >= 0 (schedules refuse anything else at the step that
gives it), so no optimizer is ever handed a negative learning rate.

Where it meets the rest of torch's scheduler protocol (docs/integrations.md, "The torch
protocol"): each param group gets ``initial_lr`` as torch's schedulers set it; a
:class:`StepOrderWarning` says once when ``step()`` ran before the optimizer's first step
(seen through the optimizer's step hook, not by wrapping ``optimizer.step``); a step the
optimizer did not take (a ``GradScaler`` found inf/NaN gradients) is counted with ``skip()``,
or by :meth:`Scheduler.step_or_skip`, which asks the optimizer; a second writer of the
learning rate (a torch scheduler beside it in a ``ChainedScheduler``, ``ReduceLROnPlateau``,
the loop) is refused at the next ``step()`` instead of being silently overwritten, and
``SequentialLR`` is refused when it is built. Bad arguments and malformed checkpoint states
raise :mod:`cadence.errors` types and leave the scheduler as it was.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from cadence.errors import CadenceError, LimitError
from cadence.plan import BATCH, DATA_CHANNELS, FORMAT as PLAN_FORMAT, Plan
from cadence.schedules import Schedule
from cadence.schedules.base import _short_value
from cadence.schedules.limits import MAX_ITEMS, MAX_TOTAL_STEPS
from cadence.time import Rates, Unit

__all__ = ["Scheduler", "StepOrderWarning", "OptimizerFields", "optimizer_channels", "drivable"]

_FORMAT = "cadence.torch.Scheduler/1"
_MODES = ("replan", "stretch")
_BETAS = ("betas", "beta1", "beta2")
_COMPOSE = "compose schedules in one spec instead (join, warmup, rewarm, decay_from, scale, plateau)"
_QUIET = (os.path.dirname(torch.__file__) + os.sep, __file__)  # frames a warning points past


class StepOrderWarning(UserWarning):
    """``Scheduler.step()`` ran before the optimizer's first ``step()`` (torch's call-order warning)."""


class _StepWatch:
    """The optimizer's step post-hook: counts the optimizer's steps for ``step_or_skip`` and,
    at the first one, has the scheduler check the call order (``owner``, a weak reference, is
    cleared after that). ``found_inf`` is what a GradScaler handed an optimizer that skips
    inside its own ``step()`` (``fused=True``); it is deleted when that step returns."""

    __slots__ = ("steps", "found_inf", "owner")

    def __init__(self, owner) -> None:
        self.steps, self.found_inf, self.owner = 0, None, owner

    def __call__(self, optimizer, args, kwargs) -> None:
        self.steps += 1
        self.found_inf = optimizer.__dict__.get("found_inf")
        if self.owner is not None:
            owner, self.owner = self.owner(), None
            if owner is not None:
                owner._check_order()


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


def optimizer_channels(plan: Plan) -> list[str]:
    """The channels of ``plan`` that are optimizer fields (not ``batch``, not the data channels such as
    ``mixture``, not dotted names like ``loss.z``)."""
    return [name for name in plan.schedules if name != BATCH and name not in DATA_CHANNELS and "." not in name]


def drivable(group: Mapping[str, Any]) -> list[str]:
    """The fields of a param group a channel can drive: its numeric keys, with betas as beta1 and beta2."""
    names = [k for k, v in group.items() if k not in ("params", "betas") and isinstance(k, str) and _is_number(v)]
    if isinstance(group.get("betas"), (tuple, list)) and len(group["betas"]) == 2:
        names += ["beta1", "beta2"]
    return names


def gradient_norm(optimizer: torch.optim.Optimizer) -> float | None:
    """The L2 norm of every gradient the optimizer would apply (None when no parameter has one): the
    ``grad_norm`` signal a guard or controller reads, measured before the optimizer step."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else None


def discard_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Make the coming ``optimizer.step()`` a true skip: every gradient becomes None, and torch's optimizers
    leave a parameter without a gradient alone (weights, moments, step counts, weight decay), which a zero
    gradient would not do. What a loop does on a guard's 'skip' before calling ``plan.skip()``."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


class OptimizerFields:
    """Writes channel values into an optimizer's param groups, each group at its ratio.

    ``ratios``: per-field list of per-group multipliers. By default each group keeps its
    ratio to the largest initial value of that field across groups (a group built with
    half the base LR stays at half); if every group starts at 0, all get 1.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, fields: list[str],
                 ratios: "Mapping[str, list[float]] | None" = None, who: str = "Scheduler") -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise CadenceError(f"{who} needs a torch.optim.Optimizer; got {type(optimizer).__name__}")
        self.optimizer, self.who = optimizer, who
        self.io = {}
        for name in fields:
            kind, read, write = _accessor(name)
            for i, group in enumerate(optimizer.param_groups):
                key = "betas" if kind == "betas" else name
                if key not in group:
                    hint = " (Adam-style optimizers keep momentum in betas: drive 'beta1')" if name == "momentum" else ""
                    raise CadenceError(f"{who}: param group {i} has no {key!r} field to drive{hint}; "
                                       f"{type(optimizer).__name__}'s fields: {', '.join(drivable(group))}",
                                       field="channels")
                if kind == "betas" and not (isinstance(group["betas"], (tuple, list)) and len(group["betas"]) == 2):
                    raise CadenceError(f"{who}: param group {i} has betas {_short_value(group['betas'])}, not a pair")
                if not _is_number(read(group)):
                    raise CadenceError(f"{who}: param group {i}'s {name!r} is {_short_value(read(group))}, "
                                       "not a number a schedule can drive")
            self.io[name] = (read, write)
        self._writes_cache = None
        self.ratios = {name: self._default_ratios(name) for name in fields}
        if ratios is not None:
            if not isinstance(ratios, Mapping):
                raise CadenceError(f"{who}: ratios must be a mapping {{field: [ratio per group]}}; "
                                   f"got {type(ratios).__name__}")
            for name, r in ratios.items():
                self.set_ratios(name, r)

    def _default_ratios(self, name: str) -> list[float]:
        read = self.io[name][0]
        bases = [float(read(g)) for g in self.optimizer.param_groups]
        top = max(bases)
        if top <= 0:
            return [1.0] * len(bases)
        return [b / top for b in bases]

    def set_ratios(self, name: str, ratios: list[float]) -> None:
        if name not in self.io:
            raise CadenceError(f"{self.who}: ratios given for {name!r}, which no schedule drives ({', '.join(self.io)})")
        n = len(self.optimizer.param_groups)
        if not isinstance(ratios, (list, tuple)) or len(ratios) != n or not all(
                _is_number(r) and not isinstance(r, torch.Tensor) and math.isfinite(r) and r >= 0 for r in ratios):
            raise CadenceError(f"{self.who}: ratios[{name!r}] must be {n} finite numbers >= 0 (one per param group); "
                               f"got {_short_value(ratios)}")
        self.ratios[name] = [float(r) for r in ratios]
        self._writes_cache = None

    def per_group(self, values: Mapping[str, float]) -> dict[str, list[float]]:
        return {name: [values[name] if r == 1.0 else values[name] * r for r in self.ratios[name]] for name in self.io}

    def apply(self, values: Mapping[str, float]) -> list | None:
        """Set every driven field of every group from ``values`` (one number per channel).

        Returns the learning rates written, one per group, when every group's ``lr`` is a
        plain float that was driven (else None: read them from the groups).
        """
        groups = self.optimizer.param_groups
        lrs = None
        for name, write, ratios, beta in self._writes_cache or self._writes():
            v = values[name]
            written = []
            for group, r in zip(groups, ratios):
                x = v if r == 1.0 else v * r
                if beta or type(group[name]) is not float:  # betas and tensors go through the accessor
                    write(group, x)
                    written = None
                else:
                    group[name] = x
                    if written is not None:
                        written.append(x)
            if name == "lr":
                lrs = written
        return lrs

    def _writes(self) -> list:
        """(field, writer, ratios, is a beta) per driven field, worked out once per change of ratios."""
        writes = self._writes_cache
        if writes is None:
            writes = self._writes_cache = [(name, write, self.ratios[name], name in _BETAS)
                                           for name, (_, write) in self.io.items()]
        return writes

    def read(self) -> dict[str, list[float]]:
        return {name: [float(read(g)) for g in self.optimizer.param_groups] for name, (read, _) in self.io.items()}


class Scheduler(LRScheduler):
    """Set optimizer param-group fields from a plan's channels, one step at a time.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        schedule: a schedule, controller or spec string (drives ``field``); a mapping
            ``{field: schedule}`` to drive several fields (``lr``, ``weight_decay``,
            ``momentum``, ``beta1``/``betas``, ``beta2``, or any numeric group key); or a
            :class:`cadence.Plan`, whose optimizer channels it drives (``batch`` and
            ``loss.*`` channels are the training loop's).
        total_steps: the planned number of optimizer steps (needed by every schedule
            whose shape depends on the run's length); a Plan brings its own horizon.
        rates: the run's :class:`cadence.Rates`, for durations in samples, tokens or epochs.
        ratios: per-field list of per-group multipliers. By default each group keeps its
            ratio to the largest initial value of that field across groups (a group built
            with half the base LR stays at half); if every group starts at 0, all get 1.

    Right after construction the groups hold the values for step 0; after the k-th
    ``step()`` they hold the values for step k. A controller (``plateau``) reads signals
    given to :meth:`observe` (``sched.observe({"val_loss": v})`` before ``sched.step()``).
    Each group gets ``initial_lr`` (its lr before the scheduler set one) unless it has one.
    A step the optimizer did not take is counted by :meth:`skip` (or :meth:`step_or_skip`).
    The scheduler must be the only writer of ``lr``: ``step()`` refuses to run when
    something else changed the value it set.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: "Schedule | str | Plan | Mapping[str, Schedule | str]",
                 total_steps: int | None = None, *, field: str = "lr", rates: Rates | None = None,
                 ratios: "Mapping[str, list[float]] | None" = None) -> None:
        # LRScheduler.__init__ is deliberately not called: it wraps optimizer.step and takes a step.
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise CadenceError(f"Scheduler needs a torch.optim.Optimizer; got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if isinstance(schedule, Plan):
            if total_steps is not None or rates is not None:
                raise CadenceError("Scheduler: a Plan brings its own horizon and rates; do not pass total_steps or rates")
            self.plan, self._own_plan = schedule, False
            fields = optimizer_channels(schedule)
            if not fields:
                raise CadenceError("Scheduler: the plan has no optimizer channel to drive (only batch or loss.* channels)")
        else:
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
            if rates is not None and not isinstance(rates, Rates):
                raise CadenceError(f"Scheduler: rates must be a cadence.time.Rates; got {type(rates).__name__}")
            if total_steps is not None and (not _is_int(total_steps) or total_steps < 1):
                raise CadenceError(f"Scheduler: total_steps must be a positive int; got {_short_value(total_steps)}",
                                   field="total_steps")
            if total_steps is not None and total_steps > MAX_TOTAL_STEPS:
                raise LimitError(f"Scheduler: total_steps is {_short_value(total_steps)}; at most {MAX_TOTAL_STEPS} "
                                 "(2**53) steps are counted exactly", field="total_steps")
            self._pairs, self._rates = pairs, rates
            self.plan, self._own_plan = self._make_plan(total_steps), True
            fields = list(pairs)
        self.rates = self.plan.rates
        self.fields = OptimizerFields(optimizer, fields, ratios)
        self.schedules: dict[str, Schedule] = {name: self.plan.schedules[name] for name in fields}
        self._stateful = any(s.stateful for s in self.plan.schedules.values())
        before = [g.get("lr") for g in optimizer.param_groups]
        before = [lr.clone() if isinstance(lr, torch.Tensor) else lr for lr in before]  # _apply fills tensors in place
        self._apply()
        # As torch's schedulers: each group's initial_lr is its lr before any scheduler set it
        # (one a torch scheduler or an optimizer checkpoint already put there is kept).
        for group, lr in zip(optimizer.param_groups, before):
            if lr is not None and "initial_lr" not in group:
                group["initial_lr"] = lr
        self.base_lrs = [float(g["initial_lr"]) if "initial_lr" in g else 0.0 for g in optimizer.param_groups]
        self._order_from = self.plan.clock.step
        self._seen_steps = 0
        self._watch_optimizer(armed=True)

    def _watch_optimizer(self, armed: bool) -> None:
        """Register the step post-hook that counts the optimizer's steps (None where the
        optimizer runs no step hooks: one that skips ``Optimizer.__init__``)."""
        self._watch = None
        opt = self.optimizer
        if not (getattr(type(opt).step, "hooked", False)
                and isinstance(opt.__dict__.get("_optimizer_step_post_hooks"), dict)):
            return
        watch = _StepWatch(weakref.ref(self) if armed else None)
        handle = opt.register_step_post_hook(watch)
        weakref.finalize(self, handle.remove)  # a scheduler that is gone leaves no hook behind
        self._watch = watch

    def __getstate__(self) -> dict[str, Any]:  # copy.deepcopy: the copy hooks its own optimizer
        state = dict(self.__dict__)
        watch = state.pop("_watch", None)
        state["_armed"] = watch is not None and watch.owner is not None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        armed = state.pop("_armed", False)
        self.__dict__.update(state)
        self._seen_steps = 0
        self._watch_optimizer(armed)

    def _check_order(self) -> None:
        """At the optimizer's first step: warn if the clock moved since it was last set."""
        early = self.plan.clock.step - self._order_from
        if early > 0:
            frame, level = sys._getframe(0), 1
            while frame is not None and frame.f_code.co_filename.startswith(_QUIET):
                frame, level = frame.f_back, level + 1
            warnings.warn(
                f"Scheduler.step() was called {early} time(s) before the optimizer's first step(), which therefore "
                f"used the values of step {self.plan.clock.step}, not {self._order_from}: call optimizer.step() "
                "before sched.step(); for a step the optimizer did not take (a GradScaler found inf/NaN "
                "gradients, a guard refused it) call sched.skip() or sched.step_or_skip(); to resume at step k "
                "use sched.load_state_dict() or sched.step(k)", StepOrderWarning, stacklevel=level)

    def _make_plan(self, total_steps: int | None) -> Plan:
        try:
            return Plan(self._pairs, horizon=total_steps, unit="step", rates=self._rates)
        except CadenceError as e:
            message = str(e)
            if e.field == "horizon" and total_steps is None:  # say it in the Scheduler's own words
                message = message.replace("give the plan a horizon", "give total_steps") + " (needs the run's total_steps)"
            raise type(e)(_unchannel(message, self._pairs), field="total_steps" if e.field == "horizon" else e.field) \
                from None

    @property
    def ratios(self) -> dict[str, list[float]]:
        return self.fields.ratios

    # -- clock ------------------------------------------------------------------------------
    @property
    def _step(self) -> int:
        return self.plan.clock.step

    @property
    def last_epoch(self) -> int:
        """The current step (torch's name for it)."""
        return self.plan.clock.step

    @last_epoch.setter
    def last_epoch(self, value: int) -> None:  # torch code sometimes assigns it
        if _is_int(value) and value == -1:  # SequentialLR "undoes" its children's first step
            raise CadenceError(f"Scheduler.last_epoch: {value} is not a step (torch's SequentialLR sets -1 to undo a "
                               f"first step, which a Scheduler never takes: it cannot drive one); {_COMPOSE}")
        self._seek(self._valid_step(value, "last_epoch"))
        self._order_from = self.plan.clock.step

    def _initial_step(self) -> None:  # torch's SequentialLR calls these on its children
        raise CadenceError(f"Scheduler: torch's SequentialLR cannot drive a cadence Scheduler; {_COMPOSE}")

    def _update_lr(self, epoch: int | None = None) -> None:
        self._initial_step()

    @staticmethod
    def _valid_step(step, what: str) -> int:
        if not _is_int(step) or step < 0:
            raise CadenceError(f"Scheduler.{what}: step must be an int >= 0; got {_short_value(step)}")
        if step > MAX_TOTAL_STEPS:
            raise LimitError(f"Scheduler.{what}: step {step} is past {MAX_TOTAL_STEPS} (2**53), the last step counted exactly")
        return int(step)

    def _seek(self, step: int) -> None:
        """Put the plan's clock at ``step`` (samples and tokens at the run's constant rates)."""
        plan = self.plan
        if plan.unit is not Unit.STEP:
            raise CadenceError("Scheduler: only a plan on a step clock can be set to a step; call step() to advance")
        plan.clock = plan.clock.with_counters(plan.counters_at(step))

    @property
    def total_steps(self) -> int | None:
        return self.plan.horizon

    def observe(self, signals: Mapping[str, float]) -> None:
        """Give the plan's controllers what the step just taken measured (before :meth:`step`).

        When a controller drives a field, the optimizer gets the value it gives from now on at
        once (an evaluation between steps can lower the learning rate of the next step)."""
        self.plan.observe(signals)
        if self._stateful:
            self._apply()

    def _other_writer(self) -> None:
        """step()/advance(): refuse when the lr this scheduler set last was changed by someone else."""
        written = self._written
        if written is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            if lr is not written[0] and lr != written[0]:
                self._refuse_other_writer(lr, written[0], "advance")

    def _refuse_other_writer(self, lr, expect, method: str = "step") -> None:
        raise CadenceError(f"Scheduler.{method}: param group 0's lr is {_short_value(lr)}, not the {expect!r} this scheduler "
                           "set: something else writes lr (a torch scheduler beside it in a ChainedScheduler, "
                           "ReduceLROnPlateau, the loop, or optimizer.load_state_dict without the scheduler's "
                           f"load_state_dict); a Scheduler must be its only writer: {_COMPOSE}", field="lr")

    def step(self, step: int | None = None) -> None:  # noqa: D401 - torch's name
        """Advance the clock by one step, or set it to ``step``, and update the optimizer.

        Raises CadenceError, changing nothing, when the learning rate it set last was changed
        by something else since (another scheduler, ReduceLROnPlateau, the loop)."""
        plan = self.plan
        if step is None:
            written = self._written
            if written is not None:  # did anything else change the lr since this scheduler set it?
                lr = self.optimizer.param_groups[0]["lr"]
                if lr is not written[0] and lr != written[0]:
                    self._refuse_other_writer(lr, written[0])
            if plan._fixed_counts is not None and plan._step < MAX_TOTAL_STEPS:
                plan._advance_fixed()  # a constant batch: the clock object is rebuilt only when asked for
                try:
                    self._apply()
                except CadenceError:
                    plan._advance_fixed(-1)  # the hot path kept no clock: count the step back
                    raise
                return
        old = plan.clock
        if step is None and old.step < MAX_TOTAL_STEPS:
            plan.advance()
        elif isinstance(step, float) and not step.is_integer():
            raise CadenceError(f"Scheduler.step: step must be an int; got {step!r} (a metric for a controller such as "
                               "plateau goes to observe({'val_loss': value}) before step(), not to step())")
        else:
            self._seek(self._valid_step(old.step + 1 if step is None else step, "step"))
        try:
            self._apply()
        except CadenceError:
            plan.clock = old  # the clock only moves to a step whose values are valid
            raise
        if step is not None:  # a seek (a resume at step k) is not a step taken before the optimizer's
            self._order_from = plan.clock.step

    def advance(self, samples: int | None = None, tokens: int | None = None) -> None:
        """Count one optimizer step that used ``samples`` and ``tokens`` (what the step really
        drew; by default the plan's batch) and set the optimizer to the next step's values.

        The client of a loop whose batches vary (the last batch of an epoch, a sampler that
        packs tokens) calls this instead of :meth:`step`; see :meth:`cadence.Plan.advance`.
        """
        plan = self.plan
        self._other_writer()
        old = plan.clock
        plan.advance(samples, tokens)
        try:
            self._apply()
        except CadenceError:
            plan.clock = old
            raise

    def skip(self) -> None:
        """Count a step that was not applied (a guard refused it, or a mixed-precision gradient
        scaler found inf/NaN gradients): only the clock's ``skipped`` counter moves, so the
        next step uses the same values (see docs/runner.md, "The training step")."""
        self.plan.skip()

    def step_or_skip(self, samples: int | None = None, tokens: int | None = None) -> bool:
        """:meth:`step` if the optimizer took a step since the last call (or since the scheduler
        was built), else :meth:`skip`; returns whether it stepped.

        For a loop whose steps can be skipped without it knowing: a ``GradScaler`` that found
        inf/NaN gradients does not call ``optimizer.step()`` (or, for an optimizer that skips
        inside its own step, such as ``fused=True``, hands it the finding, which is read here).
        ``samples``/``tokens`` go to :meth:`advance` for a step whose batch varies.
        """
        watch = self._watch
        if watch is None:
            raise CadenceError(f"Scheduler.step_or_skip: {type(self.optimizer).__name__} runs no step hooks "
                               "(it skips torch.optim.Optimizer.__init__), so whether it stepped is unknown; "
                               "call step() or skip()")
        stepped = watch.steps != self._seen_steps
        self._seen_steps = watch.steps
        found_inf = watch.found_inf
        if stepped and isinstance(found_inf, torch.Tensor) and bool(found_inf.item()):
            stepped = False
        if stepped:
            if samples is None and tokens is None:
                self.step()
            else:
                self.advance(samples, tokens)
        else:
            self.skip()
        return stepped

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
        plan = self.plan
        old = (plan.horizons, plan.horizon, plan.clock)
        try:
            plan.set_horizon(int(total_steps), mode)
            self._apply()
        except CadenceError as e:
            plan._records, plan.horizon, plan.clock = old[0], old[1], old[2]
            plan._bind()
            plan._cache = None
            message = _unchannel(str(e), self.schedules).replace("set_horizon: the horizon", "set_total: total_steps", 1)
            raise type(e)(message, field=e.field) from None

    # -- values -----------------------------------------------------------------------------
    def value(self, field: str, step: int) -> float:
        """The value for ``field`` at ``step`` (before the per-group ratio), with the plan's current state."""
        if field not in self.schedules:
            raise CadenceError(f"Scheduler.value: no schedule drives {_short_value(field)}; "
                               f"driven: {', '.join(self.schedules)}")
        step = self._valid_step(step, "value")
        plan = self.plan
        if step == plan.clock.step:
            return plan.values()[field]
        saved = plan.clock, plan._cache
        try:
            self._seek(step)
            return plan.values()[field]
        finally:
            plan.clock, plan._cache = saved

    def _values_now(self) -> dict[str, list[float]]:
        try:
            values = self.plan.values()
        except CadenceError as e:
            raise type(e)(f"Scheduler: {e}", field=e.field) from None
        return self.fields.per_group(values)

    def _apply(self) -> None:
        try:
            values = self.plan._values()
        except CadenceError as e:
            raise type(e)(f"Scheduler: {e}", field=e.field) from None
        # the lrs written, when it drives lr as floats: what step() expects to find there next
        self._written = lrs = self.fields.apply(values)
        if lrs is None:
            lrs = [float(g["lr"]) if not isinstance(g["lr"], torch.Tensor) else g["lr"].clone()
                   for g in self.optimizer.param_groups]
        self._last_lr = lrs

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
        return self.fields.read()

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data (ints, floats, strings, lists): safe for ``torch.load(weights_only=True)``.

        The ``cadence.torch.Scheduler/1`` keys of earlier releases, plus the plan's clock
        counters and controller states under ``plan``.
        """
        plan = self.plan.state_dict()
        return {
            "format": _FORMAT,
            "step": self._step,
            "totals": plan["horizons"],
            "schedules": plan["channels"],
            "ratios": {name: list(r) for name, r in self.ratios.items()},
            "plan": {"clock": plan["clock"], "states": plan["states"]},
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` (of this release or an earlier one). A state that is
        not one, or is for other schedules, raises CadenceError and leaves this scheduler unchanged."""
        found = state_dict.get("format") if isinstance(state_dict, Mapping) else type(state_dict).__name__
        if not (isinstance(found, str) and found == _FORMAT):
            raise CadenceError(f"Scheduler.load_state_dict: expected a {_FORMAT} state; got {_short_value(found)}")
        missing = [k for k in ("step", "totals", "schedules", "ratios") if k not in state_dict]
        if missing:
            raise CadenceError(f"Scheduler.load_state_dict: the state has no {', '.join(missing)}")
        mine = self.plan.channels
        theirs = state_dict["schedules"]
        if not (isinstance(theirs, Mapping) and all(isinstance(v, str) or (k in DATA_CHANNELS and isinstance(v, Mapping))
                                                    for k, v in theirs.items()) and dict(theirs) == mine):
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
        extra = state_dict.get("plan") or {}
        if not isinstance(extra, Mapping):
            raise CadenceError(f"Scheduler.load_state_dict: plan must be a mapping; got {type(extra).__name__}")
        # a state of an earlier release has no clock: its counters at the run's constant rates
        clock = extra.get("clock", {**self.plan.counters_at(step), "skipped": 0})
        if not (isinstance(clock, Mapping) and clock.get("step") == step):
            raise CadenceError(f"Scheduler.load_state_dict: the plan's clock ({_short_value(clock)}) is not at step {step}")
        plan_state = {"format": PLAN_FORMAT, "unit": "step", "horizon": totals[-1][1] if totals else None,
                      "horizons": [list(r) for r in totals], "channels": dict(theirs), "clock": dict(clock),
                      "states": extra.get("states", {n: s.init() for n, s in self.plan.schedules.items()})}
        plan, old_ratios = self.plan, dict(self.ratios)
        try:
            first = totals[0][1] if totals else None
            if self._own_plan and (plan.horizons[0][1] if plan.horizons else None) != first:
                # a scheduler made for another length than the checkpoint's: the checkpoint's plan wins
                plan = self._make_plan(first)
            plan.load_state_dict(plan_state)
            for name, r in ratios.items():
                self.fields.set_ratios(name, r)
            saved_plan, self.plan = self.plan, plan
            try:
                self._apply()
            except CadenceError:
                self.plan = saved_plan
                raise
            self._order_from = plan.clock.step  # resuming is not stepping before the optimizer
        except CadenceError as e:
            self.fields.ratios.clear()
            self.fields.ratios.update(old_ratios)
            self.fields._writes_cache = None
            self._apply()
            raise CadenceError(f"Scheduler.load_state_dict: {_unchannel(str(e), self.schedules)}", field=e.field) from None

    def __repr__(self) -> str:
        driven = ", ".join(f"{n}={s.spec()}" for n, s in self.schedules.items())
        return f"Scheduler(step={self._step}, total_steps={self.total_steps}, {driven})"


def _unchannel(message: str, pairs) -> str:
    """A plan's "channel 'lr': ..." prefix is noise when the scheduler drives one field."""
    if len(pairs) == 1:
        name = next(iter(pairs))
        message = message.replace(f"channel {name!r}: ", "", 1)
    return message
