"""The reduce-on-plateau rule as a pure function of plain state.

It is the rule of torch's ``ReduceLROnPlateau``, step for step: an observation is better
than the best so far when it beats it by ``threshold`` (relative: ``best*(1-threshold)``
for ``min``, ``best*(1+threshold)`` for ``max``; absolute: ``best -/+ threshold``);
otherwise it is a bad observation. Observations during a cooldown are not counted as bad.
When more than ``patience`` bad observations follow each other, the value is multiplied by
``factor`` (but not below ``floor``; a drop of ``eps`` or less is ignored) and a cooldown of
``cooldown`` observations starts. A NaN observation is never better, so it counts as bad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cadence.errors import ScheduleError

__all__ = ["PlateauRule"]

MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")


@dataclass(frozen=True)
class PlateauRule:
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ScheduleError(f"plateau: mode must be 'min' or 'max', not {self.mode!r}")
        if self.threshold_mode not in THRESHOLD_MODES:
            raise ScheduleError(f"plateau: threshold_mode must be 'rel' or 'abs', not {self.threshold_mode!r}")
        if not (isinstance(self.factor, (int, float)) and 0 < self.factor < 1):
            raise ScheduleError(f"plateau: factor must be a number in (0, 1); got {self.factor!r}")
        for name in ("patience", "cooldown"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
                raise ScheduleError(f"plateau: {name} must be a whole number in [0, 1e9]; got {value!r}")
        for name in ("threshold", "eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ScheduleError(f"plateau: {name} must be a finite number >= 0; got {value!r}")

    def init(self) -> dict:
        """``best`` is None until the first observation (torch starts from +-inf)."""
        return {"best": None, "bad": 0, "cooldown": 0, "scale": 1.0, "reductions": [], "observations": 0}

    def _better(self, a: float, best: "float | str | None") -> bool:
        if best is None:
            best = math.inf if self.mode == "min" else -math.inf
        best = float(best)  # an infinite best is kept as the string "inf" or "-inf": the state stays JSON
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return a > (best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold)

    def check(self, state: dict) -> str | None:
        """Why ``state`` is not a state this rule can reach, or None."""
        for key in ("bad", "cooldown", "observations"):
            v = state[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                return f"{key} must be a whole number >= 0; got {v!r}"
        scale = state["scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            return f"scale must be a number in (0, 1]; got {scale!r}"
        best = state["best"]
        if not (best is None or best in ("inf", "-inf") or (isinstance(best, (int, float)) and not isinstance(best, bool))):
            return f"best must be a number, 'inf', '-inf' or null; got {best!r}"
        return None

    def observe(self, state: dict, metric: float, current: float, floor: float, at=None) -> dict:
        """State after one observation. ``current`` is the value now in use (before any drop);
        ``at`` is recorded with a reduction (the clock's position), for the log."""
        state = dict(state)
        state["observations"] += 1
        if self._better(metric, state["best"]):
            state["best"] = float(metric) if math.isfinite(metric) else repr(float(metric))
            state["bad"] = 0
        else:
            state["bad"] += 1
        if state["cooldown"] > 0:
            state["cooldown"] -= 1
            state["bad"] = 0
        if state["bad"] > self.patience:
            new = max(current * self.factor, floor)
            if current - new > self.eps:
                state["scale"] = state["scale"] * self.factor
                state["reductions"] = [*state["reductions"], at]
            state["cooldown"] = self.cooldown
            state["bad"] = 0
        return state
