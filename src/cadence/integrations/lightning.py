"""cadence for PyTorch Lightning: ``PlanCallback(plan)`` drives a :class:`cadence.Plan` from a Trainer.

::

    from cadence import Plan
    from cadence.integrations.lightning import PlanCallback

    plan = Plan({"lr": "cosine(peak=1e-3, warmup=100)", "weight_decay": "linear(peak=0.1, final=0.0)"},
                horizon=1000)
    trainer = L.Trainer(max_steps=1000, callbacks=[PlanCallback(plan)])
    trainer.fit(model)          # the module's configure_optimizers returns only its optimizer

The callback is a thin client of the plan, like :class:`cadence.torch.Scheduler`: the plan
keeps the clock, the controllers' and the guards' state; the callback writes the plan's
optimizer channels (every channel but ``batch`` and dotted names such as ``loss.z``, see
:func:`cadence.torch.optimizer_channels`) into the module's own optimizer through
:class:`cadence.torch.OptimizerFields`, each param group at its ratio. At each hook:

``on_fit_start``
    refuses (one line, a :mod:`cadence.errors` type, before the first step) a module with
    manual optimization or several optimizers, an LR scheduler from ``configure_optimizers``
    (two writers of one field), a channel naming a field the optimizer lacks, and guards or
    a ``grad_norm`` controller under a strategy that shards gradients (FSDP, DeepSpeed);
    then writes the values for the clock's step.
``on_train_start``
    after Lightning restored the optimizer's state from ``ckpt_path``: checks that the
    checkpoint held the plan's state and that the plan's clock is where the trainer resumes
    (applied + skipped steps = ``trainer.global_step``), refuses a plan reading ``val*``
    signals in a fit without validation, and writes the values again.
``on_train_batch_start``
    counts the batch's samples (and tokens, when ``tokens=`` is given).
``on_before_backward``
    adds the micro-batch's loss to the step's training loss (only when something reads it).
``on_before_optimizer_step``
    measures the gradient norm (only when something reads it) and asks the plan's guards
    (``plan.guard``). A step they refuse is truly skipped: every gradient of the optimizer
    is set to None, which torch's optimizers document as "skip this parameter" (no
    momentum, Adam moment, step count or weight decay moves; a zero gradient would still
    move them).
``on_train_batch_end``
    at the batch that ended an optimizer step: ``plan.observe({"train_loss", "grad_norm"})``
    then ``plan.advance(samples, tokens)``, and the next step's values are written; a
    skipped step calls ``plan.skip()`` instead (the clock does not move, the next step
    uses the same values). A step that a mixed-precision gradient scaler skipped (inf/NaN
    gradients) is counted as skipped too.
``on_validation_end``
    (not during the sanity check) observes every signal the plan monitors whose name starts
    with ``val`` (``val_loss``, ``val_acc``) from ``trainer.callback_metrics``, and writes
    the values again, so a ``plateau`` on ``val_loss`` changes the very next step.
``state_dict`` / ``load_state_dict``
    the plan's state (clock, controllers, guards) and the per-group ratios live in the
    Lightning checkpoint; loading another plan's state raises PlanError.

Refused at construction (one line, PlanError): a ``batch`` channel (a Lightning run's batch
is its DataLoader's times ``accumulate_grad_batches``), a ``rollback`` guard (a callback
cannot restore a checkpoint in the middle of ``fit()``), and a controller or guard reading a
signal the callback never gives (it gives ``train_loss``, ``grad_norm``, metrics whose
names start with ``val``, and what ``training_step`` hands it with :meth:`PlanCallback.report`:
per-domain ``train_loss/<domain>`` and per-bucket ``bucket_loss/<k>`` losses, for the data
channels' mixers and bandits; docs/integrations.md, "Data channels in your own loop").

Counting: the samples of a batch are the leading dimension of the first tensor found in it
(depth first through tuples, lists and mappings), or ``samples(batch)`` when given. With
``accumulate_grad_batches=n`` one optimizer step is the sum over its n batches (the last
step of an epoch may hold fewer). The tokens are ``tokens(batch)`` summed the same way when
given, else the plan's rule (samples times its ``tokens_per_sample``, or 0). With several
processes each process counts its own batches and the counts are summed over processes
(one small all-reduce per optimizer step); the training loss is averaged over them.

Two packages: Lightning ships as ``lightning`` (``lightning.pytorch``) and as
``pytorch_lightning``, each with its own ``Callback`` class; a Trainer's callbacks belong
to its own package. ``PlanCallback`` is the callback for ``lightning.pytorch`` when that is
installed, else for ``pytorch_lightning``; ``plan_callback_class("pytorch_lightning")``
(or ``"lightning.pytorch"``) gives the one for the other package. Both share every line
of behaviour and the checkpoint key ``PlanCallback``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.errors import CadenceError, PlanError
from cadence.guards import Rollback
from cadence.plan import BATCH, Plan
from cadence.schedules.base import _short_value
from cadence.torch import OptimizerFields, discard_gradients, gradient_norm, optimizer_channels
from cadence.torch.data import Reports, reported

__all__ = ["PlanCallback", "plan_callback_class", "count_samples", "PACKAGES"]

_FORMAT = "cadence.integrations.lightning.PlanCallback/1"
PACKAGES = ("lightning.pytorch", "pytorch_lightning")
_ALIASES = {"lightning.pytorch": "lightning.pytorch", "lightning": "lightning.pytorch",
            "pytorch_lightning": "pytorch_lightning", "pytorch-lightning": "pytorch_lightning"}
_STEP_SIGNALS = ("train_loss", "grad_norm")  # what the callback measures at each optimizer step
_MAX_DEPTH = 8  # how deep the sample counter looks into nested batches


def _first_tensor(batch: Any, depth: int = 0) -> "torch.Tensor | None":
    if isinstance(batch, torch.Tensor):
        return batch
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(batch, Mapping):
        items = batch.values()
    elif isinstance(batch, (list, tuple)):
        items = batch
    else:
        return None
    for item in items:
        found = _first_tensor(item, depth + 1)
        if found is not None:
            return found
    return None


def count_samples(batch: Any) -> int:
    """The samples in ``batch``: the leading dimension of its first tensor (a 0-d tensor is one sample)."""
    t = batch[0] if type(batch) in (list, tuple) and batch else batch  # the common (inputs, targets) first
    if type(t) is not torch.Tensor:
        t = _first_tensor(batch)
    if t is None:
        raise CadenceError(f"PlanCallback cannot count the samples of a batch of type {type(batch).__name__} (it holds "
                           "no tensor); give PlanCallback(plan, samples=...) a function of the batch that returns them",
                           field="samples")
    return int(t.shape[0]) if t.dim() else 1


def _count(what: str, fn: Callable[[Any], Any], batch: Any) -> int:
    value = fn(batch)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.item())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CadenceError(f"PlanCallback: {what}(batch) must return a whole number >= 0; got {_short_value(value)}",
                           field=what)
    return value


class _PlanCallback:
    """Drive a :class:`cadence.Plan` from a Lightning Trainer (see the module docstring).

    Args:
        plan: the plan; its optimizer channels are written into the module's optimizer,
            its clock counts the real optimizer steps, samples and tokens.
        samples: ``samples(batch) -> int``, the samples of one batch of this process
            (default: the leading dimension of the batch's first tensor).
        tokens: ``tokens(batch) -> int``, the tokens of one batch of this process
            (default: the plan's rule, samples times its ``tokens_per_sample``).
    """

    package = ""  # set on each concrete class: the Lightning package whose Callback it is

    def __init__(self, plan: Plan, *, samples: "Callable[[Any], int] | None" = None,
                 tokens: "Callable[[Any], int] | None" = None) -> None:
        if not isinstance(plan, Plan):
            raise CadenceError(f"PlanCallback needs a cadence.Plan; got {type(plan).__name__}", field="plan")
        if BATCH in plan.schedules:
            raise PlanError("PlanCallback cannot drive a 'batch' channel: a Lightning run's batch is its DataLoader's "
                            "batch times accumulate_grad_batches; remove the channel (cadence's runner drives batch)",
                            field="channels")
        for name, fn in (("samples", samples), ("tokens", tokens)):
            if fn is not None and not callable(fn):
                raise CadenceError(f"PlanCallback: {name} must be a function of the batch; got {_short_value(fn)}",
                                   field=name)
        probes = [(signal, channels) for signal, channels in plan.monitors.items() if signal.startswith("probe_loss/")]
        if probes:
            raise PlanError(f"PlanCallback: channel {probes[0][1][0]!r} reads {probes[0][0]!r}, a held-out probe measured "
                            "after the clock moves (aioli), which a callback cannot time; use odm() or doremi(...), or "
                            "cadence's runner", field="channels")
        signals = {name: f"channel {', '.join(map(repr, channels))}" for name, channels in plan.monitors.items()}
        for name, guard in plan.guards.items():
            if isinstance(guard, Rollback):
                raise PlanError("PlanCallback cannot honour a 'rollback' guard: a callback cannot restore a checkpoint "
                                "in the middle of fit(); keep loss_spike or grad_spike, which skip steps",
                                field="guards")
            signals.setdefault(guard.signal, f"guard {name!r}")
        unknown = [name for name in signals if name not in _STEP_SIGNALS and not name.startswith("val")
                   and not (reported(name) and not signals[name].startswith("guard"))]
        if unknown:
            raise PlanError(f"PlanCallback gives the plan train_loss, grad_norm, validation metrics (names starting "
                            f"with 'val') and what training_step reports (train_loss/<domain>, bucket_loss/<k>: "
                            f"PlanCallback.report); {signals[unknown[0]]} reads {unknown[0]!r}", field="channels")
        super().__init__()
        self.plan = plan
        self._initial = plan.state_dict()  # where a fit that does not resume starts the plan
        self.fields: OptimizerFields | None = None
        self._samples_fn, self._tokens_fn = samples, tokens
        self._optimizer = None
        self._stateful = any(s.stateful for s in plan.schedules.values())
        per = plan.rates.samples_per_step  # a whole number of samples per step: what advance() counts by default
        self._per_step = int(per) if per is not None and float(per).is_integer() else None
        guard_signals = {g.signal for g in plan.guards.values()}
        self._guarded = bool(plan.guards)
        self._wants_loss = "train_loss" in plan.monitors or "train_loss" in guard_signals
        self._wants_norm = "grad_norm" in plan.monitors or "grad_norm" in guard_signals
        self._judged = self._guarded or self._wants_loss or self._wants_norm
        self._val_signals = [name for name in plan.monitors if name.startswith("val")]
        self._loaded_ratios: dict | None = None
        self._loaded = False
        self._world = 1
        self._grad_scaler = None
        self._reports = Reports()
        self._reset_window()

    # -- the optimizer step under way ------------------------------------------------------
    def _reset_window(self) -> None:
        self._batch_samples = self._batch_tokens = None  # counted at on_train_batch_start
        self._samples = self._tokens = 0
        self._loss_sum = None
        self._losses = 0
        self._signals: dict[str, float | None] = {}
        self._verdict: str | None = None  # set at the batch whose optimizer step ran
        self._scale = None

    # -- fit setup ---------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        if not pl_module.automatic_optimization:
            raise CadenceError("PlanCallback drives a module with automatic optimization; with manual optimization "
                               "drive the plan from training_step with cadence.torch.Scheduler", field="plan")
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise CadenceError(f"PlanCallback drives one optimizer; configure_optimizers gave {len(optimizers)}",
                               field="plan")
        if trainer.lr_scheduler_configs:
            kinds = ", ".join(type(c.scheduler).__name__ for c in trainer.lr_scheduler_configs)
            raise CadenceError(f"PlanCallback writes the optimizer's fields itself, but configure_optimizers also "
                               f"returned an LR scheduler ({kinds}); return only the optimizer, or return "
                               "cadence.torch.Scheduler(optimizer, plan) as the scheduler without PlanCallback",
                               field="plan")
        if self._wants_norm or self._guarded:
            strategies = importlib.import_module(self.package).strategies
            strategy = trainer.strategy
            if not isinstance(strategy, (strategies.SingleDeviceStrategy, strategies.DDPStrategy)) or \
                    isinstance(strategy, strategies.DeepSpeedStrategy):
                raise CadenceError(f"PlanCallback measures the gradient norm and skips steps on one device or under "
                                   f"DDP; {type(strategy).__name__} shards the gradients or keeps its own "
                                   "optimizer: drop the plan's guards and grad_norm controllers", field="guards")
        self._optimizer = optimizers[0]
        self.fields = OptimizerFields(self._optimizer, optimizer_channels(self.plan), who="PlanCallback")
        self._world = max(int(getattr(trainer, "world_size", 1) or 1), 1)
        scaler = getattr(trainer.precision_plugin, "scaler", None)  # 16-bit mixed precision's gradient scaler
        self._grad_scaler = scaler if hasattr(scaler, "get_scale") else None
        self._set_loaded_ratios()
        self._reset_window()
        self._apply()

    def _set_loaded_ratios(self) -> None:
        if self.fields is None or self._loaded_ratios is None:
            return
        for name, ratios in self._loaded_ratios.items():
            if name in self.fields.io:
                self.fields.set_ratios(name, ratios)
        self._loaded_ratios = None

    def on_train_start(self, trainer, pl_module) -> None:
        clock = self.plan.clock
        if trainer.ckpt_path is not None:
            if not self._loaded:
                raise PlanError(f"the checkpoint {_short_value(str(trainer.ckpt_path))} holds no PlanCallback state "
                                "(it was saved without PlanCallback); resume from one saved with it", field="state")
            if clock.step + clock.skipped != trainer.global_step:
                raise PlanError(f"the plan's clock ({clock.step} steps applied, {clock.skipped} skipped) is not where "
                                f"the trainer resumes (global step {trainer.global_step}); resume from the checkpoint "
                                "the plan's state was saved with", field="state")
        elif trainer.global_step == 0:
            self.plan.load_state_dict(self._initial)  # a new fit starts the plan where it was given, as a new run
        elif clock.step + clock.skipped != trainer.global_step:
            raise PlanError(f"the plan's clock ({clock.step} steps applied, {clock.skipped} skipped) is not at the "
                            f"trainer's global step {trainer.global_step}; give the fit a new plan", field="state")
        if self._val_signals and not self._validates(trainer, pl_module):
            raise PlanError(f"PlanCallback: the plan reads {self._val_signals[0]!r} but this fit runs no validation "
                            "(give it validation data and a validation_step)", field="channels")
        self._apply()  # restoring the optimizer's state rewrote the param groups

    def _validates(self, trainer, pl_module) -> bool:
        """Whether this fit can validate (a fit whose validation data is not loaded yet is given the benefit)."""
        helpers = importlib.import_module(f"{self.package}.utilities.model_helpers")
        if trainer.limit_val_batches == 0 or not helpers.is_overridden("validation_step", pl_module):
            return False
        return trainer.val_dataloaders is None or bool(sum(trainer.num_val_batches or [0]))

    def _apply(self) -> None:
        if self.fields is not None and self.fields.io:
            self.fields.apply(self.plan.values())

    # -- one optimizer step --------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch is not None:
            self._count(batch)

    def _count(self, batch) -> None:
        self._batch_samples = count_samples(batch) if self._samples_fn is None else \
            _count("samples", self._samples_fn, batch)
        if self._tokens_fn is not None:
            self._batch_tokens = _count("tokens", self._tokens_fn, batch)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if not self._wants_loss or not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float()
        scaler = self._grad_scaler
        if scaler is not None:  # a 16-bit gradient scaler hands the hooks its scaled loss
            loss = loss / scaler.get_scale()
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._losses += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._verdict is not None:  # an optimizer that calls its closure again (LBFGS) is judged once
            return
        if not self._judged:  # nothing reads the step's signals before it is applied
            if self._grad_scaler is not None:
                self._scale = self._grad_scaler.get_scale()
            self._verdict = "apply"
            return
        signals = self._signals
        if self._wants_loss:
            if self._loss_sum is None:
                signals["train_loss"] = None
            else:  # Lightning divides each micro-batch's loss by accumulate_grad_batches
                mean = self._loss_sum * (trainer.accumulate_grad_batches / self._losses)
                if self._world > 1:
                    mean = trainer.strategy.reduce(mean, reduce_op="mean")
                signals["train_loss"] = float(mean)
        if self._wants_norm:
            signals["grad_norm"] = gradient_norm(self._optimizer)
        verdict = self.plan.guard(signals) if self._guarded else "apply"
        if verdict != "apply":  # "skip" (a plan here has no rollback guard)
            discard_gradients(self._optimizer)
        elif self._grad_scaler is not None:
            self._scale = self._grad_scaler.get_scale()
        self._verdict = verdict

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._batch_samples is None:
            if batch is None:
                raise CadenceError("PlanCallback: Lightning gave no batch to count; give PlanCallback(plan, "
                                   "samples=...) and train from batches", field="samples")
            self._count(batch)
        self._samples += self._batch_samples
        if self._tokens_fn is not None:
            self._tokens += self._batch_tokens
        self._batch_samples = self._batch_tokens = None
        verdict = self._verdict
        if verdict is None:  # an accumulating batch: the optimizer step comes later
            return
        if verdict == "apply" and self._scale is not None and self._grad_scaler.get_scale() < self._scale:
            verdict = "skip"  # the gradient scaler found inf/NaN gradients and did not step
        plan = self.plan
        reports = self._reports.take()
        if verdict == "skip":
            plan.skip()
        else:
            samples, tokens = self._samples, (self._tokens if self._tokens_fn is not None else None)
            if self._world > 1:
                samples, tokens = self._summed(trainer, samples, tokens)
            if self._stateful:
                plan.observe({**self._signals, **reports})
            if tokens is None and samples == self._per_step:
                plan.advance()  # the plan's own count for a step is this one: the same clock, counted faster
            else:
                plan.advance(samples=samples, tokens=tokens)
            self._apply()
        self._samples = self._tokens = self._losses = 0
        self._loss_sum = self._verdict = self._scale = None
        if self._signals:
            self._signals = {}

    def report(self, signals) -> None:
        """Give the plan signals Lightning does not measure, from ``training_step``: the step's per-domain
        losses (``train_loss/<domain>``, e.g. ``cadence.torch.data.domain_signals``) or per-bucket losses
        (``bucket_loss/<k>``). Called once per batch; the plan observes each signal's mean over the optimizer
        step (its accumulated batches), before its clock moves. Under DDP each process reports its own."""
        self._reports.add(signals)

    def _summed(self, trainer, samples: int, tokens: int | None) -> tuple[int, int | None]:
        device = trainer.strategy.root_device
        counts = torch.tensor([samples, -1 if tokens is None else tokens], dtype=torch.float64, device=device)
        counts = trainer.strategy.reduce(counts, reduce_op="sum")
        return int(counts[0].item()), None if tokens is None else int(counts[1].item())

    # -- validation ----------------------------------------------------------------------------
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self._val_signals or trainer.state.fn != "fit":
            return  # the sanity check and trainer.validate() are no steps of the run
        metrics = trainer.callback_metrics
        signals = {}
        for name in self._val_signals:
            value = metrics.get(name)
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                if self._world > 1:
                    value = trainer.strategy.reduce(value.detach().float(), reduce_op="mean")
                value = float(value)
            signals[name] = value
        if signals:
            self.plan.observe(signals)
            self._apply()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data: the plan's state and the per-group ratios (kept in the Lightning checkpoint)."""
        return {"format": _FORMAT, "plan": self.plan.state_dict(),
                "ratios": None if self.fields is None else {n: list(r) for n, r in self.fields.ratios.items()}}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume the plan from a checkpoint's state; another plan's state raises PlanError (nothing changes)."""
        found = state_dict.get("format") if isinstance(state_dict, Mapping) else type(state_dict).__name__
        if found != _FORMAT:
            raise PlanError(f"PlanCallback: expected a {_FORMAT} state in the checkpoint; got {_short_value(found)}",
                            field="state")
        ratios = state_dict.get("ratios")
        groups = None if self.fields is None else len(self.fields.optimizer.param_groups)
        if ratios is not None and not (isinstance(ratios, Mapping) and all(
                isinstance(v, list) and (groups is None or len(v) == groups) and all(
                    type(x) in (int, float) and math.isfinite(x) and x >= 0 for x in v) for v in ratios.values())):
            raise PlanError(f"PlanCallback: the checkpoint's ratios must map fields to lists of numbers >= 0, one per "
                            f"param group; got {_short_value(ratios)}", field="state")
        try:
            self.plan.load_state_dict(state_dict.get("plan"))
        except PlanError as e:
            raise PlanError(f"PlanCallback: the checkpoint's plan state does not fit this plan: {e}",
                            field=e.field) from None
        self._loaded = True
        self._loaded_ratios = None if ratios is None else dict(ratios)
        self._set_loaded_ratios()

    def __repr__(self) -> str:
        return f"PlanCallback({self.plan!r})"

    @property
    def state_key(self) -> str:
        """The checkpoint key of its state: the same for both packages' classes."""
        return "PlanCallback"

    def __reduce__(self):
        # both packages' classes are named PlanCallback: pickle (ddp_spawn, deepcopy) rebuilds by package
        return _rebuild, (self.package, self.__dict__)


def _rebuild(package: str, state: dict):
    cls = plan_callback_class(package)
    callback = cls.__new__(cls)
    callback.__dict__.update(state)
    return callback


_CLASSES: dict[str, type] = {}


def plan_callback_class(package: str) -> type:
    """The PlanCallback class for a Lightning package: ``'lightning.pytorch'`` (also ``'lightning'``)
    or ``'pytorch_lightning'``; a subclass of that package's ``Callback``. Built once per package."""
    name = _ALIASES.get(package) if isinstance(package, str) else None
    if name is None:
        raise CadenceError(f"plan_callback_class: package must be one of {', '.join(PACKAGES)}; got "
                           f"{_short_value(package)}", field="package")
    cls = _CLASSES.get(name)
    if cls is None:
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise CadenceError(f"plan_callback_class: {name} is not installed", field="package") from None
        cls = type("PlanCallback", (_PlanCallback, module.Callback),
                   {"__module__": __name__, "__doc__": _PlanCallback.__doc__, "package": name})
        _CLASSES[name] = cls
    return cls


def _default() -> type:
    for name in PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return plan_callback_class(name)
    raise ImportError("cadence.integrations.lightning needs lightning or pytorch_lightning (the extra "
                      "cadence[lightning])")


PlanCallback = _default()
