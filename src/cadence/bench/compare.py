"""Run a matrix of plans x seeds on one workload and write a comparison report.

``out/`` gets ``bench.json`` (the matrix), ``runs/<plan>/seed-<s>/`` (one run each) and the
report (``report.md``, ``summary.csv``, figures). Running the same command again skips
finished runs and resumes interrupted ones, so a killed comparison loses at most the
steps since each run's last checkpoint.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cadence._atomic import atomic_write
from cadence.bench.runner import RunConfig, read_manifest, train
from cadence.errors import CadenceError

__all__ = ["BenchConfig", "run_bench", "QUICK"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

# The main job: four decay shapes at equal budget, warmup and peak (cadence bench tiny-lm --quick).
QUICK = {
    "workload": "tiny-lm",
    "plans": {
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


@dataclass
class BenchConfig:
    workload: str
    plans: dict[str, str]  # plan name -> LR schedule spec
    steps: int
    seeds: int = 3
    size: str | None = None
    batch_size: int | None = None
    optimizer: str = "adamw"
    weight_decay: float | None = None
    eval_every: int | None = None
    checkpoint_every: int = 100
    device: str = "cpu"
    channels: dict[str, str] = field(default_factory=dict)  # other fields, the same for every plan
    baseline: str | None = None
    target: float | None = None

    def runs(self) -> list[tuple[str, int, RunConfig]]:
        if not self.plans:
            raise CadenceError("give at least one --plan NAME=SPEC")
        for name in self.plans:
            if not _NAME.match(name):
                raise CadenceError(f"plan name {name!r} must be letters, digits, '_', '.', '+' or '-' (it names a folder)")
        if self.baseline is not None and self.baseline not in self.plans:
            raise CadenceError(f"--baseline {self.baseline!r} is not one of the plans ({', '.join(self.plans)})")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise CadenceError(f"--seeds must be a positive whole number; got {self.seeds!r}")
        out = []
        for name, spec in self.plans.items():
            for seed in range(self.seeds):
                cfg = RunConfig(workload=self.workload, plan={"lr": spec, **self.channels}, steps=self.steps, seed=seed,
                                size=self.size, batch_size=self.batch_size, optimizer=self.optimizer,
                                weight_decay=self.weight_decay, eval_every=self.eval_every,
                                checkpoint_every=self.checkpoint_every, device=self.device)
                out.append((name, seed, cfg.resolved()))
        return out


def _run_one(cfg: RunConfig, out: str, resume: bool, threads: int, progress: bool) -> tuple[str, dict]:
    return out, train(cfg, out, resume=resume, threads=threads, progress=progress)


def _status(run_dir: Path, cfg: RunConfig) -> str:
    """'new', 'complete' or 'resume' for one cell of the matrix."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise CadenceError(f"{run_dir} is not empty and holds no cadence run; move it away")
        return "new"
    if manifest["config"] != asdict(cfg):
        raise CadenceError(f"{run_dir} holds a run with other settings; use another --out or --overwrite")
    return "complete" if manifest["status"] == "complete" else "resume"


def run_bench(config: BenchConfig, out: "str | Path", *, jobs: int = 1, overwrite: bool = False,
              progress: bool = True, log=print, threads: int | None = None) -> "dict":
    """Run every (plan, seed) that is not finished yet, then write the report; returns its summary."""
    from cadence.bench.report import write_report

    out = Path(out)
    matrix = config.runs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise CadenceError(f"--jobs must be a positive whole number; got {jobs!r}")
    bench_file = out / "bench.json"
    record = {"format": "cadence.bench/1", "config": asdict(config)}
    if out.exists() and not out.is_dir():
        raise CadenceError(f"--out {out} exists and is not a folder")
    if bench_file.exists():
        try:
            old = json.loads(bench_file.read_text())
        except ValueError:
            raise CadenceError(f"{bench_file} is not readable JSON; move it away or pass --overwrite") from None
        if old.get("config") != record["config"]:
            if not overwrite:
                raise CadenceError(f"--out {out} holds a comparison with other settings; pass --overwrite to replace it "
                                   "or choose another folder")
            shutil.rmtree(out / "runs", ignore_errors=True)  # asked for: our own run folders only
    elif out.exists() and any(out.iterdir()):
        raise CadenceError(f"--out {out} is not empty and holds no cadence comparison; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(bench_file, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))

    todo = []
    for name, seed, cfg in matrix:
        run_dir = out / "runs" / name / f"seed-{seed}"
        state = _status(run_dir, cfg)
        if state != "complete":
            todo.append((name, seed, cfg, str(run_dir), state == "resume"))
    done = len(matrix) - len(todo)
    log(f"{config.workload}: {len(matrix)} runs ({len(config.plans)} plans x {config.seeds} seeds), "
        f"{done} already complete, {len(todo)} to run")
    cores = os.cpu_count() or 1
    jobs = min(jobs, max(len(todo), 1))
    threads = threads or max(1, cores // jobs)
    if jobs == 1:
        for i, (name, seed, cfg, run_dir, resume) in enumerate(todo, 1):
            log(f"[{done + i}/{len(matrix)}] {name} seed {seed}" + (" (resuming)" if resume else ""))
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            _run_one(cfg, run_dir, resume, threads, progress and sys.stderr.isatty())
    elif todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {}
            for name, seed, cfg, run_dir, resume in todo:
                Path(run_dir).mkdir(parents=True, exist_ok=True)
                futures[pool.submit(_run_one, cfg, run_dir, resume, threads, False)] = (name, seed)
            for i, fut in enumerate(as_completed(futures), 1):
                name, seed = futures[fut]
                fut.result()
                log(f"[{done + i}/{len(matrix)}] {name} seed {seed} finished")
    return write_report(out)
