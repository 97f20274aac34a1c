"""Kill the runner many times; every killed run must resume to the same metrics.csv bytes (not a test).

Usage: python benchmarks/kill_runner.py [--random 30] [--chains 5] [--workload digits] [--steps 60]
       python benchmarks/kill_runner.py --closed-loop [--horizon 12000] [--checkpoint-every 5] ...
       python benchmarks/kill_runner.py --data-channels [--steps 120] ...

Each scenario starts from nothing or from a run killed mid-way, kills a child process
(SIGKILL, or SIGTERM/SIGINT through the real command line) once or several times, resumes
until the run is complete and compares metrics.csv with an uninterrupted run's bytes:

* exact points: every point of the CADENCE_KILL_AT test hook (cadence._atomic), in a new run
  and in a resume: each CSV's cut back, each rename (run.json, checkpoint.pt), each
  temporary file written and torn, rows;
* random instants: one SIGKILL at a uniform random delay after the child wrote run.json (the
  kill lands in training, checkpointing or resuming, not in imports), half in new runs and
  half in resumes of a run killed at a random row;
* chains: several random kills in a row, each resume killed again;
* signals: SIGTERM or SIGINT to ``cadence run`` at a random instant: exit 130, status
  ``interrupted``, resumed to the same bytes.

``--closed-loop`` runs the same scenarios on a run whose controllers act: a ``plateau`` on
val_loss over warmup+cosine (patience 1, factor 0.5) with a linear batch ramp 32 -> 128 over
the first 40% of a sample clock (``--horizon`` samples), micro-batches of 32, validation every
3 steps. The signals go through ``cadence run WORKLOAD --plan plan.yaml``. The uninterrupted
run is checked to have reduced the LR and changed the batch, and its step count takes the
place of ``--steps``.

``--data-channels`` runs them on the text workload (its default corpus: code, tests, prose)
with every data channel acting: an ``aioli`` mixer (held-out probes every 2 steps), a ``sec``
bandit curriculum over difficulty buckets (files by length) and ``reweight`` per-sample
weights after a burn-in; the uninterrupted run is checked to have moved its mixture and
curriculum. The signals go through ``cadence run text --plan plan.yaml``.

Victims are forked from a forkserver with torch already imported. Prints one line per
scenario and a summary (kills, points, byte-identical).
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from cadence.bench.runner import TEMP_FILES, RunConfig, train

CTX = multiprocessing.get_context("forkserver")
SIGKILLED = -signal.SIGKILL


CLOSED_LOOP = {"lr": "plateau(warmup(cosine(peak=0.05), '10%'), patience=1, factor=0.5)",
               "batch": "ramp(32, 128, '40%', shape='linear')"}


DATA_CHANNELS = {"lr": "cosine(peak=3e-3, warmup=6)", "mixture": "aioli(rounds=4, sweeps=1, probe_every=2, eta=2.0)",
                 "curriculum": "sec()", "sample_weights": "reweight(burn_in='10%')"}


def _settings(args) -> dict:
    if args.data_channels:
        return dict(workload="text", channels=dict(DATA_CHANNELS), horizon=args.steps, batch_size=16, eval_every=10,
                    checkpoint_every=args.checkpoint_every, size="xs", difficulty="length")
    if args.closed_loop:
        return dict(workload=args.workload, channels=dict(CLOSED_LOOP), unit="sample", horizon=args.horizon,
                    micro_batch=32, eval_every=3, checkpoint_every=args.checkpoint_every,
                    size="xs" if args.workload == "tiny-lm" else None)
    return dict(workload=args.workload, channels={"lr": "cosine(peak=3e-3, warmup=5)"}, horizon=args.steps,
                eval_every=max(1, args.steps // 6), checkpoint_every=args.checkpoint_every,
                size="xs" if args.workload == "tiny-lm" else None)


def _victim(settings: dict, out: str, kill_at: str, resume: bool) -> None:
    os.environ["CADENCE_KILL_AT"] = kill_at
    train(RunConfig(**settings), out, resume=resume, threads=1)
    os._exit(0)


def _cli(argv: list[str]) -> None:
    from cadence.cli import main

    sys.stdout = sys.stderr = open(os.devnull, "w")
    sys.exit(main(argv))


def _child(target, *args) -> int:
    proc = CTX.Process(target=target, args=args)
    proc.start()
    proc.join(600)
    if proc.is_alive():
        proc.kill()
        raise SystemExit(f"{target.__name__}{args[1:]} hung")
    return proc.exitcode


def _random_kill(target, args, out: Path, delay_max: float, rng: random.Random, sig=signal.SIGKILL) -> int:
    """Start a child, wait until it has (re)written run.json, kill it after a random delay; its exit code.

    ``delay_max`` 0 measures instead: returns the seconds from run.json to the child's end.
    """
    try:
        before = os.stat(out / "run.json").st_ino
    except FileNotFoundError:
        before = None
    proc = CTX.Process(target=target, args=args)
    proc.start()
    deadline = time.time() + 120
    while proc.is_alive() and time.time() < deadline:
        try:
            if os.stat(out / "run.json").st_ino != before:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    if not delay_max:
        t0 = time.perf_counter()
        proc.join(600)
        return time.perf_counter() - t0
    time.sleep(rng.uniform(0.0, delay_max))
    if proc.is_alive():
        os.kill(proc.pid, sig)
    proc.join(600)
    return proc.exitcode


class Tally:
    def __init__(self, reference: bytes, settings: dict) -> None:
        self.reference, self.settings = reference, settings
        self.kills = collections.Counter()
        self.scenarios = self.identical = 0
        self.failures: list[str] = []

    def finish(self, name: str, out: Path, kills: list[str]) -> None:
        """Resume to the end (a killed-before-run.json folder starts again) and compare bytes."""
        for k in kills:
            self.kills[k] += 1
        try:
            resume = (out / "run.json").exists()
            manifest = train(RunConfig(**self.settings), out, resume=resume, threads=1)
            same = (out / "metrics.csv").read_bytes() == self.reference
            leftovers = [n for n in TEMP_FILES if os.path.lexists(out / n)]
            ok = same and manifest["status"] == "complete" and manifest["bit_exact"] and not leftovers
            detail = "" if ok else f" (bytes {'same' if same else 'DIFFER'}, status {manifest['status']}, " \
                                   f"bit_exact {manifest['bit_exact']}, leftovers {leftovers})"
        except Exception as e:  # noqa: BLE001 - a failure to resume is what this counts
            ok, detail = False, f" (resume failed: {type(e).__name__}: {e})"
        self.scenarios += 1
        self.identical += ok
        if not ok:
            self.failures.append(name + detail)
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {len(kills)} kill(s){detail}", flush=True)


NEW_POINTS = ["write:run.json:1", "rename:run.json:1", "renamed:run.json:1", "row:1", "row:{mid}", "write:checkpoint.pt:1",
              "rename:checkpoint.pt:1", "renamed:checkpoint.pt:1", "write:checkpoint.pt:2", "rename:checkpoint.pt:2",
              "write:run.json:2", "rename:run.json:2", "renamed:run.json:2"]
RESUME_POINTS = ["write:run.json:1", "rename:run.json:1", "renamed:run.json:1", "truncate:metrics.csv:1",
                 "truncated:metrics.csv:1", "truncate:timing.csv:1", "truncated:timing.csv:1", "row:1", "row:2",
                 "write:checkpoint.pt:1", "rename:checkpoint.pt:1", "renamed:checkpoint.pt:1", "write:run.json:2",
                 "rename:run.json:2", "renamed:run.json:2"]


def _closed_loop_acts(run: Path, settings: dict, steps: int) -> str:
    """Check that the uninterrupted closed-loop run reduced its LR and changed its batch; says how often."""
    import torch

    state = torch.load(run / "checkpoint.pt", weights_only=True)["plan"]["states"]["lr"]["rule"]
    lines = (run / "metrics.csv").read_text().splitlines()
    at = lines[0].split(",").index("batch")
    batches = sorted({int(line.split(",")[at]) for line in lines[1:]})
    if not state["reductions"] or len(batches) < 2:
        raise SystemExit(f"the closed loop did not act: LR reductions {state['reductions']}, batches {batches}")
    return (f"closed loop on a sample clock: {settings['horizon']} samples = {steps} steps, "
            f"{len(state['reductions'])} LR reductions, batches {batches}")


def _data_channels_act(run: Path) -> str:
    """Check that the uninterrupted run moved its mixture and its curriculum; says how far."""
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    moved = {}
    for name in [h for h in header if h.startswith(("mixture/", "curriculum/"))]:
        at = header.index(name)
        values = [float(line.split(",")[at]) for line in lines[1:]]
        moved[name] = (min(values), max(values))
    if any(lo == hi for lo, hi in moved.values()):
        raise SystemExit(f"the data channels did not act: {moved}")
    return "data channels acting: " + ", ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in moved.items())


def _plan_file(path: Path, settings: dict) -> Path:
    """The closed-loop settings as a plan file for `cadence run WORKLOAD --plan` (written once)."""
    if not path.exists():
        keys = ("unit", "horizon", "micro_batch", "batch_size", "eval_every", "checkpoint_every", "size", "difficulty")
        lines = [f"{k}: {settings[k]}" for k in keys if settings.get(k) is not None]
        lines += ["channels:"] + [f"  {name}: {json.dumps(spec)}" for name, spec in settings["channels"].items()]
        path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="digits")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--checkpoint-every", type=int, default=7)
    ap.add_argument("--random", type=int, default=30, help="scenarios with one SIGKILL at a random instant")
    ap.add_argument("--chains", type=int, default=5, help="scenarios with 4 random kills in a row")
    ap.add_argument("--signals", type=int, default=6, help="SIGTERM/SIGINT to `cadence run` at random instants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--closed-loop", action="store_true",
                    help="a plateau on val_loss with a batch ramp on a sample clock (see above) instead of a cosine")
    ap.add_argument("--horizon", type=int, default=12000, help="--closed-loop: the horizon in samples")
    ap.add_argument("--data-channels", action="store_true",
                    help="the text workload with a mixer, a bandit curriculum and sample weights acting (see above)")
    args = ap.parse_args()
    # torch._dynamo: the optimizers import it on first use, 3 s a child if the forkserver has not
    CTX.set_forkserver_preload(["cadence.bench.runner", "cadence.cli", "sklearn.datasets", "torch._dynamo"])
    settings = _settings(args)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="cadence-kill-"))
    try:
        train(RunConfig(**settings), root / "reference", threads=1)
        timed = root / "timed"  # how long a child takes from writing run.json to its end: the span kills are drawn in
        duration = min(_random_kill(_victim, (settings, str(timed), "none:0", False), timed, 0, rng) for _ in range(2)
                       if not shutil.rmtree(timed, ignore_errors=True))
        tally = Tally((root / "reference" / "metrics.csv").read_bytes(), settings)
        steps = tally.reference.count(b"\n") - 1  # rows: optimizer steps (a sample clock's count comes from the run)
        what = f"{steps} steps"
        if args.closed_loop:
            what = _closed_loop_acts(root / "reference", settings, steps)
        if args.data_channels:
            what = _data_channels_act(root / "reference")
        print(f"{settings['workload']}, {what}, checkpoint every {args.checkpoint_every}; a child runs "
              f"{duration:.2f}s after writing run.json", flush=True)
        mid = steps // 2
        base = root / "base"  # killed mid-run: the start of every resume scenario
        assert _child(_victim, settings, str(base), f"row:{mid + 3}", False) == SIGKILLED
        n = 0

        print("exact points, new run:", flush=True)
        for point in NEW_POINTS:
            point = point.format(mid=mid)
            out = root / f"s{(n := n + 1)}"
            code = _child(_victim, settings, str(out), point, False)
            if code != SIGKILLED:
                raise SystemExit(f"{point} was never reached (exit {code})")
            tally.finish(f"new run killed at {point}", out, [f"new {point}"])

        print("exact points, resume:", flush=True)
        for point in RESUME_POINTS:
            out = root / f"s{(n := n + 1)}"
            shutil.copytree(base, out)
            code = _child(_victim, settings, str(out), point, True)
            if code != SIGKILLED:
                raise SystemExit(f"{point} was never reached in a resume (exit {code})")
            tally.finish(f"resume killed at {point}", out, [f"resume {point}"])

        print("random instants:", flush=True)
        for i in range(args.random):
            out = root / f"s{(n := n + 1)}"
            resume = i % 2 == 1
            span = duration * 0.95  # draw the instant within the child's remaining work, so most draws kill
            if resume:
                row = rng.randrange(1, steps)
                assert _child(_victim, settings, str(out), f"row:{row}", False) == SIGKILLED
                span *= (steps - row // args.checkpoint_every * args.checkpoint_every) / steps
            code = _random_kill(_victim, (settings, str(out), "none:0", resume), out, span, rng)
            kind = "resume" if resume else "new"
            tally.finish(f"{kind} run, random instant", out, [f"random ({kind})"] if code == SIGKILLED else [])

        print("chains of random kills:", flush=True)
        for i in range(args.chains):
            out = root / f"s{(n := n + 1)}"
            kills = []
            for k in range(4):
                code = _random_kill(_victim, (settings, str(out), "none:0", (out / "run.json").exists()), out,
                                    duration * 0.6, rng)
                if code == SIGKILLED:
                    kills.append("random (chain)")
            tally.finish(f"chain {i + 1}", out, kills)

        print("SIGTERM / SIGINT to cadence run:", flush=True)
        for i in range(args.signals):
            out = root / f"s{(n := n + 1)}"
            sig = (signal.SIGTERM, signal.SIGINT)[i % 2]
            if args.closed_loop or args.data_channels:
                argv = ["run", settings["workload"], "--plan", str(_plan_file(root / "plan.yaml", settings)), "--threads", "1",
                        "--no-progress", "--out", str(out)]
            else:
                argv = ["run", args.workload, "--lr", settings["channels"]["lr"], "--steps", str(args.steps), "--eval-every",
                        str(settings["eval_every"]), "--checkpoint-every", str(args.checkpoint_every), "--threads",
                        "1", "--no-progress", "--out", str(out)] + (["--size", "xs"] if args.workload == "tiny-lm" else [])
            code = _random_kill(_cli, (argv,), out, duration * 0.95, rng, sig=sig)
            if code not in (0, 130):
                tally.failures.append(f"{sig.name}: exit {code}, expected 130")
            status = json.loads((out / "run.json").read_text())["status"]
            if code == 130 and status != "interrupted":
                tally.failures.append(f"{sig.name}: status {status} after exit 130")
            tally.finish(f"{sig.name} at a random instant (exit {code}, status {status})", out,
                         [sig.name] if code == 130 else [])

        total = sum(tally.kills.values())
        print(f"\nsummary: {total} kills in {tally.scenarios} scenarios; {tally.identical}/{tally.scenarios} resumed to "
              "byte-identical metrics.csv (complete, bit_exact, no temporary file left)")
        exact = sorted(k for k in tally.kills if k.startswith(("new ", "resume ")))
        print(f"  exact points ({len(exact)}): {', '.join(exact)}")
        for k in sorted(set(tally.kills) - set(exact)):
            print(f"  {k}: {tally.kills[k]} kill(s)")
        if tally.failures:
            print("failures:\n  " + "\n  ".join(tally.failures))
            raise SystemExit(1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
