"""Run a matrix of candidates x seeds on one workload and write a comparison report.

A candidate (``NAME=SPEC``) is a named LR schedule spec, or a plan file (``NAME=plan.yaml``:
:func:`plan_candidate`) whose channels, unit, horizon and run settings define it. Every
candidate runs on the same clock to the same horizon (``steps``, or ``unit`` and
``horizon``), over the same seeds and the comparison's settings; a plan file fills in what
the comparison leaves out and must not contradict what it gives.

``out/`` gets ``bench.json`` (the matrix, and the run folders cadence made for it),
``runs/<candidate>/seed-<s>/`` (one run each) and the report (``report.md``, ``summary.csv``,
figures). Running the same command again skips finished runs and resumes interrupted ones,
so a killed comparison loses at most the steps since each run's last checkpoint.

* Divergence is a result, not a failure of the comparison: a run whose loss becomes
  non-finite stops (its folder says ``diverged`` at which step), the other runs go on, and
  the report marks it ("diverged at step N"). ``run_bench`` returns normally with the
  diverged runs under ``"diverged"`` and passes one warning line per run to ``warn``;
  ``cadence bench`` prints those warnings and exits 0 because its report was written. A
  diverged run is not retried when the comparison runs again (it would diverge again).
* Replacing (``overwrite=True``, when ``out`` holds a comparison with other settings):
  only what cadence wrote for the old comparison goes: the run files of the run folders
  listed in its bench.json (a folder holding anything else keeps it, and stays) and the
  report files. Each removal is logged.
* Parallel runs (``jobs > 1``) live in worker processes that stop with the comparison: on
  KeyboardInterrupt (SIGINT, or SIGTERM under the CLI) or any error the parent terminates
  them (each marks its run ``interrupted``) and waits for them; a worker whose parent dies,
  even by SIGKILL, stops within a second. Worker processes ignore SIGINT: Ctrl-C in a
  terminal reaches the whole process group, and the parent decides.
* ``bench.json`` is format ``cadence.bench/2`` when the comparison is what that format can
  say (a step clock given as ``steps``, LR-spec candidates, no micro-batch), so the previous
  release reads it too; otherwise ``cadence.bench/3`` (``unit``, ``horizon``,
  ``micro_batch``, plan candidates, ``data``). ``cadence.bench/1`` and ``/2`` files are read.
* ``data`` (the folder of a workload that reads one: ``text``) goes to every run; a plan
  candidate's own ``data:`` must name the same folder. A comparison without it writes the
  bench.json it wrote before the setting existed (no ``data`` key), and such a file reads as
  ``data`` None.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cadence._atomic import atomic_write, stable_temp
from cadence.bench.runner import (CONFIG_FIELDS, MAX_THREADS, RUN_FILES, TEMP_FILES, RunConfig, _read_json, folder_lock,
                                  has_user_files, read_manifest, train)
from cadence.errors import EXIT_INTERRUPTED, CadenceError, LimitError, PlanError, RunError, TrainingDiverged
from cadence.plan import PLAN_KEYS, PLAN_SUFFIXES, is_plan_file, read_plan_file  # noqa: F401 (re-exported)

__all__ = ["BenchConfig", "run_bench", "plan_candidate", "is_plan_file", "QUICK", "REPORT_FILES", "MAX_SEEDS",
           "MAX_CANDIDATES", "MAX_JOBS", "PLAN_SUFFIXES"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_RUN_DIR = re.compile(r"^runs/([A-Za-z0-9][A-Za-z0-9_.+-]{0,63})/seed-([0-9]{1,6})$")
FORMAT = "cadence.bench/3"  # unit, horizon, micro_batch, data; a candidate may be a plan (a mapping)
FORMAT_2 = "cadence.bench/2"  # a step clock (steps) and LR-spec candidates: still written for such comparisons
FORMAT_1 = "cadence.bench/1"  # config key "plans" for "candidates"; still read
_NEW_KEYS = ("unit", "horizon", "micro_batch", "data")  # the config keys FORMAT added to FORMAT_2's
# FORMAT keys written only when set: a comparison without them writes (and an earlier release reads) what it did before.
_IF_SET = ("data",)
REPORT_FILES = ("report.md", "summary.csv", "loss.png", "val_loss.png", "val_loss_domains.png", "mixture.png")
BENCH_TEMP = stable_temp("bench.json").name
# What a plan file may hold besides unit, horizon and channels: the runner's settings.
_PLAN_SETTINGS = tuple(k for k in CONFIG_FIELDS if k not in PLAN_KEYS)
_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
# The comparison's settings that a plan candidate may also give, and their defaults (given = another value).
_SHARED = {"size": None, "batch_size": None, "micro_batch": None, "optimizer": "adamw", "weight_decay": None,
           "eval_every": None, "checkpoint_every": 100, "device": "cpu", "data": None}

# Documented limits (docs/runner.md).
MAX_SEEDS = 1000
MAX_CANDIDATES = 100
MAX_JOBS = 64

# The main job: four decay shapes at the same horizon, warmup and peak (cadence bench tiny-lm --quick).
QUICK = {
    "workload": "tiny-lm",
    "candidates": {
        "cosine": "cosine(peak=2e-3, final=0.0, warmup='5%')",
        "linear": "linear(peak=2e-3, final=0.0, warmup='5%')",
        "wsd-1sqrt": "wsd(peak=2e-3, warmup='5%', decay='20%', final=0.0, shape='1-sqrt')",
        "rex": "rex(peak=2e-3, final=0.0, warmup='5%')",
    },
    "steps": 400,
    "seeds": 1,
    "size": "small",
    "eval_every": 50,
    "baseline": "cosine",
}


def plan_candidate(path: "str | os.PathLike") -> dict:
    """A plan file as a candidate: its keys (``channels`` and any of ``unit``, ``horizon`` and run settings) and
    ``file``, the path as given. The file is read now; the comparison records what it held."""
    name = os.fspath(path)
    if not isinstance(name, str) or not name.strip():
        raise PlanError("a plan candidate needs the path of a plan file", field="candidates")
    try:
        data = read_plan_file(name, _PLAN_SETTINGS)
    except PlanError as e:  # the file is a candidate's: say so to whoever maps fields to flags
        raise PlanError(str(e), field="candidates" if e.field == "plan" else e.field) from None
    if "file" in data:  # not a plan key, but a comparison records the path under it
        raise PlanError("a plan file has no key 'file'", field="candidates")
    return {"file": name, **data}


def _plain(value, depth: int = 0) -> bool:
    """Plain JSON data (what bench.json can record), at most 16 levels deep."""
    if depth > 16:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _channel_value(value) -> bool:
    """What a channel may be given in a comparison: a spec, a finite number, or a weight per key (the mixture
    channel's {domain: spec or number})."""
    if isinstance(value, dict):
        return bool(value) and all(isinstance(k, str) and _channel_value(v) and not isinstance(v, dict)
                                   for k, v in value.items())
    return isinstance(value, str) or (_is_number(value) and math.isfinite(value))


def _spec_key(value):
    """A channel's value in a form two equal specs share (a number, or the normalised spec; per key for a mapping)."""
    from cadence.schedules import parse

    if isinstance(value, dict):
        return {k: _spec_key(v) for k, v in value.items()}
    if _is_number(value):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        pass
    try:
        return parse(value).spec()
    except (CadenceError, RecursionError, TypeError, ValueError):
        return value


def _plan_unit(plan: dict) -> "str | None":
    """The unit a plan candidate counts: its own, 'step' when it gives a horizon without one (as a run of that
    file would), or None (the comparison's)."""
    if plan.get("unit") is not None:
        return plan["unit"]
    return "step" if plan.get("horizon") is not None else None


def _label(name: str, candidate) -> str:
    return f"{name} ({str(candidate['file'])[:120]})" if isinstance(candidate, dict) else name


@dataclass
class BenchConfig:
    workload: str
    candidates: "dict[str, str | dict]"  # candidate name -> LR schedule spec, or a plan (plan_candidate)
    steps: int | None = None  # the horizon in optimizer steps (a step clock); or unit and horizon
    seeds: int = 3
    size: str | None = None
    batch_size: int | None = None
    optimizer: str = "adamw"
    weight_decay: float | None = None
    eval_every: int | None = None
    checkpoint_every: int = 100
    device: str = "cpu"
    channels: dict = field(default_factory=dict)  # other channels (name -> spec or number), the same for every candidate
    baseline: str | None = None
    target: float | None = None
    unit: str | None = None  # 'step', 'sample' or 'token'; None: the plan candidates', else 'step'
    horizon: int | str | None = None  # in `unit`, or a duration ('2Mtok'); None: the plan candidates', else the workload's
    micro_batch: int | None = None  # samples per forward/backward (a batch is accumulated from micro-batches)
    data: str | None = None  # the data folder of a workload that reads one (text: its subfolders are the domains)

    def check(self) -> "BenchConfig":
        """Validate what the matrix itself needs (names, counts, the clock's form); the runs validate the rest."""
        if not isinstance(self.candidates, dict) or not self.candidates:
            raise CadenceError("give at least one candidate NAME=SPEC", field="candidates")
        if len(self.candidates) > MAX_CANDIDATES:
            raise LimitError(f"{len(self.candidates)} candidates; at most {MAX_CANDIDATES} are supported",
                             field="candidates")
        for name, spec in self.candidates.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise CadenceError(f"candidate name {str(name)[:80]!r} must be 1-64 letters, digits, '_', '.', '+' or "
                                   "'-', starting with a letter or digit (it names a folder)", field="candidates")
            if isinstance(spec, dict):
                self._check_plan(name, spec)
            elif not isinstance(spec, str):
                raise CadenceError(f"candidate {name!r}: the spec must be a string or a plan; got {str(spec)[:80]!r}",
                                   field="candidates")
        if not isinstance(self.channels, dict) or not all(
                isinstance(k, str) and _channel_value(v) for k, v in self.channels.items()):
            raise CadenceError(f"channels must map channel names to specs or numbers (or, for a channel with a weight "
                               f"per domain, to a mapping of them); got {str(self.channels)[:80]!r}", field="channels")
        if "lr" in self.channels:
            raise CadenceError("the learning rate is each candidate's own; channels cannot drive 'lr'", field="channels")
        if self.baseline is not None and self.baseline not in self.candidates:
            raise CadenceError(f"{str(self.baseline)[:80]!r} is not one of the candidates ({', '.join(self.candidates)})",
                               field="baseline")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise CadenceError(f"seeds must be a positive whole number; got {self.seeds!r}", field="seeds")
        if self.seeds > MAX_SEEDS:
            raise LimitError(f"seeds is {self.seeds}; at most {MAX_SEEDS} are supported", field="seeds")
        if self.target is not None and (isinstance(self.target, bool) or not isinstance(self.target, (int, float))
                                        or not math.isfinite(self.target)):
            raise CadenceError(f"target must be a finite number; got {self.target!r}", field="target")
        if self.unit is not None and self.unit not in ("step", "sample", "token"):
            raise PlanError(f"unit must be 'step', 'sample' or 'token'; got {str(self.unit)[:40]!r}", field="unit")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise CadenceError(f"steps must be a positive whole number; got {str(self.steps)[:40]!r}", field="steps")
        if self.horizon is not None and (isinstance(self.horizon, bool) or not isinstance(self.horizon, (int, str))
                                         or (isinstance(self.horizon, int) and self.horizon < 1)):
            raise PlanError(f"horizon must be a positive whole number or a duration such as '2Mtok'; got "
                            f"{str(self.horizon)[:40]!r}", field="horizon")
        if self.steps is not None and self.horizon is not None:
            raise PlanError("steps and horizon both set the comparison's length; give one", field="horizon")
        if self.steps is not None and self.unit not in (None, "step"):
            raise PlanError(f"steps count optimizer steps but the comparison counts {self.unit}s; give its horizon",
                            field="steps")
        if self.micro_batch is not None and (isinstance(self.micro_batch, bool) or not isinstance(self.micro_batch, int)
                                             or self.micro_batch < 1):
            raise CadenceError(f"micro_batch must be a positive whole number; got {str(self.micro_batch)[:40]!r}",
                               field="micro_batch")
        if self.data is not None and (not isinstance(self.data, str) or not self.data.strip() or "\x00" in self.data):
            raise CadenceError(f"data must name a folder; got {str(self.data)[:60]!r}", field="data")
        return self

    def _check_plan(self, name: str, plan: dict) -> None:
        """A plan candidate's form: the keys a plan file may hold and ``file``; plain data; no seed of its own."""
        where = f"candidate {name!r}"
        if not isinstance(plan.get("file"), str):
            raise PlanError(f"{where}: a plan candidate records its plan file's path under 'file'", field="candidates")
        where += f" ({plan['file'][:120]})"
        allowed = ("file", *PLAN_KEYS, *_PLAN_SETTINGS)
        unknown = [str(k)[:40] for k in plan if k not in allowed]
        if unknown:
            raise PlanError(f"{where}: unknown key {unknown[0]!r}; a plan candidate holds {', '.join(allowed)}",
                            field="candidates")
        channels = plan.get("channels")
        if not isinstance(channels, dict) or not channels or not all(
                isinstance(k, str) and _channel_value(v) for k, v in channels.items()):
            raise PlanError(f"{where}: channels must map channel names to specs or numbers (or, for a channel with "
                            "a weight per domain such as mixture, to a mapping of them)", field="candidates")
        for key, value in plan.items():
            if not _plain(value):
                raise PlanError(f"{where}: {key} must be plain data (numbers, text, lists, mappings); got "
                                f"{type(value).__name__}", field="candidates")
        if "seed" in plan:
            raise PlanError(f"{where}: the plan file sets seed {str(plan['seed'])[:20]}, but a comparison runs its own "
                            "seeds (0, 1, ...); leave seed out of the plan file", field="candidates")
        if plan.get("workload", self.workload) != self.workload:
            raise PlanError(f"{where}: the plan file is for workload {str(plan['workload'])[:40]!r}, not "
                            f"{str(self.workload)[:40]!r}", field="candidates")

    # -- the matrix -------------------------------------------------------------------------

    def _clock(self) -> "tuple[str, int | str]":
        """The unit and horizon of the candidates that do not give their own: the comparison's, else the plan
        candidates' (the first that gives each), else a step clock of the workload's default length."""
        from cadence.bench.workloads import get_workload

        if self.steps is not None:
            return "step", self.steps
        plans = [c for c in self.candidates.values() if isinstance(c, dict)]
        unit = self.unit or next((u for u in map(_plan_unit, plans) if u is not None), None) or "step"
        horizon = self.horizon if self.horizon is not None else next(
            (p["horizon"] for p in plans if p.get("horizon") is not None), None)
        if horizon is None:
            if unit != "step":
                raise PlanError(f"a comparison on a {unit} clock needs a horizon, such as '2Mtok' or '64Ksa'",
                                field="horizon")
            horizon = get_workload(self.workload).default_steps
        return unit, horizon

    def _run_config(self, name: str, seed: int, clock: tuple) -> RunConfig:
        """The run of one (candidate, seed), not yet resolved."""
        candidate = self.candidates[name]
        shared = {key: getattr(self, key) for key in _SHARED}
        if not isinstance(candidate, dict):
            unit, horizon = clock
            return RunConfig(workload=self.workload, channels={"lr": candidate, **self.channels}, horizon=horizon,
                             unit=unit, seed=seed, **shared)
        where = f"candidate {name!r} ({candidate['file'][:120]})"
        channels = dict(candidate["channels"])
        for channel, spec in self.channels.items():
            if channel in channels and _spec_key(channels[channel]) != _spec_key(spec):
                raise PlanError(f"{where}: its plan file drives {channel!r} with {str(channels[channel])[:80]!r} and the "
                                f"comparison with {str(spec)[:80]!r}; give it in one place", field="channels")
            channels.setdefault(channel, spec)
        own = {}
        for key, value in candidate.items():
            if key in ("file", "channels", "unit", "horizon", "workload"):
                continue
            if key not in _RUN_FIELDS:
                raise PlanError(f"{where}: the runner has no setting {key!r}", field="candidates")
            if key == "data" and shared["data"] is not None:
                if not isinstance(value, str) or os.path.abspath(value) != os.path.abspath(shared["data"]):
                    raise PlanError(f"{where}: its plan file's data {str(value)[:120]!r} and the comparison's "
                                    f"{shared['data'][:120]!r} name different folders; give it in one place",
                                    field="candidates")
                continue  # the same folder: the comparison's spelling goes to the run
            if key in shared and shared[key] is not None and shared[key] != _SHARED[key] and shared[key] != value:
                raise PlanError(f"{where}: its plan file sets {key} {str(value)[:40]} and the comparison "
                                f"{str(shared[key])[:40]}; give it in one place", field="candidates")
            own[key] = value
        unit = _plan_unit(candidate) or clock[0]
        horizon = candidate["horizon"] if candidate.get("horizon") is not None else clock[1]
        return RunConfig(workload=self.workload, channels=channels, horizon=horizon, unit=unit, seed=seed,
                         **{**shared, **own})

    def _resolve(self, name: str, cfg: RunConfig) -> RunConfig:
        """The run resolved; an error about a plan candidate (or its LR) names the candidate."""
        candidate = self.candidates[name]
        try:
            return cfg.resolved()
        except CadenceError as e:
            if type(e).__init__ is not CadenceError.__init__ or not (isinstance(candidate, dict) or e.field == "lr"):
                raise
            if e.field == "data" and "data" not in candidate:  # the comparison's folder, not the candidate's
                raise
            message = " ".join(str(e).split())
            raise type(e)(f"candidate {_label(name, candidate)}: {message}", field="candidates") from None

    def _first_runs(self) -> "dict[str, RunConfig]":
        """Each candidate's seed-0 run, resolved, after checking that they all count the same unit to the same
        horizon (and that a plan candidate's clock agrees with the one the comparison gives)."""
        self.check()
        if self.data is not None:  # a workload that reads no folder: said once, for the comparison, not per candidate
            from cadence.bench.workloads import get_workload

            get_workload(self.workload, os.path.abspath(self.data))
        clock = self._clock()
        first = {name: self._resolve(name, self._run_config(name, 0, clock)) for name in self.candidates}
        clocks = {_label(name, self.candidates[name]): (cfg.unit, cfg.horizon) for name, cfg in first.items()}
        given = self.steps is not None or self.unit is not None or self.horizon is not None
        if given and all(isinstance(c, dict) for c in self.candidates.values()):
            probe = RunConfig(workload=self.workload, channels={"lr": "constant(value=0.001)", **self.channels},
                              horizon=clock[1], unit=clock[0], **{key: getattr(self, key) for key in _SHARED}).resolved()
            clocks = {"the comparison's own": (probe.unit, probe.horizon), **clocks}
        if len(set(clocks.values())) > 1:
            said = "; ".join(f"{label}: {horizon} {unit}s" for label, (unit, horizon) in clocks.items())
            raise PlanError(f"candidates must count the same unit to the same horizon, and these differ: {said}; give "
                            "every candidate one unit and horizon", field=None)
        return first

    def axis(self) -> "tuple[str, int]":
        """The unit every run counts and the horizon it counts to (a whole number of units)."""
        self.check()
        if self.steps is not None and all(isinstance(c, str) for c in self.candidates.values()):
            return "step", self.steps
        cfg = next(iter(self._first_runs().values()))
        return cfg.unit, cfg.horizon

    def runs(self) -> list[tuple[str, int, RunConfig]]:
        first = self._first_runs()
        clock = self._clock()
        out = []
        for name in self.candidates:
            for seed in range(self.seeds):
                cfg = first[name] if seed == 0 else self._resolve(name, self._run_config(name, seed, clock))
                out.append((name, seed, cfg))
        return out

    def run_dirs(self) -> list[str]:
        return [f"runs/{name}/seed-{seed}" for name in self.candidates for seed in range(self.seeds)]

    def record(self) -> dict:
        """What bench.json holds: FORMAT_2 when that format can say it (read by the previous release), else FORMAT."""
        config = asdict(self)
        for key in _IF_SET:
            if config[key] is None:
                del config[key]
        old = (self.steps is not None and all(config.get(k) is None for k in _NEW_KEYS)
               and all(isinstance(c, str) for c in self.candidates.values())
               and all(isinstance(v, str) for v in self.channels.values()))
        if old:
            return {"format": FORMAT_2, "config": {k: v for k, v in config.items() if k not in _NEW_KEYS},
                    "runs": self.run_dirs()}
        return {"format": FORMAT, "config": config, "runs": self.run_dirs()}

    @classmethod
    def from_record(cls, data: object, path: "str | Path") -> "BenchConfig":
        """The config of a bench.json (FORMAT, FORMAT_2 or FORMAT_1), checked (keys, types, names, counts), or one
        RunError line."""
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise RunError(f"{path} is not a cadence comparison record (no 'config' object)")
        data = _current(data)
        config = data["config"]
        newest = data.get("format") == FORMAT
        fields = [f.name for f in dataclasses.fields(cls) if newest or f.name not in _NEW_KEYS]
        missing = [k for k in ("workload", "candidates", *(() if newest else ("steps",))) if k not in config]
        unknown = [str(k)[:40] for k in config if k not in fields]
        if missing or unknown:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])
            raise RunError(f"{path}: config keys do not match a cadence comparison ({'; '.join(parts)})")
        candidates = config["candidates"]
        if not newest and isinstance(candidates, dict) and not all(isinstance(c, str) for c in candidates.values()):
            raise RunError(f"{path}: a {data.get('format')} comparison's candidates are specs (strings); a plan "
                           f"candidate needs format {FORMAT}")
        try:
            bench = cls(**config).check()
        except CadenceError as e:
            raise RunError(f"{path}: {' '.join(str(e).split())}") from None
        for key in ("workload", "optimizer", "device"):
            if not isinstance(getattr(bench, key), str):
                raise RunError(f"{path}: config.{key} must be a string")
        for key in ("steps", "eval_every", "batch_size", "checkpoint_every"):
            value = getattr(bench, key)
            if (value is not None or key == "checkpoint_every" or (key == "steps" and not newest)) and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise RunError(f"{path}: config.{key} must be a positive whole number")
        if bench.size is not None and not isinstance(bench.size, str):
            raise RunError(f"{path}: config.size must be a string or null")
        return bench


def _current(record: object) -> object:
    """A bench.json record whose config has this release's key names: a FORMAT_1 record's config key "plans"
    becomes "candidates" (a copy; the same key order; format FORMAT_2). Anything else is returned as it is."""
    if not (isinstance(record, dict) and record.get("format") == FORMAT_1 and isinstance(record.get("config"), dict)
            and "plans" in record["config"] and "candidates" not in record["config"]):
        return record
    config = {("candidates" if k == "plans" else k): v for k, v in record["config"].items()}
    return {**record, "format": FORMAT_2, "config": config}


def _canonical(record: object) -> object:
    """A bench.json record's config as this release's BenchConfig would write it in full (FORMAT's keys), to
    tell whether two records describe the same comparison; None when it has no config."""
    record = _current(record)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return None
    config = record["config"]
    if record.get("format") != FORMAT:
        config = {**{k: None for k in _NEW_KEYS}, **config}
    return {**{k: None for k in _IF_SET}, **config}


# -- the comparison folder -------------------------------------------------------------------

def _recorded_runs(old: object) -> list[str]:
    """The run folders an old bench.json says cadence made (its list, else its matrix); never a path outside runs/."""
    if isinstance(old, dict):
        runs = old.get("runs")
        if isinstance(runs, list) and all(isinstance(r, str) and _RUN_DIR.match(r) for r in runs):
            return list(runs)
        try:
            return BenchConfig.from_record(old, "bench.json").run_dirs()
        except RunError:
            pass
    return []


def _remove_old(out: Path, old: object, log) -> None:
    """Remove what cadence wrote for the comparison being replaced, and nothing else."""
    candidates = set()
    for rel in _recorded_runs(old):
        candidate_dir = out / "runs" / rel.split("/")[1]
        run_dir = out / rel
        if any(p.is_symlink() for p in (out / "runs", candidate_dir, run_dir)):
            log(f"kept {rel}: a symbolic link, not a folder cadence made")
            continue
        if not run_dir.is_dir():
            continue
        candidates.add(candidate_dir)
        for name in RUN_FILES + TEMP_FILES:
            path = run_dir / name
            if os.path.lexists(path) and not path.is_dir():
                path.unlink()
        try:
            run_dir.rmdir()
            log(f"removed {rel} (a run of the comparison being replaced)")
        except OSError:
            log(f"kept {rel}: removed its run files; it holds other files, which cadence did not write")
    for folder in [*sorted(candidates), out / "runs"]:
        try:
            folder.rmdir()  # only when empty: a folder with anything of the user's stays
        except OSError:
            pass
    for name in REPORT_FILES:
        path = out / name
        if os.path.lexists(path) and not path.is_dir():
            path.unlink()
            log(f"removed {name} (the report of the comparison being replaced)")


def _prepare(out: Path, record: dict, overwrite: bool, log) -> None:
    bench_file = out / "bench.json"
    if os.path.lexists(bench_file):
        try:
            old = _read_json(bench_file, "cadence comparison record")
        except RunError as e:
            if not overwrite:
                raise RunError(f"{' '.join(str(e).split())}; move it away or replace the comparison (overwrite)",
                               field="overwrite") from None
            old = None
        # a comparison written by an earlier release (FORMAT_1, FORMAT_2) continues too
        if _canonical(old) == _canonical(record):
            return  # the same comparison: continue it
        if not overwrite:
            raise RunError(f"{out} holds a comparison with other settings; replace it (overwrite) or choose another "
                           "folder", field="overwrite")
        _remove_old(out, old, log)
    elif has_user_files(out, ours=(BENCH_TEMP,)):
        raise RunError(f"{out} is not empty and holds no cadence comparison; choose another folder", field="out")


def _status(run_dir: Path, cfg: RunConfig, overwrite: bool) -> str:
    """'new', 'complete', 'diverged', 'resume' or 'replace' for one cell of the matrix."""
    if not os.path.lexists(run_dir):
        return "new"
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a folder cadence made; move it away")
    manifest = read_manifest(run_dir)
    if manifest is None:
        if has_user_files(run_dir):
            raise RunError(f"{run_dir} is not empty and holds no cadence run; move it away")
        return "new"
    if manifest["config"] != asdict(cfg):
        if overwrite:
            return "replace"
        raise RunError(f"{run_dir} holds a run with other settings; replace it (overwrite) or choose another folder",
                       field="overwrite")
    return {"complete": "complete", "diverged": "diverged"}.get(manifest["status"], "resume")


def _diverged_line(name: str, seed: int, run_dir: Path) -> str:
    manifest = read_manifest(run_dir) or {}
    return f"{name} seed {seed} diverged at step {manifest.get('diverged_at', '?')} (see {run_dir / 'run.json'})"


# -- worker processes ------------------------------------------------------------------------

_IN_RUN = False


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    signal.signal(signal.SIGTERM, _worker_term)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="cadence-parent-watch").start()


def _worker_term(signum, frame) -> None:
    if _IN_RUN:
        raise KeyboardInterrupt  # train() marks its run interrupted; then the worker exits
    os._exit(EXIT_INTERRUPTED)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.25)
    os.kill(os.getpid(), signal.SIGTERM)  # the parent is gone: stop like an interrupted run
    time.sleep(20)
    os._exit(EXIT_INTERRUPTED)


def _worker_run(cfg: RunConfig, run_dir: str, mode: str, threads: int | None) -> tuple[str, str, str | None, list[str]]:
    """Train one run in a worker; returns (outcome, message, field, warnings): errors travel as data."""
    global _IN_RUN
    notes: list[str] = []
    _IN_RUN = True
    try:
        train(cfg, run_dir, resume=mode == "resume", overwrite=mode == "replace", threads=threads, warn=notes.append)
    except TrainingDiverged as e:
        return "diverged", str(e), None, notes
    except CadenceError as e:
        return "error", str(e), e.field, notes
    except KeyboardInterrupt:
        os._exit(EXIT_INTERRUPTED)
    finally:
        _IN_RUN = False
    return "ok", "", None, notes


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started, terminate the workers (SIGTERM, then SIGKILL after 15 s), wait for them."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    main = threading.current_thread() is threading.main_thread()
    saved = [(s, signal.signal(s, signal.SIG_IGN)) for s in (signal.SIGINT, signal.SIGTERM)] if main else []
    try:  # a second Ctrl-C must not leave workers behind: signals wait until they are gone
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + 15
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    finally:
        for s, handler in saved:
            signal.signal(s, handler)


# -- the comparison ----------------------------------------------------------------------------

def run_bench(config: BenchConfig, out: "str | Path", *, jobs: int = 1, overwrite: bool = False,
              progress: bool = True, log=print, threads: int | None = None, warn=None) -> dict:
    """Run every (candidate, seed) that is not finished yet, then write the report; returns its summary.

    ``log`` gets progress lines; ``warn`` (default: ``log``) one line per file removed when
    replacing, per diverged run and per resume that is not bit-exact. The result has the
    report's keys plus ``diverged``.
    """
    from cadence.bench.report import write_report

    out = Path(out)
    warn = warn or log
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise CadenceError(f"jobs must be a positive whole number; got {jobs!r}", field="jobs")
    if jobs > MAX_JOBS:
        raise LimitError(f"jobs is {jobs}; at most {MAX_JOBS} are supported", field="jobs")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS):
        raise CadenceError(f"threads must be a whole number from 1 to {MAX_THREADS}; got {threads!r}", field="threads")
    matrix = config.runs()
    if "\x00" in str(out):
        raise RunError("the comparison folder's name contains a NUL character", field="out")
    if os.path.lexists(out) and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder", field="out")
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        record = config.record()
        _prepare(out, record, overwrite, warn)  # removals are worth a line even without progress
        bench_file = out / "bench.json"
        atomic_write(bench_file, lambda tmp: Path(tmp).write_text(_dumps(record)), temp=stable_temp(bench_file))
        diverged, notes = _run_matrix(config, out, matrix, jobs, overwrite, progress, log, threads)
        result = write_report(out)
    for line in notes:
        warn(line)
    for name, seed in diverged:
        warn(_diverged_line(name, seed, out / "runs" / name / f"seed-{seed}"))
    result["diverged"] = [{"candidate": name, "seed": seed} for name, seed in diverged]
    return result


def _dumps(record: dict) -> str:
    return json.dumps(record, indent=2) + "\n"


def _run_matrix(config: BenchConfig, out: Path, matrix, jobs: int, overwrite: bool, progress: bool, log,
                threads: int | None) -> tuple[list[tuple[str, int]], list[str]]:
    todo, diverged = [], []
    for name, seed, cfg in matrix:
        run_dir = out / "runs" / name / f"seed-{seed}"
        state = _status(run_dir, cfg, overwrite)
        if state == "diverged":
            diverged.append((name, seed))
        elif state != "complete":
            todo.append((name, seed, cfg, str(run_dir), state))
    done = len(matrix) - len(todo)
    log(f"{config.workload}: {len(matrix)} runs ({len(config.candidates)} candidates x {config.seeds} seeds), "
        f"{done} already finished, {len(todo)} to run")
    cores = os.cpu_count() or 1
    jobs = min(jobs, max(len(todo), 1))
    default_threads = max(1, cores // jobs)

    def threads_for(mode: str) -> int | None:
        # A resumed run keeps its own thread count unless the user chose one: that keeps it bit-exact.
        return threads if threads is not None else (None if mode == "resume" else default_threads)

    notes: list[str] = []
    if jobs == 1:
        for i, (name, seed, cfg, run_dir, mode) in enumerate(todo, 1):
            log(f"[{done + i}/{len(matrix)}] {name} seed {seed}" + (" (resuming)" if mode == "resume" else ""))
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            try:
                train(cfg, run_dir, resume=mode == "resume", overwrite=mode == "replace", threads=threads_for(mode),
                      progress=progress and sys.stderr.isatty(), warn=notes.append)
            except TrainingDiverged:
                diverged.append((name, seed))
                log(f"[{done + i}/{len(matrix)}] {name} seed {seed} diverged")
        return diverged, notes
    if not todo:
        return diverged, notes
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),))
    try:
        futures = {}
        for name, seed, cfg, run_dir, mode in todo:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            futures[pool.submit(_worker_run, cfg, run_dir, mode, threads_for(mode))] = (name, seed)
        for i, fut in enumerate(as_completed(futures), 1):
            name, seed = futures[fut]
            outcome, message, field_name, warnings = fut.result()
            notes.extend(warnings)
            if outcome == "error":
                raise RunError(message, field=field_name)
            if outcome == "diverged":
                diverged.append((name, seed))
            log(f"[{done + i}/{len(matrix)}] {name} seed {seed} " + ("diverged" if outcome == "diverged" else "finished"))
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)
    return diverged, notes
