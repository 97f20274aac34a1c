"""Guards: whether a step's update is applied, decided from what the step measured.

A guard reads one signal of a step after its gradients are computed and before the
optimizer step, and says whether to apply the update. A skipped step is not applied and
does not move the clock (only ``skipped`` counts it), so the next step uses the same
values (docs/runner.md, "The training step").

``LossSpike(window=128, sigma=6.0, min_history=64)``
    Skip a step whose value is non-finite, or exceeds the mean of the last ``window``
    applied steps' values by more than ``sigma`` sample standard deviations (one-sided:
    a drop is never a spike). No step is skipped before ``min_history`` values are known.
    Skipped values do not enter the window, so a spike cannot widen the band that judges
    the next one (OLMo-core's SkipStep, whose defaults these are, keeps them). More than
    ``max_in_a_row`` skipped steps in a row raise :class:`TrainingDiverged` (exit status 3):
    a loss that stays high is a diverged run, not a spike.
    ``signal='grad_norm'`` watches the gradient norm instead of the training loss.

``Rollback(spikes=3, within=100, max_rollbacks=3)``
    When ``spikes`` steps were skipped within ``within`` attempted steps, the plan's verdict
    is ``'rollback'``: a client that keeps checkpoints restores the last one and goes on with
    the data after the spike (PaLM's remedy: Chowdhery et al. 2022, section 5.1; llm.c's
    outlier detector skips on a z-score in the same way). The runner stops the run as
    diverged after ``max_rollbacks`` rollbacks. A loop without checkpoints treats it as a skip.

Each guard is pure, like a controller: ``init() -> state``, ``check(state, value) -> bool``
(True: skip), ``record(state, value, applied) -> state``; state is plain JSON-safe data.
For a hand-written loop, ``observe(value) -> bool`` and ``state_dict()`` /
``load_state_dict()`` keep the state in the object. In a :class:`cadence.Plan` the guards are
a ``guards`` mapping (plan files: ``guards: {loss_spike: {sigma: 6}, rollback: {spikes: 3}}``)
and ``plan.guard(signals)`` gives the verdict for a step.
"""

from __future__ import annotations

import abc
import difflib
import math
from collections.abc import Mapping
from typing import Any

from cadence.errors import CadenceError, PlanError, TrainingDiverged
from cadence.schedules.base import _short_value

__all__ = ["LossSpike", "Rollback", "GUARDS", "make_guards", "settings_of", "VERDICTS"]

VERDICTS = ("apply", "skip", "rollback")
MAX_WINDOW = 1 << 16  # values a spike guard keeps: its state is saved in every checkpoint


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> float | None:
    """A signal as a float (None: not measured). Tensors and numpy scalars are numbers too."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CadenceError(f"a guard's signal must be a number; got {value!r}", field="signals")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise CadenceError(f"a guard's signal must be a number; got {_short_value(value)}", field="signals") from None


class _Stateful(abc.ABC):
    """The object-held state of a guard, for loops that do not use a Plan."""

    name = ""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The guard's settings (what a saved state must match)."""

    @abc.abstractmethod
    def init(self) -> dict[str, Any]:
        """The state before any step."""

    @abc.abstractmethod
    def check_state(self, state: Any) -> str | None:
        """Why ``state`` is not one this guard can be in, or None."""

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data: this guard's settings and state."""
        return {"guard": self.name, "config": self.config(), "state": _copy(self.state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; refuses (one line, nothing changed) another guard's state."""
        if not isinstance(state, Mapping) or state.get("guard") != self.name:
            raise CadenceError(f"expected a {self.name} guard state; got {_short_value(state)}", field="state")
        if state.get("config") != self.config():
            raise CadenceError(f"the state belongs to a {self.name} guard with settings {_short_value(state.get('config'))}; "
                               f"this one has {_short_value(self.config())}", field="state")
        problem = self.check_state(state.get("state"))
        if problem:
            raise CadenceError(f"the {self.name} guard state is not valid: {problem}", field="state")
        self.state = _copy(state["state"])


def _copy(state: dict) -> dict:
    return {k: list(v) if isinstance(v, list) else v for k, v in state.items()}


class LossSpike(_Stateful):
    """Skip a step whose ``signal`` spikes above the recent window (see the module docstring).

    Args:
        window: applied steps whose values form the reference (2 to 65,536).
        sigma: how many sample standard deviations above the window's mean is a spike (> 0).
        min_history: values needed before any step is judged (2 to ``window``).
        signal: ``'train_loss'`` (default) or ``'grad_norm'``, or any signal a loop reports.
        max_in_a_row: skipped steps in a row after which the run is diverged (>= 1).
    """

    def __init__(self, window: int = 128, sigma: float = 6.0, min_history: int = 64, *,
                 signal: str = "train_loss", max_in_a_row: int = 10) -> None:
        if not _is_int(window) or not 2 <= window <= MAX_WINDOW:
            raise CadenceError(f"window must be a whole number of steps from 2 to {MAX_WINDOW}; got "
                               f"{_short_value(window)}", field="window")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
            raise CadenceError(f"sigma must be a finite number > 0; got {_short_value(sigma)}", field="sigma")
        if not _is_int(min_history) or not 2 <= min_history <= window:
            raise CadenceError(f"min_history must be a whole number from 2 to window ({window}); got "
                               f"{_short_value(min_history)}", field="min_history")
        if not isinstance(signal, str) or not signal or len(signal) > 128:
            raise CadenceError(f"signal must be the name of a signal such as 'train_loss'; got {_short_value(signal)}",
                               field="signal")
        if not _is_int(max_in_a_row) or not 1 <= max_in_a_row <= 10**6:
            raise CadenceError(f"max_in_a_row must be a whole number from 1 to 1000000; got {_short_value(max_in_a_row)}",
                               field="max_in_a_row")
        self.window, self.sigma, self.min_history = window, float(sigma), min_history
        self.signal, self.max_in_a_row = signal, max_in_a_row
        self.name = "grad_spike" if signal == "grad_norm" else "loss_spike"
        self.state = self.init()

    def config(self) -> dict[str, Any]:
        return {"window": self.window, "sigma": self.sigma, "min_history": self.min_history, "signal": self.signal,
                "max_in_a_row": self.max_in_a_row}

    def init(self) -> dict[str, Any]:
        """``history``: the last applied steps' values; ``in_a_row``: skipped steps since the last applied
        one; ``skipped``: steps this guard refused."""
        return {"history": [], "in_a_row": 0, "skipped": 0}

    def band(self, state: Mapping[str, Any]) -> tuple[float, float] | None:
        """(mean, sample standard deviation) of the window, or None before ``min_history`` values."""
        history = state["history"]
        n = len(history)
        if n < self.min_history:
            return None
        mean = math.fsum(history) / n
        var = math.fsum([(x - mean) * (x - mean) for x in history]) / (n - 1)
        return mean, math.sqrt(var)

    def check(self, state: Mapping[str, Any], value) -> bool:
        """True when the step whose signal is ``value`` must not be applied (None: not measured: apply)."""
        v = _number(value)
        if v is None:
            return False
        if not math.isfinite(v):
            return True
        band = self.band(state)
        return band is not None and v - band[0] > self.sigma * band[1]

    def record(self, state: Mapping[str, Any], value, applied: bool, fired: bool = False) -> dict[str, Any]:
        """The state after a step: an applied step's value joins the window; a skipped one counts."""
        history = state["history"]
        if applied:
            v = _number(value)
            if v is not None and math.isfinite(v):
                history = [*history[-(self.window - 1):], v] if len(history) >= self.window else [*history, v]
            return {"history": history, "in_a_row": 0, "skipped": state["skipped"]}
        return {"history": history, "in_a_row": state["in_a_row"] + 1, "skipped": state["skipped"] + int(fired)}

    def gives_up(self, state: Mapping[str, Any]) -> bool:
        return state["in_a_row"] > self.max_in_a_row

    def observe(self, value) -> bool:
        """Judge one step: True means do not apply it. Raises TrainingDiverged after more than
        ``max_in_a_row`` skipped steps in a row."""
        fired = self.check(self.state, value)
        self.state = self.record(self.state, value, applied=not fired, fired=fired)
        if self.gives_up(self.state):
            raise TrainingDiverged(f"{self.state['in_a_row']} steps in a row were skipped by the {self.name} guard "
                                   f"(more than max_in_a_row={self.max_in_a_row}): the {self.signal} stays high")
        return fired

    def check_state(self, state: Any) -> str | None:
        if not (isinstance(state, Mapping) and set(state) == {"history", "in_a_row", "skipped"}):
            return "it must hold history, in_a_row and skipped"
        h = state["history"]
        if not (isinstance(h, list) and len(h) <= self.window and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in h)):
            return f"history must be at most {self.window} finite numbers"
        if not all(_is_int(state[k]) and state[k] >= 0 for k in ("in_a_row", "skipped")):
            return "in_a_row and skipped must be whole numbers >= 0"
        return None

    def diagnose(self, state: Mapping[str, Any]) -> dict[str, float | None]:
        band = self.band(state)
        return {"skipped": state["skipped"], "mean": None if band is None else band[0],
                "std": None if band is None else band[1]}

    def __repr__(self) -> str:
        return (f"LossSpike(window={self.window}, sigma={self.sigma:g}, min_history={self.min_history}, "
                f"signal={self.signal!r}, max_in_a_row={self.max_in_a_row})")


class Rollback(_Stateful):
    """Ask for a rollback to the last checkpoint after ``spikes`` skipped steps within ``within``
    attempted steps (see the module docstring). ``max_rollbacks``: rollbacks after which a
    client stops the run as diverged."""

    name = "rollback"

    def __init__(self, spikes: int = 3, within: int = 100, max_rollbacks: int = 3) -> None:
        for key, value, top in (("spikes", spikes, 10**6), ("within", within, 10**9), ("max_rollbacks", max_rollbacks, 10**6)):
            if not _is_int(value) or not 1 <= value <= top:
                raise CadenceError(f"{key} must be a whole number from 1 to {top}; got {_short_value(value)}", field=key)
        if spikes > within:
            raise CadenceError(f"spikes ({spikes}) cannot exceed within ({within}) attempted steps", field="spikes")
        self.spikes, self.within, self.max_rollbacks = spikes, within, max_rollbacks
        self.state = self.init()

    def config(self) -> dict[str, Any]:
        return {"spikes": self.spikes, "within": self.within, "max_rollbacks": self.max_rollbacks}

    def init(self) -> dict[str, Any]:
        """``recent``: the attempt numbers (step + skipped) of the skipped steps that count."""
        return {"recent": []}

    def record(self, state: Mapping[str, Any], attempt: int, skipped: bool) -> tuple[bool, dict[str, Any]]:
        """(roll back now?, new state) after the step numbered ``attempt`` was or was not skipped."""
        recent = [a for a in state["recent"] if a > attempt - self.within]
        if skipped:
            recent.append(attempt)
        if len(recent) >= self.spikes:
            return True, {"recent": []}
        return False, {"recent": recent}

    def observe(self, attempt: int, skipped: bool) -> bool:
        """For a hand-written loop: True when it should restore its last checkpoint now."""
        roll, self.state = self.record(self.state, attempt, skipped)
        return roll

    def check_state(self, state: Any) -> str | None:
        if not (isinstance(state, Mapping) and set(state) == {"recent"} and isinstance(state["recent"], list)
                and len(state["recent"]) < self.spikes and all(_is_int(a) and a >= 0 for a in state["recent"])):
            return f"recent must be fewer than {self.spikes} step numbers"
        return None

    def diagnose(self, state: Mapping[str, Any]) -> dict[str, float | None]:
        return {}

    def __repr__(self) -> str:
        return f"Rollback(spikes={self.spikes}, within={self.within}, max_rollbacks={self.max_rollbacks})"


# Names a plan's ``guards`` mapping (and a plan file's) may use, and what each builds.
GUARDS = {
    "loss_spike": lambda **kw: LossSpike(**{"signal": "train_loss", **kw}),
    "grad_spike": lambda **kw: LossSpike(**{**kw, "signal": "grad_norm"}),
    "rollback": lambda **kw: Rollback(**kw),
}
_SETTINGS = {"loss_spike": ("window", "sigma", "min_history", "signal", "max_in_a_row"),
             "grad_spike": ("window", "sigma", "min_history", "max_in_a_row"),
             "rollback": ("spikes", "within", "max_rollbacks")}


def settings_of(name: str, guard: "LossSpike | Rollback") -> dict[str, Any]:
    """The settings of ``guard`` as a ``guards`` mapping writes them under ``name`` (every default filled)."""
    config = guard.config()
    return {key: config[key] for key in _SETTINGS[name]}


def make_guards(guards: "Mapping[str, Any] | None") -> dict[str, "LossSpike | Rollback"]:
    """The guard objects of a plan's ``guards`` mapping: ``{name: {setting: value} | guard object}``.

    Raises PlanError naming the first unknown guard or setting, or a value out of range.
    """
    if guards is None:
        return {}
    if not isinstance(guards, Mapping):
        raise PlanError(f"guards must map guard names ({', '.join(GUARDS)}) to their settings; got "
                        f"{type(guards).__name__}", field="guards")
    out: dict[str, LossSpike | Rollback] = {}
    for name, settings in guards.items():
        if name not in GUARDS:
            close = difflib.get_close_matches(str(name), GUARDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PlanError(f"unknown guard {_short_value(name)}{hint}; guards: {', '.join(GUARDS)}", field="guards")
        if isinstance(settings, (LossSpike, Rollback)):
            guard = settings
            if guard.name != name and not (name == "loss_spike" and isinstance(guard, LossSpike)):
                raise PlanError(f"guard {name!r} is given a {guard.name} guard", field="guards")
        else:
            if settings is None:
                settings = {}
            if not isinstance(settings, Mapping):
                raise PlanError(f"guard {name!r} takes a mapping of settings ({', '.join(_SETTINGS[name])}); got "
                                f"{_short_value(settings)}", field="guards")
            for key in settings:
                if key not in _SETTINGS[name]:
                    close = difflib.get_close_matches(str(key), _SETTINGS[name], n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise PlanError(f"guard {name!r} has no setting {_short_value(key)}{hint}; its settings: "
                                    f"{', '.join(_SETTINGS[name])}", field="guards")
            try:
                guard = GUARDS[name](**settings)
            except CadenceError as e:
                raise PlanError(f"guard {name!r}: {e}", field="guards") from None
        out[name] = guard
    if "rollback" in out and len(out) == 1:
        raise PlanError("the rollback guard counts the steps other guards skip: add loss_spike or grad_spike",
                        field="guards")
    return out
