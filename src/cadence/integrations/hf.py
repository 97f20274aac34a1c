"""``PlanCallback``: a :class:`cadence.Plan` drives a transformers ``Trainer`` (extra ``[hf]``).

::

    plan = Plan({"lr": "cosine(peak=1e-3, warmup=20)", "weight_decay": "linear(peak=0.1, final=0.0)"},
                horizon=200)
    trainer = Trainer(model, args, train_dataset=data, callbacks=[PlanCallback(plan)])
    trainer.train()

What it does at each hook (docs/integrations.md has the user's view):

``__init__``
    refuses a plan with a ``batch`` channel (the Trainer's batch is fixed by its arguments),
    a plan with no optimizer channel, and guards whose signal the Trainer cannot give before
    its optimizer step (see *Guards*).
``on_train_begin``
    checks the Trainer's settings against the plan (every controller's signal must be one the
    Trainer reports; a ``grad_norm`` guard needs unclipped, unscaled gradients); restores the
    plan from the checkpoint's ``cadence_plan.json`` when the Trainer resumes, else starts it
    where it was when the callback was made; builds a :class:`cadence.torch.Scheduler` on the
    Trainer's optimizer (a param group without a planned field is refused here, before the
    first step); replaces the Trainer's learning-rate scheduler (below); and counts the
    samples and tokens of every training forward pass with a forward pre-hook on the model.
``on_pre_optimizer_step``
    (gradients are final, the Trainer has clipped them) judges the step with the plan's
    guards. The param groups already hold the plan's values for this step: written when
    the Scheduler was built, after the previous step, or after the last observation.
``on_step_end``
    moves the plan's clock by the step's real samples and tokens (``Scheduler.advance``,
    which writes the next step's values), or, when a guard or the gradient scaler skipped
    the step, counts it as skipped (``Scheduler.skip``: the clock does not move and the next
    step uses the same values).
``on_log`` / ``on_evaluate``
    give the plan's controllers what the Trainer reports: its logged ``loss`` as
    ``train_loss`` and its ``grad_norm``, and every evaluation metric under its own name with
    ``eval_loss`` also as ``val_loss``; then write the values the controllers now give.
``on_save``
    writes the plan's state and each param group's ratio into the checkpoint folder,
    atomically (``cadence_plan.json``).

Counting. Samples are the first dimension of each training forward pass's ``input_ids``
(or ``inputs_embeds``, or its first tensor argument), summed over the step's micro-batches
(gradient accumulation) and over data-parallel processes. Tokens are ``input_ids.numel()``
(padding included: counting the attention mask would cost a device sync every micro-batch),
or batch times length of ``inputs_embeds``; a model fed neither gets the plan's own token
count (samples times the rates' tokens per sample).

Replacing the Trainer's scheduler. The Trainer's ``learning_rate`` log is
``lr_scheduler.get_last_lr()[0]``, read after ``on_optimizer_step`` and before it calls
``lr_scheduler.step()``; the Trainer creates its own scheduler in ``create_scheduler``
(when it was given none) just before ``on_train_begin``, and on resume it loads
``scheduler.pt`` into that fresh scheduler before any callback runs. A callback is given
the model, the optimizer and the scheduler, never the Trainer, so it cannot reassign the
Trainer's ``lr_scheduler`` through its arguments. Writing the plan's values after the
Trainer's scheduler has stepped would fight it and log the other scheduler's rate; editing
that scheduler's lambdas would fight it too. So at ``on_train_begin`` PlanCallback looks up
the call stack for the ``Trainer`` that is calling it (the method frame whose ``self`` is a
Trainer holding this callback; found once per ``train()``; that frame's
``resume_from_checkpoint`` is the checkpoint to read the plan from, else
``output_dir/checkpoint-<global_step>``) and puts in its ``lr_scheduler`` slot a small
stand-in, an ``LRScheduler`` whose

* ``get_last_lr()`` is the plan's learning rate written for the step being logged;
* ``step()`` does nothing: the callback moves the clock at ``on_step_end``, once it knows
  whether the step was applied;
* ``state_dict()`` / ``load_state_dict()`` are those of the Trainer's own scheduler it
  displaced (never stepped), so ``scheduler.pt`` stays a file the scheduler of a fresh
  Trainer can load when it resumes; the plan's state is ``cadence_plan.json``.

A plan with no ``lr`` channel leaves the Trainer's scheduler in place (it keeps driving the
learning rate) and drives its other fields; a scheduler the user gave the Trainer is never
replaced (a plan with an ``lr`` channel is refused then). To avoid the stack lookup, pass
``optimizers=(optimizer, cadence.torch.Scheduler(optimizer, plan))`` instead of the
callback: the Trainer steps, logs, saves and restores that scheduler itself, with the plan's
default sample counts and no guards or controller signals.

Data channels. A mixer or bandit reads per-domain (per-bucket) losses that the Trainer does not
compute: a custom ``compute_loss`` hands them to :meth:`PlanCallback.report` each micro-batch,
and the plan observes their means over the optimizer step at its end, before the clock moves
(docs/integrations.md, "Data channels in your own loop").

Guards. The Trainer hands callbacks nothing of the step before its optimizer step but the
gradients. A ``grad_spike`` guard gets the gradient norm computed from them (all param groups,
L2); on ``'skip'`` every gradient is set to None, and torch's optimizers pass over a
parameter without one, so ``optimizer.step()`` leaves the weights and the optimizer's state
(moments, step counts, weight decay) untouched: a zero gradient would not (AdamW still
decays and moves its moments). The Trainer still counts the step in
``global_step``; the plan's clock does not. Refused, one line each: a guard on any other
signal (the Trainer's loss reaches callbacks only when it logs, after the step); a
``rollback`` guard (a callback cannot restore a checkpoint in the middle of ``train()``);
a ``grad_norm`` guard when the Trainer clips (``max_grad_norm > 0``: callbacks see clipped
gradients, whose norm never spikes), scales them (fp16 with a gradient scaler) or shards
them (FSDP).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler
from transformers import Trainer, TrainerCallback

from cadence._atomic import atomic_write
from cadence.errors import CadenceError, PlanError, RunError
from cadence.guards import LossSpike
from cadence.plan import BATCH, Plan
from cadence.schedules.base import _short_value
from cadence.torch import Scheduler, discard_gradients, gradient_norm, optimizer_channels
from cadence.torch.data import Reports, reported

__all__ = ["PlanCallback", "STATE_FILE", "FORMAT"]

STATE_FILE = "cadence_plan.json"
FORMAT = "cadence.integrations.hf/1"
MAX_STATE_BYTES = 64 << 20  # a plan state with full guard windows is a few MB
_TRAIN_SIGNALS = ("train_loss", "grad_norm")  # what the Trainer logs during training
_EVAL_SIGNALS = ("val_loss",)  # and, with every eval_* metric, what it evaluates


class _PlanLR(LRScheduler):
    """What the Trainer holds as its ``lr_scheduler`` while a PlanCallback drives the plan
    (see the module docstring): the plan's learning rate to log, nothing to step, and the
    displaced scheduler's state for ``scheduler.pt``."""

    def __init__(self, scheduler: Scheduler, displaced: Any) -> None:
        # LRScheduler.__init__ is not called: it would wrap optimizer.step and take a step
        self.optimizer = scheduler.optimizer
        self.scheduler, self.displaced = scheduler, displaced

    @property
    def last_epoch(self) -> int:
        return self.scheduler.last_epoch

    def step(self, epoch: int | None = None) -> None:
        """Nothing: PlanCallback moves the plan's clock at on_step_end."""

    def get_lr(self) -> list[float]:
        return self.scheduler.get_lr()

    def get_last_lr(self) -> list[float]:
        return self.scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        return self.displaced.state_dict() if self.displaced is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.displaced is not None:
            self.displaced.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"PlanCallback's stand-in for the Trainer's lr_scheduler ({self.scheduler!r})"


def _find_trainer(callback: "PlanCallback") -> tuple[Trainer, Any]:
    """The Trainer up the call stack whose callbacks hold ``callback``, and the checkpoint path
    its ``train()`` resumes from when that frame has one (see the module docstring)."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_argcount and code.co_varnames[0] == "self":
            owner = frame.f_locals.get("self")
            if isinstance(owner, Trainer) and any(cb is callback for cb in owner.callback_handler.callbacks):
                return owner, frame.f_locals.get("resume_from_checkpoint")
        frame = frame.f_back
    raise CadenceError("PlanCallback: no transformers Trainer is calling it; give it to a Trainer in callbacks=[...] "
                       "and call trainer.train()")


def _number(value) -> float | None:
    """A logged or evaluated value as a signal (None: not a number)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() == 1 and not value.is_complex() else None
    if isinstance(value, numbers.Real):  # int, float and numpy's scalars
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return None


class PlanCallback(TrainerCallback):
    """Drive a transformers ``Trainer`` from a :class:`cadence.Plan` (see the module docstring).

    Args:
        plan: the plan; its optimizer channels (every channel but ``batch`` and dotted names
            such as ``loss.z``) are written into the Trainer's optimizer before each
            optimizer step. Dotted channels are the user's: a custom ``compute_loss`` may read
            ``plan.values()``.

    After ``on_train_begin``, :attr:`scheduler` is the :class:`cadence.torch.Scheduler` that
    writes the plan's values into the Trainer's optimizer.
    """

    def __init__(self, plan: Plan) -> None:
        if not isinstance(plan, Plan):
            raise PlanError(f"PlanCallback needs a cadence.Plan; got {type(plan).__name__}", field="plan")
        if BATCH in plan.schedules:
            raise PlanError("PlanCallback: the Trainer's batch is fixed by its arguments (per_device_train_batch_size "
                            "times gradient_accumulation_steps), so a plan for it has no 'batch' channel; drop it",
                            field="channels")
        if not optimizer_channels(plan):
            raise PlanError(f"PlanCallback: the plan has no optimizer channel (lr, weight_decay, beta2, ...) to drive; "
                            f"its channels: {', '.join(plan.schedules)}", field="channels")
        for name, guard in plan.guards.items():
            if not isinstance(guard, LossSpike):
                raise PlanError(f"PlanCallback: guard {name!r} asks for rollbacks to the last checkpoint, which a "
                                "callback cannot do in the middle of Trainer.train(); drop it", field="guards")
            if guard.signal != "grad_norm":
                raise PlanError(f"PlanCallback: guard {name!r} reads {guard.signal!r}, which the Trainer does not give "
                                "callbacks before its optimizer step; only grad_norm (from the gradients) is known "
                                "then: use a grad_spike guard", field="guards")
        probes = [(signal, channels) for signal, channels in plan.monitors.items() if signal.startswith("probe_loss/")]
        if probes:
            raise PlanError(f"PlanCallback: channel {probes[0][1][0]!r} reads {probes[0][0]!r}, a held-out probe measured "
                            "after the clock moves (aioli), which a callback cannot time; use odm() or doremi(...), or "
                            "cadence's runner", field="channels")
        self.plan = plan
        self.scheduler: Scheduler | None = None
        self._initial = plan.state_dict()  # where a train() that does not resume starts the plan
        self._controllers = any(s.stateful for s in plan.schedules.values())
        self._guarded = bool(plan.guards)
        self._hook = None
        self._active = False
        self._data_parallel = False
        self._reports = Reports()
        self._reset_step()

    def _reset_step(self) -> None:
        self._samples = 0
        self._tokens = 0
        self._tokens_known = True
        self._skip = False

    # -- counting -------------------------------------------------------------------------
    def _count(self, module, args, kwargs) -> None:
        """Forward pre-hook: add a training forward pass's samples and tokens to the step's."""
        if not module.training or not self._active:
            return
        ids = kwargs.get("input_ids")
        if ids is None and args and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point():
            ids = args[0]
        if isinstance(ids, torch.Tensor) and ids.dim():
            self._samples += ids.shape[0]
            self._tokens += ids.numel()
            return
        embeds = kwargs.get("inputs_embeds")
        if isinstance(embeds, torch.Tensor) and embeds.dim() >= 2:
            self._samples += embeds.shape[0]
            self._tokens += embeds.shape[0] * embeds.shape[1]
            return
        first = next((x for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor) and x.dim() >= 1), None)
        if first is None:
            raise CadenceError(f"PlanCallback: cannot count the samples of a forward pass of "
                               f"{type(module).__name__} (no input_ids, inputs_embeds or tensor argument)")
        self._samples += first.shape[0]
        self._tokens_known = False

    def _counts(self, args) -> tuple[int, int | None]:
        samples, tokens = self._samples, self._tokens
        if self._data_parallel:
            both = torch.tensor([samples, tokens, int(not self._tokens_known)], dtype=torch.int64, device=args.device)
            torch.distributed.all_reduce(both)
            samples, tokens, unknown = (int(x) for x in both.tolist())
            return samples, None if unknown else tokens
        return samples, tokens if self._tokens_known else None

    # -- the Trainer's hooks ----------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        trainer, resume_from = _find_trainer(self)
        if getattr(trainer, "is_deepspeed_enabled", False):
            raise CadenceError("PlanCallback: DeepSpeed keeps its own optimizer and scheduler; PlanCallback drives "
                               "the Trainer's torch optimizer only")
        if optimizer is None or model is None:
            raise CadenceError("PlanCallback: the Trainer has no optimizer or model at train begin")
        self._check_signals(trainer, args, optimizer)
        if state.global_step > 0:
            ratios = self._resume(args, state, resume_from)
        else:
            self.plan.load_state_dict(self._initial)
            ratios = self._decay_ratios(trainer, model, optimizer)
        try:
            sched = Scheduler(optimizer, self.plan, ratios=ratios)
        except CadenceError as e:
            raise type(e)(f"PlanCallback: {str(e).removeprefix('Scheduler: ')}", field=e.field) from None
        self.scheduler = sched
        if "lr" in sched.fields.io:
            current = trainer.lr_scheduler
            if isinstance(current, _PlanLR):
                current = current.displaced
            elif not getattr(trainer, "_created_lr_scheduler", False):
                raise CadenceError(f"PlanCallback: the Trainer was given its own learning-rate scheduler "
                                   f"({type(current).__name__}) and the plan has an 'lr' channel; give the Trainer "
                                   "optimizers=(optimizer, None), or drop the plan's 'lr' channel")
            stand_in = _PlanLR(sched, current)
            trainer.lr_scheduler = stand_in
            trainer.callback_handler.lr_scheduler = stand_in
        if self._hook is not None:
            self._hook.remove()
        self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
        self._data_parallel = (args.world_size > 1 and torch.distributed.is_available()
                               and torch.distributed.is_initialized())
        self._reset_step()
        self._active = True
        return control

    def _check_signals(self, trainer, args, optimizer) -> None:
        """Every signal the plan reads is one this Trainer gives, when it gives it (one line each)."""
        evaluates = str(getattr(args.eval_strategy, "value", args.eval_strategy)) != "no"
        logs = str(getattr(args.logging_strategy, "value", args.logging_strategy)) != "no"
        for signal, channels in self.plan.monitors.items():
            if signal in _TRAIN_SIGNALS:
                if not logs:
                    raise PlanError(f"PlanCallback: channel {channels[0]!r} reads {signal}, which the Trainer gives "
                                    "when it logs, and its logging_strategy is 'no'", field="channels")
            elif reported(signal):  # per-domain (per-bucket) losses: the user's compute_loss gives them via report()
                continue
            elif signal in _EVAL_SIGNALS or signal.startswith("eval_"):
                if not evaluates:
                    raise PlanError(f"PlanCallback: channel {channels[0]!r} reads {signal}, which the Trainer gives "
                                    "when it evaluates, and its eval_strategy is 'no'", field="channels")
            else:
                raise PlanError(f"PlanCallback: channel {channels[0]!r} reads {signal!r}, which the Trainer does not "
                                "give; it gives train_loss and grad_norm when it logs, val_loss and its eval_* metrics "
                                "when it evaluates, and what compute_loss reports (train_loss/<domain>, "
                                "bucket_loss/<k>: PlanCallback.report)", field="channels")
        if self._guarded:
            if getattr(trainer, "is_fsdp_enabled", False):
                raise PlanError("PlanCallback: the plan's guards read grad_norm, but under FSDP each process holds a "
                                "shard of the gradients; drop the guards", field="guards")
            if args.max_grad_norm is not None and args.max_grad_norm > 0:
                raise PlanError(f"PlanCallback: the plan's guards read grad_norm, but the Trainer clips gradients "
                                f"(max_grad_norm={args.max_grad_norm:g}) before callbacks see them, so their norm "
                                "never spikes; set max_grad_norm=0 or drop the guards", field="guards")
            if getattr(optimizer, "scaler", None) is not None:
                raise PlanError("PlanCallback: the plan's guards read grad_norm, but the Trainer's gradients are "
                                "still scaled (fp16 with a gradient scaler) when callbacks see them; use bf16 or "
                                "drop the guards", field="guards")

    def _decay_ratios(self, trainer, model, optimizer) -> dict[str, list[float]] | None:
        """When every group starts at weight_decay 0 (TrainingArguments' default), the plan's weight
        decay goes to the parameters the Trainer decays (not biases and norms), as the Trainer's
        own weight_decay would; else each group keeps its ratio (cadence.torch.Scheduler's rule)."""
        groups = optimizer.param_groups
        if "weight_decay" not in self.plan.schedules or any(g.get("weight_decay", 0.0) != 0 for g in groups):
            return None
        decayed = set(trainer.get_decay_parameter_names(model))
        names = {id(p): n for n, p in model.named_parameters()}
        ratios = [1.0 if any(names.get(id(p)) in decayed for p in g["params"]) else 0.0 for g in groups]
        return {"weight_decay": ratios} if any(ratios) else None

    def _resume(self, args, state, resume_from) -> dict[str, list[float]]:
        """Load the plan's state from the checkpoint; returns the param groups' ratios saved with it
        (the groups' values restored with the optimizer cannot give them when a value was 0)."""
        folder = resume_from if isinstance(resume_from, (str, os.PathLike)) else \
            os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        path = os.path.join(folder, STATE_FILE)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            raise RunError(f"PlanCallback: the checkpoint {folder} has no {STATE_FILE}: it was not saved by a run with "
                           "a PlanCallback, or the run stopped while saving it; resume from another checkpoint",
                           field="resume_from_checkpoint") from None
        except OSError as e:
            raise RunError(f"PlanCallback: cannot read {path}: {e.strerror or type(e).__name__}",
                           field="resume_from_checkpoint") from None
        if len(raw) > MAX_STATE_BYTES:
            raise RunError(f"PlanCallback: {path} is larger than {MAX_STATE_BYTES:,} bytes; it is not a plan state",
                           field="resume_from_checkpoint")
        try:
            saved = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RunError(f"PlanCallback: {path} is not valid JSON", field="resume_from_checkpoint") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            found = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
            raise RunError(f"PlanCallback: {path} is not a {FORMAT} file (format {_short_value(found)})",
                           field="resume_from_checkpoint")
        if saved.get("global_step") != state.global_step:
            raise RunError(f"PlanCallback: {path} was saved at step {_short_value(saved.get('global_step'))}, the "
                           f"checkpoint's Trainer state is at step {state.global_step}", field="resume_from_checkpoint")
        ratios = saved.get("ratios")
        if not (isinstance(ratios, dict) and all(isinstance(k, str) and isinstance(v, list) for k, v in ratios.items())):
            raise RunError(f"PlanCallback: {path} holds no param-group ratios ({{field: [ratio per group]}})",
                           field="resume_from_checkpoint")
        try:
            self.plan.load_state_dict(saved.get("plan"))
        except CadenceError as e:
            raise PlanError(f"PlanCallback: {path} holds another plan's state: {e}", field="resume_from_checkpoint") \
                from None
        return ratios

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self._guarded:
            norm = gradient_norm(optimizer)
            if self.plan.guard({"grad_norm": 0.0 if norm is None else norm}) != "apply":  # 'skip' (no rollback here)
                discard_gradients(optimizer)  # optimizer.step() leaves the weights and its state alone
                self._skip = True

    def report(self, signals) -> None:
        """Give the plan signals the Trainer does not measure, from a custom ``compute_loss``: the step's
        per-domain losses (``train_loss/<domain>``, e.g. ``cadence.torch.data.domain_signals``) or per-bucket
        losses (``bucket_loss/<k>``). Called once per micro-batch; the plan observes each signal's mean over
        the optimizer step, before its clock moves. Under data parallelism each process reports its own."""
        self._reports.add(signals)

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        reports = self._reports.take()
        if self._skip or getattr(optimizer, "step_was_skipped", False):
            self.scheduler.skip()
        else:
            if reports and self._controllers:
                self._observe(reports)
            samples, tokens = self._counts(args)
            try:
                self.scheduler.advance(samples, tokens)
            except CadenceError as e:
                raise type(e)(f"PlanCallback: {e}", field=e.field) from None
        self._reset_step()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (self._active and self._controllers and logs and "loss" in logs):
            return
        signals = {"train_loss": _number(logs["loss"])}
        if "grad_norm" in logs:
            signals["grad_norm"] = _number(logs["grad_norm"])
        self._observe(signals)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not (self._active and self._controllers and metrics):
            return
        signals = {}
        for key, value in metrics.items():
            number = _number(value)
            if isinstance(key, str) and number is not None:
                signals[key] = number
        if "eval_loss" in signals:
            signals["val_loss"] = signals["eval_loss"]
        self._observe(signals)

    def _observe(self, signals) -> None:
        """Controllers see the signals, and the optimizer gets the values they give from now on."""
        self.scheduler.observe(signals)  # writes the values the controllers now give

    def on_save(self, args, state, control, **kwargs):
        if not args.should_save:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if not os.path.isdir(folder):
            raise RunError(f"PlanCallback: the Trainer's checkpoint folder {folder} is not there to hold {STATE_FILE}",
                           field="output_dir")
        text = json.dumps({"format": FORMAT, "global_step": state.global_step, "plan": self.plan.state_dict(),
                           "ratios": self.scheduler.ratios})

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        atomic_write(os.path.join(folder, STATE_FILE), write)

    def on_train_end(self, args, state, control, **kwargs):
        self._active = False
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def __repr__(self) -> str:
        return f"PlanCallback({self.plan!r})"
