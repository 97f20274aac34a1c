"""Train a workload under a plan of schedules, with metrics, checkpoints and exact resume.

A run directory holds:

* ``run.json``: the manifest (workload, size, plan, seed, optimizer, versions, status).
  It is written first, so a folder with any other run file always has one.
* ``metrics.csv``: one row per step: ``step, samples, tokens, <each driven channel>,
  train_loss, grad_norm, <eval metrics>`` (eval columns are empty when not measured).
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
import sys
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
from cadence.errors import CadenceError, LimitError, RunError, TrainingDiverged
from cadence.schedules import parse
from cadence.torch import Scheduler

__all__ = ["RunConfig", "train", "TrainingDiverged", "read_manifest", "RUN_FILES", "TEMP_FILES", "STATUSES",
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
        if not isinstance(self.workload, str):
            raise CadenceError(f"workload must be a name; got {self.workload!r}")
        w = get_workload(self.workload)
        cfg = RunConfig(**asdict(self))
        if cfg.size is not None and not isinstance(cfg.size, str):
            raise CadenceError(f"size must be a name; got {cfg.size!r}", field="size")
        cfg.size = w.check_size(cfg.size or w.default_size)
        cfg.batch_size = w.batch_size if cfg.batch_size is None else cfg.batch_size
        cfg.weight_decay = w.weight_decay if cfg.weight_decay is None else cfg.weight_decay
        cfg.clip = w.clip if cfg.clip == -1.0 else cfg.clip
        cfg.eval_every = w.eval_every if cfg.eval_every is None else cfg.eval_every
        for name, value, top in (("steps", cfg.steps, MAX_STEPS), ("batch_size", cfg.batch_size, w.max_batch_size),
                                 ("eval_every", cfg.eval_every, MAX_STEPS),
                                 ("checkpoint_every", cfg.checkpoint_every, MAX_STEPS)):
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
        if not isinstance(cfg.device, str):
            raise CadenceError(f"device must be 'cpu' or 'cuda[:N]'; got {cfg.device!r}", field="device")
        if cfg.device != "cpu":
            head, _, index = cfg.device.partition(":")
            if head != "cuda" or (index and not (index.isascii() and index.isdigit() and len(index) < 4)):
                raise CadenceError(f"device must be 'cpu' or 'cuda[:N]'; got {cfg.device!r}", field="device")
            if not torch.cuda.is_available():
                raise CadenceError(f"device {cfg.device!r} asked for, but torch sees no CUDA GPU here", field="device")
            if index and int(index) >= torch.cuda.device_count():
                raise CadenceError(f"device {cfg.device!r}: torch sees {torch.cuda.device_count()} GPU(s) here "
                                   f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})", field="device")
        if not isinstance(cfg.plan, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in cfg.plan.items()):
            raise CadenceError(f"the plan must map optimizer fields to schedule specs; got {cfg.plan!r}")
        if "lr" not in cfg.plan:
            raise CadenceError("the plan must drive 'lr'", field="lr")
        rates = w.rates(cfg.batch_size)
        cfg.plan = {ch: parse(spec).spec() for ch, spec in cfg.plan.items()}
        for ch, spec in cfg.plan.items():
            parse(spec).bind(cfg.steps, rates)  # fits the run? rates known?
        return cfg


# -- run.json -------------------------------------------------------------------------------

_FIELD_TYPES = {  # what run.json may hold for each RunConfig field (before validation of values)
    "workload": (str,), "plan": (dict,), "steps": (int,), "seed": (int,), "size": (str, type(None)),
    "batch_size": (int, type(None)), "optimizer": (str,), "weight_decay": (int, float, type(None)),
    "clip": (int, float, type(None)), "eval_every": (int, type(None)), "checkpoint_every": (int,), "device": (str,),
}


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
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    missing = [k for k in fields if k not in config]
    unknown = [str(k)[:40] for k in config if k not in fields]
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise RunError(f"{path}: config keys do not match a cadence run ({'; '.join(parts)})")
    for key, types in _FIELD_TYPES.items():
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, types):
            allowed = " or ".join("null" if t is type(None) else {"str": "a string", "int": "a whole number",
                                                                   "float": "a number", "dict": "an object"}[t.__name__]
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
            isinstance(s, dict) and set(s) == {"from_step", "threads", "torch"} and isinstance(s["torch"], str)
            and all(isinstance(s[k], int) and not isinstance(s[k], bool) for k in ("from_step", "threads"))
            for s in segments)):
        raise RunError(f"{path}: segments must be a list of {{from_step, threads, torch}} records")
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
        self.path = path
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


def _progress(total: int, initial: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False, file=sys.stderr)


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


# -- training -------------------------------------------------------------------------------

def train(config: RunConfig, out: "str | Path", *, resume: bool = False, overwrite: bool = False,
          progress: bool = False, threads: int | None = None, stop_after: int | None = None,
          warn: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) one training run; returns its manifest.

    ``threads``: torch threads; on resume, None keeps the run's own count (bit-exact), another
    count is used with a warning and recorded. ``stop_after`` ends it early (tests).
    ``warn`` receives one-line warnings (default: ``warnings.warn``).
    Raises TrainingDiverged (the run folder stays resumable), RunError, and on SIGINT
    KeyboardInterrupt after marking the run ``interrupted``.
    """
    out = Path(out)
    warn = warn or _warn
    if resume and overwrite:
        raise RunError("resuming and overwriting a run contradict each other; choose one", field="overwrite")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise CadenceError(f"threads must be a positive whole number; got {threads!r}", field="threads")
        if threads > MAX_THREADS:
            raise LimitError(f"threads is {threads}; at most {MAX_THREADS} is supported", field="threads")
    if "\x00" in str(out):
        raise RunError("the run folder's name contains a NUL character", field="out")
    if os.path.lexists(out) and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder", field="out")
    if resume:
        if not out.is_dir():
            raise RunError(f"cannot resume: {out} holds no cadence run (no such folder)", field="out")
        asked = config.resolved() if config.workload else None
    else:
        asked = config.resolved()  # validate before touching the disk
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        return _train_locked(asked, out, resume=resume, overwrite=overwrite, progress=progress, threads=threads,
                             stop_after=stop_after, warn=warn)


def _train_locked(asked: RunConfig | None, out: Path, *, resume: bool, overwrite: bool, progress: bool,
                  threads: int | None, stop_after: int | None, warn: Callable[[str], None]) -> dict:
    previous = prepare_out(out, resume=resume, overwrite=overwrite)
    cfg = asked if previous is None else RunConfig(**previous["config"])
    if previous is not None and asked is not None and asdict(asked) != asdict(cfg):
        mine, theirs = asdict(asked), asdict(cfg)
        diff = ", ".join(f"{k}: {theirs[k]!r} in the run, {mine[k]!r} asked" for k in mine if mine[k] != theirs[k])
        raise RunError(f"cannot resume {out} with other settings ({diff})")

    if previous is not None and previous["status"] == "complete" and not os.path.lexists(out / "checkpoint.pt"):
        return previous  # finished, and its checkpoint removed since: nothing to resume, nothing to redo

    recorded = previous.get("threads") if previous is not None else None
    if threads is None and recorded is not None:
        threads = recorded  # the run's own count: the rest of the run stays bit-exact
    if threads:
        torch.set_num_threads(threads)
    workload = get_workload(cfg.workload)
    rates = workload.rates(cfg.batch_size)
    fingerprint = workload.fingerprint()
    if previous is not None and previous.get("data") != fingerprint:
        raise RunError(f"cannot resume {out}: the {cfg.workload} data on this machine differs from the run's "
                       f"({fingerprint} vs {str(previous.get('data'))[:40]})")

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
    settings = json.dumps(asdict(cfg), sort_keys=True)

    start, elapsed, offsets = 0, 0.0, {}
    checkpoint = out / "checkpoint.pt"
    if previous is not None and os.path.lexists(checkpoint):
        start, elapsed, offsets = _load_checkpoint(checkpoint, cfg, settings, model, opt, sched)
    saved = start if start > 0 else None  # the step of the last checkpoint on disk

    segment = {"from_step": start, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if start == 0:
        segments = [segment]  # nothing of an earlier attempt is kept
    else:
        segments = list(previous.get("segments") or
                        [{"from_step": 0, "threads": recorded or 0, "torch": previous.get("versions", {}).get("torch", "?")}])
        old = segments[-1]
        if (old["threads"], old["torch"]) != (segment["threads"], segment["torch"]):
            warn(f"resuming {out} with {segment['threads']} torch thread(s) and torch {segment['torch']} where it ran "
                 f"with {old['threads']} and torch {old['torch']}: the rest of the run is not bit-identical to an "
                 "uninterrupted one (recorded in run.json)")
            segments.append(segment)

    manifest = {
        "format": FORMAT,
        "config": asdict(cfg),
        "status": "running",
        "step": start,
        "data": fingerprint,
        "parameters": parameter_count(model),
        "rates": asdict(rates),
        "versions": {"cadence": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "threads": torch.get_num_threads(),
        "segments": segments,
        "bit_exact": len(segments) == 1,
    }
    _write_json(out / "run.json", manifest)  # first: a folder with run files always has a manifest

    eval_names = list(workload.metrics)
    header = ["step", "samples", "tokens", *channels, "train_loss", "grad_norm", *eval_names]
    keep = start if start > 0 else None  # nothing checkpointed: the files start over
    metrics = _Rows(out / "metrics.csv", header, keep, offsets.get("metrics.csv"))
    try:
        timing = _Rows(out / "timing.csv", ["step", "wall_s"], keep, offsets.get("timing.csv"))
    except BaseException:
        metrics.close()
        raise

    def save_checkpoint(step: int) -> None:
        state = {"step": step, "elapsed": elapsed, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "rows": {"metrics.csv": metrics.size, "timing.csv": timing.size},
                 "settings": settings}
        atomic_write(checkpoint, lambda tmp: torch.save(state, tmp), temp=stable_temp(checkpoint))

    bar = _progress(cfg.steps, start, progress, f"{cfg.workload} seed {cfg.seed}")
    per_step = rates.tokens_per_step or 0
    clip = cfg.clip if cfg.clip is not None else math.inf
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    sched.step(start)
    step = start
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
            kill_point("row")
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{values[0]:.3g}", refresh=False)
                bar.update(1)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                t1 = time.perf_counter()
                metrics.flush()
                timing.flush()
                save_checkpoint(step + 1)
                saved = step + 1
                elapsed += time.perf_counter() - t1  # counted in train_seconds (not in that step's timing row)
                manifest["step"] = step + 1
        manifest["status"] = "complete" if end == cfg.steps else "stopped"
        manifest["step"] = end
    except TrainingDiverged as e:
        manifest.update(status="diverged", step=saved or 0, diverged_at=step)
        _write_json(out / "run.json", manifest)
        if saved is None:
            kept = (f"no checkpoint had been written yet (the first was due at step "
                    f"{min(cfg.checkpoint_every, cfg.steps)}); resuming starts over")
        else:
            kept = f"the last checkpoint (step {saved}) is kept in {checkpoint}"
        raise TrainingDiverged(f"{e}; stopped: {kept}") from None
    except KeyboardInterrupt:
        manifest.update(status="interrupted", step=saved or 0)
        _write_json(out / "run.json", manifest)
        raise
    finally:
        metrics.close()
        timing.close()
        if bar is not None:
            bar.close()
    manifest["train_seconds"] = round(elapsed, 3)
    _write_json(out / "run.json", manifest)
    return manifest


def _load_checkpoint(path: Path, cfg: RunConfig, settings: str, model, opt, sched) -> tuple[int, float, dict]:
    """Restore model, optimizer and scheduler; returns (step, elapsed seconds, recorded CSV lengths)."""
    try:
        state = torch.load(path, weights_only=True, map_location=cfg.device)
        if not isinstance(state, dict):
            raise TypeError(f"a {type(state).__name__}, not a dict")
        step, elapsed = state["step"], state["elapsed"]
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= cfg.steps:
            raise ValueError(f"step {step!r} is not within the run's {cfg.steps} steps")
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
        diff = ", ".join(f"{k}: {old.get(k)!r} in the checkpoint, {mine[k]!r} in run.json" for k in mine if mine[k] != old.get(k))
        raise RunError(f"cannot resume: run.json does not match the checkpoint it was written with ({diff})")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise RunError(f"cannot resume: {path} does not fit this run ({type(e).__name__}: {first})") from None
    return step, elapsed, rows
