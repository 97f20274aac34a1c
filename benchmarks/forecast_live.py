"""Validate `cadence forecast live` on real WSD cooldowns (docs/forecast.md, "Live").

1. Pilot: a constant and a cosine run on tiny-lm xs (the README's pilot recipe, seed 0); fit
   the multipower and the annealing laws to them. (digits and logreg were tried first: their
   validation losses overfit or scatter too much for either law to fit within 1%.)
2. Stable runs: constant LR after warmup for S steps, seeds 1 and 2: the first S steps of the
   cooldown runs below (same seed, same LR until S), so they are cut from them, not retrained.
3. Real cooldowns from step S with `decay_from` (1-sqrt to 0) of several lengths, same seeds:
   `decay_from(constant(...), at=S, duration=D)` trained for S + D steps.
4. `cadence forecast live <stable run> --law ... --cooldown D --json` against the real final
   validation loss; prints a markdown table.

    python benchmarks/forecast_live.py [--out runs/forecast-live] [--jobs 2]

About 14 CPU-minutes on a 2-core machine (3,400 tiny-lm xs steps); `--device cuda` on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

WORKLOAD, SIZE, PEAK, WARMUP, PILOT_STEPS, S, EVAL = "tiny-lm", "xs", 2e-3, 50, 600, 400, 20
COOLDOWNS = (100, 200)
DEVICE = "cpu"
SEEDS = (1, 2)
SHAPE = "1-sqrt"
STABLE = f"constant(value={PEAK}, warmup={WARMUP})"


def train(out: Path, spec: str, steps: int, seed: int) -> Path:
    if (out / "run.json").exists() and json.loads((out / "run.json").read_text()).get("status") == "complete":
        return out
    cmd = [sys.executable, "-m", "cadence", "run", WORKLOAD, "--lr", spec, "--steps", str(steps), "--seed", str(seed),
           "--eval-every", str(EVAL), "--size", SIZE, "--device", DEVICE, "--no-progress", "--out", str(out), "--overwrite"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def final_val(run: Path) -> float:
    import pandas as pd

    frame = pd.read_csv(run / "metrics.csv")
    val = frame["val_loss"].dropna()
    return float(val.iloc[-1])


def cli(*argv) -> str:
    from cadence.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(argv))
    if rc != 0:
        raise SystemExit(f"cadence {' '.join(argv)} exited {rc}")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/forecast-live")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = [(root / "pilot-constant", STABLE, PILOT_STEPS, 0),
            (root / "pilot-cosine", f"cosine(peak={PEAK}, warmup={WARMUP})", PILOT_STEPS, 0)]
    for seed in SEEDS:
        for d in COOLDOWNS:
            spec = f"decay_from({STABLE}, at={S}, duration={d}, shape='{SHAPE}')"
            jobs.append((root / f"cool{d}-s{seed}", spec, S + d, seed))
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: train(*j), jobs))
    t_train = time.time() - t0
    for seed in SEEDS:  # the stable run: the first S steps of a cooldown run (the same LR and data until S)
        stable = root / f"stable-s{seed}"
        stable.mkdir(exist_ok=True)
        lines = (root / f"cool{COOLDOWNS[0]}-s{seed}" / "metrics.csv").read_text().splitlines()
        (stable / "metrics.csv").write_text("\n".join([lines[0]] + [r for r in lines[1:] if int(r.split(",")[0]) < S]) + "\n")
        (stable / "run.json").write_text((root / f"cool{COOLDOWNS[0]}-s{seed}" / "run.json").read_text())
    laws = {}
    for name in ("multipower", "annealing"):
        path = root / f"law-{name}.json"
        # from step 200, as the README's first forecast: earlier, these short runs are in a phase no law describes
        print(cli("forecast", "fit", str(root / "pilot-constant"), str(root / "pilot-cosine"), "--law", name, "--from", "200",
                  "-o", str(path), "--overwrite"), file=sys.stderr)
        laws[name] = path
    rows = []
    for seed in SEEDS:
        for d in COOLDOWNS:
            real = final_val(root / f"cool{d}-s{seed}")
            one = json.loads(cli("forecast", "live", str(root / f"stable-s{seed}"), "--law", str(laws["multipower"]),
                                 "--cooldown", str(d), "--shape", SHAPE, "--json"))["now"]
            ann = json.loads(cli("forecast", "live", str(root / f"stable-s{seed}"), "--law", str(laws["annealing"]),
                                 "--cooldown", str(d), "--shape", SHAPE, "--json"))["now"]
            both = json.loads(cli("forecast", "live", str(root / f"stable-s{seed}"), "--law", str(laws["multipower"]),
                                  "--law", str(laws["annealing"]), "--cooldown", str(d), "--shape", SHAPE, "--json"))["now"]
            rows.append((seed, d, real, one, ann, both))
    print(f"\n{WORKLOAD}, pilot: constant + cosine, {PILOT_STEPS} steps, peak {PEAK}, warmup {WARMUP}, seed 0; stable runs "
          f"to step {S}, seeds {', '.join(map(str, SEEDS))}; cooldowns {SHAPE} to 0 from step {S}; "
          f"final validation loss (training {t_train:.0f} s wall, {args.jobs} jobs)\n")
    print("| seed | cooldown (steps) | real final loss | multipower: predicted (error) | interval | contains? "
          "| annealing: predicted (error) | two-law interval | contains? |")
    print("|---|---|---|---|---|---|---|---|---|")
    errs = {"multipower": [], "annealing": []}
    hits = {"one": 0, "both": 0}
    for seed, d, real, one, ann, both in rows:
        e1, e2 = one["loss"] / real - 1, ann["loss"] / real - 1
        errs["multipower"].append(e1)
        errs["annealing"].append(e2)
        c1 = one["low"] <= real <= one["high"]
        c2 = both["low"] <= real <= both["high"]
        hits["one"] += c1
        hits["both"] += c2
        print(f"| {seed} | {d} | {real:.4f} | {one['loss']:.4f} ({100 * e1:+.1f}%) | {one['low']:.4f} .. {one['high']:.4f} "
              f"| {'yes' if c1 else 'no'} | {ann['loss']:.4f} ({100 * e2:+.1f}%) | {both['low']:.4f} .. {both['high']:.4f} "
              f"| {'yes' if c2 else 'no'} |")
    n = len(rows)
    for name, e in errs.items():
        e = np.abs(e)
        print(f"\n{name}: mean |error| {100 * e.mean():.2f}%, worst {100 * e.max():.2f}%", end="")
    print(f"\nintervals containing the real loss: multipower alone {hits['one']}/{n}, two laws {hits['both']}/{n}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
