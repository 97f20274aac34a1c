"""The closed loop (issue 10): batch-size warmup, noise-scale batch, plateau, refinement.

Four claims from the literature, measured on cadence's own CPU workloads (not a test):

1. Batch-size warmup (Merrill et al. 2025): a batch that ramps up (here 32 -> 256
   sequences, doubling, over the first 30% of the tokens) reaches the loss of a fixed
   small batch at equal tokens with far fewer optimizer steps (43% fewer for OLMo 1B).
   Arms: fixed 32, fixed 256, ramp, ramp with sqrt LR scaling (``scale_with``), and the
   ramp stopped at 128.
2. A batch driven by the measured gradient noise scale (``noise_batch``, McCandlish et
   al. 2018) against the same fixed batches; plus the measured B_simple trajectory.
3. ``plateau`` (torch's ReduceLROnPlateau rule) on top of warmup + cosine, against plain
   warmup + cosine and against torch-style ReduceLROnPlateau without warmup
   (``plateau(constant(peak))``); peak and patience swept.
4. Schedule refinement (Defazio et al. 2023): a linear-decay run per seed, refined from
   its logged gradient norms with ``refine_run`` (same warmup), and trained again with
   the refined schedule; against linear decay at its tuned peak.

Claims 1, 2 and 4 run on tiny-lm ``xs`` (byte-level LM, 3 seeds); 3 and 4 on digits (MLP,
5 seeds) and digits-cnn (3 seeds). Every arm gets the same kind of LR sweep: tiny-lm arms are
swept on seed 0 and the best peak is run on the other seeds; digits arms run every grid
point on every seed and are chosen on the mean. A best peak at the edge of its grid adds
the next peak past that edge (at most twice per side).

Every run is a cadence run folder under ``--out``; a folder whose run.json says
``complete`` (or ``diverged``) is not run again, so re-running the command resumes.
Runs are scheduled on ``--jobs`` worker processes (one torch thread each) as soon as
the runs they depend on (sweep results, the parent of a refined run) are known.

Outputs: ``--figures`` (default docs/results/closed-loop/) gets the figures and
``runs.csv`` (one row per run); ``--out``/summary.json the tables printed at the end.

Usage: .venv/bin/python benchmarks/findings_closed_loop.py --out out/findings-closed-loop [--jobs 2]
           [--only lm digits digits-cnn] [--no-lm-refine] [--analyse-only]

On a shared 2-core CPU the whole set (about 340 runs, 9 of 10 compute-minutes in tiny-lm)
took about 65 minutes of wall time with --jobs 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from _findings import write_summary, run_job, status_of  # noqa: E402 - benchmarks/ is this script's folder
import numpy as np
import pandas as pd

# -- the experiment -------------------------------------------------------------------------

LM_TOKENS = 64 * 256 * 128  # 2,097,152 tokens: 512 steps at batch 32, 64 at batch 256
LM_STEPS = LM_TOKENS // (32 * 128)
RAMP = "ramp(start=32, end=256, duration='30%', shape='doubling')"
# the same doubling ramp stopped at 128 (60% fewer optimizer steps than fixed 32 instead of 73%)
RAMP128 = "ramp(start=32, end=128, duration='30%', shape='doubling')"
NOISE = "noise_batch(start=32, max=1024)"

SETUPS = {
    # token clock, global batch by accumulation of 16-sequence micro-batches (so every run logs the noise scale)
    "lm-tok": dict(workload="tiny-lm", size="xs", horizon=LM_TOKENS, unit="token", micro_batch=16, checkpoint_every=100),
    # the same fixed batch of 32 on a step clock (the refined spec is piecewise in steps)
    "lm-step": dict(workload="tiny-lm", size="xs", horizon=LM_STEPS, unit="step", batch_size=32, micro_batch=16,
                    checkpoint_every=100),
    "digits": dict(workload="digits", size="small", horizon=600, unit="step", checkpoint_every=10**6),
    "digits-cnn": dict(workload="digits-cnn", size="small", horizon=600, unit="step", checkpoint_every=10**6),
}
GROUP = {"lm-tok": "lm", "lm-step": "lm", "digits": "digits", "digits-cnn": "digits-cnn"}
MAX_EXTEND = 2  # a best peak at the edge of its grid adds the next peak past that edge, at most twice per side
WARMUP = 0.05  # every schedule warms up over the first 5% of the run (except torch-style plateau)


def cos(p: float) -> str:
    return f"cosine(peak={p:g}, final=0.0, warmup='5%')"


def lin(p: float) -> str:
    return f"linear(peak={p:g}, final=0.0, warmup='5%')"


def sqrt_scaled(p: float) -> str:
    return f"scale_with({cos(p)}, reference=32)"


@dataclass
class Arm:
    name: str
    comparison: int
    setup: str
    peaks: list
    channels: object  # (peak, extra) -> channels dict; None for a refined arm
    eval_every: int
    seeds: int
    select: str = "seed0"  # "seed0": sweep on seed 0, best peak on the others; "mean": every point on every seed
    extras: list = field(default_factory=lambda: [{}])
    parent: str | None = None  # refined arms: the linear arm whose runs they refine
    inner: object = None  # plateau arms: (peak) -> the spec under the plateau (to count its LR drops)

    @property
    def group(self) -> str:
        return GROUP[self.setup]

    @property
    def label(self) -> str:
        return f"{self.group}/{self.name}"


def _arms(seeds_lm: int, seeds_digits: int, seeds_cnn: int, lm_refine: bool = True) -> list[Arm]:
    arms = [
        # 1. batch-size warmup (tiny-lm xs, token clock)
        Arm("fixed32", 1, "lm-tok", [2e-3, 4e-3, 8e-3], lambda p, x: {"lr": cos(p), "batch": 32}, 16, seeds_lm),
        Arm("fixed256", 1, "lm-tok", [4e-3, 8e-3, 1.6e-2], lambda p, x: {"lr": cos(p), "batch": 256}, 3, seeds_lm),
        Arm("ramp", 1, "lm-tok", [2e-3, 4e-3, 8e-3], lambda p, x: {"lr": cos(p), "batch": RAMP}, 6, seeds_lm),
        Arm("ramp-sqrt", 1, "lm-tok", [1e-3, 2e-3, 4e-3], lambda p, x: {"lr": sqrt_scaled(p), "batch": RAMP}, 6,
            seeds_lm),
        Arm("ramp128", 1, "lm-tok", [4e-3, 8e-3, 1.6e-2], lambda p, x: {"lr": cos(p), "batch": RAMP128}, 10,
            seeds_lm),
        # 2. noise-scale batch
        Arm("noise", 2, "lm-tok", [2e-3, 4e-3, 8e-3], lambda p, x: {"lr": cos(p), "batch": NOISE}, 16, seeds_lm),
    ]
    if lm_refine:  # 4. refinement on tiny-lm (fixed batch 32, step clock; --no-lm-refine leaves it out)
        arms += [Arm("linear", 4, "lm-step", [2e-3, 4e-3, 8e-3], lambda p, x: {"lr": lin(p)}, 32, seeds_lm),
                 Arm("refined", 4, "lm-step", [2e-3, 4e-3, 8e-3], None, 32, seeds_lm, parent="linear")]
    patience = [{"patience": 2}, {"patience": 5}, {"patience": 10}]
    for setup, peaks, seeds in (("digits", [3e-3, 1e-2, 3e-2, 1e-1], seeds_digits),
                                ("digits-cnn", [1e-3, 3e-3, 1e-2, 3e-2], seeds_cnn)):
        arms += [
            Arm("cosine", 3, setup, peaks, lambda p, x: {"lr": cos(p)}, 10, seeds, "mean"),
            Arm("plateau-cosine", 3, setup, peaks, lambda p, x: {"lr": f"plateau({cos(p)}, patience={x['patience']})"},
                10, seeds, "mean", patience, inner=cos),
            Arm("plateau-constant", 3, setup, peaks,
                lambda p, x: {"lr": f"plateau(constant({p:g}), patience={x['patience']})"}, 10, seeds, "mean", patience,
                inner=lambda p: f"constant({p:g})"),
            Arm("linear", 4, setup, peaks, lambda p, x: {"lr": lin(p)}, 10, seeds, "mean"),
            Arm("refined", 4, setup, peaks, None, 10, seeds, "mean", parent="linear"),
        ]
    return arms


# -- run folders ----------------------------------------------------------------------------

def key_of(arm: Arm, peak: float, extra: dict, seed: int) -> str:
    tail = "".join(f"-{k[:3]}{v}" for k, v in extra.items())
    return f"{arm.group}/{arm.name}/p{peak:g}{tail}-s{seed}"




def summarize(folder: Path) -> dict:
    manifest = json.loads((folder / "run.json").read_text())
    out = {"status": manifest["status"], "train_seconds": manifest.get("train_seconds", math.nan)}
    if manifest["status"] != "complete":
        return {**out, "final_val": math.inf, "final_train": math.nan, "min_val": math.inf, "steps": math.nan,
                "samples": math.nan, "tokens": math.nan}
    m = pd.read_csv(folder / "metrics.csv")
    ev = m.dropna(subset=["val_loss"])
    out.update(final_val=float(ev.val_loss.iloc[-1]), min_val=float(ev.val_loss.min()),
               final_train=float(m.train_loss.iloc[-10:].mean()), steps=len(m), samples=int(m.samples.iloc[-1]),
               tokens=int(m.tokens.iloc[-1]))
    return out


# -- which runs are wanted, given what is known -----------------------------------------------

class Planner:
    def __init__(self, arms: list[Arm], out: Path) -> None:
        self.arms, self.out = arms, out
        self.by_label = {a.label: a for a in arms}
        self.results: dict[str, dict] = {}  # key -> summary (finished runs)
        self.specs: dict[str, dict] = {}  # key -> the RunConfig fields it was run with
        self.meta: dict[str, dict] = {}  # key -> arm, peak, extra, seed

    def config(self, arm: Arm, peak: float, extra: dict, seed: int) -> dict | None:
        """The run's settings, or None while it waits for its parent (a refined run)."""
        setup = dict(SETUPS[arm.setup])
        if arm.parent is None:
            channels = arm.channels(peak, extra)
        else:
            from cadence.forecast.refine import refine_run

            parent = self.by_label[f"{arm.group}/{arm.parent}"]
            pkey = key_of(parent, peak, extra, seed)
            if pkey not in self.results or self.results[pkey]["status"] != "complete":
                return None
            steps = self.results[pkey]["steps"]
            channels = {"lr": refine_run(self.out / pkey, warmup=round(WARMUP * steps)).spec}
        return {**setup, "channels": channels, "seed": seed, "eval_every": arm.eval_every}

    def score(self, keys: list[str]) -> float:
        vals = [self.results[k]["final_val"] for k in keys]
        return float(np.mean(vals)) if all(np.isfinite(vals)) else math.inf

    def wanted(self) -> tuple[list[str], dict]:
        """(keys of runs still to do whose settings are known, selection per arm)."""
        todo, chosen = [], {}
        for arm in self.arms:
            keys, best = self._arm(arm)
            todo += keys
            if best is not None:
                chosen[arm.label] = best
        return list(dict.fromkeys(todo)), chosen

    def _need(self, arm: Arm, peak: float, extra: dict, seed: int) -> list[str]:
        key = key_of(arm, peak, extra, seed)
        self.meta[key] = {"arm": arm, "peak": peak, "extra": extra, "seed": seed}
        if key in self.results:
            return []
        if arm.parent is not None:
            parent = self.by_label[f"{arm.group}/{arm.parent}"]
            if self.results.get(key_of(parent, peak, extra, seed), {}).get("status") != "complete":
                return self._need(parent, peak, extra, seed)  # the parent first
        return [key]

    def _arm(self, arm: Arm):
        grid = sorted(arm.peaks)
        ratio = grid[1] / grid[0]
        grown = {"low": 0, "high": 0}  # extensions past each edge so far (at most MAX_EXTEND)
        select_seeds = [0] if arm.select == "seed0" else list(range(arm.seeds))
        while True:
            variants = [(p, x) for p in grid for x in arm.extras]
            missing = [k for p, x in variants for s in select_seeds for k in self._need(arm, p, x, s)]
            if missing:
                return missing, None
            scores = {(p, json.dumps(x)): self.score([key_of(arm, p, x, s) for s in select_seeds]) for p, x in variants}
            (p, xs), _ = min(scores.items(), key=lambda kv: kv[1])
            if p == grid[-1] and grown["high"] < MAX_EXTEND:
                grown["high"] += 1
                grid.append(p * ratio)
                continue
            if p == grid[0] and grown["low"] < MAX_EXTEND:
                grown["low"] += 1
                grid.insert(0, p / ratio)
                continue
            break
        x = json.loads(xs)
        rest = [k for s in range(arm.seeds) for k in self._need(arm, p, x, s)]
        best = {"peak": p, "extra": x, "grid": grid, "scores": scores,
                "keys": [key_of(arm, p, x, s) for s in range(arm.seeds)]}
        return rest, (best if not rest else None)


def execute(planner: Planner, jobs: int) -> None:
    out = planner.out
    running: dict = {}
    t0 = time.time()
    # order: the batch-size arms (the longest), the digits runs, tiny-lm refinement, digits-cnn
    rank = {"lm-tok": 0, "digits": 1, "lm-step": 2, "digits-cnn": 3}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        while True:
            todo, _ = planner.wanted()
            pending = []
            for key in todo:
                if key in running:
                    continue
                if status_of(out / key) in ("complete", "diverged"):
                    planner.results[key] = summarize(out / key)
                    continue
                pending.append(key)
            if any(k not in running and k in planner.results for k in todo):
                continue  # found finished runs on disk: plan again
            pending.sort(key=lambda k: rank[planner.meta[k]["arm"].setup])
            for key in pending[:max(0, jobs - len(running))]:
                m = planner.meta[key]
                cfg = planner.config(m["arm"], m["peak"], m["extra"], m["seed"])
                planner.specs[key] = cfg
                running[key] = pool.submit(run_job, cfg, str(out / key))
            if not running:
                break
            done, _ = wait(running.values(), return_when=FIRST_COMPLETED)
            for key in [k for k, f in running.items() if f in done]:
                status = running.pop(key).result()
                planner.results[key] = summarize(out / key)
                r = planner.results[key]
                print(f"[{time.time() - t0:7.0f}s] {key}: {status}, final val {r['final_val']:.4f}, "
                      f"{r['train_seconds']:.0f}s", flush=True)


# -- analysis ---------------------------------------------------------------------------------

def curve(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "metrics.csv")


def crossing(m: pd.DataFrame, target: float) -> tuple[float, float]:
    """(steps, tokens) at which the validation loss first reaches ``target``, linearly
    interpolated between evaluations (steps counted as completed steps); NaN if never."""
    ev = m.dropna(subset=["val_loss"])
    v, st, tk = ev.val_loss.to_numpy(), ev.step.to_numpy() + 1.0, ev.tokens.to_numpy(dtype=float)
    hit = np.nonzero(v <= target)[0]
    if not hit.size:
        return math.nan, math.nan
    i = hit[0]
    if i == 0:
        return st[0], tk[0]
    f = (v[i - 1] - target) / (v[i - 1] - v[i])
    return st[i - 1] + f * (st[i] - st[i - 1]), tk[i - 1] + f * (tk[i] - tk[i - 1])


def drops(m: pd.DataFrame, inner_spec: str) -> int:
    """LR reductions by the plateau: times lr / inner schedule falls (step clock)."""
    from cadence.schedules import parse

    inner = parse(inner_spec).values(len(m))
    ok = inner > 0
    ratio = np.where(ok, m.lr.to_numpy() / np.where(ok, inner, 1.0), np.nan)
    r = ratio[ok]
    return int(np.sum(r[1:] < r[:-1] * (1 - 1e-6)))


def b_simple(m: pd.DataFrame, beta: float = 0.95) -> np.ndarray:
    """The ratio of exponential averages EMA(trace) / EMA(|G|^2), as noise_batch computes it."""
    g = m.noise_g2.ewm(alpha=1 - beta, adjust=False).mean()
    t = m.noise_trace.ewm(alpha=1 - beta, adjust=False).mean()
    return np.where(g > 0, np.maximum(t, 0) / g.where(g > 0, 1.0), np.nan)


def ms(values, digits: int = 4) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not v.size:
        return "-"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if v.size > 1 else f"{v.mean():.{digits}f}"


def match(curves: list, loss: float) -> str:
    """When the fixed-32 runs (mean over seeds) first reach ``loss``: 'steps, M tokens'."""
    hits = [crossing(m, loss) for m in curves]
    st = [h[0] for h in hits if np.isfinite(h[0])]
    tk = [h[1] for h in hits if np.isfinite(h[1])]
    if not st:
        return "not reached"
    return f"{np.mean(st):.0f}, {np.mean(tk) / 1e6:.2f} ({len(st)}/{len(hits)})"


def paired(d: pd.DataFrame, base: pd.DataFrame) -> str:
    """final_val of ``d`` minus ``base``'s, seed by seed: 'mean ± std (wins/n)' (a win: lower loss)."""
    if set(d.key) == set(base.key):
        return "(baseline)"
    j = d[["seed", "final_val"]].merge(base[["seed", "final_val"]], on="seed", suffixes=("", "_base"))
    diff = (j.final_val - j.final_val_base).to_numpy()
    diff = diff[np.isfinite(diff)]
    if not diff.size:
        return "-"
    sd = f" ± {diff.std(ddof=1):.4f}" if diff.size > 1 else ""
    return f"{diff.mean():+.4f}{sd} ({int((diff < 0).sum())}/{diff.size})"


def steps_cell(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{int(v[0])}" if np.all(v == v[0]) else f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def analyse(planner: Planner, figures: Path) -> dict:
    out = planner.out
    _, chosen = planner.wanted()
    rows, tables = [], {}
    selected = {k for c in chosen.values() for k in c["keys"]}
    # the C1/C2 target: the tuned fixed-32 baseline's mean final validation loss
    base = chosen.get("lm/fixed32")
    target = float(np.mean([planner.results[k]["final_val"] for k in base["keys"]])) if base else math.nan
    for key, r in sorted(planner.results.items()):
        meta = planner.meta.get(key)
        if meta is None:
            continue
        arm = meta["arm"]
        row = {"key": key, "comparison": arm.comparison, "workload": SETUPS[arm.setup]["workload"],
               "size": SETUPS[arm.setup]["size"], "arm": arm.name, "peak": meta["peak"],
               "patience": meta["extra"].get("patience", ""), "seed": meta["seed"], "selected": key in selected,
               **{k: r[k] for k in ("status", "final_val", "min_val", "final_train", "steps", "samples", "tokens",
                                    "train_seconds")}}
        if r["status"] == "complete":
            m = curve(out / key)
            if arm.comparison in (1, 2):
                row["steps_to_target"], row["tokens_to_target"] = crossing(m, target)
            if arm.inner is not None:
                row["lr_drops"] = drops(m, arm.inner(meta["peak"]))
            if "batch" in m:
                row["final_batch"] = int(m.batch.iloc[-1])
        row["lr_spec"] = json.loads((out / key / "run.json").read_text())["config"]["channels"]["lr"]
        rows.append(row)
    df = pd.DataFrame(rows)
    figures.mkdir(parents=True, exist_ok=True)
    df.to_csv(figures / "runs.csv", index=False, float_format="%.6g")

    def sel(label):
        c = chosen.get(label)
        return df[df.key.isin(c["keys"])] if c else df.iloc[:0]

    # tables
    def sweep_table(labels):
        """Rows: arm (and patience); columns: peak LR; cells: the selection score (seed 0 or the mean)."""
        peaks = sorted({p for label in labels if label in chosen for p, _ in chosen[label]["scores"]})
        lines = ["| arm | " + " | ".join(f"{p:g}" for p in peaks) + " |", "|---|" + "---|" * len(peaks)]
        for label in labels:
            c = chosen.get(label)
            if not c:
                continue
            for xs in sorted({x for _, x in c["scores"]}, key=lambda x: json.loads(x).get("patience", 0)):
                x = json.loads(xs)
                cells = []
                for p in peaks:
                    v = c["scores"].get((p, xs))
                    cell = "" if v is None else (f"{v:.4f}" if np.isfinite(v) else "diverged")
                    cells.append(f"**{cell}**" if (p, x) == (c["peak"], c["extra"]) else cell)
                name = label.split("/", 1)[1] + (f", patience {x['patience']}" if x else "")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    t1 = ["| arm | peak LR | final val loss | final train loss | optimizer steps | tokens | steps to target | "
          "tokens to target (M) | reached | fixed 32 reaches this arm's final loss after: steps, M tokens | "
          "final val - fixed 32's, paired by seed (lower on k/n seeds) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    base_curves = [curve(out / k) for k in base["keys"]] if base else []
    for label in ("lm/fixed32", "lm/fixed256", "lm/ramp", "lm/ramp-sqrt", "lm/ramp128", "lm/noise"):
        d = sel(label)
        if d.empty:
            continue
        reached = int(np.isfinite(d.steps_to_target).sum())
        t1.append(f"| {label[3:]} | {chosen[label]['peak']:g} | {ms(d.final_val)} | {ms(d.final_train)} | "
                  f"{steps_cell(d.steps)} | {int(d.tokens.iloc[0]):,} | "
                  f"{ms(d.steps_to_target, 0)} | {ms(d.tokens_to_target / 1e6, 2)} | {reached}/{len(d)} | "
                  f"{match(base_curves, d.final_val.mean())} | {paired(d, sel('lm/fixed32'))} |")
    tables["batch"] = "\n".join(t1)
    tables["batch_sweep"] = sweep_table(["lm/fixed32", "lm/fixed256", "lm/ramp", "lm/ramp-sqrt", "lm/ramp128",
                                         "lm/noise"])
    tables["target"] = target

    for group in ("digits", "digits-cnn"):
        t3 = ["| arm | peak LR | patience | final val loss | min val loss | LR drops per run | "
              "final val - cosine's, paired by seed (lower on k/n seeds) |", "|---|---|---|---|---|---|---|"]
        for name in ("cosine", "plateau-cosine", "plateau-constant"):
            d = sel(f"{group}/{name}")
            if d.empty:
                continue
            c = chosen[f"{group}/{name}"]
            dr = "-" if "lr_drops" not in d or d.lr_drops.isna().all() else ", ".join(str(int(x)) for x in d.lr_drops)
            t3.append(f"| {name} | {c['peak']:g} | {c['extra'].get('patience', '-')} | {ms(d.final_val)} | "
                      f"{ms(d.min_val)} | {dr} | {paired(d, sel(f'{group}/cosine'))} |")
        tables[f"plateau_{group}"] = "\n".join(t3)
        tables[f"plateau_{group}_sweep"] = sweep_table([f"{group}/{n}" for n in ("cosine", "plateau-cosine",
                                                                                "plateau-constant")])
        # drops over every plateau run (not only the selected ones)
        pl = df[(df.key.str.startswith(group + "/plateau")) & df.lr_drops.notna()] if "lr_drops" in df else df.iloc[:0]
        if not pl.empty:
            g = pl.groupby(["arm", "patience"]).lr_drops.agg(["mean", "min", "max", "count"]).reset_index()
            tables[f"plateau_{group}_drops"] = "| arm | patience | LR drops: mean (min-max) over every peak and seed |\n" \
                "|---|---|---|\n" + "\n".join(f"| {r.arm} | {r.patience} | {r['mean']:.1f} ({r['min']:.0f}-{r['max']:.0f}), "
                                              f"{r['count']} runs |" for _, r in g.iterrows())
    for group in ("lm", "digits", "digits-cnn"):
        t4 = ["| arm | peak LR | final val loss | per seed (seed 0, 1, ...) | final val - linear's, paired by seed "
              "(lower on k/n seeds) |", "|---|---|---|---|---|"]
        for name in ("linear", "refined"):
            d = sel(f"{group}/{name}")
            if d.empty:
                continue
            t4.append(f"| {name} | {chosen[f'{group}/{name}']['peak']:g} | {ms(d.final_val)} | "
                      + ", ".join(f"{v:.4f}" for v in d.sort_values("seed").final_val)
                      + f" | {paired(d, sel(f'{group}/linear'))} |")
        # refined against its own parent, seed by seed, at every peak
        pairs = []
        for _, r in df[(df.key.str.startswith(group + "/refined/"))].iterrows():
            pk = r.key.replace("/refined/", "/linear/")
            lin_row = df[df.key == pk]
            if not lin_row.empty:
                pairs.append((r.peak, r.seed, float(lin_row.final_val.iloc[0]), r.final_val))
        if pairs:
            pairs_df = pd.DataFrame(pairs, columns=["peak", "seed", "linear", "refined"])
            pairs_df["diff"] = pairs_df.refined - pairs_df.linear
            g = pairs_df.groupby("peak").agg(linear=("linear", "mean"), refined=("refined", "mean"),
                                             diff=("diff", "mean"), sd=("diff", "std"), n=("diff", "count"),
                                             wins=("diff", lambda s: int((s < 0).sum())))
            g[["n", "wins"]] = g[["n", "wins"]].astype(int)
            t4.append("")
            t4.append("| peak LR | linear | refined from it | refined - linear (mean ± std over seeds) | refined better |")
            t4.append("|---|---|---|---|---|")
            for p, r in g.iterrows():
                sd = f" ± {r.sd:.4f}" if r.n > 1 else ""
                t4.append(f"| {p:g} | {r.linear:.4f} | {r.refined:.4f} | {r['diff']:+.4f}{sd} | {int(r.wins)}/{int(r.n)} |")
        tables[f"refine_{group}"] = "\n".join(t4)

    _figures(planner, chosen, df, figures, target)
    return tables


def _figures(planner: Planner, chosen: dict, df: pd.DataFrame, figures: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = planner.out
    colors = {"fixed32": "C0", "fixed256": "C1", "ramp": "C2", "ramp-sqrt": "C3", "noise": "C6", "ramp128": "C5"}

    def curves(label):
        c = chosen.get(label)
        return [] if not c else [curve(out / k) for k in c["keys"] if planner.results[k]["status"] == "complete"]

    for fig_name, names in (("batch-ramp", ["fixed32", "fixed256", "ramp", "ramp-sqrt", "ramp128"]),
                            ("noise-batch", ["fixed32", "fixed256", "noise"])):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name in names:
            for i, m in enumerate(curves(f"lm/{name}")):
                ev = m.dropna(subset=["val_loss"])
                kw = dict(color=colors[name], alpha=0.8, lw=1, label=f"{name} (peak {chosen['lm/' + name]['peak']:g})"
                          if i == 0 else None)
                axes[0].plot(ev.tokens / 1e6, ev.val_loss, **kw)
                axes[1].plot(ev.step + 1, ev.val_loss, **kw)
        for ax, xl in zip(axes, ("tokens (M)", "optimizer steps")):
            ax.axhline(target, color="k", ls=":", lw=0.8)
            ax.set_ylim(top=min(3.0, ax.get_ylim()[1]), bottom=max(ax.get_ylim()[0], target - 0.25))
            ax.set_xlabel(xl)
            ax.set_ylabel("validation loss")
            ax.grid(alpha=0.3)
        axes[1].set_xscale("log")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"tiny-lm xs, {LM_TOKENS / 1e6:.2f}M tokens, each arm at its tuned peak, every seed "
                     f"(dotted: fixed-32 mean final loss)", fontsize=9)
        fig.tight_layout()
        fig.savefig(figures / f"{fig_name}.png", dpi=110)
        plt.close(fig)

    # the measured noise scale and the batch it drove
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("noise", "fixed32"):
        for i, m in enumerate(curves(f"lm/{name}")):
            axes[0].plot(m.tokens / 1e6, b_simple(m), color=colors[name], lw=0.8, alpha=0.8,
                         label=f"B_simple measured in the {name} runs" if i == 0 else None)
            if name != "fixed32":
                axes[1].plot(m.tokens / 1e6, m.batch, color=colors[name], lw=1, alpha=0.8,
                             label=f"{name}" if i == 0 else None)
    for name in ("ramp", "ramp128"):
        got = curves(f"lm/{name}")
        if got:
            axes[0].plot(got[0].tokens / 1e6, got[0].batch, color=colors[name], ls="--", lw=1.2,
                         label=f"batch of {name}")
            axes[1].plot(got[0].tokens / 1e6, got[0].batch, color=colors[name], ls="--", lw=1.2, label=name)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("B_simple = EMA(tr Σ) / EMA(|G|²)  [sequences]")
    axes[1].set_ylabel("global batch [sequences]")
    for ax in axes:
        ax.set_xlabel("tokens (M)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Measured gradient noise scale (EMA β=0.95 of the per-step estimates from two 16-sequence "
                 "micro-batches or more) and the batch noise_batch chose", fontsize=9)
    fig.tight_layout()
    fig.savefig(figures / "noise-scale.png", dpi=110)
    plt.close(fig)

    # plateau: LR and validation loss, seed 0, each arm at its tuned setting
    for group in ("digits", "digits-cnn"):
        if f"{group}/cosine" not in chosen:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for j, name in enumerate(("cosine", "plateau-cosine", "plateau-constant")):
            c = chosen.get(f"{group}/{name}")
            if not c:
                continue
            m = curve(out / c["keys"][0])
            ev = m.dropna(subset=["val_loss"])
            tag = f"{name} (peak {c['peak']:g}" + (f", patience {c['extra']['patience']})" if c["extra"] else ")")
            axes[0].plot(m.step, m.lr, color=f"C{j}", label=tag)
            axes[1].plot(ev.step + 1, ev.val_loss, color=f"C{j}", label=tag)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("LR")
        axes[1].set_ylabel("validation loss")
        axes[1].set_ylim(top=0.6)
        _finish(fig, axes, "step", f"{group}: plateau vs cosine, seed 0", figures / f"plateau-{group}.png")

    # refinement: the refined schedule and its source's gradient norms, seed 0
    for group in ("lm", "digits", "digits-cnn"):
        c = chosen.get(f"{group}/refined")
        if not c:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        rk = c["keys"][0]
        lk = rk.replace("/refined/", "/linear/")
        cl = chosen.get(f"{group}/linear")
        mr, ml = curve(out / rk), curve(out / lk)
        axes[0].plot(ml.step, ml.grad_norm, color="0.6", lw=0.5, label="logged l2 grad norm (linear run)")
        axes[0].set_ylabel("gradient norm (l2, before clipping)")
        axes[1].plot(ml.step, ml.lr, label=f"linear, peak {c['peak']:g}")
        axes[1].plot(mr.step, mr.lr, label="refined from it")
        if cl and cl["keys"][0] != lk:
            mt = curve(out / cl["keys"][0])
            axes[1].plot(mt.step, mt.lr, ls="--", label=f"linear at its tuned peak {cl['peak']:g}")
        axes[1].set_ylabel("LR")
        for m, lab in ((ml, "linear"), (mr, "refined")):
            ev = m.dropna(subset=["val_loss"])
            axes[2].plot(ev.step + 1, ev.val_loss, label=lab)
        axes[2].set_ylabel("validation loss")
        axes[2].set_ylim(top=float(np.nanquantile(mr.val_loss, 0.5)) * 1.5)
        _finish(fig, axes, "step", f"{group}: schedule refinement (Defazio et al. 2023) from a linear-decay run, seed 0", figures / f"refine-{group}.png")



def _finish(fig, axes, xlabel: str, title: str, path) -> None:
    """The figures' common ending: x label, grid and legend on every panel, a small title, saved and closed."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/findings-closed-loop")
    ap.add_argument("--figures", default="docs/results/closed-loop")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=["lm", "digits", "digits-cnn"], default=None)
    ap.add_argument("--seeds", type=int, default=3, help="tiny-lm seeds")
    ap.add_argument("--digits-seeds", type=int, default=5)
    ap.add_argument("--cnn-seeds", type=int, default=3)
    ap.add_argument("--no-lm-refine", dest="lm_refine", action="store_false",
                    help="claim 4 on digits and digits-cnn only (saves 8-10 tiny-lm runs)")
    ap.add_argument("--analyse-only", action="store_true", help="tables and figures from the runs on disk")
    args = ap.parse_args()
    arms = _arms(args.seeds, args.digits_seeds, args.cnn_seeds, args.lm_refine)
    if args.only:
        arms = [a for a in arms if a.group in args.only]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    planner = Planner(arms, out)
    t0 = time.time()
    if args.analyse_only:
        while True:  # load what is on disk, as far as the plan goes
            todo, _ = planner.wanted()
            found = [k for k in todo if status_of(out / k) in ("complete", "diverged")]
            if not found:
                break
            for k in found:
                planner.results[k] = summarize(out / k)
    else:
        execute(planner, args.jobs)
    write_summary(out, planner.results, analyse(planner, Path(args.figures)), t0)


if __name__ == "__main__":
    main()
