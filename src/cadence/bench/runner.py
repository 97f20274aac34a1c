"""Train a workload under a plan of schedules, with metrics, checkpoints and exact resume.

A run directory holds:

* ``run.json``: the manifest (workload, size, plan, seed, optimizer, versions, status).
  It is written first, so a folder with any other run file always has one.
* ``metrics.csv``: one row per step: ``step, samples, tokens, <each driven channel>,
  train_loss, grad_norm, <monitors>, <mixture/D, samples/D, train_loss/D per domain>,
  <probe_loss/D when a mixing controller probes>, <eval metrics>`` (eval and probe columns are
  empty when not measured).
  It is deterministic: a killed and resumed run writes the same bytes as one that was not.
* ``timing.csv``: wall-clock seconds per step (kept apart from metrics.csv because time is
  never reproducible).
* ``checkpoint.pt``: model, optimizer and scheduler state after the last checkpointed
  step, with the byte length of metrics.csv and timing.csv at that step; written
  atomically and loaded with ``torch.load(weights_only=True)``.

What survives a kill at any instant (docs/runner.md): rows are flushed and fsynced before
each checkpoint, and a resume cuts each CSV back, in place, to the length the checkpoint
recorded (``os.truncate``: the file is never empty or rewritten), then appends. Every other
write is an atomic rename through a fixed temporary name (``.run.json.cadence-tmp``,
``.checkpoint.pt.cadence-tmp``); resuming removes exactly those names. A lock on the folder
keeps a second process out while a run writes to it.

Status in run.json: ``running`` (or killed), ``complete``, ``stopped`` (``stop_after``),
``interrupted`` (SIGINT/SIGTERM), ``diverged`` (non-finite loss; ``diverged_at`` is the step).
All of them resume; a diverged run diverges again at the same step.

Resume is bit-exact on the same machine with the same torch version and thread count: a
resume uses the thread count recorded in run.json unless ``threads`` is given. Every
change of threads or torch version is recorded in ``segments`` and sets ``bit_exact`` to
false.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cadence import __version__
from cadence._files import read_json
from cadence._atomic import atomic_write, kill_point, stable_temp
from cadence.bench.workloads import WORKLOADS, get_workload, parameter_count
from cadence.controllers import NOISE_SIGNALS, noise_scale
from cadence.errors import CadenceError, LimitError, PlanError, RunError, TrainingDiverged
from cadence.bench.distributed import Group, join
from cadence.guards import settings_of
from cadence.plan import BATCH, BUCKETS, CURRICULUM, SAMPLE_WEIGHTS, Plan
from cadence.torch import OptimizerFields, optimizer_channels

__all__ = ["RunConfig", "train", "resolve", "make_loop", "Loop", "TrainingDiverged", "read_manifest", "RUN_FILES", "TEMP_FILES", "STATUSES",
           "MAX_STEPS", "MAX_SEED", "MAX_THREADS", "folder_lock", "has_user_files"]

RUN_FILES = ("run.json", "metrics.csv", "timing.csv", "checkpoint.pt")
TEMP_FILES = tuple(stable_temp(name).name for name in ("run.json", "checkpoint.pt"))
OPTIMIZERS = ("adamw", "sgd")
STATUSES = ("running", "complete", "stopped", "interrupted", "diverged")
FORMAT = "cadence.run/1"

# Documented limits (docs/runner.md): beyond them a run is refused with LimitError.
MAX_STEPS = 10**9  # steps, eval_every, checkpoint_every
MAX_SEED = 2**32 - 1  # the per-step torch seed is seed * 1_000_003 + step: must fit 64 bits
MAX_THREADS = 256  # torch.set_num_threads with absurd counts crashes the interpreter
MAX_MANIFEST_BYTES = 1 << 20


@dataclass
class RunConfig:
    """A run's settings: what run.json records (every default filled in by :meth:`resolved`).

    ``channels`` maps channel names to schedule or controller specs: ``lr`` (required) and
    any optimizer field, ``batch`` (the global batch in samples, realised by gradient
    accumulation of ``micro_batch``-sample micro-batches) and ``loss.<term>`` (the
    coefficient of a workload's extra loss term). ``horizon`` is the run's length in
    ``unit`` (``step``, ``sample`` or ``token``); the run ends when the clock reaches it.
    ``forecast``: a fitted law (:class:`cadence.forecast.FittedLaw` or a law file's path) whose
    predicted loss at every step metrics.csv logs as ``forecast``; resolved to the law's content.
    """

    workload: str
    channels: dict[str, str] = None  # channel -> spec
    horizon: int = None  # the run's length in `unit`
    unit: str = "step"
    seed: int = 0
    size: str | None = None
    batch_size: int | None = None  # the global batch when no `batch` channel drives it
    micro_batch: int | None = None  # samples per forward/backward (default: the whole batch)
    optimizer: str = "adamw"
    weight_decay: float | None = None
    clip: float | None = -1.0  # -1: the workload's default; None: no clipping
    eval_every: int | None = None
    checkpoint_every: int = 100
    skip_nonfinite: bool = False  # guard: skip a step whose loss or gradient is not finite, instead of stopping
    device: str = "cpu"  # "cuda" trains on a GPU; only CPU runs are bit-reproducible across a kill
    guards: dict | None = None  # the plan's guards, {name: settings} (cadence.guards): loss_spike, grad_spike, rollback
    # a loss-curve law whose prediction metrics.csv logs next to the loss (column `forecast`): a FittedLaw or a law
    # file's path, resolved to the law's content (cadence.bench.run_forecast), which run.json records
    forecast: "dict | str | os.PathLike | None" = None
    # the data folder of a workload that reads one (text: its subfolders are the domains); None: the workload's own
    data: str | None = None
    # continual pre-training: a finished run whose weights (and, with init_optimizer, optimizer state) this run
    # starts from; resolved to the record of cadence.bench.continual.read_init, which run.json keeps
    init: "dict | str | os.PathLike | None" = None
    init_optimizer: bool = False
    # [every, until]: evaluate every `every` steps during the first `until` steps as well (the stability gap after
    # a switch of data); a run with `init` gets [max(1, eval_every // 10), 2 * eval_every] unless given
    dense_eval: "list[int] | None" = None
    # what a `curriculum` channel orders the data by (text): 'length', 'reference=RUN' or 'column=FILE.csv:NAME';
    # resolved to a record {by, source, column, hash} (cadence.bench.difficulty) that run.json keeps
    difficulty: "str | dict | None" = None

    def resolved(self) -> "RunConfig":
        """Fill workload defaults and validate; the result is what run.json records."""
        return resolve(self)[0]


def resolve(config: RunConfig, world: int = 1) -> "tuple[RunConfig, Plan]":
    """The config with every default filled in, and the plan it drives; raises on any bad setting
    before anything is trained or written. ``world``: processes sharing each step (torchrun)."""
    if not isinstance(config.workload, str):
        raise CadenceError(f"workload must be a name; got {config.workload!r}")
    if config.data is not None and (not isinstance(config.data, (str, os.PathLike)) or not str(config.data).strip()
                                    or "\x00" in str(config.data)):
        raise CadenceError(f"data must name a folder; got {str(config.data)[:60]!r}", field="data")
    data = None if config.data is None else os.path.abspath(config.data)
    w = get_workload(config.workload, data)
    cfg = RunConfig(**asdict(config))
    cfg.data = data
    cfg.forecast = config.forecast  # as given: asdict() would turn a FittedLaw into a dict of its fields
    cfg.init = config.init if not isinstance(config.init, os.PathLike) else os.fspath(config.init)
    if cfg.size is not None and not isinstance(cfg.size, str):
        raise CadenceError(f"size must be a name; got {cfg.size!r}", field="size")
    cfg.size = w.check_size(cfg.size or w.default_size)
    cfg.weight_decay = w.weight_decay if cfg.weight_decay is None else cfg.weight_decay
    cfg.clip = w.clip if cfg.clip == -1.0 else cfg.clip
    cfg.eval_every = w.eval_every if cfg.eval_every is None else cfg.eval_every
    if not isinstance(cfg.channels, dict) or not all(isinstance(k, str) for k in cfg.channels):
        raise PlanError(f"channels must map channel names to schedule specs; got {str(cfg.channels)[:80]!r}",
                        field="channels")
    if "lr" not in cfg.channels:
        raise PlanError("the channels must drive 'lr'", field="lr")
    for name, spec in cfg.channels.items():
        if name == "mixture" and isinstance(spec, dict):
            continue  # a weight per domain: checked when the plan is built
        if isinstance(spec, bool) or not isinstance(spec, (str, int, float)):
            raise PlanError(f"channel {name!r} must be a schedule spec or a number; got {str(spec)[:60]!r}",
                            field="channels")
    if cfg.unit not in ("step", "sample", "token"):
        raise PlanError(f"unit must be 'step', 'sample' or 'token'; got {str(cfg.unit)[:40]!r}", field="unit")
    if not isinstance(cfg.skip_nonfinite, bool):
        raise CadenceError(f"skip_nonfinite must be true or false; got {cfg.skip_nonfinite!r}", field="skip_nonfinite")
    batch_top = w.max_batch_size
    for name, value, top in (("batch_size", cfg.batch_size, batch_top), ("micro_batch", cfg.micro_batch, batch_top),
                             ("eval_every", cfg.eval_every, MAX_STEPS), ("checkpoint_every", cfg.checkpoint_every, MAX_STEPS)):
        if value is None and name in ("batch_size", "micro_batch"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CadenceError(f"{name} must be a positive whole number; got {value!r}", field=name)
        if value > top:
            raise LimitError(f"{name} is {value}; at most {top} is supported", field=name)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
        raise CadenceError(f"seed must be a whole number from 0 to {MAX_SEED}; got {cfg.seed!r}", field="seed")
    if cfg.optimizer not in OPTIMIZERS:
        raise CadenceError(f"unknown optimizer {cfg.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}", field="optimizer")
    if (isinstance(cfg.weight_decay, bool) or not isinstance(cfg.weight_decay, (int, float))
            or not math.isfinite(cfg.weight_decay) or cfg.weight_decay < 0):
        raise CadenceError(f"weight_decay must be a number >= 0; got {cfg.weight_decay!r}", field="weight_decay")
    if cfg.clip is not None and (isinstance(cfg.clip, bool) or not isinstance(cfg.clip, (int, float))
                                 or not math.isfinite(cfg.clip) or cfg.clip <= 0):
        raise CadenceError(f"clip must be a positive number or None; got {cfg.clip!r}", field="clip")
    _check_device(cfg.device)
    if world > 1 and cfg.device != "cpu":
        raise RunError(f"device {cfg.device!r} with {world} processes: cadence's multi-process runner trains on the CPU "
                       "(gloo) only; run one process per GPU job, or train on the CPU", field="device")
    if isinstance(cfg.horizon, bool) or not isinstance(cfg.horizon, (int, str)) or \
            (isinstance(cfg.horizon, int) and cfg.horizon < 1):
        raise PlanError(f"horizon must be a positive whole number of {cfg.unit}s or a duration such as '2Mtok'; "
                        f"got {str(cfg.horizon)[:60]!r}", field="horizon")
    if cfg.unit == "step" and isinstance(cfg.horizon, int) and cfg.horizon > MAX_STEPS:
        raise LimitError(f"horizon is {cfg.horizon} steps; at most {MAX_STEPS} is supported", field="horizon")
    for name in cfg.channels:
        if name.startswith("loss.") and name[5:] not in w.loss_terms:
            terms = ", ".join(f"loss.{t}" for t in w.loss_terms) or "none"
            raise PlanError(f"channel {name!r}: {cfg.workload} has no loss term {name[5:]!r} (its terms: {terms})",
                            field="channels")
    if cfg.guards is not None and not isinstance(cfg.guards, dict):
        raise PlanError(f"guards must map guard names to their settings; got {str(cfg.guards)[:60]!r}", field="guards")
    _fill_reference(cfg, w)
    plan = _make_plan(cfg, w, world)
    cfg.guards = {name: settings_of(name, g) for name, g in plan.guards.items()} or None
    _optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))], plan)  # every optimizer channel names a field it has
    cfg.channels, cfg.horizon = plan.channels, plan.horizon
    if cfg.unit == "step" and cfg.horizon > MAX_STEPS:
        raise LimitError(f"horizon is {cfg.horizon} steps; at most {MAX_STEPS} is supported", field="horizon")
    _check_data_channels(plan, cfg, w)
    _check_monitors(plan, cfg, w)
    _resolve_init(cfg)
    if cfg.forecast is not None:
        from cadence.bench.run_forecast import check_forecastable, law_content

        cfg.forecast = law_content(cfg.forecast)
        check_forecastable(plan, cfg.forecast)
    return cfg, plan


def _check_data_channels(plan: Plan, cfg: RunConfig, w) -> None:
    """A curriculum needs a workload that can order its data and the scores to order it by; per-sample
    weights need a per-sample loss. Resolves ``cfg.difficulty`` to its record."""
    from cadence.bench import difficulty
    from cadence.bench.workloads import Workload

    if cfg.difficulty is not None:
        difficulty.parse(cfg.difficulty)  # a malformed setting is named as such first
    if CURRICULUM in plan.schedules:
        if not hasattr(w, "ordered"):
            raise PlanError(f"channel 'curriculum': the {cfg.workload} workload cannot order its data by difficulty "
                            "(text can)", field="curriculum")
        if cfg.difficulty is None:
            raise PlanError("channel 'curriculum' needs the difficulty of each training file: difficulty 'length', "
                            "'reference=RUN' or 'column=FILE.csv:NAME'", field="difficulty")
        cfg.difficulty = difficulty.resolve(cfg.difficulty, w)
    elif cfg.difficulty is not None:
        raise CadenceError("difficulty orders the data for a curriculum channel, and this plan has none",
                           field="difficulty")
    if SAMPLE_WEIGHTS in plan.schedules and type(w).per_sample is Workload.per_sample:
        raise PlanError(f"channel 'sample_weights': the {cfg.workload} workload gives no per-sample loss",
                        field="sample_weights")


def _fill_reference(cfg: RunConfig, w) -> None:
    """``doremi(reference='RUN')``: the reference run's final training loss per domain (``train_loss/<domain>``,
    the mean over its last 5% of steps), read once and written into the spec (``reference_loss``), so that
    run.json holds the numbers and a resume never reads the run again. Training loss against training loss:
    the run compares it with its own ``train_loss/<domain>``, and a domain's validation text can be far from
    its training text (the default corpus's code: 0.9 nats apart)."""
    spec = cfg.channels.get("mixture")
    if not isinstance(spec, str) or "doremi" not in spec:
        return
    from cadence.schedules import parse

    mixer = parse(spec)
    if mixer.name != "doremi" or mixer.reference is None or mixer.reference_loss is not None:
        return
    from cadence.bench.report import load_metrics

    folder = Path(mixer.reference)
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None:
        raise PlanError(f"doremi: the reference run {str(folder)[:200]} is not a run folder (no run.json)",
                        field="mixture")
    if manifest.get("status") != "complete":
        raise PlanError(f"doremi: the reference run {str(folder)[:200]} is {manifest.get('status')}, not complete",
                        field="mixture")
    try:
        metrics = load_metrics(folder / "metrics.csv")
    except CadenceError as e:
        raise PlanError(f"doremi: the reference run {str(folder)[:200]}: {e}", field="mixture") from None
    losses = []
    for d in w.domain_names():
        column = metrics.get(f"train_loss/{d}")
        measured = column[np.isfinite(column)] if column is not None else np.empty(0)
        if not measured.size:
            raise PlanError(f"doremi: the reference run {str(folder)[:200]} has no training loss of domain {d!r}; "
                            "it must be a run of the same domains (of this release: train_loss/<domain>)",
                            field="mixture")
        losses.append(float(np.mean(measured[-max(1, len(measured) // 20):])))
    params = dict(mixer.params)
    params.update(reference=os.path.abspath(folder), reference_loss=losses)
    cfg.channels = {**cfg.channels, "mixture": type(mixer)(**params).spec()}


def _resolve_init(cfg: RunConfig) -> None:
    """Check the continual pre-training settings; a run folder given as ``init`` becomes its record."""
    if not isinstance(cfg.init_optimizer, bool):
        raise CadenceError(f"init_optimizer must be true or false; got {cfg.init_optimizer!r}", field="init_optimizer")
    if cfg.init is None:
        if cfg.init_optimizer:
            raise CadenceError("init_optimizer asks for the optimizer state of the run to start from: give init too",
                               field="init_optimizer")
    else:
        from cadence.bench import continual

        if isinstance(cfg.init, dict):  # a resume: run.json's record
            cfg.init = continual.check_record(cfg.init)
            if cfg.init["optimizer"] != cfg.init_optimizer:
                raise CadenceError("the init record and init_optimizer disagree", field="init")
        elif isinstance(cfg.init, str) and cfg.init.strip() and "\x00" not in cfg.init:
            cfg.init = continual.read_init(cfg.init, workload=cfg.workload, size=cfg.size,
                                           optimizer=cfg.init_optimizer).record
        else:
            raise CadenceError(f"init must name a finished run's folder; got {str(cfg.init)[:60]!r}", field="init")
        if cfg.dense_eval is None:
            cfg.dense_eval = [max(1, cfg.eval_every // 10), 2 * cfg.eval_every]
    if cfg.dense_eval is not None:
        d = cfg.dense_eval
        if not (isinstance(d, (list, tuple)) and len(d) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_STEPS for v in d)):
            raise CadenceError(f"dense_eval must be [every, until], two whole numbers of steps >= 1; got {str(d)[:60]}",
                               field="dense_eval")
        cfg.dense_eval = [int(d[0]), int(d[1])]


def _check_device(device) -> None:
    if not isinstance(device, str):
        raise CadenceError(f"device must be 'cpu' or 'cuda[:N]'; got {device!r}", field="device")
    if device != "cpu":
        head, _, index = device.partition(":")
        if head != "cuda" or (index and not (index.isascii() and index.isdigit() and len(index) < 4)):
            raise CadenceError(f"device must be 'cpu' or 'cuda[:N]'; got {device!r}", field="device")
        if not torch.cuda.is_available():
            raise CadenceError(f"device {device!r} asked for, but torch sees no CUDA GPU here", field="device")
        if index and int(index) >= torch.cuda.device_count():
            raise CadenceError(f"device {device!r}: torch sees {torch.cuda.device_count()} GPU(s) here "
                               f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})", field="device")


def _make_plan(cfg: RunConfig, w, world: int = 1) -> Plan:
    """The run's plan; fills ``batch_size`` (the first global batch) and ``micro_batch`` (per process:
    by default the batch shared among the ``world`` processes)."""
    channels = dict(cfg.channels)
    if BATCH in channels:
        probe = Plan({BATCH: channels[BATCH]}, horizon=cfg.horizon, unit=cfg.unit,
                     rates=w.rates(cfg.micro_batch or w.batch_size))
        first = int(probe.values()[BATCH])
        if cfg.batch_size is not None and cfg.batch_size != first:
            raise PlanError(f"batch_size is {cfg.batch_size} but the batch channel starts at {first}; give one of them",
                            field="batch_size")
        cfg.batch_size = first
    else:
        cfg.batch_size = w.batch_size if cfg.batch_size is None else cfg.batch_size
    if cfg.batch_size > w.max_batch_size and cfg.micro_batch is None:
        raise LimitError(f"batch_size is {cfg.batch_size}; at most {w.max_batch_size} is supported in one pass "
                         "(give a micro-batch to accumulate)", field="batch_size")
    if cfg.micro_batch is None:
        cfg.micro_batch = cfg.batch_size // world if cfg.batch_size % world == 0 else cfg.batch_size
    if BATCH not in channels and cfg.batch_size % cfg.micro_batch:
        raise PlanError(f"batch_size {cfg.batch_size} is not a whole number of micro-batches of {cfg.micro_batch}",
                        field="micro_batch")
    if world > 1 and cfg.batch_size % (cfg.micro_batch * world):
        raise PlanError(f"the batch ({cfg.batch_size} samples) does not divide among {world} processes with "
                        f"micro-batches of {cfg.micro_batch}: it must be a multiple of {cfg.micro_batch * world}",
                        field="batch_size")
    step = cfg.micro_batch * world  # a moving batch stays a whole number of micro-batches on every process
    try:
        return Plan(channels, horizon=cfg.horizon, unit=cfg.unit, rates=w.rates(cfg.batch_size),
                    micro_batch=step if BATCH in channels else None, guards=cfg.guards,
                    domains=w.domain_names() or None)
    except PlanError as e:
        if world > 1 and e.field == "batch":
            raise PlanError(f"{e} ({cfg.micro_batch} samples on each of {world} processes)", field="batch") from None
        raise


def probe_every(plan: Plan) -> int | None:
    """Steps between the held-out probes (``probe_loss/<domain>``) the plan's mixing controllers ask for."""
    asks = [s.probe_every for s in plan.schedules.values() if getattr(s, "probe_every", None)]
    return min(asks) if asks else None


def signals_of(cfg: RunConfig, w, plan: "Plan | None" = None) -> list[str]:
    """Every signal the run measures, in metrics.csv's order (after the channels)."""
    names = ["train_loss", "grad_norm"]
    if _accumulates(cfg):
        names += list(NOISE_SIGNALS)
    names += [f"loss_{name[5:]}" for name in cfg.channels if name.startswith("loss.")]
    names += list(getattr(w, "monitor_names", ()))
    domains = w.domain_names()
    names += [f"{what}/{d}" for what in ("mixture", "samples", "train_loss") for d in domains]
    if plan is not None and probe_every(plan):
        names += [f"probe_loss/{d}" for d in domains]
    if plan is not None and getattr(plan.schedules.get(CURRICULUM), "vector", False):
        names += [f"bucket_loss/{k}" for k in range(BUCKETS)]
    return names + list(w.metric_names())


def _accumulates(cfg: RunConfig) -> bool:
    """Whether some step may run two or more micro-batches (then the noise scale is measured)."""
    return BATCH in cfg.channels or cfg.batch_size > cfg.micro_batch


def _check_monitors(plan: Plan, cfg: RunConfig, w) -> None:
    produced = signals_of(cfg, w, plan)
    before_step = [name for name in produced if name not in w.metric_names() and not name.startswith("probe_loss/")]
    for name, guard in plan.guards.items():
        signal = getattr(guard, "signal", None)
        if signal is not None and signal not in before_step:
            raise PlanError(f"guard {name!r} reads {signal!r}, which a {cfg.workload} run does not measure before its "
                            f"optimizer step; it can read: {', '.join(before_step)}", field="guards")
    for signal, readers in plan.monitors.items():
        if signal not in produced:
            why = " (the noise scale needs at least two micro-batches per step: set micro_batch)" \
                if signal in NOISE_SIGNALS else ""
            raise PlanError(f"channel {readers[0]!r} monitors {signal!r}, which a {cfg.workload} run does not "
                            f"produce{why}; it produces: {', '.join(produced)}", field="channels")
        if signal in NOISE_SIGNALS and cfg.batch_size < 2 * cfg.micro_batch:
            raise PlanError(f"channel {readers[0]!r} reads the gradient noise scale, which needs at least two "
                            f"micro-batches per step; the first batch ({cfg.batch_size}) holds "
                            f"{cfg.batch_size // cfg.micro_batch} of {cfg.micro_batch}", field="micro_batch")


# -- run.json -------------------------------------------------------------------------------

_FIELD_TYPES = {  # what run.json may hold for each RunConfig field (before validation of values)
    "workload": (str,), "channels": (dict,), "horizon": (int,), "unit": (str,), "seed": (int,), "size": (str, type(None)),
    "batch_size": (int, type(None)), "micro_batch": (int, type(None)), "optimizer": (str,),
    "weight_decay": (int, float, type(None)), "clip": (int, float, type(None)), "eval_every": (int, type(None)),
    "checkpoint_every": (int,), "skip_nonfinite": (bool,), "device": (str,), "guards": (dict, type(None)),
    "forecast": (dict, type(None)), "data": (str, type(None)), "init": (dict, type(None)), "init_optimizer": (bool,),
    "dense_eval": (list, type(None)), "difficulty": (dict, type(None)),
}
CONFIG_FIELDS = tuple(_FIELD_TYPES)
_OPTIONAL_FIELDS = {"guards": None, "forecast": None, "data": None, "init": None, "init_optimizer": False,
                    "dense_eval": None, "difficulty": None}  # fields a run.json written before they existed may lack


def _read_json(path: Path, what: str) -> object:
    """The JSON in ``path``, or one line saying why it cannot be read (size, encoding, syntax, depth)."""
    return read_json(path, MAX_MANIFEST_BYTES, what, RunError)


def _check_manifest(data: object, path: Path) -> dict:
    """A run.json as cadence wrote it, with its config validated by the same rules as a new run's."""
    what = "cadence run manifest"
    if not isinstance(data, dict):
        raise RunError(f"{path} is not a {what}: expected a JSON object, found {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise RunError(f"{path} is not a {what}: format is {str(data.get('format'))[:40]!r}, expected {FORMAT!r}")
    config = data.get("config")
    if not isinstance(config, dict):
        raise RunError(f"{path}: 'config' must be an object with the run's settings")
    if "plan" in config and "channels" not in config:
        raise RunError(f"{path} was written by cadence 0.1 (its config has 'plan' and 'steps'); resume it with that "
                       "release, or start a new run")
    fields = list(CONFIG_FIELDS)
    config = {**{k: v for k, v in _OPTIONAL_FIELDS.items() if k not in config}, **config}
    missing = [k for k in fields if k not in config]
    unknown = [str(k)[:40] for k in config if k not in fields]
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise RunError(f"{path}: config keys do not match a cadence run ({'; '.join(parts)})")
    for key, types in _FIELD_TYPES.items():
        value = config[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            allowed = " or ".join("null" if t is type(None) else {"str": "a string", "int": "a whole number",
                                                                   "float": "a number", "dict": "an object",
                                                                   "bool": "true or false"}[t.__name__]
                                  for t in types)
            raise RunError(f"{path}: config.{key} must be {allowed}; got {str(value)[:60]!r}")
    status = data.get("status")
    if status not in STATUSES:
        raise RunError(f"{path}: status must be one of {', '.join(STATUSES)}; got {str(status)[:40]!r}")
    threads = data.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS):
        raise RunError(f"{path}: threads must be a whole number from 1 to {MAX_THREADS}; got {str(threads)[:40]!r}")
    segments = data.get("segments", [])
    if not (isinstance(segments, list) and len(segments) <= 10_000 and all(
            isinstance(s, dict) and set(s) - {"world"} == {"from_step", "threads", "torch"} and isinstance(s["torch"], str)
            and all(isinstance(s[k], int) and not isinstance(s[k], bool) for k in ("from_step", "threads"))
            and isinstance(s.get("world", 1), int) and not isinstance(s.get("world", 1), bool) and s.get("world", 1) >= 1
            for s in segments)):
        raise RunError(f"{path}: segments must be a list of {{from_step, threads, torch, world}} records")
    versions = data.get("versions", {})
    if not (isinstance(versions, dict) and all(isinstance(v, str) for v in versions.values())):
        raise RunError(f"{path}: versions must be an object of version strings")
    if not isinstance(data.get("data", ""), str):
        raise RunError(f"{path}: data must be a string (the data fingerprint)")
    try:
        cfg = RunConfig(**config).resolved()
    except CadenceError as e:
        raise RunError(f"{path}: {' '.join(str(e).split())}") from None
    except (RecursionError, ValueError, TypeError, OverflowError, MemoryError) as e:
        raise RunError(f"{path}: config cannot be used ({type(e).__name__})") from None
    return {**data, "config": asdict(cfg)}


def read_manifest(out: "str | Path") -> dict | None:
    """The validated run.json of a run folder, or None if it has none. Its config is resolved."""
    path = Path(out) / "run.json"
    if not os.path.lexists(path):
        return None
    return _check_manifest(_read_json(path, "cadence run manifest"), path)


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"), temp=stable_temp(path))


# -- the run folder -------------------------------------------------------------------------

@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold an exclusive lock on ``folder`` (flock on the directory; released when the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"{folder} is in use by another cadence process; wait for it to end or stop it",
                           field="out") from None
        except OSError:
            pass  # a file system without locks (some network ones): the guard is lost, not the run
        yield
    finally:
        os.close(fd)


def has_user_files(folder: Path, ours: tuple[str, ...] = TEMP_FILES) -> bool:
    """Whether ``folder`` holds anything besides the given names cadence writes."""
    with os.scandir(folder) as entries:
        return any(entry.name not in ours for entry in entries)


def _remove_partial_writes(out: Path) -> None:
    """Delete what an atomic write that a kill interrupted leaves: exactly cadence's temporary names."""
    for name in TEMP_FILES:
        path = out / name
        if os.path.lexists(path) and not path.is_dir():
            path.unlink()


def _peek_is_run(out: Path) -> bool:
    """run.json exists and says it is a cadence run, even if it does not validate (for overwriting)."""
    try:
        data = _read_json(out / "run.json", "cadence run manifest")
    except RunError:
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def prepare_out(out: Path, *, resume: bool, overwrite: bool) -> dict | None:
    """Check what is in ``out`` (which exists and is locked); returns the manifest to resume from, if any."""
    if resume:
        manifest = read_manifest(out)
        if manifest is None:
            raise RunError(f"cannot resume: {out} holds no cadence run (no run.json)", field="out")
        _remove_partial_writes(out)
        return manifest
    if not has_user_files(out):
        _remove_partial_writes(out)
        return None
    if not os.path.lexists(out / "run.json"):
        raise RunError(f"{out} is not empty and holds no cadence run; choose another folder", field="out")
    if not overwrite:
        manifest = read_manifest(out)
        raise RunError(f"{out} holds another run ({manifest['status']}); resume it, replace it (overwrite) "
                       "or choose another folder", field="out")
    if not _peek_is_run(out):
        read_manifest(out)  # raises: says what is wrong with it
    for name in RUN_FILES:  # only what a run writes; anything else the user put there stays
        path = out / name
        if os.path.lexists(path) and not path.is_dir():
            path.unlink()
    _remove_partial_writes(out)
    return None


# -- CSV files ------------------------------------------------------------------------------

def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)
    return str(x)


class _Rows:
    """Appends CSV rows (bytes, so ``size`` is the exact file length for the checkpoint).

    A new file gets its header. On resume the file is cut back in place to the length of the
    header and ``keep`` rows, after checking that this prefix is what the checkpoint recorded.
    """

    def __init__(self, path: Path, header: list[str], keep: int | None, recorded: int | None = None) -> None:
        self.path, self.header = path, list(header)
        head = (",".join(header) + "\n").encode()
        if keep is None:
            with open(path, "wb") as f:
                f.write(head)
            self.size = len(head)
        else:
            self.size = self._kept(head, keep, recorded)
            kill_point(f"truncate:{path.name}")
            os.truncate(path, self.size)
            kill_point(f"truncated:{path.name}")
        self.file = open(path, "ab")

    def _kept(self, head: bytes, keep: int, recorded: int | None) -> int:
        path = self.path
        if not path.is_file():
            raise RunError(f"cannot resume: {path} is missing; the checkpoint (step {keep}) needs its rows")
        with open(path, "rb") as f:
            first = f.read(len(head))
            if first != head:
                raise RunError(f"cannot resume: {path} has other columns than this run writes (edited?)")
            size, rows = len(head), 0
            while rows < keep:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                at, need = 0, keep - rows
                while need:
                    at = chunk.find(b"\n", at) + 1
                    if not at:
                        break
                    need -= 1
                rows = keep - need
                size += at if not need else len(chunk)
        if rows < keep:
            raise RunError(f"cannot resume: {path} has {rows} complete rows but the checkpoint is at step {keep}")
        if recorded is not None and recorded != size:
            raise RunError(f"cannot resume: the first {keep} rows of {path} are {size} bytes, the checkpoint recorded "
                           f"{recorded} (the file was edited)")
        return size

    def write(self, values) -> None:
        line = (",".join(_fmt(v) for v in values) + "\n").encode()
        self.file.write(line)
        self.size += len(line)

    def flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


class _NoRows:
    """Where a rank other than 0 writes its rows under torchrun: nowhere."""

    def __init__(self, path: Path, header: list[str], keep: int | None, recorded: int | None = None) -> None:
        self.path, self.header, self.size = path, list(header), 0

    def write(self, values) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(plan: Plan, unit: str, progress, desc: str, elapsed: float = 0.0):
    """What shows the run's progress on stderr (cadence.bench.logs.Progress), or None when not asked for."""
    from cadence.bench.logs import Progress, progress_mode

    mode = progress_mode(progress)
    if mode is None:
        return None
    return Progress(mode, desc, plan.horizon, initial=plan.clock.position, unit=unit, elapsed=elapsed)


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


# -- training -------------------------------------------------------------------------------

def train(config: RunConfig, out: "str | Path", *, resume: bool = False, overwrite: bool = False,
          progress: "bool | str | None" = False, threads: int | None = None, stop_after: int | None = None,
          warn: Callable[[str], None] | None = None, tensorboard: "str | os.PathLike | None" = None,
          say: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) one training run; returns its manifest.

    ``threads``: torch threads; on resume, None keeps the run's own count (bit-exact), another
    count is used with a warning and recorded. ``stop_after`` ends it early (tests).
    ``warn`` receives one-line warnings (default: ``warnings.warn``); ``say`` one-line news about
    the run before its first step (default: none): the forecast's final loss when ``config.forecast``
    is set, which is predicted (or refused) before anything is written.
    ``progress`` (on stderr): ``"bar"`` (or True) a tqdm bar, ``"lines"`` a line every 5% of the
    horizon, None (or False) nothing; reading the workload's data is shown the same way.
    ``tensorboard``: a folder where every metrics.csv row also goes as TensorBoard scalars (an
    output, not a setting: a resumed run may log elsewhere or not at all; needs the
    ``tensorboard`` extra). Recorded in run.json as ``tensorboard``, outside ``config``.
    Raises TrainingDiverged (the run folder stays resumable), RunError, and on SIGINT
    KeyboardInterrupt after marking the run ``interrupted``.
    """
    out = Path(out)
    warn = warn or _warn
    if resume and overwrite:
        raise RunError("resuming and overwriting a run contradict each other; choose one", field="overwrite")
    from cadence.bench.logs import check_tensorboard_folder, progress_mode, require_tensorboard
    from cadence.bench.workloads import data_progress

    mode = progress_mode(progress)
    if tensorboard is not None:
        tensorboard = check_tensorboard_folder(tensorboard)
        require_tensorboard()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise CadenceError(f"threads must be a positive whole number; got {threads!r}", field="threads")
        if threads > MAX_THREADS:
            raise LimitError(f"threads is {threads}; at most {MAX_THREADS} is supported", field="threads")
    if "\x00" in str(out):
        raise RunError("the run folder's name contains a NUL character", field="out")
    if os.path.lexists(out) and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder", field="out")
    if resume and not out.is_dir():
        raise RunError(f"cannot resume: {out} holds no cadence run (no such folder)", field="out")
    world = join_world = None
    shown = contextlib.ExitStack()
    try:
        world = join(config.device if isinstance(config.device, str) else "cpu")  # torchrun: this process's rank
        join_world = world.world if world is not None else 1
        shown.enter_context(data_progress(mode if world is None or world.main else None))  # tiny-lm: reading its data
        asked = predicted = None
        if config.workload or not resume:
            asked, plan = resolve(config, join_world)  # validate before touching the disk
            if asked.forecast is not None:
                from cadence.bench.run_forecast import forecast_run

                predicted = forecast_run(plan, asked.forecast)  # a law that cannot forecast this run: refused now
        main = world is None or world.main
        with contextlib.ExitStack() as held:
            def take() -> None:  # rank 0 alone makes, locks and writes the folder
                out.mkdir(parents=True, exist_ok=True)
                held.enter_context(folder_lock(out))

            if world is None:
                take()
            else:  # a folder in use is said once, by rank 0, and every rank stops
                world.share(take if main else None, "locking the run folder")
            # a micro-batch left to its default depends on the number of processes: not compared on resume
            loose = ("micro_batch",) if config.micro_batch is None else ()
            quiet = lambda m: None  # noqa: E731 - torchrun: rank 0 speaks for all
            return _train_locked(asked, out, resume=resume, overwrite=overwrite, progress=mode if main else None,
                                 threads=threads, stop_after=stop_after, warn=warn if main else quiet,
                                 say=(say or quiet) if main else quiet, group=world, tensorboard=tensorboard,
                                 loose=loose, predicted=predicted)
    finally:
        shown.close()
        if world is not None:
            world.close()


def _train_locked(asked: RunConfig | None, out: Path, *, resume: bool, overwrite: bool, progress: "str | None",
                  threads: int | None, stop_after: int | None, warn: Callable[[str], None],
                  say: Callable[[str], None], group: Group | None = None, loose: tuple[str, ...] = (),
                  tensorboard: Path | None = None, predicted=None) -> dict:
    """``predicted``: the RunForecast of ``asked`` (made before the folder was touched), or None."""
    main = group is None or group.main

    def write_manifest(manifest: dict) -> None:
        if main:
            _write_json(out / "run.json", manifest)
    if group is None:
        previous = prepare_out(out, resume=resume, overwrite=overwrite)
    else:  # rank 0 prepares the folder; every rank gets its answer (or its error)
        previous = group.share(lambda: prepare_out(out, resume=resume, overwrite=overwrite), "preparing the run folder")
    cfg = asked if previous is None else RunConfig(**previous["config"])
    if previous is not None and asked is not None and \
            {k: v for k, v in asdict(asked).items() if k not in loose} != {k: v for k, v in asdict(cfg).items() if k not in loose}:
        mine, theirs = asdict(asked), asdict(cfg)
        diff = ", ".join(f"{k}: {_setting(k, theirs[k])} in the run, {_setting(k, mine[k])} asked" for k in mine
                         if mine[k] != theirs[k] and k not in loose)
        raise RunError(f"cannot resume {out} with other settings ({diff})")

    if previous is not None and previous["status"] == "complete" and not os.path.lexists(out / "checkpoint.pt"):
        return previous  # finished, and its checkpoint removed since: nothing to resume, nothing to redo

    recorded = previous.get("threads") if previous is not None else None
    if threads is None and recorded is not None:
        threads = recorded  # the run's own count: the rest of the run stays bit-exact
    if threads:
        torch.set_num_threads(threads)
    cfg, plan = resolve(cfg, group.world if group is not None else 1)
    workload = get_workload(cfg.workload, cfg.data)
    if cfg.forecast is not None and predicted is None:  # a resume that names no settings: its law is run.json's
        from cadence.bench.run_forecast import forecast_run

        predicted = forecast_run(plan, cfg.forecast)  # the same call on the same LRs as the run's first start
    fingerprint = workload.fingerprint()
    if previous is not None and previous.get("data") != fingerprint:
        changed = workload.data_changes(previous.get("corpus")) or f"{fingerprint} vs {str(previous.get('data'))[:40]}"
        raise RunError(f"cannot resume {out}: the {cfg.workload} data on this machine differs from the run's "
                       f"({changed})")

    loop = make_loop(cfg, workload, plan, group)
    model = loop.model
    settings = json.dumps(asdict(cfg), sort_keys=True)

    elapsed, offsets = 0.0, {}
    checkpoint = out / "checkpoint.pt"
    if previous is not None and os.path.lexists(checkpoint):
        elapsed, offsets = _load_checkpoint(checkpoint, cfg, settings, loop)
    start = plan.clock.step
    if start == 0 and cfg.init is not None:  # continual pre-training: the weights of the run it starts from
        _start_from(loop, cfg)
    saved = start if start > 0 else None  # the step of the last checkpoint on disk

    segment = {"from_step": start, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if group is not None:
        segment["world"] = group.world
    if start == 0:
        segments = [segment]  # nothing of an earlier attempt is kept
    else:
        segments = list(previous.get("segments") or
                        [{"from_step": 0, "threads": recorded or 0, "torch": previous.get("versions", {}).get("torch", "?")}])
        old = segments[-1]
        if (old["threads"], old["torch"], old.get("world", 1)) != (segment["threads"], segment["torch"],
                                                                     segment.get("world", 1)):
            warn(f"resuming {out} with {segment['threads']} torch thread(s), torch {segment['torch']} and "
                 f"{segment.get('world', 1)} process(es) where it ran with {old['threads']}, torch {old['torch']} and "
                 f"{old.get('world', 1)}: the rest of the run is not bit-identical to an uninterrupted one "
                 "(recorded in run.json)")
            segments.append(segment)

    rates = workload.rates(cfg.batch_size)
    manifest = {
        "format": FORMAT,
        "config": asdict(cfg),
        "status": "running",
        "step": start,
        "data": fingerprint,
        **({"corpus": corpus} if (corpus := workload.corpus_record()) is not None else {}),
        "parameters": parameter_count(model),
        "rates": asdict(rates),
        "versions": {"cadence": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "threads": torch.get_num_threads(),
        "segments": segments,
        "bit_exact": len(segments) == 1,
    }
    if loop.rollbacks:  # a resumed run keeps the record of its earlier rollbacks (the checkpoint holds them)
        manifest["rollbacks"] = [dict(r) for r in loop.rollbacks]
    if tensorboard is not None:
        manifest["tensorboard"] = os.path.abspath(tensorboard)  # where this start or resume logs (not a setting)
    write_manifest(manifest)  # first: a folder with run files always has a manifest

    # a mixture is logged as mixture/<domain> (with the signals); a bandit curriculum as curriculum/<bucket>
    channels = [c if k is None else f"{c}/{k}" for c in cfg.channels if c != "mixture"
                for k in (plan.schedules[c].keys if getattr(plan.schedules[c], "vector", False) else (None,))]
    signals = signals_of(cfg, workload, plan)
    logged = list(signals)  # what each row holds after the channels: the signals, and the forecast after val_loss
    if predicted is not None:
        logged.insert(logged.index("val_loss") + 1 if "val_loss" in logged else len(logged), "forecast")
    reports = plan.diagnostics  # controllers' state after the step: lr.scale, batch.b_simple, ...
    header = ["step", "samples", "tokens", *channels, *logged, *reports]
    keep = start if start > 0 else None  # nothing checkpointed: the files start over
    rows = _Rows if main else _NoRows  # torchrun: rank 0 alone writes
    metrics = rows(out / "metrics.csv", header, keep, offsets.get("metrics.csv"))
    try:
        timing = rows(out / "timing.csv", ["step", "wall_s"], keep, offsets.get("timing.csv"))
    except BaseException:
        metrics.close()
        raise

    def save_checkpoint() -> None:
        if not main:
            return
        state = {"step": plan.clock.step, "elapsed": elapsed, "rows": {"metrics.csv": metrics.size, "timing.csv": timing.size},
                 "settings": settings, **loop.state_dict()}
        atomic_write(checkpoint, lambda tmp: torch.save(state, tmp), temp=stable_temp(checkpoint))

    bar = _progress(plan, cfg.unit, progress, f"{cfg.workload} seed {cfg.seed}", elapsed)
    board = None
    step = start
    try:
        if tensorboard is not None and main:  # the one place a TensorBoard writer is made: rank 0 alone writes
            from cadence.bench.logs import TensorBoardLog

            board = TensorBoardLog.open(tensorboard, header, start)  # hides what earlier processes logged from start on
        if predicted is not None:
            notice = predicted.extrapolation()
            if notice:
                warn(notice)
            say(predicted.summary())
        while not plan.done and (stop_after is None or plan.clock.step < stop_after):
            t0 = time.perf_counter()
            step = plan.clock.step
            row = loop.run_step()
            if row is None:  # a guard skipped the step: no row, the clock did not move
                continue
            if row == "rollback" and saved is None:  # nothing to roll back to yet: the step is skipped
                plan.skip()
                continue
            if row == "rollback":
                metrics, timing = _roll_back(loop, out, cfg, settings, saved, step, metrics, timing)
                if board is not None:
                    board.restart(saved)  # the steps from `saved` on are logged again
                manifest["rollbacks"] = [dict(r) for r in loop.rollbacks]
                warn(f"{out}: repeated loss spikes up to step {step}; rolled back to the checkpoint of step {saved} "
                     f"and going on with the data after the spike (rollback {len(loop.rollbacks)} of at most "
                     f"{plan.guards['rollback'].max_rollbacks})")
                continue
            diagnosis = plan.diagnose() if reports else {}
            if predicted is not None:
                row["forecast"] = predicted.at(step)
            values = [step, plan.clock.samples, plan.clock.tokens, *(row[c] for c in channels),
                      *(row.get(n) for n in logged), *(diagnosis[n] for n in reports)]
            metrics.write(values)
            if board is not None:
                board.row(values)
            dt = time.perf_counter() - t0
            elapsed += dt
            timing.write([step, f"{dt:.6f}"])
            kill_point("row")
            if bar is not None:
                bar.update(plan.clock.position, plan.clock.step, loss=row["train_loss"], lr=row.get("lr"))
            if plan.clock.step % cfg.checkpoint_every == 0 or plan.done:
                t1 = time.perf_counter()
                metrics.flush()
                timing.flush()
                if board is not None:
                    board.flush()
                save_checkpoint()
                saved = plan.clock.step
                elapsed += time.perf_counter() - t1  # counted in train_seconds (not in that step's timing row)
                manifest["step"] = saved
        manifest["status"] = "complete" if plan.done else "stopped"
        manifest["step"] = plan.clock.step
        if plan.clock.skipped:
            manifest["skipped"] = plan.clock.skipped
    except TrainingDiverged as e:
        manifest.update(status="diverged", step=saved or 0, diverged_at=step)
        if plan.clock.skipped:  # the steps the guards skipped before they gave up
            manifest["skipped"] = plan.clock.skipped
        write_manifest(manifest)
        if saved is None:
            kept = (f"no checkpoint had been written yet (the first was due at step {cfg.checkpoint_every}); "
                    "resuming starts over")
        else:
            kept = f"the last checkpoint (step {saved}) is kept in {checkpoint}"
        raise TrainingDiverged(f"{e}; stopped: {kept}") from None
    except KeyboardInterrupt:
        manifest.update(status="interrupted", step=saved or 0)
        write_manifest(manifest)
        raise
    finally:
        metrics.close()
        timing.close()
        if bar is not None:
            bar.close()
        if board is not None:
            board.close()
    manifest["train_seconds"] = round(elapsed, 3)
    mixer = plan.schedules.get("mixture")
    if hasattr(mixer, "averaged_weights") and manifest["status"] == "complete" and main:
        # DoReMi's output: the weights averaged over the run, for a second run to train on (Xie et al. 2023)
        average = mixer.averaged_weights(plan.states["mixture"])
        manifest["averaged_mixture"] = average
        say(f"{mixer.name}: the mixture averaged over the run (the paper's output): "
            + ", ".join(f"{d} {w:.3f}" for d, w in average.items()))
    if cfg.init is not None and manifest["status"] == "complete" and main:
        gaps = _stability_gap(cfg, out, workload)
        if gaps is not None:
            manifest["stability_gap"] = gaps
            for column, g in gaps.items():
                if g["length"] == 0:
                    say(f"stability gap of {column}: none (never more than {100 * g['tolerance']:g}% above the finished "
                        f"run's {g['baseline']:.4f})")
                    continue
                say(f"stability gap of {column}: depth {g['depth']:.4f} ({100 * g['depth_rel']:.1f}%) at step "
                    f"{g['peak_step']}, " + (f"back within {100 * g['tolerance']:g}% after {g['length']} steps"
                                             if g["recovered"] else "not back by the end of the run"))
    write_manifest(manifest)
    return manifest


def _order_of(workload, record: dict) -> dict:
    """The workload's training text sorted by the run's difficulty scores (computed once per process and record)."""
    from cadence.bench import difficulty

    cache = workload._data
    key = ("order", record["hash"])
    if key not in cache:
        cache[key] = workload.ordered(difficulty.resolved_scores(workload, record))
    return cache[key]


def _start_from(loop: "Loop", cfg: RunConfig) -> None:
    """Load the init run's weights (and optimizer state) into a fresh loop; the record must still match."""
    from cadence.bench import continual

    problem = continual.verify(cfg.init)
    if problem:
        raise RunError(f"cannot start from {cfg.init['run']}: {problem}", field="init")
    init = continual.read_init(cfg.init["run"], workload=cfg.workload, size=cfg.size, optimizer=cfg.init_optimizer)
    continual.check_fits(loop.model, init, loop.opt if cfg.init_optimizer else None)
    loop.model.load_state_dict(init.model)
    if init.optimizer is not None:  # the moments and step counts; the settings of this run's param groups stay
        settings = [{k: v for k, v in g.items() if k != "params"} for g in loop.opt.param_groups]
        loop.opt.load_state_dict(init.optimizer)
        for group, mine in zip(loop.opt.param_groups, settings):
            group.update(mine)


def _stability_gap(cfg: RunConfig, out: Path, workload) -> "dict | None":
    """After a run started from another: the depth and length of each shared domain's dip (continual.stability_gap)."""
    from cadence.bench import continual
    from cadence.bench.report import load_metrics

    try:
        before = load_metrics(Path(cfg.init["run"]) / "metrics.csv")
        after = load_metrics(out / "metrics.csv")
    except CadenceError:
        return None
    gaps = {}
    columns = [f"val_loss/{d}" for d in workload.domain_names()] or ["val_loss"]
    for column in columns:
        if column not in before or column not in after:
            continue
        measured = before[column][np.isfinite(before[column])]
        if not measured.size:
            continue
        try:
            gaps[column] = continual.stability_gap(after, column, 0, baseline=float(measured[-1]))
        except CadenceError:
            continue
    return gaps or None


def _roll_back(loop: "Loop", out: Path, cfg: RunConfig, settings: str, saved: int | None, step: int,
               metrics: "_Rows", timing: "_Rows") -> "tuple[_Rows, _Rows]":
    """Restore the last checkpoint after the guards asked for it, keep the data cursor where it is
    (the batches that led to the spike are not seen again), and checkpoint that at once.

    The rollback is a function of the run's data and state, so a run killed before the new
    checkpoint replays the same steps from the old one and rolls back the same way.
    """
    policy = loop.plan.guards["rollback"]
    assert saved is not None  # before the first checkpoint the train loop counts a rollback as a skip
    if len(loop.rollbacks) >= policy.max_rollbacks:
        raise TrainingDiverged(f"repeated loss spikes up to step {step} after {len(loop.rollbacks)} rollbacks "
                               f"(max_rollbacks={policy.max_rollbacks})")
    # `skipped`: the steps not applied since the checkpoint, this one included (the restored clock no longer counts them)
    record = {"at_step": step, "to_step": saved, "drawn": loop.drawn, "skipped": loop.plan.clock.skipped + 1}
    drawn, rollbacks, kept = loop.drawn, [*loop.rollbacks, record], list(loop.domain_samples)
    checkpoint = out / "checkpoint.pt"
    if isinstance(metrics, _NoRows):  # torchrun, rank > 0: restore only; rank 0 rewrites the files
        _load_checkpoint(checkpoint, cfg, settings, loop)
        record["skipped"] -= loop.plan.clock.skipped
        loop.drawn, loop.rollbacks, loop.domain_samples = drawn, rollbacks, kept
        torch.distributed.barrier()
        return metrics, timing
    metrics.close()
    timing.close()
    elapsed, offsets = _load_checkpoint(checkpoint, cfg, settings, loop)
    record["skipped"] -= loop.plan.clock.skipped
    loop.drawn, loop.rollbacks, loop.domain_samples = drawn, rollbacks, kept
    if loop.group is not None:
        torch.distributed.barrier()  # every rank has read the checkpoint before it is replaced
    metrics = _Rows(out / "metrics.csv", metrics.header, saved, offsets.get("metrics.csv"))
    timing = _Rows(out / "timing.csv", timing.header, saved, offsets.get("timing.csv"))
    state = {"step": saved, "elapsed": elapsed, "rows": {"metrics.csv": metrics.size, "timing.csv": timing.size},
             "settings": settings, **loop.state_dict()}
    atomic_write(checkpoint, lambda tmp: torch.save(state, tmp), temp=stable_temp(checkpoint))
    return metrics, timing


def make_loop(cfg: RunConfig, workload, plan: Plan, group: Group | None = None) -> "Loop":
    """The model (seeded by ``cfg.seed``), its optimizer and the Loop that trains it under ``plan``.

    Two param groups: weights with ``weight_decay``, biases and norms without; the plan sets
    the real values (the base LR of 1.0 only fixes the groups' ratios, all equal).
    """
    torch.manual_seed(cfg.seed)
    model = workload.model(cfg.size).to(cfg.device)
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt, fields = _optimizer(cfg, [g for g in groups if g["params"]], plan)
    return Loop(cfg, workload, model, opt, plan, fields, group)


def _optimizer(cfg: RunConfig, groups: list, plan: Plan):
    """The run's optimizer over ``groups`` and the OptimizerFields that write the plan's channels into it."""
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=1.0, betas=(0.9, 0.95))
    else:
        opt = torch.optim.SGD(groups, lr=1.0, momentum=0.9)
    try:
        return opt, OptimizerFields(opt, optimizer_channels(plan), who=f"{cfg.optimizer} run")
    except CadenceError as e:
        raise PlanError(str(e), field="channels") from None


MAX_SKIPS_IN_A_ROW = 10  # a guard that skips more steps than this in a row stops the run as diverged


class Loop:
    """One optimizer step of a run, in the documented order (docs/runner.md, "The training step"):

    1. ``apply_values``: the plan's values for the step go to their targets (optimizer
       fields, the batch size, loss coefficients);
    2. ``micro_batches``: forward and backward over ``batch / micro_batch`` micro-batches;
    3. ``reduce_signals``: train loss, gradient norm (before clipping; clipping happens
       here), and the gradient noise scale from the micro-batches' own gradients;
    4. ``guards``: a non-finite loss or gradient stops the run as diverged, or, with
       ``skip_nonfinite``, skips the step (no optimizer step, the clock does not move);
       then the plan's guards (``plan.guard``) may skip it too, or ask for a rollback to
       the last checkpoint (which ``train`` does);
    5. ``optimizer_step``;
    6. ``observe``: the plan's controllers see the step's signals;
    7. ``advance_clock``: steps + 1, samples and tokens + what the step really used;
    8. ``evaluate`` (validation signals, observed at once), then the caller logs the row
       and checkpoints.

    The data of micro-batch ``i`` of the run (counting every micro-batch drawn, skipped
    steps' too) is ``workload.batch(seed, i, micro_batch)``: with one micro-batch per step
    that is the step's batch, as in earlier releases.
    """

    def __init__(self, cfg: RunConfig, workload, model, opt, plan: Plan, fields: OptimizerFields,
                 group: "Group | None" = None) -> None:
        self.cfg, self.workload, self.model, self.opt, self.plan, self.fields = cfg, workload, model, opt, plan, fields
        self.group = group  # torchrun: this rank's place (cadence.bench.distributed); None for one process
        self.rank, self.world = (group.rank, group.world) if group is not None else (0, 1)
        self.drawn = 0  # micro-batches drawn so far (the data cursor; skipped steps draw too)
        self.skips_in_a_row = 0
        self.verdict = "apply"  # the guards' last answer: 'apply', 'skip' or 'rollback'
        self.rollbacks: list[dict] = []  # {at_step, to_step, drawn} of each rollback to a checkpoint
        self.monitored = bool(getattr(workload, "monitor_names", ()))
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.terms = [name[5:] for name in plan.schedules if name.startswith("loss.")]
        self.clip = cfg.clip if cfg.clip is not None else math.inf
        self.noise = _accumulates(cfg)
        self.domains = workload.domain_names()  # a workload with domains: samples drawn from each so far
        self.domain_samples = [0] * len(self.domains)
        self.probe_every = probe_every(plan)
        self.reweight = plan.schedules.get(SAMPLE_WEIGHTS)  # per-sample loss weights (Sow et al.), or None
        curriculum = plan.schedules.get(CURRICULUM)
        self.buckets = curriculum.keys if getattr(curriculum, "vector", False) else None
        self.order = _order_of(workload, cfg.difficulty) if curriculum is not None else None
        self.per_sample = bool(self.domains) or self.reweight is not None or self.buckets is not None

    # 1
    def apply_values(self) -> dict:
        values = self.plan.values()
        self.fields.apply(values)
        return values

    def mixture(self) -> "torch.Tensor | None":
        """The sampling weight of each domain for the step about to run (the plan's mixture, else uniform)."""
        if not self.domains:
            return None
        return self.workload.weights(self.plan.mixture())

    # 2
    def micro_batches(self, values: dict) -> dict:
        cfg, micro = self.cfg, self.cfg.micro_batch
        batch = int(values.get(BATCH, cfg.batch_size))
        count = batch // micro
        weights = self.mixture()
        per_domain = torch.zeros(2, len(self.domains), dtype=torch.float64) if self.domains else None
        per_bucket = torch.zeros(2, len(self.buckets), dtype=torch.float64) if self.buckets else None
        curriculum = None
        if self.order is not None:
            curriculum = (self.order, torch.tensor([values[f"{CURRICULUM}/{k}"] for k in self.buckets],
                                                   dtype=torch.float64) if self.buckets else values[CURRICULUM])
        torch.manual_seed(cfg.seed * 1_000_003 + self.plan.clock.step + self.plan.clock.skipped)  # dropout and friends
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        losses, terms, small = [], {t: [] for t in self.terms}, []
        previous = None
        mine = range(self.rank, count, self.world)  # torchrun: micro-batch j of the step goes to rank j % world
        for j in mine:
            if curriculum is not None:
                data = self.workload.batch(cfg.seed, self.drawn + j, micro, weights, curriculum)
            elif self.domains:
                data = self.workload.batch(cfg.seed, self.drawn + j, micro, weights)
            else:
                data = self.workload.batch(cfg.seed, self.drawn + j, micro)
            if cfg.device != "cpu":
                data = tuple(t.to(cfg.device, non_blocking=True) for t in data)
            if self.per_sample:  # the loss of each sample: per-domain losses and sample weights come from one pass
                parts = self.workload.per_sample(self.model, data, tuple(self.terms))
                per = parts[""]
                seen = per.detach().cpu().double()
                if self.domains:
                    drawn = data[2].cpu()
                    per_domain[0] += torch.bincount(drawn, weights=seen, minlength=len(self.domains))
                    per_domain[1] += torch.bincount(drawn, minlength=len(self.domains)).double()
                if per_bucket is not None:
                    bucket = data[3].cpu()
                    per_bucket[0] += torch.bincount(bucket, weights=seen, minlength=len(self.buckets))
                    per_bucket[1] += torch.bincount(bucket, minlength=len(self.buckets)).double()
                main = per.mean()  # the training loss the run reports: every sample counts alike
                objective = main
                if self.reweight is not None and values[SAMPLE_WEIGHTS] > 0:
                    w = self.reweight.weights(seen.numpy(), values[SAMPLE_WEIGHTS])
                    objective = (torch.as_tensor(w, dtype=per.dtype, device=per.device) * per).mean()
                loss = objective + sum(values[f"loss.{t}"] * parts[t] for t in self.terms)
                for t in self.terms:
                    terms[t].append(float(parts[t].detach()))
            elif self.terms:
                parts = self.workload.losses(self.model, data)
                loss = parts[""] + sum(values[f"loss.{t}"] * parts[t] for t in self.terms)
                for t in self.terms:
                    terms[t].append(float(parts[t].detach()))
                main = parts[""]
            else:
                loss = main = self.workload.loss(self.model, data)
            (loss / count if count > 1 else loss).backward()
            losses.append(main.item())
            if count > 1:
                previous = self._micro_norm(previous, count, small, last=j == mine[-1])
        self.drawn += count
        if self.group is not None:
            self.group.sum_gradients(self.params)
        return {"batch": batch, "count": count, "losses": losses, "terms": terms, "small": small,
                "weights": weights, "per_domain": per_domain, "per_bucket": per_bucket}

    def _micro_norm(self, previous, count: int, small: list, last: bool):
        """|g_j|^2 of micro-batch j's own gradient, from the accumulated gradient's change (no extra backward).

        ``previous`` holds the accumulated gradient before micro-batch j; it becomes the
        difference in place (no new buffer), and then the accumulated gradient again, except
        after the last micro-batch, when nothing needs it.
        """
        grads = [p.grad for p in self.params if p.grad is not None]
        with torch.no_grad():
            if previous is None:
                norms = torch._foreach_norm(grads)
                previous = [g.clone() for g in grads] if not last else None
            else:
                torch._foreach_sub_(previous, grads)  # -(g_j / count): the same norm
                norms = torch._foreach_norm(previous)
                if not last:
                    torch._foreach_copy_(previous, grads)
            small.append(float(torch.stack(norms).square().sum()) * count * count)
        return previous

    # 3
    def reduce_signals(self, work: dict) -> dict:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip))
        if self.group is not None:
            self._reduce_across_ranks(work)
        signals = {"train_loss": float(np.mean(work["losses"])), "grad_norm": grad_norm}
        for t, vals in work["terms"].items():
            signals[f"loss_{t}"] = float(np.mean(vals))
        if self.monitored:  # measured in the step's last forward pass (tiny-lm: attention and output logits)
            # the attention maximum costs ~5% of a tiny-lm step: measured every workload.monitor_every steps
            monitors = self.workload.monitors(self.model, step=self.plan.clock.step)
            if self.group is not None:
                names = list(monitors)
                top = self.group.max_(torch.tensor([monitors[n] for n in names], dtype=torch.float64))
                monitors = dict(zip(names, top.tolist()))
            signals.update({k: (v if math.isfinite(v) else None) for k, v in monitors.items()})  # NaN: not measured
        if self.domains:
            weights = work["weights"].tolist()
            sums, counts = work["per_domain"].tolist()  # every rank's samples, after _reduce_across_ranks
            # the samples drawn from each domain, skipped steps' too (this runs before the guards)
            self.domain_samples = [a + int(n) for a, n in zip(self.domain_samples, counts)]
            signals.update({f"mixture/{d}": w for d, w in zip(self.domains, weights)})
            signals.update({f"samples/{d}": n for d, n in zip(self.domains, self.domain_samples)})
            signals.update({f"train_loss/{d}": (s / n if n else None) for d, s, n in zip(self.domains, sums, counts)})
        if self.buckets:
            sums, counts = work["per_bucket"].tolist()
            signals.update({f"bucket_loss/{k}": (s / n if n else None) for k, s, n in zip(self.buckets, sums, counts)})
        if self.noise:
            g2 = trace = None
            if work["count"] > 1 and math.isfinite(grad_norm):
                g2, trace = noise_scale(work["small"], self.cfg.micro_batch, grad_norm * grad_norm, work["batch"])
            signals["noise_g2"], signals["noise_trace"] = g2, trace
        return signals

    def _reduce_across_ranks(self, work: dict) -> None:
        """Every rank's per-micro-batch numbers on every rank, in micro-batch order (torchrun).

        Each list of the step (losses, loss terms, micro-batch gradient norms) becomes the full
        list over all ``count`` micro-batches: rank r fills slots r, r + world, ... and a sum
        across ranks assembles it, so the signals are those of a one-process run.
        """
        count, names = work["count"], ["losses", *(f"term:{t}" for t in work["terms"]),
                                        *(["small"] if work["small"] else [])]
        table = torch.zeros(len(names), count, dtype=torch.float64)
        slots = list(range(self.rank, count, self.world))
        for row, name in enumerate(names):
            values = work[name] if name in ("losses", "small") else work["terms"][name[5:]]
            table[row, slots] = torch.tensor(values, dtype=torch.float64)
        self.group.sum_(table)
        for row, name in enumerate(names):
            full = table[row].tolist()
            if name in ("losses", "small"):
                work[name] = full
            else:
                work["terms"][name[5:]] = full
        for key in ("per_domain", "per_bucket"):  # per-domain (per-bucket) loss sums and sample counts of every rank
            if work[key] is not None:
                self.group.sum_(work[key])

    # 4
    def guards(self, signals: dict) -> bool:
        """True: take the step. False: skip it; ``self.verdict`` then says whether the plan's guards ask
        for a rollback to the last checkpoint ('rollback') or a plain skip ('skip'), see
        :meth:`cadence.Plan.guard`. Raises TrainingDiverged when the run cannot go on."""
        self.verdict = self._verdict(signals)
        return self.verdict == "apply"

    def _verdict(self, signals: dict) -> str:
        bad = next((k for k in ("train_loss", "grad_norm") if not math.isfinite(signals[k])), None)
        if bad is None:
            self.skips_in_a_row = 0
            return self.plan.guard(signals)
        step = self.plan.clock.step
        if any(getattr(g, "signal", None) == bad for g in self.plan.guards.values()):
            return self.plan.guard(signals)  # a spike guard on that signal skips it (and counts it in a row)
        if not self.cfg.skip_nonfinite:
            what = "training loss" if bad == "train_loss" else "gradient norm"
            raise TrainingDiverged(f"the {what} became {signals[bad]} at step {step}")
        self.skips_in_a_row += 1
        if self.skips_in_a_row > MAX_SKIPS_IN_A_ROW:
            raise TrainingDiverged(f"{self.skips_in_a_row} steps in a row had a non-finite loss or gradient "
                                   f"(the last at step {step})")
        return "skip"

    # 5
    def optimizer_step(self) -> None:
        self.opt.step()

    # 6
    def observe(self, signals: dict) -> None:
        self.plan.observe(signals)

    # 7
    def advance_clock(self, work: dict) -> None:
        tokens_per_sample = self.plan.rates.tokens_per_sample or 0
        self.plan.advance(samples=work["batch"], tokens=int(work["batch"] * tokens_per_sample))

    # 8
    def evaluate(self) -> dict:
        """Validation metrics when due (every eval_every steps and at the end), observed at once."""
        step = self.plan.clock.step
        probe = {}
        if self.probe_every and step % self.probe_every == 0:  # the mixing controllers' held-out probe
            self.model.eval()
            probe = self.workload.probe(self.model)
            self.plan.observe(probe)
        dense = self.cfg.dense_eval is not None and step <= self.cfg.dense_eval[1] and step % self.cfg.dense_eval[0] == 0
        if step % self.cfg.eval_every and not self.plan.done and not dense:
            return probe
        self.model.eval()
        result = self.workload.evaluate(self.model)
        if not math.isfinite(result["val_loss"]):
            raise TrainingDiverged(f"the validation loss became {result['val_loss']} at step {step - 1}")
        self.plan.observe(result)
        return {**probe, **result}

    def run_step(self) -> "dict | str | None":
        """One step in order; returns the row (values and signals), None when a guard skipped it, or
        'rollback' when the guards ask for the last checkpoint (the step is not applied)."""
        values = self.apply_values()
        work = self.micro_batches(values)
        signals = self.reduce_signals(work)
        if not self.guards(signals):
            self.opt.zero_grad(set_to_none=True)
            if self.verdict == "rollback":
                return self.verdict
            self.plan.skip()
            return None
        self.optimizer_step()
        self.observe(signals)
        self.advance_clock(work)
        return {**values, **signals, **self.evaluate()}

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "plan": self.plan.state_dict(),
                 "drawn": self.drawn}
        if self.domains:
            state["domain_samples"] = list(self.domain_samples)
        if self.rollbacks:
            state["rollbacks"] = [dict(r) for r in self.rollbacks]
        return state

    def load_state_dict(self, state: dict) -> None:
        drawn = state["drawn"]
        if isinstance(drawn, bool) or not isinstance(drawn, int) or drawn < 0:
            raise ValueError(f"its data position {drawn!r} is not a whole number")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        rollbacks = state.get("rollbacks", [])
        if not (isinstance(rollbacks, list) and all(
                isinstance(r, dict) and set(r) == {"at_step", "to_step", "drawn", "skipped"} and all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in r.values()) for r in rollbacks)):
            raise ValueError("its rollback records are not {at_step, to_step, drawn, skipped} whole numbers")
        self.plan.load_state_dict(state["plan"])
        self.drawn = drawn
        self.rollbacks = [dict(r) for r in rollbacks]
        if self.domains:
            counts = state.get("domain_samples")
            if not (isinstance(counts, list) and len(counts) == len(self.domains)
                    and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts)):
                raise ValueError(f"its samples per domain {str(counts)[:60]} do not fit the {len(self.domains)} domains")
            self.domain_samples = list(counts)


def _setting(key: str, value) -> str:
    """A setting as a message shows it: its repr, and a recorded law in a few words (not its whole report)."""
    if key == "init" and isinstance(value, dict):
        return f"{str(value.get('run'))[:200]} (checkpoint sha256 {str(value.get('checkpoint'))[:16]})"
    if key != "forecast" or not isinstance(value, dict):
        return repr(value)
    params = value.get("params")
    shown = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={str(v)[:20]}"
                      for k, v in params.items()) if isinstance(params, dict) else "?"
    return f"a {str(value.get('law'))[:20]} law ({shown}; lr_scale {str(value.get('lr_scale'))[:20]})"


def _load_checkpoint(path: Path, cfg: RunConfig, settings: str, loop: Loop) -> tuple[float, dict]:
    """Restore model, optimizer, plan and data position; returns (elapsed seconds, recorded CSV lengths)."""
    try:
        state = torch.load(path, weights_only=True, map_location=cfg.device)
        if not isinstance(state, dict):
            raise TypeError(f"a {type(state).__name__}, not a dict")
        step, elapsed = state["step"], state["elapsed"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step {step!r} is not a step of the run")
        elapsed = float(elapsed)
        rows = state.get("rows", {})
        if not (isinstance(rows, dict) and all(isinstance(v, int) for v in rows.values())):
            raise ValueError("its row lengths are not whole numbers")
        theirs = state.get("settings")
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint gets the same answer
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise RunError(f"cannot resume: {path} is unreadable or corrupt ({type(e).__name__}: {first})") from None
    if theirs is not None and theirs != settings:
        mine, old = json.loads(settings), json.loads(theirs)
        if isinstance(old, dict):  # a checkpoint of a release before an optional setting existed: its default
            old = {**{k: v for k, v in _OPTIONAL_FIELDS.items() if k not in old}, **old}
        if old != mine:
            diff = ", ".join(f"{k}: {_setting(k, old.get(k))} in the checkpoint, {_setting(k, mine[k])} in run.json"
                             for k in mine if mine[k] != old.get(k))
            raise RunError(f"cannot resume: run.json does not match the checkpoint it was written with ({diff})")
    try:
        loop.load_state_dict(state)
        if loop.plan.clock.step != step:
            raise ValueError(f"its plan is at step {loop.plan.clock.step}, the checkpoint at {step}")
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise RunError(f"cannot resume: {path} does not fit this run ({type(e).__name__}: {first})") from None
    return elapsed, rows
