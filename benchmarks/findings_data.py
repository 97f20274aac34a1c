"""Data over time (issue 12): online mixers, a noise domain, continual pre-training with replay.

Three experiments on the ``text`` workload (byte-level LM, size ``xs``, batch 32), measured on
cadence's own CPU runs (not a test):

A. Uniform (= stratified: equal weight per domain) against each online mixer (``odm``,
   ``doremi``, ``aioli``) and against the "natural" static mixture (each domain's share of
   the training bytes), on the three default domains (``code``, ``tests``, ``prose``) written
   to a folder. Every arm's peak LR is swept on seed 0 (1e-3, 2e-3, 4e-3, extended past an
   edge once per side; a best peak still at the high edge then adds one more, x2, for A only)
   and its best peak runs on seeds 1 and 2. doremi's reference is the uniform run of the same
   seed and peak (the paper's recipe: reference = uniform model); the runner fills doremi's
   ``reference_loss`` with that run's final training loss per domain (mean over its last 5% of
   steps; before cadence 17485c4 it was the final validation loss, which starved ``code``).
   Tests Aioli's claim that it beats stratified mixing on every data set it tried.
B. The same three domains plus ``noise`` (~1 MB of random printable ASCII, fixed seed: a
   domain nothing can learn). Arms uniform, odm, doremi (reference: the uniform run of the same
   seed, at uniform's peak), aioli, each at its peak from A (the sweep extended once per side),
   3 seeds. Reports the weight each gives to ``noise`` and the mean validation loss over the
   three real domains.
C. Continual pre-training with replay (Ibrahim et al. 2024): phase 1 on ``code`` + ``tests``
   (N1 steps, cosine to 10% of peak), phase 2 from its weights (``init``, fresh optimizer) on all
   three domains with ``{prose: 1-r, code: r/2, tests: r/2}``, the LR re-warmed from 10% of the
   peak and re-decayed; against a run from scratch on all three for N1 + N2 steps with the
   union's mixture (that of phase 1 followed by phase 2 at r = 0.05). P: uniform's tuned peak
   from A.

Every run is a cadence run folder under ``--out``; a folder whose run.json says ``complete``
(or ``diverged``) is not run again, so re-running the command resumes. Runs go to ``--jobs``
worker processes (one torch thread each) as soon as what they depend on (the sweep, the
reference run, the phase-1 run) is known.

Outputs: ``--figures`` (default docs/results/data/) gets the figures and ``runs.csv`` (one row
per run); ``--out``/tables.md the tables, ``--out``/summary.json the numbers behind them.

aioli's defaults (20 rounds) need 1,040 steps on 3 domains and 1,360 on 4; at 400 steps it
runs with the most rounds that fit (7 and 5; ``aioli_rounds``), all else at its defaults.

Usage: .venv/bin/python benchmarks/findings_data.py --out out/findings-data [--jobs 2] [--analyse-only] [--smoke]

On the shared 2-core CPU the whole set (66 runs, 123 minutes of training) took 56 + 17 minutes
of wall time with --jobs 2 (the second pass: doremi redone after the reference fix, and the
second extension to 1.6e-2). Horizons are 400 steps (A, B) and 200 + 200 (C), cut from 600 and
400 + 400 to fit the time the machine's load left.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from _findings import run_job, status_of  # noqa: E402 - benchmarks/ is this script's folder
import numpy as np
import pandas as pd

# -- the experiment -------------------------------------------------------------------------

HORIZON = 400  # A and B: steps at batch 32 (1.6M tokens, ~13 tokens per parameter of xs)
N1, N2 = 200, 200  # C: phase 1 (old domains), phase 2 (new domain + replay)
EVAL_EVERY = 50
GRID = [1e-3, 2e-3, 4e-3]
MAX_EXTEND = 1  # a best peak at the edge of its grid adds the next peak past that edge (x2 or /2), once per side
MAX_EXTEND_A = 2  # A's own table: a best peak still at the high edge after that adds one more (x2) on seed 0;
#                   B and C keep the peak chosen with MAX_EXTEND (they were run at it before this second step)
SEEDS = 3
REPLAY = [0.0, 0.01, 0.05, 0.25]
SCRATCH_R = 0.05  # the scratch run's mixture is the union of phase 1 and phase 2 at this replay fraction
REAL = ["code", "prose", "tests"]
OLD, NEW = ["code", "tests"], ["prose"]
NOISE_BYTES = 1_000_000
NOISE_FILES = 100
NOISE_SEED = 12


def aioli_rounds(steps: int, domains: int, rounds: int = 20, delta: float = 0.128, sweeps: int = 4,
                 probe_every: int = 4) -> int:
    """The most rounds (at most aioli's default 20) whose LearnParams sweeps fit in a round of the run.

    The same layout as cadence.controllers.mixing.Aioli._layout: a round of R steps (a multiple
    of probe_every) must hold sweeps x domains segments of seg steps and still train on the mixture.
    """
    for k in range(rounds, 0, -1):
        r = int(steps // k) // probe_every * probe_every
        seg = max(1, int(delta * r) // (sweeps * domains * probe_every)) * probe_every
        if sweeps * domains * seg < r:
            return k
    raise ValueError(f"aioli cannot fit {steps} steps with {domains} domains")


def cos(p: float) -> str:
    return f"cosine(peak={p:g}, final=0.0, warmup='5%')"


def cos10(p: float) -> str:
    return f"cosine(peak={p:g}, final={0.1 * p:g}, warmup='5%')"


def rewarm(p: float) -> str:
    """Phase 2's LR: re-warmed over 5% from phase 1's final LR (0.1 P) to P, re-decayed to 0.1 P."""
    return f"warmup(cosine(peak={p:g}, final={0.1 * p:g}), duration='5%', start={0.1 * p:g})"


def replay_mix(r: float) -> dict:
    return {"code": r / 2, "prose": 1.0 - r, "tests": r / 2}


def union_mix(r: float) -> dict:
    """The mixture of a single run that sees the samples of phase 1 (old only, code/tests evenly) then phase 2."""
    old = (N1 + N2 * r) / (N1 + N2)
    return {"code": old / 2, "prose": 1.0 - old, "tests": old / 2}


# -- corpora --------------------------------------------------------------------------------

def write_corpora(out: Path) -> dict:
    """corpus-3 (code, prose, tests), corpus-noise (+ noise), corpus-old (code, tests); the natural weights."""
    import cadence.bench.workloads  # noqa: F401 - import order: text builds on workloads
    from cadence.bench.text import Text

    done = out / "corpora.json"
    if done.exists():
        return json.loads(done.read_text())
    domains = Text()._read_default()
    rng = np.random.default_rng(NOISE_SEED)
    printable = np.arange(32, 127, dtype=np.uint8)  # the 95 printable ASCII characters: ln 95 = 4.554 nats a byte
    noise = [(f"noise/n{i:03d}.txt", printable[rng.integers(0, len(printable), NOISE_BYTES // NOISE_FILES)].tobytes())
             for i in range(NOISE_FILES)]
    layouts = {"corpus-3": REAL, "corpus-noise": REAL + ["noise"], "corpus-old": OLD}
    for name, keep in layouts.items():
        for dom in keep:
            for rel, data in (noise if dom == "noise" else domains[dom]):
                path = out / name / rel  # rel starts with the domain's name: the same validation split as the default
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    w = Text(data_dir=str(out / "corpus-3"))
    w._corpus()
    train_bytes = {d: int(n) for d, n in zip(w.domain_names(), w._data["lengths"].tolist())}
    total = sum(train_bytes.values())
    info = {"train_bytes": train_bytes, "natural": {d: n / total for d, n in train_bytes.items()},
            "bytes": {d: sum(len(b) for _, b in files) for d, files in domains.items()}, "noise_bytes": NOISE_BYTES}
    done.write_text(json.dumps(info, indent=1))
    return info


# -- run folders ----------------------------------------------------------------------------



def final_vals(folder: Path) -> dict:
    """Final per-domain validation losses of a finished run (inf for a diverged one)."""
    if status_of(folder) != "complete":
        return {}
    m = pd.read_csv(folder / "metrics.csv")
    ev = m.dropna(subset=["val_loss"])
    last = ev.iloc[-1]
    return {c.split("/", 1)[1]: float(last[c]) for c in ev.columns if c.startswith("val_loss/")}


def score(vals: dict, domains=REAL) -> float:
    if not vals:
        return math.inf
    return float(np.mean([vals[d] for d in domains]))


# -- which runs are wanted, given what is known -----------------------------------------------

MIXERS_A = ["uniform", "natural", "odm", "doremi", "aioli"]
ARMS_B = ["uniform", "odm", "doremi", "aioli"]


class Planner:
    def __init__(self, out: Path, corpora: dict) -> None:
        self.out, self.corpora = out, corpora
        self.rounds = {"A": aioli_rounds(HORIZON, 3), "B": aioli_rounds(HORIZON, 4)}
        self.best: dict = {}  # arm -> its tuned peak in A, once known

    def folder(self, key: str) -> Path:
        return self.out / key

    def done(self, key: str) -> bool:
        return status_of(self.folder(key)) in ("complete", "diverged")

    def mixture(self, exp: str, arm: str, peak: float, seed: int):
        if arm == "uniform":
            return None
        if arm == "natural":
            return dict(self.corpora["natural"])
        if arm == "odm":
            return "odm()"
        if arm == "aioli":
            return f"aioli(rounds={self.rounds[exp]})"
        if arm == "doremi":
            return f"doremi(reference='{self.folder(self.reference(exp, peak, seed)).resolve()}')"
        raise ValueError(arm)

    def reference(self, exp: str, peak: float, seed: int) -> str:
        """doremi's reference run: A: the uniform run of the same seed and peak; B: the uniform arm's run of the
        same seed (at uniform's own tuned peak, so B needs no extra uniform runs)."""
        return self.key(exp, "uniform", peak if exp == "A" else self.best["uniform"], seed)

    @staticmethod
    def key(exp: str, arm: str, peak: float, seed: int) -> str:
        return f"{exp}/{arm}/p{peak:g}-s{seed}"

    def config(self, exp: str, arm: str, peak: float, seed: int) -> dict:
        corpus = {"A": "corpus-3", "B": "corpus-noise"}[exp]
        ch = {"lr": cos(peak)}
        mix = self.mixture(exp, arm, peak, seed)
        if mix is not None:
            ch["mixture"] = mix
        return dict(workload="text", channels=ch, horizon=HORIZON, seed=seed, size="xs", batch_size=32,
                    eval_every=EVAL_EVERY, checkpoint_every=200, data=str((self.out / corpus).resolve()))

    def sweep_best(self, exp: str, arm: str, max_hi: int = MAX_EXTEND) -> "tuple[float | None, list[float]]":
        """(best peak once the seed-0 sweep is settled, else None; the peaks wanted so far). Below the grid it
        extends at most MAX_EXTEND times, above it at most max_hi times."""
        peaks = list(GRID)
        while True:
            keys = [self.key(exp, arm, p, 0) for p in peaks]
            if not all(self.done(k) for k in keys):
                return None, peaks
            scores = [score(final_vals(self.folder(k))) for k in keys]
            i = int(np.argmin(scores))
            lo = sum(p < min(GRID) for p in peaks)
            hi = sum(p > max(GRID) for p in peaks)
            if i == 0 and lo < MAX_EXTEND:
                peaks.insert(0, peaks[0] / 2)
            elif i == len(peaks) - 1 and hi < max_hi:
                peaks.append(peaks[-1] * 2)
            else:
                return peaks[i], peaks

    def wanted(self) -> "list[tuple[str, dict | None, list[str]]]":
        """(key, config, keys it needs first) of every run wanted so far, in priority order."""
        want, seen = [], set()

        def add(exp, arm, peak, seed):
            k = self.key(exp, arm, peak, seed)
            if k in seen:
                return
            deps = []
            if arm == "doremi":
                ref = self.reference(exp, peak, seed)
                add(exp, "uniform", float(ref.split("/p")[1].split("-s")[0]), seed)
                deps.append(ref)
            seen.add(k)
            want.append((k, self.config(exp, arm, peak, seed), deps))

        best = self.best = {}  # the peak B and C use: the sweep extended once per side
        best_a = {}  # A's own tuned peak: the sweep extended up to MAX_EXTEND_A times above the grid
        for arm in MIXERS_A:  # A: seed-0 sweeps
            best[arm], _ = self.sweep_best("A", arm)
            best_a[arm], peaks = self.sweep_best("A", arm, max(MAX_EXTEND, MAX_EXTEND_A))
            for p in peaks:
                add("A", arm, p, 0)
        p_c = best["uniform"]
        if p_c is not None:  # C: uniform's tuned peak from A
            want += self.continual(p_c)
        for arm in ARMS_B:  # B: each arm at its peak from A (doremi also needs uniform's, for its reference)
            if best[arm] is not None and best["uniform"] is not None:
                for s in range(SEEDS):
                    add("B", arm, best[arm], s)
        for arm in MIXERS_A:  # A: the other seeds at the best peak
            if best_a[arm] is not None:
                for s in range(1, SEEDS):
                    add("A", arm, best_a[arm], s)
        return want

    def continual(self, p: float) -> list:
        out = []
        base = dict(workload="text", size="xs", batch_size=32, eval_every=EVAL_EVERY, checkpoint_every=200)
        for s in range(SEEDS):
            k1 = f"C/phase1/p{p:g}-s{s}"
            out.append((k1, dict(base, channels={"lr": cos10(p)}, horizon=N1, seed=s,
                                 data=str((self.out / "corpus-old").resolve())), []))
        for s in range(SEEDS):
            k1 = f"C/phase1/p{p:g}-s{s}"
            for r in REPLAY:
                out.append((f"C/replay{r:g}/p{p:g}-s{s}",
                            dict(base, channels={"lr": rewarm(p), "mixture": replay_mix(r)}, horizon=N2, seed=s,
                                 data=str((self.out / "corpus-3").resolve()), init=str(self.folder(k1).resolve()),
                                 init_optimizer=False), [k1]))
            out.append((f"C/scratch/p{p:g}-s{s}",
                        dict(base, channels={"lr": cos10(p), "mixture": union_mix(SCRATCH_R)}, horizon=N1 + N2,
                             seed=s, data=str((self.out / "corpus-3").resolve())), []))
        return out


def execute(planner: Planner, jobs: int) -> None:
    running: dict = {}
    failed: set = set()  # runs that raised: not started again in this invocation
    t0 = time.time()
    import multiprocessing

    # spawn, not fork: the parent has imported torch (writing the corpora), and a forked torch can hang
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while True:
            want = planner.wanted()
            ready = [(k, cfg) for k, cfg, deps in want
                     if k not in running and k not in failed and not planner.done(k)
                     and all(planner.done(d) for d in deps)]
            for k, cfg in ready[: max(0, jobs - len(running))]:
                running[k] = pool.submit(run_job, cfg, str(planner.folder(k)))
                print(f"[{time.time() - t0:6.0f}s] start {k}", flush=True)
            if not running:
                left = [k for k, _, _ in want if not planner.done(k)]
                if left:
                    print(f"nothing can start; waiting on {left}", file=sys.stderr)
                break
            finished, _ = wait(running.values(), return_when=FIRST_COMPLETED)
            for k in [k for k, f in running.items() if f in finished]:
                fut = running.pop(k)
                try:
                    status = fut.result()
                except Exception as exc:  # noqa: BLE001 - report and go on with the others
                    status = f"failed: {type(exc).__name__}: {exc}"
                    failed.add(k)
                print(f"[{time.time() - t0:6.0f}s] {status:>9} {k}", flush=True)


# -- analysis -------------------------------------------------------------------------------

def pm(values, digits=4) -> str:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def read_run(folder: Path) -> dict:
    manifest = json.loads((folder / "run.json").read_text())
    m = pd.read_csv(folder / "metrics.csv") if (folder / "metrics.csv").exists() else None
    return {"manifest": manifest, "metrics": m}


def collect(out: Path) -> pd.DataFrame:
    rows = []
    for rj in sorted(out.glob("*/*/*/run.json")):
        folder = rj.parent
        exp, arm = folder.parts[-3], folder.parts[-2]
        tail = folder.name  # p{peak}-s{seed}
        peak, seed = float(tail.split("-s")[0][1:]), int(tail.split("-s")[1])
        run = read_run(folder)
        man, m = run["manifest"], run["metrics"]
        row = {"experiment": exp, "arm": arm, "seed": seed, "peak": peak, "status": man["status"],
               "steps": man.get("step"), "train_seconds": man.get("train_seconds")}
        if man["status"] == "complete" and m is not None:
            vals = final_vals(folder)
            for d, v in vals.items():
                row[f"val_{d}"] = v
            real = [d for d in REAL if d in vals]
            row["avg"] = float(np.mean([vals[d] for d in real]))
            row["worst"] = float(max(vals[d] for d in real))
            if "noise" in vals:
                row["avg_all"] = float(np.mean(list(vals.values())))
            spec = (man.get("config") or {}).get("channels", {}).get("mixture")
            if isinstance(spec, str) and "reference_loss=[" in spec:  # doremi: the reference the runner filled in
                ref = [float(x) for x in spec.split("reference_loss=[", 1)[1].split("]", 1)[0].split(",")]
                for d, v in zip([c.split("/", 1)[1] for c in m.columns if c.startswith("val_loss/")], ref):
                    row[f"ref_{d}"] = v
            for c in m.columns:
                if c.startswith("mixture/"):
                    d = c.split("/", 1)[1]
                    row[f"w_final_{d}"] = float(m[c].iloc[-1])
                    row[f"w_mean_{d}"] = float(m[c].mean())
                if c.startswith("mixture.average/"):
                    row[f"w_doremi_avg_{c.split('/', 1)[1]}"] = float(m[c].dropna().iloc[-1])
                if c.startswith("train_loss/"):  # the mean over the last 5% of its rows: doremi's reference rule
                    t = m[c].dropna()
                    row[f"train_{c.split('/', 1)[1]}"] = float(t.iloc[-max(1, len(t) // 20):].mean())
                if c.startswith("samples/"):
                    row[f"samples_{c.split('/', 1)[1]}"] = int(m[c].iloc[-1])
            for col, g in (man.get("stability_gap") or {}).items():
                if col.startswith("val_loss/") and isinstance(g, dict):
                    d = col.split("/", 1)[1]
                    for f in ("baseline", "peak", "depth", "depth_rel", "peak_step", "length", "recovered"):
                        row[f"gap_{d}_{f}"] = g.get(f)
        rows.append(row)
    return pd.DataFrame(rows)


def md_table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def best_peaks(df: pd.DataFrame, exp: str = "A") -> dict:
    """Each arm's chosen peak: the seed-0 sweep's best (the peak with runs on seed 1)."""
    best = {}
    for arm in MIXERS_A:
        s0 = df[(df.experiment == exp) & (df.arm == arm) & (df.seed == 0)]
        if len(s0):
            best[arm] = float(s0.loc[s0.avg.fillna(np.inf).idxmin(), "peak"])
    return best


def run_peaks(df: pd.DataFrame, exp: str) -> dict:
    """Each arm's peak in an experiment run at one peak per arm (B): the peak of most of its runs."""
    g = df[df.experiment == exp]
    return {arm: float(g[g.arm == arm].peak.mode().iloc[0]) for arm in g.arm.unique()}


def analyse(out: Path, figures: Path) -> None:
    figures.mkdir(parents=True, exist_ok=True)
    df = collect(out)
    if df.empty:
        print("no runs yet")
        return
    best = best_peaks(df)
    best_b = run_peaks(df, "B")  # B keeps the peaks chosen with one extension (see MAX_EXTEND_A)
    df["role"] = "main"
    for i, r in df.iterrows():
        if r.experiment == "A" and r.arm in best and r.peak != best[r.arm]:
            df.loc[i, "role"] = "sweep" if r.seed == 0 else "other peak"  # doremi's reference, or B/C's peak
        if r.experiment == "B" and r.arm in best_b and r.peak != best_b[r.arm]:
            df.loc[i, "role"] = "other peak"
    cols = ["experiment", "arm", "role", "seed", "peak", "status", "steps", "train_seconds"]
    cols += [c for c in df.columns if c.startswith("val_")] + ["avg", "worst"]
    cols += [c for c in df.columns if c not in cols]
    df = df[[c for c in cols if c in df.columns]]
    df.to_csv(figures / "runs.csv", index=False, float_format="%.6g")
    tables, summary = [], {"best_peaks": best, "peaks_B": best_b, "runs": len(df),
                           "train_minutes": float(df.train_seconds.fillna(0).sum() / 60)}

    def at_best(exp, arm):
        p = (best_b if exp == "B" else best).get(arm)
        if not p:
            return df.iloc[:0]
        sel = (df.experiment == exp) & (df.arm == arm) & (df.peak == p) & (df.status == "complete")
        return df[sel].sort_values("seed")

    # -- A --------------------------------------------------------------------------------
    allpeaks = sorted(df[(df.experiment == "A") & (df.seed == 0)].peak.unique())
    rows = []
    for arm in MIXERS_A:
        s0 = df[(df.experiment == "A") & (df.arm == arm) & (df.seed == 0)].set_index("peak")
        cells = []
        for p in allpeaks:
            if p in s0.index and np.isfinite(s0.loc[p, "avg"]):
                v = f"{s0.loc[p, 'avg']:.4f}"
                cells.append(f"**{v}**" if p == best.get(arm) else v)
            else:
                cells.append("")
        rows.append([arm, *cells])
    tables.append("A: LR sweep, final average val loss, seed 0\n\n" + md_table(["arm", *[f"{p:g}" for p in allpeaks]],
                                                                                rows))
    base = at_best("A", "uniform").set_index("seed")
    rows, sumA = [], {}
    edge1 = max(GRID) * 2 ** MAX_EXTEND  # the highest peak of the first pass (one extension)
    for arm, label in [(a, lab) for a in MIXERS_A for lab in (a, f"{a} at its first-pass peak")]:
        if label == arm:
            g = at_best("A", arm)
        else:  # an arm whose peak moved with the second extension: its first-pass peak too, if it has 3 seeds
            s0 = df[(df.experiment == "A") & (df.arm == arm) & (df.seed == 0) & (df.peak <= edge1)]
            p1 = float(s0.loc[s0.avg.fillna(np.inf).idxmin(), "peak"]) if len(s0) else None
            g = df[(df.experiment == "A") & (df.arm == arm) & (df.peak == p1) & (df.status == "complete")]
            if p1 is None or p1 == best.get(arm) or len(g) < SEEDS:
                continue
            g = g.sort_values("seed")
        if g.empty:
            continue
        peak = float(g.peak.iloc[0])
        diff = (g.set_index("seed").avg - base.avg).dropna()
        dworst = (g.set_index("seed").worst - base.worst).dropna()
        rows.append([label, f"{peak:g}", pm(g.avg), pm(g.worst), *[pm(g[f"val_{d}"]) for d in REAL],
                     "(baseline)" if arm == "uniform" else f"{pm(diff)} ({int((diff < 0).sum())}/{len(diff)})",
                     "(baseline)" if arm == "uniform" else f"{pm(dworst)} ({int((dworst < 0).sum())}/{len(dworst)})"])
        sumA[label] = {"peak": peak, "avg": g.avg.tolist(), "worst": g.worst.tolist(),
                       **{d: g[f"val_{d}"].tolist() for d in REAL}}
    tables.append("A: each arm at its tuned peak, 3 seeds\n\n" + md_table(
        ["arm", "peak", "avg val loss", "worst-domain val loss", *[f"val {d}" for d in REAL],
         "avg − uniform, paired (lower on)", "worst − uniform, paired (lower on)"], rows))
    rows = []
    for arm in MIXERS_A:
        g = at_best("A", arm)
        if g.empty:
            continue
        fin = " / ".join(f"{g[f'w_final_{d}'].mean():.3f}" for d in REAL) if f"w_final_{REAL[0]}" in g else "uniform"
        avg = " / ".join(f"{g[f'w_mean_{d}'].mean():.3f}" for d in REAL) if f"w_mean_{REAL[0]}" in g else "uniform"
        da = " / ".join(f"{g[f'w_doremi_avg_{d}'].mean():.3f}" for d in REAL) \
            if f"w_doremi_avg_{REAL[0]}" in g and g[f"w_doremi_avg_{REAL[0]}"].notna().any() else ""
        samp = " / ".join(f"{g[f'samples_{d}'].mean():.0f}" for d in REAL)
        rows.append([arm, fin, avg, da, samp])
        sumA[arm] = {**sumA.get(arm, {}), "w_final": fin, "w_mean": avg, "doremi_avg": da}
    g = at_best("A", "uniform")
    if not g.empty:
        tv = [[d, pm(g[f"train_{d}"], 3), pm(g[f"val_{d}"], 3), pm(g[f"train_{d}"] - g[f"val_{d}"], 3)] for d in REAL]
        tables.append("A: uniform at its tuned peak: training loss (mean of the last 5% of steps) against the final "
                      "validation loss, per domain\n\n" + md_table(["domain", "train", "val", "train − val"], tv))
    tables.append("A: mixture weights (code / prose / tests), mean over seeds\n\n" + md_table(
        ["arm", "final weights", "mean over steps", "doremi averaged (state)", "samples drawn"], rows))
    summary["A"] = sumA

    # -- B --------------------------------------------------------------------------------
    baseB = at_best("B", "uniform").set_index("seed")
    rows, sumB = [], {}
    for arm in ARMS_B:
        g = at_best("B", arm)
        if g.empty:
            continue
        diff = (g.set_index("seed").avg - baseB.avg).dropna()
        nf = pm(g.get("w_final_noise", pd.Series(dtype=float)), 3)
        nm = pm(g.get("w_mean_noise", pd.Series(dtype=float)), 3)
        nd = pm(g["w_doremi_avg_noise"], 3) if "w_doremi_avg_noise" in g and g.w_doremi_avg_noise.notna().any() \
            else ""
        share = g.samples_noise / g[[f"samples_{d}" for d in REAL + ["noise"]]].sum(axis=1)
        rows.append([arm, f"{best_b[arm]:g}", pm(g.avg), pm(g.worst), *[pm(g[f"val_{d}"]) for d in REAL],
                     pm(g.val_noise, 3), nf, nm, nd, pm(share, 3),
                     "(baseline)" if arm == "uniform" else f"{pm(diff)} ({int((diff < 0).sum())}/{len(diff)})"])
        sumB[arm] = {"avg": g.avg.tolist(), "noise_final": g.get("w_final_noise", pd.Series(dtype=float)).tolist(),
                     "noise_mean": g.get("w_mean_noise", pd.Series(dtype=float)).tolist()}
    tables.append("B: with a noise domain, 3 seeds\n\n" + md_table(
        ["arm", "peak", "avg val loss (3 real)", "worst real", *[f"val {d}" for d in REAL], "val noise",
         "noise weight, final", "noise weight, mean over steps", "doremi averaged", "noise share of samples",
         "avg − uniform, paired (lower on)"], rows))
    summary["B"] = sumB

    # -- C --------------------------------------------------------------------------------
    rows, sumC = [], {}
    arms_c = [("phase1", "phase 1 (code + tests)")] + [(f"replay{r:g}", f"r = {r:g}") for r in REPLAY] + \
             [("scratch", f"scratch, {N1 + N2} steps")]
    for arm, label in arms_c:
        g = df[(df.experiment == "C") & (df.arm == arm) & (df.status == "complete")].sort_values("seed")
        if g.empty or "val_code" not in g:
            continue
        old = g[[f"val_{d}" for d in OLD]].mean(axis=1)
        new = g.val_prose if "val_prose" in g else pd.Series(dtype=float)
        depth = g[[f"gap_{d}_depth" for d in OLD]].astype(float) if f"gap_{OLD[0]}_depth" in g else None
        length = g[[f"gap_{d}_length" for d in OLD]] if f"gap_{OLD[0]}_length" in g else None
        dcell = " / ".join(pm(depth[f"gap_{d}_depth"], 3) for d in OLD) if depth is not None and \
            depth.notna().any().any() else "-"
        lcell = " / ".join(", ".join("never" if v is None or (isinstance(v, float) and np.isnan(v)) else
                                     f"{int(v)}" for v in length[f"gap_{d}_length"]) for d in OLD) \
            if length is not None and f"gap_{OLD[0]}_depth" in g and g[f"gap_{OLD[0]}_depth"].notna().any() else "-"
        pstep = " / ".join(pm(g[f"gap_{d}_peak_step"].astype(float), 0) for d in OLD) \
            if f"gap_{OLD[0]}_peak_step" in g and g[f"gap_{OLD[0]}_peak_step"].notna().any() else "-"
        rec = " / ".join(f"{int(g[f'gap_{d}_recovered'].fillna(False).astype(bool).sum())}/{len(g)}" for d in OLD) \
            if f"gap_{OLD[0]}_recovered" in g and g[f"gap_{OLD[0]}_recovered"].notna().any() else "-"
        sc = df[(df.experiment == "C") & (df.arm == "scratch") & (df.status == "complete")].set_index("seed")
        paired = "-"
        if arm.startswith("replay") and len(sc):
            gi = g.set_index("seed")
            do = (gi[[f"val_{d}" for d in OLD]].mean(axis=1) - sc[[f"val_{d}" for d in OLD]].mean(axis=1)).dropna()
            dn = (gi.val_prose - sc.val_prose).dropna()
            paired = f"{pm(do, 3)} / {pm(dn, 3)}"
        rows.append([label, pm(old), pm(new), *[pm(g[f"val_{d}"]) for d in OLD], paired, dcell, pstep, lcell, rec])
        sumC[arm] = {"old": old.tolist(), "new": new.tolist()}
    header = ["arm", "old (mean code, tests)", "new (prose)", "code", "tests", "old / new − scratch, paired by seed",
              "gap depth (code / tests)", "peak step (code / tests)",
              "gap length, steps, per seed (code / tests; never: not back within 1% by the end)",
              "recovered (code / tests)"]
    tables.append("C: continual pre-training, final val losses and stability gap (code / tests), 3 seeds\n\n"
                  + md_table(header, rows))
    summary["C"] = sumC
    summary["compute"] = {e: {"runs": int((df.experiment == e).sum()),
                              "train_minutes": float(df[df.experiment == e].train_seconds.fillna(0).sum() / 60)}
                          for e in ("A", "B", "C")}
    text = "\n\n".join(tables) + "\n"
    (out / "tables.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(text)
    print(json.dumps(summary["compute"]), f"total {summary['train_minutes']:.1f} train-minutes, {len(df)} runs")
    try:
        figures_all(out, df, best, best_b, figures)
    except Exception as exc:  # noqa: BLE001 - the tables are written; say what failed
        print(f"figures failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def figures_all(out: Path, df: pd.DataFrame, best: dict, best_b: dict, figures: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"code": "tab:blue", "prose": "tab:green", "tests": "tab:orange", "noise": "tab:gray"}

    def metrics(exp, arm, seed=0, peak=None):
        peak = (best_b if exp == "B" else best).get(arm) if peak is None else peak
        if peak is None:
            return None
        f = out / exp / arm / f"p{peak:g}-s{seed}" / "metrics.csv"
        return pd.read_csv(f) if f.exists() and status_of(f.parent) == "complete" else None

    # per-domain validation loss, per arm (A and B, seed 0)
    for exp, arms, doms in (("A", MIXERS_A, REAL), ("B", ARMS_B, REAL + ["noise"])):
        fig, axes = plt.subplots(1, len(doms), figsize=(4.2 * len(doms), 3.6), sharex=True)
        for ax, d in zip(axes, doms):
            for arm in arms:
                m = metrics(exp, arm)
                if m is None:
                    continue
                ev = m.dropna(subset=[f"val_loss/{d}"])
                ev = ev[ev.step >= 100]
                ax.plot(ev.step, ev[f"val_loss/{d}"], label=arm)
            ax.set_title(f"{exp}: val loss, {d} (seed 0)")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(figures / f"{exp.lower()}-val-domains.png", dpi=110)
        plt.close(fig)
    # stacked mixture per arm (seed 0)
    for exp, arms, doms in (("A", ["odm", "doremi", "aioli"], REAL), ("B", ARMS_B, REAL + ["noise"])):
        fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.4), sharey=True)
        for ax, arm in zip(axes, arms):
            m = metrics(exp, arm)
            if m is None:
                continue
            if f"mixture/{doms[0]}" in m:  # every text run logs its weights (uniform too)
                ys = [m[f"mixture/{d}"].to_numpy() for d in doms]
            else:
                ys = [np.full(len(m), 1 / len(doms)) for _ in doms]
            ax.stackplot(m.step, ys, labels=doms, colors=[colors[d] for d in doms], alpha=0.85)
            ax.set_title(f"{exp}: {arm} (seed 0, peak {(best_b if exp == 'B' else best)[arm]:g})")
            ax.set_xlabel("step")
            ax.set_ylim(0, 1)
        axes[0].set_ylabel("mixture weight")
        axes[-1].legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(figures / f"{exp.lower()}-mixture.png", dpi=110)
        plt.close(fig)
    # C: old / new loss against the replay fraction, scratch as a band; and the old domains after the switch
    c = df[(df.experiment == "C") & (df.status == "complete")]
    if not c.empty and "val_prose" in c:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        xs = np.arange(len(REPLAY))
        for ax, what, label in ((axes[0], OLD, "old: mean of code, tests"), (axes[1], NEW, "new: prose")):
            ys = [c[c.arm == f"replay{r:g}"][[f"val_{d}" for d in what]].mean(axis=1) for r in REPLAY]
            ax.errorbar(xs, [y.mean() for y in ys], yerr=[y.std(ddof=1) if len(y) > 1 else 0 for y in ys],
                        marker="o", capsize=3, label="phase 2 with replay r")
            s = c[c.arm == "scratch"][[f"val_{d}" for d in what]].mean(axis=1)
            if len(s):
                ax.axhspan(s.mean() - s.std(ddof=1), s.mean() + s.std(ddof=1), color="tab:red", alpha=0.15)
                ax.axhline(s.mean(), color="tab:red", label=f"scratch ({N1 + N2} steps)")
            if what == OLD:
                p1 = c[c.arm == "phase1"][[f"val_{d}" for d in OLD]].mean(axis=1)
                if len(p1):
                    ax.axhline(p1.mean(), color="tab:gray", ls="--", label="end of phase 1")
            ax.set_xticks(xs, [f"{r:g}" for r in REPLAY])
            ax.set_xlabel("replay fraction r")
            ax.set_title(f"C: final val loss, {label}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax = axes[2]
        base = None
        for r in REPLAY:
            folders = sorted((out / "C" / f"replay{r:g}").glob("p*-s0"))
            if not folders or status_of(folders[0]) != "complete":
                continue
            m = pd.read_csv(folders[0] / "metrics.csv")
            ev = m.dropna(subset=["val_loss/code"])
            ax.plot(ev.step, ev[[f"val_loss/{d}" for d in OLD]].mean(axis=1), label=f"r = {r:g}")
            gap = json.loads((folders[0] / "run.json").read_text()).get("stability_gap") or {}
            base = [gap.get(f"val_loss/{d}", {}).get("baseline") for d in OLD]
        if base and all(b is not None for b in base):
            ax.axhline(float(np.mean(base)), color="tab:gray", ls="--", label="end of phase 1")
        ax.set_title("C: old-domain val loss in phase 2 (seed 0)")
        ax.set_xlabel("step of phase 2")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figures / "c-replay.png", dpi=110)
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/findings-data"))
    ap.add_argument("--figures", type=Path, default=Path("docs/results/data"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--analyse-only", action="store_true")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny version of everything (checks the script, not the claims)")
    args = ap.parse_args()
    if args.smoke:
        global HORIZON, N1, N2, GRID, MAX_EXTEND, MAX_EXTEND_A, SEEDS
        HORIZON, N1, N2, GRID, MAX_EXTEND, MAX_EXTEND_A, SEEDS = 140, 30, 30, [2e-3], 0, 0, 2
    args.out.mkdir(parents=True, exist_ok=True)
    corpora = write_corpora(args.out)
    if not args.analyse_only:
        planner = Planner(args.out, corpora)
        print(f"natural mixture {corpora['natural']}; aioli rounds {planner.rounds}", flush=True)
        execute(planner, args.jobs)
    analyse(args.out, args.figures)


if __name__ == "__main__":
    main()
