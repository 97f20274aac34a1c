"""Plans in the forecaster: a plan file's ``lr`` channel as the schedule a law predicts.

``forecast rank`` and ``forecast optimize`` accept plan files (docs/plans.md). What a plan
holds and what a law models do not always match, so a plan is read here, checked, and
previewed over its horizon in optimizer steps:

* ``lr`` is what every law predicts from (the Multi-Power Law and the LR-annealing law are
  functions of the per-step LR sequence only). It is previewed with :meth:`Plan.preview`.
* ``batch``: no law here models the batch size; they predict from the LR at the fixed
  batch of the runs they were fitted on. A constant batch is accepted (it converts a sample
  or token clock to steps); a batch that is a schedule is refused, naming the law.
* Every other channel must be a constant: a law does not model it, so a schedule there
  would be ignored silently.
* A controller that follows a signal measured during the run (``plateau`` on ``val_loss``,
  ``noise_batch`` on the gradient noise scale) is refused: the forecaster has no such
  signal, and the controller's value as it starts is not what the run would do.
  ``scale_with`` reads another channel, not a signal: with a constant batch it is a
  constant factor, previewed exactly.
* Guards act only when a step goes wrong; a forecast assumes none does, so they are read
  (and checked) but do not change the forecast.

A sample or token clock is converted to steps through the batch: the plan's constant
``batch`` channel, else its ``batch_size`` setting, else the samples per step given in
``rates``. A token clock also needs the tokens per sample (``rates``): a plan file cannot
say it (the workload does). Errors are :class:`ForecastError` (or :class:`PlanError`
about the file itself), one line, naming the plan file.

:func:`check_plan` and :func:`plan_lrs` apply the same rules to a :class:`cadence.Plan` that
is already built (the runner's, for ``cadence run --forecast``): its own rates convert its clock.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cadence.errors import CadenceError, LimitError, PlanError
from cadence.forecast.curve import ForecastError
from cadence.forecast.limits import MAX_OPTIMIZE_STEPS, MAX_STEPS
from cadence.schedules import Schedule
from cadence.schedules.families import Constant
from cadence.plan import PLAN_SUFFIXES, is_plan_file  # noqa: F401 (re-exported: one rule for every command)
from cadence.time import Rates

__all__ = ["PLAN_SUFFIXES", "PLAN_SETTINGS", "MODELLED", "PlanSchedule", "is_plan_file", "plan_schedule",
           "check_plan", "plan_lrs", "common_steps", "optimize_request"]

# The run settings a plan file may hold besides unit, horizon, channels and guards (the runner's; the same list as
# cadence.cli.common.PLAN_FILE_SETTINGS, which a test keeps in step). None changes the forecast: the batch is
# read from batch_size.
PLAN_SETTINGS = ("workload", "seed", "size", "batch_size", "micro_batch", "optimizer", "weight_decay", "clip",
                 "eval_every", "checkpoint_every", "skip_nonfinite", "device", "tensorboard", "forecast", "data",
                 "init", "init_optimizer", "dense_eval", "difficulty")
# The channels the laws model: every law in cadence.forecast.laws predicts from the LR sequence alone.
MODELLED = ("lr",)
_RATE_FIELDS = ("samples_per_step", "tokens_per_sample", "steps_per_epoch")


@dataclass(frozen=True)
class PlanSchedule:
    """A plan file's LR per optimizer step over its horizon, and where it came from."""

    path: str
    lrs: np.ndarray
    unit: str
    horizon: int  # in ``unit``
    samples_per_step: float | None  # the constant batch, when the plan or the rates say it
    spec: str  # the lr channel's spec

    @property
    def steps(self) -> int:
        return int(self.lrs.size)

    @property
    def label(self) -> str:
        return f"{_shown(self.path)}: lr={self.spec}"


def _shown(path: str) -> str:
    text = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 200 else text[:197] + "..."


def _law_name(law) -> str:
    name = getattr(law, "law", None)
    return f"the {name} law" if isinstance(name, str) else "a loss-curve law"


def _controllers(schedule: Schedule) -> list[str]:
    """Names of the controllers in a channel's nest that follow a measured signal (outermost first)."""
    names, node = [], schedule
    while node is not None and node.stateful:
        if node.name != "scale_with":
            names.append(node.name)
        node = getattr(node, "schedule", None)
    return names or [schedule.name]


def _is_constant(schedule: Schedule) -> bool:
    return type(schedule) is Constant and schedule.warmup.value == 0


def _check_modelled(schedules: Mapping[str, Schedule], law, where: str) -> None:
    """A one-line ForecastError for the first channel a law cannot forecast: a controller that follows a signal
    measured during the run, a batch that changes, or any other channel that is not a constant."""
    from cadence.plan import DATA_CHANNELS

    for ch in schedules:
        if ch in DATA_CHANNELS:
            raise ForecastError(f"{where}: channel {ch!r} sets the data, which {_law_name(law)} does not model (it "
                                "predicts from the learning rate, on the data of the runs it was fitted on): drop it")
    for ch, s in schedules.items():
        if s.stateful and s.monitors:
            raise ForecastError(f"{where}: channel {ch!r} is a controller ({', '.join(_controllers(s))}) that follows "
                                f"{', '.join(s.monitors)} measured during the run, which a forecast does not have; "
                                "forecast the schedule under it")
    if "batch" in schedules and not _is_constant(schedules["batch"]):
        raise ForecastError(f"{where}: channel 'batch' changes over the run ({schedules['batch'].spec()[:80]}); "
                            f"{_law_name(law)} predicts from the learning rate at a fixed batch (no law here models "
                            "the batch size): give batch a constant")
    for ch, s in schedules.items():
        if ch not in ("lr", "batch") and not _is_constant(s):
            raise ForecastError(f"{where}: channel {ch!r} changes over the run ({s.spec()[:80]}); {_law_name(law)} "
                                "predicts from the learning rate alone, every other setting as in the runs it was "
                                f"fitted on: give {ch} a constant")


def check_plan(plan, law=None, where: str = "the plan") -> None:
    """Whether ``law`` can forecast a built :class:`cadence.Plan`: the checks of :func:`plan_schedule` on its
    channels, and a length within what a forecast previews. Cheap: nothing is previewed."""
    from cadence.plan import MAX_PREVIEW_STEPS

    if "lr" not in plan.schedules:
        raise ForecastError(f"{where} has no lr channel; {_law_name(law)} predicts the loss from the learning rate")
    _check_modelled(plan.schedules, law, where)
    if plan.horizon is None:
        raise ForecastError(f"{where} has no horizon; a forecast needs the run's length")
    length = plan.clock.step_length  # units in one optimizer step (the batch is constant here)
    if not length:
        raise ForecastError(f"{where} counts samples or tokens but does not say how many an optimizer step holds",
                            field="samples_per_step")
    count = math.ceil(plan.horizon / length)
    if count > min(MAX_PREVIEW_STEPS, MAX_STEPS):
        raise LimitError(f"{where} takes {count:,} optimizer steps; a forecast of a plan covers at most "
                         f"{min(MAX_PREVIEW_STEPS, MAX_STEPS):,}")


def plan_lrs(plan, law=None, where: str = "the plan") -> np.ndarray:
    """The LR of every optimizer step of a built :class:`cadence.Plan` over its horizon (``Plan.preview``; a
    sample or token clock is converted through the plan's own rates), after :func:`check_plan`."""
    check_plan(plan, law, where)
    try:
        return np.asarray(plan.preview()["lr"], dtype=np.float64)
    except CadenceError as e:
        raise type(e)(f"{where}: {e}", field=e.field if e.field in _RATE_FIELDS else None) from None


def plan_schedule(path, law=None, rates: Rates | None = None) -> PlanSchedule:
    """The plan file at ``path`` as the LR of every optimizer step of its horizon, checked against what a law
    models (``law``: a :class:`FittedLaw`, named in the messages). ``rates`` give what the file cannot: tokens
    per sample, steps per epoch, and the samples per step when the file says no batch."""
    from cadence.plan import Plan, _schedule, read_plan_file, unit_of
    from cadence.plan import MAX_PREVIEW_STEPS

    name = os.fspath(path)
    if not isinstance(name, str) or not name.strip():
        raise PlanError("a plan file needs a path", field="plan")
    data = read_plan_file(name, PLAN_SETTINGS)
    where = f"plan file {_shown(name)!r}"
    if data.get("init") is not None:
        raise ForecastError(f"{where} starts from a finished run (init); {_law_name(law)} predicts a run from its "
                            "first step: drop init")
    channels = data["channels"]
    if "lr" not in channels:
        raise ForecastError(f"{where} has no lr channel; {_law_name(law)} predicts the loss from the learning rate")
    schedules = {ch: _schedule(ch, value) for ch, value in channels.items()}
    _check_modelled(schedules, law, where)
    unit = unit_of(data.get("unit", "step"))
    unit_name = unit.name.lower()
    if data.get("horizon") is None:
        raise ForecastError(f"{where} has no horizon; a forecast needs the run's length")

    rates = rates or Rates()
    if not isinstance(rates, Rates):
        raise ForecastError(f"rates must be a cadence.Rates; got {type(rates).__name__}", field="rates")
    own, said = None, None
    size = data.get("batch_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ForecastError(f"{where}: batch_size must be a whole number of samples >= 1; got {size!r:.40}")
    if "batch" in schedules:
        own, said = schedules["batch"].level, "its batch channel"
        if size is not None and float(size) != float(own):
            raise ForecastError(f"{where}: batch_size is {size} but the batch channel is {own:g}; give one of them")
    elif size is not None:
        own, said = size, "its batch_size"
    per = rates.samples_per_step
    if own is not None and per is not None and float(own) != float(per):
        raise ForecastError(f"{where} says {own:g} samples per step ({said}), and {per:g} were given: give it in "
                            "one place", field="samples_per_step")
    per = own if own is not None else per
    if unit_name != "step" and per is None:
        raise ForecastError(f"{where} counts {unit_name}s but does not say how many samples an optimizer step holds "
                            "(batch_size): give the samples per step", field="samples_per_step")
    if unit_name == "token" and rates.tokens_per_sample is None:
        raise ForecastError(f"{where} counts tokens, and a plan file cannot say how many tokens a sample holds: give "
                            "the tokens per sample", field="tokens_per_sample")
    rates = Rates(samples_per_step=per, tokens_per_sample=rates.tokens_per_sample,
                  steps_per_epoch=rates.steps_per_epoch)
    try:
        plan = Plan(channels, horizon=data["horizon"], unit=unit_name, rates=rates,
                    micro_batch=data.get("micro_batch") if "batch" in channels else None)
        length = 1.0 if unit_name == "step" else float(per) * (1.0 if unit_name == "sample" else
                                                               float(rates.tokens_per_sample))
        count = math.ceil(plan.horizon / length)
        if count > min(MAX_PREVIEW_STEPS, MAX_STEPS):
            raise LimitError(f"{where} runs {count:,} optimizer steps; a forecast of a plan covers at most "
                             f"{min(MAX_PREVIEW_STEPS, MAX_STEPS):,}")
        lrs = np.asarray(plan.preview()["lr"], dtype=np.float64)
    except CadenceError as e:
        message = str(e) if str(e).startswith(where) else f"{where}: {e}"
        raise type(e)(message, field=e.field if e.field in _RATE_FIELDS else None) from None
    return PlanSchedule(path=name, lrs=lrs, unit=unit_name, horizon=int(plan.horizon),
                        samples_per_step=None if per is None else float(per), spec=plan.schedules["lr"].spec())


def common_steps(plans: Mapping[str, PlanSchedule], total: int | None = None) -> int:
    """The number of optimizer steps every candidate covers: ``total`` when given (every plan must cover it),
    else the plans' own (which must agree)."""
    if total is not None:
        for name, p in plans.items():
            if p.steps != total:
                raise ForecastError(f"candidate {name!r} ({_shown(p.path)}) covers {p.steps:,} optimizer steps, not "
                                    f"the {total:,} asked for", field="total")
        return total
    if not plans:
        raise ForecastError("the run length is needed: give the number of optimizer steps, or a plan file",
                            field="total")
    lengths = {name: p.steps for name, p in plans.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} ({_shown(plans[name].path)}) {n:,}" for name, n in lengths.items())
        raise ForecastError(f"the plan files cover different numbers of optimizer steps: {listed}; every candidate "
                            "must cover the same run")
    return next(iter(lengths.values()))


def optimize_request(plan: PlanSchedule) -> tuple[int, float, int]:
    """(steps, peak, warmup) of an optimisation taken from a plan's LR: its length in optimizer steps, its
    largest LR, and the steps of a linear warmup from 0 to it (0 when the plan starts at its peak)."""
    where = f"plan file {_shown(plan.path)!r}"
    lrs, n = plan.lrs, plan.steps
    if n > MAX_OPTIMIZE_STEPS:
        raise LimitError(f"{where} runs {n:,} optimizer steps; forecast optimize is limited to "
                         f"{MAX_OPTIMIZE_STEPS:,}")
    if n < 2:
        raise ForecastError(f"{where} runs {n} optimizer step; forecast optimize needs at least 2")
    peak = float(np.max(lrs))
    if not math.isfinite(peak) or peak <= 0:
        raise ForecastError(f"{where}: its lr is 0 at every step; the optimiser needs a peak LR > 0")
    warmup = int(np.argmax(lrs))
    if warmup > n - 2:
        raise ForecastError(f"{where}: its lr peaks at step {warmup} of {n}; the optimiser needs at least 2 steps "
                            "after the warmup to shape")
    if warmup and not np.allclose(lrs[:warmup], peak * (np.arange(warmup) / warmup), rtol=0, atol=1e-6 * peak):
        raise ForecastError(f"{where}: its lr rises to its peak {peak:.4g} over {warmup} steps but not linearly "
                            "from 0; the optimiser's warmup is linear from 0")
    return n, peak, warmup
