"""``plateau(schedule, ...)``: a schedule multiplied by a factor that drops when a signal stalls.

The factor follows torch's ``ReduceLROnPlateau`` observation for observation (the rule is
:class:`~cadence.controllers.plateau_rule.PlateauRule`); the schedule under it (a warmup,
a cosine, another controller) keeps running, which torch cannot do. The value is
``max(schedule * scale, min(schedule, floor))``: a drop never takes it below ``floor``,
and never raises a value that the schedule itself put below the floor.
"""

from __future__ import annotations

import math

import numpy as np

from cadence.controllers.base import Controller
from cadence.controllers.plateau_rule import PlateauRule
from cadence.errors import ScheduleError
from cadence.schedules.base import Schedule

__all__ = ["Plateau"]


class Plateau(Controller):
    name = "plateau"
    formula = "schedule * factor**k, k = drops of torch's ReduceLROnPlateau rule on `monitor`; never below floor"
    source = "torch.optim.lr_scheduler.ReduceLROnPlateau (the rule); cadence (composition with any schedule)"

    def __init__(self, schedule: Schedule, monitor: str = "val_loss", mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 floor: float = 0.0, eps: float = 1e-8) -> None:
        super().__init__(schedule, monitor=monitor, mode=mode, factor=factor, patience=patience, threshold=threshold,
                         threshold_mode=threshold_mode, cooldown=cooldown, floor=floor, eps=eps)
        if self.schedule is None:
            raise ScheduleError("plateau: give the schedule to scale, as in plateau(cosine(peak=1e-3), patience=5)")
        if not isinstance(monitor, str) or not monitor.strip() or len(monitor) > 100:
            raise ScheduleError(f"plateau: monitor must be the name of a signal such as 'val_loss'; got {monitor!r:.60}")
        self.monitor = monitor
        self.floor = self._number("floor", floor, low=0)
        for name, value in (("factor", factor), ("threshold", threshold), ("eps", eps)):
            self._number(name, value)
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ScheduleError(f"plateau: {name} must be a whole number; got {value!r:.60}")
        self.rule = PlateauRule(mode=mode, factor=float(factor), patience=int(patience), threshold=float(threshold),
                                threshold_mode=threshold_mode, cooldown=int(cooldown), eps=float(eps))
        self._watch(monitor=monitor)
        self.diagnostic_names = (*self.diagnostic_names, "scale", "reductions")

    def init(self) -> dict:
        return {"inner": self.inner_init(), "rule": self.rule.init()}

    def update(self, state: dict, clock, signals: dict) -> dict:
        inner = self.inner_update(state, clock, signals)
        metric = signals.get(self.monitor)
        rule = state["rule"]
        if metric is not None and isinstance(metric, (int, float, np.integer, np.floating)) \
                and not isinstance(metric, (bool, np.bool_)):
            base = self.inner_value(state, clock, signals)  # a plan's signals carry the step's channel values
            current = max(base * rule["scale"], min(base, self.floor))
            try:
                metric = float(metric)
            except OverflowError:  # an int too large for a float
                metric = math.inf if metric > 0 else -math.inf
            rule = self.rule.observe(rule, metric, current, min(base, self.floor), at=clock.position)
        return {"inner": inner, "rule": rule}

    def diagnose(self, state: dict) -> dict:
        rule = state["rule"]
        return {**super().diagnose(state), "scale": rule["scale"], "reductions": len(rule["reductions"])}

    def check_state(self, state: dict) -> str | None:
        return self.rule.check(state["rule"]) or (None if self.schedule is None else self.schedule.check_state(state["inner"]))

    def value(self, state: dict, clock, inputs=None) -> float:
        base = self.inner_value(state, clock, inputs)
        return max(base * state["rule"]["scale"], min(base, self.floor))

