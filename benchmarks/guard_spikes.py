"""Spike guards on the CPU workloads (issue 11, section 4): clean runs, injected spikes (not a test).

What it measures, with the runner's guards (``RunConfig(guards=...)``, cadence.guards) at their
defaults (window 128, 6 sigma, 64 values first, 10 skips in a row = diverged; rollback after 3
skips within 100 attempts, at most 3 rollbacks):

1. Clean runs: every workload (tiny-lm xs 300 steps, digits and digits-cnn 600, logreg 500) over
   several seeds, once with ``loss_spike`` and once with ``grad_spike``; skipped steps are false skips.
   Unguarded runs of the same seeds check that a guard that never fires changes nothing
   (the same train losses to the bit). The guard rule is replayed on the clean curves at
   lower sigmas: how much headroom the default has.
2. Corrupted batches: chosen micro-batches of the run (by their index ``i`` in
   ``workload.batch(seed, i, micro_batch)``) are corrupted: every label replaced by a wrong
   one (digits, digits-cnn, logreg), or random bytes (tiny-lm); also a fraction of the
   batch only, to find what the rule does not see. Each is caught (skipped), missed
   (applied), or a skipped clean batch is a false skip; ``loss_spike`` also with window 64
   (min_history 32). The loss of every attempted batch,
   skipped ones too, is recorded, and the guard rule is replayed on it: the replay must
   reach the runner's verdict on every attempt.
3. A brief LR surge: the plan's lr times ``factor`` for one step (``scale(lr, by=piecewise(...))``)
   at the middle of the run. That step's own loss is measured before its update, so the
   first loss that shows the surge is the next step's: the surge is caught when that step
   is skipped. Reported with how many steps were skipped after it and how the run ended.
4. Rollback: three corrupted batches within 10 steps (a burst), a bad shard (every other
   batch for 40 batches), and the LR surges above, with ``rollback`` added.

Corruption lives in a wrapper around the package's workload, registered under
``<workload>+inject`` inside the worker processes of this script only (clean runs use the
same wrapper with nothing corrupted: the same data). Every run is a cadence run folder under
``--out``/runs; ``--out`` gets results.json (every run's figures), tables.md and
guard_spikes.png (``--figure`` writes the figure elsewhere too).

Usage: .venv/bin/python benchmarks/guard_spikes.py --out out/guard-spikes [--jobs 2]
           [--seeds 10] [--inject-seeds 5] [--lm-seeds 5] [--lm-inject-seeds 2]
           [--figure docs/results/guard_spikes.png] [--quick] [--analyse-only]

--quick: digits and logreg only, 2 seeds (116 runs, about 1.5 CPU-minutes). The full study is 353 runs,
about 21 CPU-minutes (26 minutes of wall time with --jobs 2 on a shared 2-core machine); results are
in docs/guards.md. Re-running the command reuses the runs already in results.json (--fresh: none).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

GUARDS = {
    "none": None,
    "loss": {"loss_spike": {}},
    "grad": {"grad_spike": {}},
    "loss+rollback": {"loss_spike": {}, "rollback": {}},
    "loss64": {"loss_spike": {"window": 64, "min_history": 32}},  # a shorter window: follows a falling loss sooner
}
COLUMN = {"loss": "loss_spike.skipped", "grad": "grad_spike.skipped", "loss+rollback": "loss_spike.skipped",
          "loss64": "loss_spike.skipped"}
NAMES = {"none": "none", "loss": "loss_spike", "grad": "grad_spike", "loss+rollback": "loss_spike + rollback",
         "loss64": "loss_spike window 64"}
SIGMA, WINDOW, MIN_HISTORY, IN_A_ROW = 6.0, 128, 64, 10  # the defaults under test

# horizon: steps; injections at these fractions of it (by micro-batch index)
WORKLOADS = {
    "tiny-lm": {"size": "xs", "horizon": 300, "eval_every": 100},
    "digits": {"horizon": 600},
    "digits-cnn": {"horizon": 600},
    "logreg": {"horizon": 500},
}
SPOTS = (0.3, 0.45, 0.6, 0.75, 0.9)  # five isolated corrupted batches per run
FRACTIONS = (0.1, 0.25, 0.5)  # partial corruption: the share of a batch's samples corrupted
FACTORS = (10, 30, 100)  # LR surges: lr * factor for one step at the middle of the run
LM_FACTORS = (10, 100)


# -- the injection wrapper (worker side) ---------------------------------------------------------

class Injected:
    """The package's workload with chosen micro-batches corrupted; records every attempted batch's loss.

    ``corrupt`` maps a micro-batch index to the share of its samples corrupted (1.0: all).
    Labels become a wrong class (tabular) or the whole sample random bytes (tiny-lm).
    Everything else (model, evaluation, rates, fingerprint) is the wrapped workload's.
    """

    def __init__(self, base, name: str, corrupt: dict[int, float]) -> None:
        self._base, self.name, self.corrupt = base, name, dict(corrupt)
        self.seen: dict[int, float] = {}  # micro-batch index -> its training loss (every attempt)
        self.order: list[int] = []
        self._last = None

    def __getattr__(self, key):
        return getattr(self._base, key)

    def batch(self, seed: int, i: int, batch_size: int):
        import torch

        x, y = self._base.batch(seed, i, batch_size)
        self._last = i
        self.order.append(i)
        share = self.corrupt.get(i)
        if share:
            n = max(1, round(share * len(y)))
            g = torch.Generator().manual_seed(1_000_003 * seed + i)
            if self._base.name == "tiny-lm":  # random bytes: the next byte is unpredictable
                x, y = x.clone(), y.clone()
                x[:n] = torch.randint(0, 256, x[:n].shape, generator=g)
                y[:n] = torch.randint(0, 256, y[:n].shape, generator=g)
            else:  # a wrong label for each corrupted sample
                classes = 2 if self._base.name == "logreg" else 10
                y = y.clone()
                y[:n] = (y[:n] + 1 + torch.randint(0, classes - 1, (n,), generator=g)) % classes
        return x, y

    def loss(self, model, batch):
        loss = self._base.loss(model, batch)
        self.seen[self._last] = loss.item()
        return loss


def run_task(task: dict) -> dict:
    """Train one run (in a worker process) and return what the analysis needs."""
    import torch

    torch.set_num_threads(1)
    import cadence.bench.workloads as W
    from cadence.bench.runner import RunConfig, train
    from cadence.errors import TrainingDiverged

    base = W.get_workload(task["workload"])
    name = f"{task['workload']}+inject"
    inj = Injected(base, name, {int(k): v for k, v in task["corrupt"].items()})
    W.WORKLOADS[name] = type(base)  # known by name in this process only
    W._INSTANCES[name] = inj
    spec = WORKLOADS[task["workload"]]
    lr = base.default_lr
    if task.get("surge"):
        s, k = task["surge"]
        lr = f"scale({lr}, by=piecewise(points=[[{s - 1}, 1], [{s}, {k}], [{s + 1}, 1]]))"
    cfg = RunConfig(name, channels={"lr": lr}, horizon=spec["horizon"], size=spec.get("size"), seed=task["seed"],
                    eval_every=spec.get("eval_every"), guards=GUARDS[task["config"]])
    out = Path(task["dir"])
    warnings: list[str] = []
    cpu, wall = time.process_time(), time.perf_counter()
    error = None
    try:
        train(cfg, out, overwrite=True, threads=1, warn=warnings.append)
    except TrainingDiverged as e:
        error = str(e)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    manifest = json.loads((out / "run.json").read_text())
    rows = _read_rows(out / "metrics.csv")
    (out / "checkpoint.pt").unlink(missing_ok=True)  # the study keeps the CSVs, not the weights
    return {**task, "status": manifest["status"], "diverged_at": manifest.get("diverged_at"), "error": error,
            "skipped_json": manifest.get("skipped"), "rollbacks": manifest.get("rollbacks", []), "warnings": warnings,
            "rows": rows, "seen": {str(i): v for i, v in inj.seen.items()}, "order": inj.order,
            "cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}


def _read_rows(path: Path) -> dict[str, list]:
    """metrics.csv as columns: step (int), train_loss, grad_norm, val_loss and the guards' skip counts."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = ["step", "train_loss", "grad_norm", "val_loss", "loss_spike.skipped", "grad_spike.skipped"]
    cols: dict[str, list] = {}
    for key in keep:
        if rows and key in rows[0]:
            cols[key] = [(int(r[key]) if key in ("step",) or key.endswith(".skipped") else
                          (float(r[key]) if r[key] != "" else None)) for r in rows]
    return cols


# -- the plan of runs ------------------------------------------------------------------------

def plan_tasks(args) -> list[dict]:
    tasks: list[dict] = []
    small = [w for w in args.workloads if w != "tiny-lm"]

    def add(kind, workload, seed, config, corrupt=None, surge=None, label=""):
        tid = f"{kind}{'-' + label if label else ''}/{workload}/s{seed}/{config}"
        tasks.append({"id": tid, "kind": kind, "label": label, "workload": workload, "seed": seed, "config": config,
                      "corrupt": {str(k): v for k, v in (corrupt or {}).items()}, "surge": surge,
                      "dir": str(Path(args.out) / "runs" / tid.replace("+", "_"))})

    def seeds(w, clean):
        if w == "tiny-lm":
            return range(args.lm_seeds if clean else args.lm_inject_seeds)
        return range(args.seeds if clean else args.inject_seeds)

    for w in args.workloads:  # tiny-lm first: the longest runs start first
        h = WORKLOADS[w]["horizon"]
        spots = [round(f * h) for f in SPOTS]
        for seed in seeds(w, clean=True):
            for config in ("loss", "grad"):
                add("clean", w, seed, config)
            if w != "tiny-lm" or seed < args.lm_inject_seeds:  # the unguarded reference
                add("clean", w, seed, "none")
        for seed in seeds(w, clean=False):
            for config in ("none", "loss", "grad", "loss64"):
                add("corrupt", w, seed, config, corrupt={i: 1.0 for i in spots})
        surge_seeds = range(min(3, len(seeds(w, clean=False)))) if w != "tiny-lm" else range(1)
        for factor in (LM_FACTORS if w == "tiny-lm" else FACTORS):
            for seed in surge_seeds:
                for config in ("none", "loss", "grad", "loss+rollback"):
                    if w == "tiny-lm" and config == "loss+rollback" and factor != max(LM_FACTORS):
                        continue
                    add("surge", w, seed, config, surge=[h // 2, factor], label=f"x{factor}")
        b = round(0.55 * h)
        for seed in (range(1) if w == "tiny-lm" else surge_seeds):
            for config in ("loss", "loss+rollback"):
                add("rollback", w, seed, config, corrupt={b: 1.0, b + 5: 1.0, b + 10: 1.0}, label="burst")
                if w in ("digits", "logreg"):
                    add("rollback", w, seed, config, corrupt={b + 2 * j: 1.0 for j in range(20)}, label="shard")
        if w in ("digits", "logreg"):
            for frac in FRACTIONS:
                for seed in surge_seeds:
                    for config in ("loss", "grad"):
                        add("partial", w, seed, config, corrupt={i: frac for i in spots}, label=f"{frac:g}")
    return tasks


def run_all(tasks: list[dict], args) -> list[dict]:
    results_path = Path(args.out) / "results.json"
    done = {}
    if results_path.exists():
        done = {r["id"]: r for r in json.loads(results_path.read_text())}
    todo = [t for t in tasks if t["id"] not in done or {k: done[t["id"]].get(k) for k in t} != t]
    print(f"{len(tasks)} runs, {len(tasks) - len(todo)} already in {results_path}", file=sys.stderr, flush=True)
    results = {t["id"]: done[t["id"]] for t in tasks if t["id"] in done and t not in todo}
    if todo and not args.analyse_only:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_task, t): t for t in todo}
            for n, fut in enumerate(as_completed(futures), 1):
                r = fut.result()
                results[r["id"]] = r
                print(f"[{n}/{len(todo)} {time.perf_counter() - t0:6.0f}s] {r['id']}: {r['status']}"
                      f"{' at ' + str(r['diverged_at']) if r['diverged_at'] is not None else ''}, "
                      f"cpu {r['cpu_s']:.1f}s", file=sys.stderr, flush=True)
                if n % 10 == 0 or n == len(todo):
                    _save(results_path, [results[t["id"]] for t in tasks if t["id"] in results])
    return [results[t["id"]] for t in tasks if t["id"] in results]


def _save(path: Path, results: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results))
    os.replace(tmp, path)


# -- analysis ---------------------------------------------------------------------------------

def replay(values, applied=None, window=WINDOW, min_history=MIN_HISTORY):
    """The loss_spike rule on a series: z-score of each value against the window before it (None before
    min_history), and the verdict (True: skip). ``applied``: which values joined the window (default:
    those the rule did not skip)."""
    from cadence.guards import LossSpike

    g = LossSpike(window, SIGMA, min_history)
    state, zs, verdicts = g.init(), [], []
    for j, v in enumerate(values):
        band = g.band(state)
        zs.append(None if band is None or band[1] == 0 else (v - band[0]) / band[1])
        fired = g.check(state, v)
        verdicts.append(fired)
        ok = (not fired) if applied is None else applied[j]
        state = g.record(state, v, applied=ok, fired=fired)
    return zs, verdicts


def attempts_of(r: dict) -> dict:
    """Which micro-batches a run (without rollback) applied and skipped, from metrics.csv and the recorded losses.

    Row ``t`` (the t-th applied step) used micro-batch ``t + k``, ``k`` the guard's skip count in that row.
    Checks that the row's train_loss is that batch's recorded loss.
    """
    rows, seen = r["rows"], {int(i): v for i, v in r["seen"].items()}
    col = rows.get(COLUMN.get(r["config"], ""), [0] * len(rows["step"]))
    applied = [t + k for t, k in zip(rows["step"], col)]
    mismatches = sum(seen.get(i) != loss for i, loss in zip(applied, rows["train_loss"]))
    drawn = sorted(set(r["order"]))
    skipped = sorted(set(drawn) - set(applied))
    injected = sorted(int(i) for i, share in r["corrupt"].items())
    reached = [i for i in injected if i in set(drawn)]
    return {"applied": applied, "skipped": skipped, "drawn": drawn, "mismatches": mismatches,
            "injected": injected, "reached": reached,
            "caught": [i for i in reached if i in set(skipped)], "missed": [i for i in reached if i not in set(skipped)],
            "false": [i for i in skipped if i not in set(injected)]}


def clock_step_of(a: dict, index: int) -> int:
    """The clock step at which micro-batch ``index`` was attempted: the applied batches before it."""
    return sum(1 for i in a["applied"] if i < index)


def final_val(r: dict):
    vals = [v for v in r["rows"]["val_loss"] if v is not None]
    return vals[-1] if vals else None


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def _f(x, digits=4):
    return "n/a" if x is None else f"{x:.{digits}f}"


def _by(results, **where):
    return [r for r in results if all(r.get(k) == v for k, v in where.items())]


def analyse(results: list[dict], args) -> tuple[str, dict]:
    lines: list[str] = []
    summary: dict = {}
    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in results)]
    clean_ref = {(r["workload"], r["seed"]): r for r in _by(results, kind="clean", config="none")}

    # 1. clean runs
    lines += ["### Clean runs", "",
              "| workload | guard | runs | steps judged | runs with a skip | skipped steps | largest clean z | "
              "runs that would skip at sigma 5 / 4 / 3 | ... with window 64 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    clean_total = {"runs": 0, "skipped": 0}
    identical = []
    skips = {r["id"]: attempts_of(r)["skipped"] for r in _by(results, kind="clean")}

    def unguarded_curve(w, seed):
        """The unguarded run of a seed, or a guarded one that skipped nothing (the same run)."""
        for r in _by(results, kind="clean", workload=w, seed=seed):
            if r["config"] == "none" or not skips[r["id"]]:
                return r
        return None

    for w in workloads:
        for config, signal in (("loss", "train_loss"), ("grad", "grad_norm")):
            rs = _by(results, kind="clean", workload=w, config=config)
            if not rs:
                continue
            skipped = [len(skips[r["id"]]) for r in rs]
            judged = sum(max(0, len(r["rows"]["step"]) - MIN_HISTORY) for r in rs)
            zmax, would, unknown, short = None, {5: 0, 4: 0, 3: 0}, 0, 0
            for r in rs:
                ref = unguarded_curve(w, r["seed"])
                if ref is None:
                    unknown += 1
                    continue
                series = ref["rows"][signal]
                zs, _ = replay(series, applied=[True] * len(series))  # nothing skipped: every value joins the window
                z = max((z for z in zs if z is not None), default=None)
                zmax = z if zmax is None or (z is not None and z > zmax) else zmax
                for s in would:  # exact: up to its first skip, a guarded run is the unguarded one
                    would[s] += any(z is not None and z > s for z in zs)
                _, verdicts = replay(series, window=64, min_history=32)
                short += any(verdicts)
            clean_total["runs"] += len(rs)
            clean_total["skipped"] += sum(skipped)
            note = f" ({unknown} seeds without an unguarded curve)" if unknown else ""
            lines.append(f"| {w} | {NAMES[config]} | {len(rs)} | {judged:,} | {sum(1 for s in skipped if s)} | "
                         f"{sum(skipped)} | {_f(zmax, 2)}{note} | {would[5]} / {would[4]} / {would[3]} | {short} |")
            for r, s in zip(rs, skipped):
                ref = clean_ref.get((w, r["seed"]))
                if ref is not None and s == 0:
                    identical.append(ref["rows"]["train_loss"] == r["rows"]["train_loss"]
                                     and final_val(ref) == final_val(r))
                if s:
                    a = attempts_of(r)
                    at = [clock_step_of(a, i) for i in a["skipped"]]
                    lines.append(f"|  | seed {r['seed']} skipped steps {at} |  |  |  |  |  |  |  |")
            summary.setdefault("clean_by", {})[f"{w}/{config}"] = {"runs": len(rs), "skipped": sum(skipped),
                                                                   "runs_with_skip": sum(1 for s in skipped if s),
                                                                   "zmax": zmax, "would": would,
                                                                   "would_window64": short}
    summary["clean"] = {**clean_total, "identical_to_unguarded": f"{sum(identical)} of {len(identical)}"}
    lines += ["", f"{clean_total['runs']} guarded clean runs, {clean_total['skipped']} skipped steps. "
              f"Guarded runs without a skip that have an unguarded twin: {sum(identical)} of {len(identical)} give "
              "the same train losses and final validation loss to the bit. 'largest clean z': the largest "
              "(value - window mean) / window std of any judged step of the unguarded curve (the rule skips above "
              "6; any sigma above it skips nothing on these runs). The last column replays the rule on the "
              "unguarded curves at a lower sigma, or with window 64 and min_history 32 (exact up to a run's first "
              "skip, which is what it counts).", ""]

    # 2. corrupted batches
    lines += ["### Corrupted batches (every sample of 5 batches per run)", "",
              "| workload | guard | runs | injected | caught | missed | false skips | smallest z of a corrupted batch | "
              "final val loss: clean | unguarded | guarded | guarded - unguarded (mean +- sd) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    summary["corrupt"] = {}
    for w in workloads:
        unguarded = {r["seed"]: r for r in _by(results, kind="corrupt", workload=w, config="none")}
        for config in ("loss", "loss64", "grad"):
            rs = _by(results, kind="corrupt", workload=w, config=config)
            if not rs:
                continue
            att = [attempts_of(r) for r in rs]
            zmin = None
            if config in ("loss", "loss64"):
                settings = GUARDS[config]["loss_spike"]
                for r, a in zip(rs, att):
                    order = sorted(int(i) for i in r["seen"])
                    values = [r["seen"][str(i)] for i in order]
                    zs, verdicts = replay(values, window=settings.get("window", WINDOW),
                                          min_history=settings.get("min_history", MIN_HISTORY))
                    agree = all(v == (i in set(a["skipped"])) for i, v in zip(order, verdicts))
                    assert agree, f"{r['id']}: the replayed rule disagrees with the runner"
                    for i, z in zip(order, zs):
                        if i in set(a["injected"]) and z is not None:
                            zmin = z if zmin is None else min(zmin, z)
            inj = sum(len(a["reached"]) for a in att)
            caught = sum(len(a["caught"]) for a in att)
            missed = sum(len(a["missed"]) for a in att)
            false = sum(len(a["false"]) for a in att)
            mism = sum(a["mismatches"] for a in att)
            assert mism == 0, f"{w} {config}: {mism} rows whose loss is not their batch's"
            c = _mean(final_val(clean_ref[(w, r["seed"])]) for r in rs if (w, r["seed"]) in clean_ref)
            u = _mean(final_val(unguarded[r["seed"]]) for r in rs if r["seed"] in unguarded)
            g = _mean(final_val(r) for r in rs)
            diffs = [final_val(r) - final_val(unguarded[r["seed"]]) for r in rs if r["seed"] in unguarded]
            spread = (f"{statistics.fmean(diffs):+.4f} +- {statistics.stdev(diffs):.4f}" if len(diffs) > 1
                      else (f"{diffs[0]:+.4f}" if diffs else "n/a"))
            lines.append(f"| {w} | {NAMES[config]} | {len(rs)} | {inj} | {caught} | {missed} | {false} | "
                         f"{_f(zmin, 1)} | {_f(c)} | {_f(u)} | {_f(g)} | {spread} |")
            summary["corrupt"][f"{w}/{config}"] = {"injected": inj, "caught": caught, "missed": missed, "false": false,
                                                   "missed_batches": {r["seed"]: a["missed"] for r, a in zip(rs, att)},
                                                   "val_clean": c, "val_unguarded": u, "val_guarded": g,
                                                   "diffs": diffs, "statuses": [r["status"] for r in rs]}
    lines += ["", "Corrupted batches at 30, 45, 60, 75 and 90% of the run. The replayed rule (loss_spike on the "
              "recorded loss of every attempted batch) reached the runner's verdict on every attempt. Final "
              "validation loss: mean over the seeds; the last column pairs each guarded run with the unguarded "
              "run of its seed.", ""]

    # partial corruption
    part = _by(results, kind="partial")
    if part:
        lines += ["### Partly corrupted batches (a share of each of 5 batches per run)", "",
                  "| workload | share corrupted | guard | runs | injected | caught | missed | false skips |",
                  "|---|---:|---|---:|---:|---:|---:|---:|"]
        summary["partial"] = {}
        for w in workloads:
            for frac in FRACTIONS:
                for config in ("loss", "grad"):
                    rs = _by(results, kind="partial", workload=w, config=config, label=f"{frac:g}")
                    if not rs:
                        continue
                    att = [attempts_of(r) for r in rs]
                    cells = [sum(len(a[k]) for a in att) for k in ("reached", "caught", "missed", "false")]
                    lines.append(f"| {w} | {frac:.0%} | {NAMES[config]} | {len(rs)} | " + " | ".join(map(str, cells)) + " |")
                    summary["partial"][f"{w}/{frac:g}/{config}"] = cells
        lines.append("")

    # 3. LR surges
    lines += ["### A one-step LR surge at the middle of the run", "",
              "| workload | lr x | guard | runs | surge visible (z of the next step's loss / grad norm, unguarded) | "
              "caught | skipped steps | runs complete / diverged | rollbacks | final val loss: clean | unguarded | guarded |",
              "|---|---:|---|---:|---|---:|---:|---|---:|---:|---:|---:|"]
    summary["surge"] = {}
    for w in workloads:
        for factor in sorted({r["surge"][1] for r in _by(results, kind="surge", workload=w)}):
            unguarded = _by(results, kind="surge", workload=w, config="none", label=f"x{factor}")
            vis = []
            for r in unguarded:
                s, n = r["surge"][0], len(r["rows"]["step"])
                if n <= s + 1:
                    vis.append(f"diverged at {r['diverged_at']}")
                    continue
                zl, _ = replay(r["rows"]["train_loss"], applied=[True] * n)
                zg, _ = replay(r["rows"]["grad_norm"], applied=[True] * n)
                vis.append(f"{_f(zl[s + 1], 0)}/{_f(zg[s + 1], 0)}")
            c = _mean(final_val(clean_ref[(w, r["seed"])]) for r in unguarded if (w, r["seed"]) in clean_ref)
            u = _mean(final_val(r) for r in unguarded if r["status"] == "complete")
            if any(r["status"] != "complete" for r in unguarded):
                u = None
            for config in ("loss", "grad", "loss+rollback"):
                rs = _by(results, kind="surge", workload=w, config=config, label=f"x{factor}")
                if not rs:
                    continue
                caught, skipped = 0, 0
                for r in rs:
                    s = r["surge"][0]
                    rows = r["rows"]
                    col = rows[COLUMN[config]]
                    if config == "loss+rollback":  # metrics.csv holds the last timeline only: no count of catches
                        caught = None
                        skipped += len(set(r["order"])) - len(rows["step"])
                        continue
                    if len(rows["step"]) > s + 1:
                        caught += col[s + 1] > col[s]
                    else:
                        caught += r["diverged_at"] == s + 1
                    skipped += len(set(r["order"])) - len(rows["step"]) - (col[s] if len(col) > s else 0)
                done = sum(r["status"] == "complete" for r in rs)
                div = sum(r["status"] == "diverged" for r in rs)
                rb = sum(len(r["rollbacks"]) for r in rs)
                g = _mean(final_val(r) for r in rs if r["status"] == "complete")
                lines.append(f"| {w} | {factor} | {NAMES[config]} | "
                             f"{len(rs)} | {', '.join(vis)} | {'-' if caught is None else caught} | {skipped} | {done} / {div} | {rb} | {_f(c)} | "
                             f"{_f(u)} | {_f(g) if done else 'diverged'} |")
                summary["surge"][f"{w}/x{factor}/{config}"] = {"runs": len(rs), "caught": caught, "skipped": skipped,
                                                               "complete": done, "diverged": div, "rollbacks": rb,
                                                               "visible": vis, "val_clean": c, "val_unguarded": u,
                                                               "val_guarded": g}
    lines += ["", "Surge at step H/2 (the step whose own loss is measured before the surged update); 'z': of the "
              "next step, against the window of the unguarded run; caught: that next step was skipped; skipped "
              "steps: all skipped attempts from the surge on (a rolled-back run counts every attempt it "
              "repeated or skipped, and its metrics.csv, cut back at each rollback, cannot say whether that step "
              "was skipped: '-'). Final val loss of guarded runs: complete runs only.", ""]

    # 4. rollback
    lines += ["### Rollback", "",
              "| workload | case | guard | runs | complete / diverged | rollbacks | steps repeated | final val loss |",
              "|---|---|---|---:|---|---:|---:|---:|"]
    summary["rollback"] = {}
    for w in workloads:
        for case in ("burst", "shard"):
            for config in ("loss", "loss+rollback"):
                rs = _by(results, kind="rollback", workload=w, config=config, label=case)
                if not rs:
                    continue
                done = sum(r["status"] == "complete" for r in rs)
                div = sum(r["status"] == "diverged" for r in rs)
                rb = [x for r in rs for x in r["rollbacks"]]
                redo = sum(x["at_step"] - x["to_step"] for x in rb)
                g = _mean(final_val(r) for r in rs if r["status"] == "complete")
                lines.append(f"| {w} | {case} | {NAMES[config]} | {len(rs)} | {done} / {div} | "
                             f"{len(rb)} | {redo} | {_f(g) if done else 'diverged'} |")
                summary["rollback"][f"{w}/{case}/{config}"] = {"runs": len(rs), "complete": done, "diverged": div,
                                                               "rollbacks": len(rb), "repeated": redo, "val": g}
    lines += ["", "burst: 3 corrupted batches 5 apart at 55% of the run; shard: every other batch for 40 batches "
              "from there. Checkpoints every 100 steps (the runner's default).", ""]

    cpu = sum(r["cpu_s"] for r in results)
    lines += [f"{len(results)} runs, {cpu / 60:.1f} CPU-minutes (one torch thread each)."]
    summary["runs"], summary["cpu_minutes"] = len(results), round(cpu / 60, 1)
    return "\n".join(lines) + "\n", summary


# -- the figure ---------------------------------------------------------------------------------

def figure(results: list[dict], paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=90)
    # left: corrupted batches on the first workload studied (tiny-lm when it was run)
    w = next((x for x in WORKLOADS if _by(results, kind="corrupt", workload=x, seed=0, config="loss")), None)
    if w is not None:
        ax = axes[0]
        clean = _by(results, kind="clean", workload=w, seed=0, config="none")
        none = _by(results, kind="corrupt", workload=w, seed=0, config="none")[0]
        guarded = _by(results, kind="corrupt", workload=w, seed=0, config="loss")[0]
        ax.plot(none["rows"]["step"], none["rows"]["train_loss"], color="tab:orange", lw=0.8, label="corrupted, unguarded")
        if clean:
            ax.plot(clean[0]["rows"]["step"], clean[0]["rows"]["train_loss"], color="0.55", lw=0.8, label="clean")
        ax.plot(guarded["rows"]["step"], guarded["rows"]["train_loss"], color="tab:blue", lw=0.8,
                label="corrupted, loss_spike")
        short = _by(results, kind="corrupt", workload=w, seed=0, config="loss64")
        if short:
            ax.plot(short[0]["rows"]["step"], short[0]["rows"]["train_loss"], color="tab:green", lw=0.8,
                    label="corrupted, loss_spike window 64")
            b64 = attempts_of(short[0])
            ax.scatter([clock_step_of(b64, i) for i in b64["skipped"]], [short[0]["seen"][str(i)] for i in b64["skipped"]],
                       marker="+", color="tab:green", s=60, zorder=6, label="skipped (window 64)")
        a = attempts_of(guarded)
        xs = [clock_step_of(a, i) for i in a["skipped"]]
        ys = [guarded["seen"][str(i)] for i in a["skipped"]]
        ax.scatter(xs, ys, marker="x", color="red", s=30, zorder=5, label="skipped (its loss)")
        if a["missed"]:
            ax.scatter([clock_step_of(a, i) for i in a["missed"]], [guarded["seen"][str(i)] for i in a["missed"]],
                       marker="o", facecolors="none", edgecolors="red", s=40, zorder=5, label="missed (applied)")
        for i in a["injected"]:
            ax.axvline(i, color="red", lw=0.6, ls=":", alpha=0.6)
        losses = guarded["rows"]["train_loss"]
        if max(losses + ys) / min(losses) > 20:
            ax.set_yscale("log")
            ax.set_ylim(top=max(ys + [3.0]) * 3)
        else:
            ax.set_ylim(top=max(losses + ys) * 1.35)
        ax.set_title(f"{w}: 5 corrupted batches (dotted), seed 0", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("train loss")
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    # right: an LR surge on digits (x30)
    ax = axes[1]
    w2 = next((x for x in ("digits", "logreg", "digits-cnn", "tiny-lm")
               if _by(results, kind="surge", workload=x, seed=0, config="loss", label="x30")), None)
    if w2 is not None:
        none = _by(results, kind="surge", workload=w2, seed=0, config="none", label="x30")[0]
        s = none["surge"][0]
        lo, hi = s - 30, s + 90
        clean = _by(results, kind="clean", workload=w2, seed=0, config="none")

        def part(r):
            pts = [(t, v) for t, v in zip(r["rows"]["step"], r["rows"]["train_loss"]) if lo <= t <= hi]
            return [p[0] for p in pts], [p[1] for p in pts]

        if clean:
            ax.plot(*part(clean[0]), color="0.6", lw=0.8, label="clean")
        ax.plot(*part(none), color="tab:orange", lw=0.8, label="surge, unguarded")
        for config, color, label in (("loss+rollback", "tab:green", "surge, loss_spike + rollback"),
                                     ("loss", "tab:blue", "surge, loss_spike")):
            rs = _by(results, kind="surge", workload=w2, seed=0, config=config, label="x30")
            if not rs:
                continue
            r = rs[0]
            status = f" ({r['status']})" if r["status"] != "complete" else ""
            ax.plot(*part(r), color=color, lw=1.4 if config == "loss" else 0.8, label=label + status)
            if config == "loss" and r["status"] == "diverged":
                a = attempts_of(r)
                tail = [i for i in a["skipped"] if clock_step_of(a, i) == r["diverged_at"]]
                ax.scatter([r["diverged_at"]] * len(tail), [r["seen"][str(i)] for i in tail], marker="x", color="red",
                           s=30, zorder=5, label=f"{len(tail)} skipped at step {r['diverged_at']}, then stopped")
        ax.axvline(s, color="red", lw=0.6, ls=":", alpha=0.6)
        ax.set_title(f"{w2}: lr x30 for one step at step {s} (dotted), seed 0", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("train loss")
        ax.set_yscale("log")
        ax.set_ylim(top=ax.get_ylim()[1] * 4)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/guard-spikes", help="output folder (run folders, results.json, tables.md)")
    ap.add_argument("--seeds", type=int, default=10, help="clean-run seeds of digits, digits-cnn and logreg")
    ap.add_argument("--inject-seeds", type=int, default=5, help="corrupted-batch seeds of those (surges: 3)")
    ap.add_argument("--lm-seeds", type=int, default=5, help="clean-run seeds of tiny-lm")
    ap.add_argument("--lm-inject-seeds", type=int, default=2, help="corrupted-batch seeds of tiny-lm (surges: 1)")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    ap.add_argument("--figure", type=Path, help="also write the figure here (e.g. docs/results/guard_spikes.png)")
    ap.add_argument("--quick", action="store_true", help="digits and logreg, 2 seeds (about a minute)")
    ap.add_argument("--analyse-only", action="store_true", help="tables and figure from results.json; train nothing")
    ap.add_argument("--fresh", action="store_true", help="forget the results of an earlier invocation")
    args = ap.parse_args(argv)
    if args.quick:
        args.workloads = [w for w in args.workloads if w in ("digits", "logreg")] or ["digits"]
        args.seeds = args.inject_seeds = 2
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = plan_tasks(args)
    results = run_all(tasks, args)
    _save(out / "results.json", results)
    text, summary = analyse(results, args)
    (out / "tables.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    figure(results, [out / "guard_spikes.png", *([args.figure] if args.figure else [])])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
