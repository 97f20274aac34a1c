"""Shared by the findings scripts: a run folder's status, and one run trained in a worker process."""

from __future__ import annotations

import json
from pathlib import Path


def status_of(folder: Path) -> "str | None":
    """The status run.json records (complete, diverged, ...), or None for a folder without a readable one."""
    try:
        return json.loads((Path(folder) / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def run_job(cfg: dict, folder: "str | Path") -> str:
    """Train one run (one torch thread); resumes a folder left unfinished, starts over one that cannot be."""
    from cadence.bench.runner import RunConfig, train
    from cadence.errors import RunError, TrainingDiverged

    folder = Path(folder)
    try:
        try:
            manifest = train(RunConfig(**cfg), folder, progress=False, threads=1, resume=(folder / "run.json").exists())
        except RunError:  # an unfinished folder that cannot be resumed: start it over
            manifest = train(RunConfig(**cfg), folder, progress=False, threads=1, overwrite=True)
    except TrainingDiverged:
        return "diverged"
    return manifest["status"]


def write_summary(out: Path, results: dict, tables: dict, started: float) -> None:
    """Add the compute to ``tables``, write out/summary.json, print every table and the compute used."""
    import math
    import sys
    import time

    compute = sum(r["train_seconds"] for r in results.values() if math.isfinite(r["train_seconds"]))
    tables.update(compute_seconds=compute, runs=len(results), wall_seconds_this_call=time.time() - started)
    (Path(out) / "summary.json").write_text(json.dumps(tables, indent=2, default=str) + "\n")
    for k, v in tables.items():
        print(f"\n## {k}\n\n{v}")
    print(f"\n{len(results)} runs, {compute / 60:.1f} min of training compute (sum over runs)", file=sys.stderr)
