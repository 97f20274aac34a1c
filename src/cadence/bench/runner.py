"""Train a workload under a plan of schedules, with metrics, checkpoints and exact resume.

A run directory holds:

* ``run.json``: the manifest (workload, size, plan, seed, optimizer, versions, status).
* ``metrics.csv``: one row per step: ``step, samples, tokens, <each driven channel>,
  train_loss, grad_norm, <eval metrics>`` (eval columns are empty when not measured).
  It is deterministic: a killed and resumed run writes the same bytes as one that was not.
* ``timing.csv``: wall-clock seconds per step (kept apart from metrics.csv because time is
  never reproducible).
* ``checkpoint.pt``: model, optimizer and scheduler state after the last checkpointed
  step, written atomically and loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from cadence import __version__
from cadence._atomic import atomic_write
from cadence.bench.workloads import get_workload, parameter_count
from cadence.errors import CadenceError, TrainingDiverged
from cadence.schedules import parse
from cadence.torch import Scheduler

__all__ = ["RunConfig", "train", "TrainingDiverged", "read_manifest", "RUN_FILES"]

RUN_FILES = ("run.json", "metrics.csv", "timing.csv", "checkpoint.pt")
OPTIMIZERS = ("adamw", "sgd")


@dataclass
class RunConfig:
    workload: str
    plan: dict[str, str]  # channel (optimizer field) -> schedule spec
    steps: int
    seed: int = 0
    size: str | None = None
    batch_size: int | None = None
    optimizer: str = "adamw"
    weight_decay: float | None = None
    clip: float | None = -1.0  # -1: the workload's default; None: no clipping
    eval_every: int | None = None
    checkpoint_every: int = 100
    device: str = "cpu"  # "cuda" trains on a GPU; only CPU runs are bit-reproducible across a kill

    def resolved(self) -> "RunConfig":
        """Fill workload defaults and validate; the result is what run.json records."""
        w = get_workload(self.workload)
        cfg = RunConfig(**asdict(self))
        cfg.size = w.check_size(cfg.size or w.default_size)
        cfg.batch_size = w.batch_size if cfg.batch_size is None else cfg.batch_size
        cfg.weight_decay = w.weight_decay if cfg.weight_decay is None else cfg.weight_decay
        cfg.clip = w.clip if cfg.clip == -1.0 else cfg.clip
        cfg.eval_every = w.eval_every if cfg.eval_every is None else cfg.eval_every
        for name, value in (("steps", cfg.steps), ("batch_size", cfg.batch_size), ("eval_every", cfg.eval_every),
                            ("checkpoint_every", cfg.checkpoint_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CadenceError(f"{name} must be a positive whole number; got {value!r}")
        if not isinstance(cfg.seed, int) or cfg.seed < 0:
            raise CadenceError(f"seed must be a whole number >= 0; got {cfg.seed!r}")
        if cfg.optimizer not in OPTIMIZERS:
            raise CadenceError(f"unknown optimizer {cfg.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if not (isinstance(cfg.weight_decay, (int, float)) and math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
            raise CadenceError(f"weight_decay must be a number >= 0; got {cfg.weight_decay!r}")
        if cfg.clip is not None and not (math.isfinite(cfg.clip) and cfg.clip > 0):
            raise CadenceError(f"clip must be a positive number or None; got {cfg.clip!r}")
        if cfg.device != "cpu":
            if not cfg.device.startswith("cuda"):
                raise CadenceError(f"device must be 'cpu' or 'cuda[:N]'; got {cfg.device!r}")
            if not torch.cuda.is_available():
                raise CadenceError(f"device {cfg.device!r} asked for, but torch sees no CUDA GPU here")
        if "lr" not in cfg.plan:
            raise CadenceError("the plan must drive 'lr' (give --lr SPEC)")
        rates = w.rates(cfg.batch_size)
        cfg.plan = {ch: parse(spec).spec() for ch, spec in cfg.plan.items()}
        for ch, spec in cfg.plan.items():
            parse(spec).bind(cfg.steps, rates)  # fits the run? rates known?
        return cfg


def read_manifest(out: "str | Path") -> dict | None:
    path = Path(out) / "run.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        RunConfig(**manifest["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise CadenceError(f"{path} is not a readable cadence run manifest ({e})") from None
    return manifest


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)
    return str(x)


class _Rows:
    """Appends CSV rows; on resume, keeps exactly the rows of steps already checkpointed."""

    def __init__(self, path: Path, header: list[str], keep: int | None) -> None:
        self.path = path
        if keep is None:
            self.file = open(path, "w", newline="")
            self.file.write(",".join(header) + "\n")
        else:
            lines = path.read_text().splitlines(keepends=True) if path.exists() else []
            if not lines or lines[0].rstrip("\n") != ",".join(header):
                raise CadenceError(f"cannot resume: {path} is missing or has other columns")
            complete = [ln for ln in lines[1:] if ln.endswith("\n")]
            if len(complete) < keep:
                raise CadenceError(f"cannot resume: {path} has {len(complete)} rows but the checkpoint is at step {keep}")
            self.file = open(path, "w", newline="")
            self.file.writelines([lines[0]] + complete[:keep])
        self.file.flush()

    def write(self, values) -> None:
        self.file.write(",".join(_fmt(v) for v in values) + "\n")

    def flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _progress(total: int, initial: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False, file=sys.stderr)


def prepare_out(out: Path, *, resume: bool, overwrite: bool) -> dict | None:
    """Check what is in ``out``; returns the manifest to resume from, if any."""
    if resume and overwrite:
        raise CadenceError("--resume and --overwrite contradict each other; choose one")
    if out.exists() and not out.is_dir():
        raise CadenceError(f"--out {out} exists and is not a folder")
    manifest = read_manifest(out) if out.exists() else None
    if resume:
        if manifest is None:
            raise CadenceError(f"cannot resume: {out} holds no cadence run (no run.json)")
        _remove_partial_writes(out)
        return manifest
    if out.exists() and any(out.iterdir()):
        if manifest is None:
            raise CadenceError(f"--out {out} is not empty and holds no cadence run; choose another folder")
        if not overwrite:
            raise CadenceError(f"--out {out} holds another run ({manifest.get('status', '?')}); pass --resume to continue "
                               "it or --overwrite to replace it")
        for name in RUN_FILES:  # only what a run writes; anything else the user put there stays
            (out / name).unlink(missing_ok=True)
        _remove_partial_writes(out)
    return None


def _remove_partial_writes(out: Path) -> None:
    """Delete temporary files of atomic writes that a kill interrupted (ours by name, never complete)."""
    for name in RUN_FILES:
        for stale in out.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def train(config: RunConfig, out: "str | Path", *, resume: bool = False, overwrite: bool = False,
          progress: bool = False, threads: int | None = None, stop_after: int | None = None) -> dict:
    """Run (or resume) one training run; returns its manifest. ``stop_after`` ends it early (tests)."""
    out = Path(out)
    previous = prepare_out(out, resume=resume, overwrite=overwrite)
    cfg = config.resolved() if previous is None else RunConfig(**previous["config"])
    if previous is not None and config.workload and asdict(config.resolved()) != asdict(cfg):
        mine, theirs = asdict(config.resolved()), asdict(cfg)
        diff = ", ".join(f"{k}: {theirs[k]!r} in the run, {mine[k]!r} asked" for k in mine if mine[k] != theirs[k])
        raise CadenceError(f"cannot resume {out} with other settings ({diff})")
    if threads:
        torch.set_num_threads(threads)
    workload = get_workload(cfg.workload)
    out.mkdir(parents=True, exist_ok=True)
    rates = workload.rates(cfg.batch_size)
    fingerprint = workload.fingerprint()
    if previous is not None and previous.get("data") != fingerprint:
        raise CadenceError(f"cannot resume {out}: the {cfg.workload} data on this machine differs from the run's "
                           f"({fingerprint} vs {previous.get('data')})")

    torch.manual_seed(cfg.seed)
    model = workload.model(cfg.size).to(cfg.device)
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    peak = 1.0  # the schedule sets the real LR; this only fixes the group ratios (all equal)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=peak, betas=(0.9, 0.95))
    else:
        opt = torch.optim.SGD(groups, lr=peak, momentum=0.9)
    channels = list(cfg.plan)
    sched = Scheduler(opt, cfg.plan, total_steps=cfg.steps, rates=rates)

    start, elapsed = 0, 0.0
    checkpoint = out / "checkpoint.pt"
    if previous is not None:
        if not checkpoint.exists():
            start = 0  # killed before the first checkpoint: start over, same numbers
        else:
            try:
                state = torch.load(checkpoint, weights_only=True, map_location=cfg.device)
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                start, elapsed = int(state["step"]), float(state["elapsed"])
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint gets the same answer
                first = (str(e).strip().splitlines() or [""])[0][:200]
                raise CadenceError(f"cannot resume: {checkpoint} is unreadable or corrupt ({type(e).__name__}: {first})") from None
    eval_names = list(workload.metrics)
    header = ["step", "samples", "tokens", *channels, "train_loss", "grad_norm", *eval_names]
    keep = start if previous is not None else None
    metrics = _Rows(out / "metrics.csv", header, keep)
    timing = _Rows(out / "timing.csv", ["step", "wall_s"], keep)

    manifest = {
        "format": "cadence.run/1",
        "config": asdict(cfg),
        "status": "running",
        "step": start,
        "data": fingerprint,
        "parameters": parameter_count(model),
        "rates": asdict(rates),
        "versions": {"cadence": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "threads": torch.get_num_threads(),
    }
    _write_json(out / "run.json", manifest)

    def save_checkpoint(step: int) -> None:
        state = {"step": step, "elapsed": elapsed, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict()}
        atomic_write(checkpoint, lambda tmp: torch.save(state, tmp))

    bar = _progress(cfg.steps, start, progress, f"{cfg.workload} seed {cfg.seed}")
    per_step = rates.tokens_per_step or 0
    clip = cfg.clip if cfg.clip is not None else math.inf
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    sched.step(start)
    try:
        for step in range(start, end):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout and friends: a function of the step
            model.train()
            batch = workload.batch(cfg.seed, step, cfg.batch_size)
            if cfg.device != "cpu":
                batch = tuple(t.to(cfg.device, non_blocking=True) for t in batch)
            loss = workload.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"the training loss became {loss_value} at step {step}")
            current = sched.get_last_values()
            values = [current[ch][0] for ch in channels]
            opt.step()
            sched.step()
            evals = [None] * len(eval_names)
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
                model.eval()
                result = workload.evaluate(model)
                evals = [result[k] for k in eval_names]
                if not math.isfinite(result["val_loss"]):
                    raise TrainingDiverged(f"the validation loss became {result['val_loss']} at step {step}")
            metrics.write([step, (step + 1) * cfg.batch_size, int((step + 1) * per_step), *values, loss_value,
                           grad_norm, *evals])
            dt = time.perf_counter() - t0
            elapsed += dt
            timing.write([step, f"{dt:.6f}"])
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{values[0]:.3g}", refresh=False)
                bar.update(1)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                t1 = time.perf_counter()
                metrics.flush()
                timing.flush()
                save_checkpoint(step + 1)
                elapsed += time.perf_counter() - t1  # counted in train_seconds (not in that step's timing row)
                manifest["step"] = step + 1
        manifest["status"] = "complete" if end == cfg.steps else "stopped"
        manifest["step"] = end
    except TrainingDiverged as e:
        manifest["status"] = "diverged"
        last = manifest["step"]
        _write_json(out / "run.json", manifest)
        raise TrainingDiverged(f"{e}; stopped. The last checkpoint before it (step {last}) is kept in {checkpoint}") from None
    finally:
        metrics.close()
        timing.close()
        if bar is not None:
            bar.close()
    manifest["train_seconds"] = round(elapsed, 3)
    _write_json(out / "run.json", manifest)
    return manifest
