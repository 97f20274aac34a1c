"""One training run as forecasting sees it: losses at some steps, and the LR of every step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadence.errors import ForecastError

__all__ = ["Curve", "ForecastError"]


@dataclass(frozen=True, eq=False)
class Curve:
    """``losses[j]`` was measured at ``steps[j]``; ``lrs[i]`` is the LR used at optimizer step i,
    for every step from 0 up to at least the last measured one."""

    steps: np.ndarray
    losses: np.ndarray
    lrs: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        label = f"curve {self.name!r}: " if self.name else ""
        steps = np.asarray(self.steps)
        losses = np.asarray(self.losses, dtype=np.float64)
        lrs = np.asarray(self.lrs, dtype=np.float64)
        if steps.ndim != 1 or losses.ndim != 1 or lrs.ndim != 1:
            raise ForecastError(f"{label}steps, losses and lrs must be 1-D arrays")
        if len(steps) == 0:
            raise ForecastError(f"{label}no measurements (steps is empty)")
        if len(steps) != len(losses):
            raise ForecastError(f"{label}steps has {len(steps)} entries but losses has {len(losses)}")
        if not np.all(np.isfinite(steps)) or np.any(steps < 0) or np.any(steps != np.round(steps)):
            raise ForecastError(f"{label}steps must be whole numbers >= 0")
        steps = steps.astype(np.int64)
        if np.any(np.diff(steps) <= 0):
            bad = int(np.argmax(np.diff(steps) <= 0))
            raise ForecastError(f"{label}steps must increase strictly; step {steps[bad + 1]} follows {steps[bad]}")
        if not np.all(np.isfinite(losses)) or np.any(losses <= 0):
            bad = int(np.argmax(~np.isfinite(losses) | (losses <= 0)))
            raise ForecastError(f"{label}losses must be finite and > 0; got {losses[bad]} at step {steps[bad]}")
        if len(lrs) <= steps[-1]:
            raise ForecastError(f"{label}lrs covers steps 0..{len(lrs) - 1} but losses go up to step {steps[-1]}; "
                                "give the LR of every step")
        if not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
            raise ForecastError(f"{label}lrs must be finite and >= 0")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "lrs", lrs[: steps[-1] + 1])
