"""The large fuzz run (`make fuzz`): many generated inputs for every entry point, every failure counted.

    .venv/bin/python benchmarks/fuzz_run.py                      # 100,000 inputs, 45-65 min on 2 cores
    .venv/bin/python benchmarks/fuzz_run.py --total 5000 --entries specs,cli
    .venv/bin/python benchmarks/fuzz_run.py --total 3000 --entries plans,plan-files   # issue 10: the closed loop
    .venv/bin/python benchmarks/fuzz_run.py --src /path/to/other/checkout/src   # fuzz another tree

The inputs come from the grammar in tests/fuzz/strategies.py, drawn by hypothesis with the
generate phase only (no shrinking, no database), so a failing input does not stop the run:
each is recorded under its defect (kind, place in cadence's code, exception type) with the
shortest inputs that showed it. The properties and limits are those of tests/fuzz/harness.py
(only cadence errors escape; the CLI's exit status, stderr and results; 2 s of CPU and
1 GiB per case).

Each entry point runs in its own child process; a child that dies (a crash, or a case that
blocks past every timer) is recorded as a failure with the case it was running, and a new
child continues with the remaining count. Results go to --out (JSON and Markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

# Share of the total per entry point, set by the cost of one case (run.json cases train a model).
SHARES = {"specs": 0.50, "torch": 0.14, "cli": 0.18, "curves": 0.07, "laws": 0.09, "run_json": 0.02, "plans": 0.06,
          "plan-files": 0.04}
BATCH = 500
HARD_HANG_S = 120.0  # a case still running after this is killed with its process and recorded


# -- child ---------------------------------------------------------------------------------------


def _key(kind: str, where: str, detail: str) -> str:
    """The defect a failure belongs to: limits by kind alone (where a timer fires is chance),
    escaped exceptions by type and place, other violations by their message without values."""
    if kind in ("time", "memory", "hang", "crash"):
        return kind
    if kind in ("escaped", "harness"):
        return f"{kind} | {where} | {detail.split(':', 1)[0]}"
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", detail)
    text = re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?|nan|inf", "N", text)
    return f"{kind} | {where} | {text[:90]}"


def _child(args) -> int:
    sys.path.insert(0, str(TESTS))
    if args.src:
        sys.path.insert(0, args.src)
    os.chdir(args.workdir)
    import cadence
    from hypothesis import HealthCheck, Phase, given, seed, settings

    from fuzz import harness
    from fuzz import strategies as S

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    workdir = Path(args.workdir)
    harness.warm_up_library(workdir / "warm")
    corpus = None
    if args.child in ("cli", "run_json"):
        corpus = harness.Corpus(workdir / "corpus")
        corpus.warm_up()
    if args.child in ("plans", "plan-files"):
        harness.warm_up_plans(workdir / "warm-plans")
    cases = workdir / "cases"
    cases.mkdir(exist_ok=True)
    entry = {
        "specs": (S.schedule_case(), lambda c, d: harness.guard(harness.check_schedule, c)),
        "torch": (S.torch_case(), lambda c, d: harness.guard(harness.check_torch, c)),
        "curves": (S.curve_case(), lambda c, d: harness.guard(harness.check_curve, c, d)),
        "laws": (S.law_case(), lambda c, d: harness.guard(harness.check_law, c, d)),
        "run_json": (S.run_json_case(), lambda c, d: harness.guard(harness.check_run_json, c, d, corpus,
                                                                   cpu_s=harness.TRAINING_CPU_LIMIT_S)),
        "cli": (S.cli_argv(), lambda c, d: harness.guard(harness.check_cli, c, d, corpus,
                                                         cpu_s=harness.cli_cpu_limit(c))),
        "plans": (S.plan_case(), lambda c, d: harness.guard(harness.check_plan, c)),
        "plan-files": (S.plan_file_case(), lambda c, d: harness.guard(harness.check_plan_file, c, d,
                                                                      cpu_s=harness.plan_file_cpu_limit(c))),
    }
    strategy, check = entry[args.child]
    result = {"entry": args.child, "cadence": str(Path(cadence.__file__).parent), "count": 0, "cpu_s": 0.0,
              "slowest_cpu_s": 0.0, "failures": {}}
    current = {"started": None, "case": None}
    result_path = Path(args.result)

    def save():
        tmp = result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, result_path)

    def record(kind, detail, where, case):
        key = _key(kind, where, detail)
        if kind in ("time", "memory") and args.child == "cli":  # one per command: each has its own cause
            words = [a for a in case[:2] if isinstance(a, str)]
            key += " | " + " ".join(words[:2] if words[:1] == ["forecast"] else words[:1])
        elif kind in ("time", "memory") and args.child == "plan-files":
            key += " | " + case["command"]
        f = result["failures"].setdefault(key, {"kind": kind, "where": where, "detail": detail, "count": 0,
                                                "examples": []})
        f["count"] += 1
        shown = repr(case)
        shown = shown if len(shown) <= 3000 else shown[:3000] + "...(cut)"
        f["examples"] = sorted(set(f["examples"] + [shown]), key=len)[:3]
        if f["examples"][0] == shown:
            f["detail"] = detail

    def watchdog():
        while True:
            time.sleep(2.0)
            started = current["started"]
            if started is not None and time.monotonic() - started > HARD_HANG_S:
                record("hang", f"a case still ran after {HARD_HANG_S:g} s; its process was ended", "", current["case"])
                save()
                os._exit(70)

    threading.Thread(target=watchdog, daemon=True).start()

    needs_dir = args.child in ("curves", "laws", "run_json", "cli", "plan-files")

    def one(case):
        d = Path(tempfile.mkdtemp(dir=cases)) if needs_dir else None
        current["case"], current["started"] = case, time.monotonic()
        (workdir / "current.txt").write_text(repr(case)[:3000], errors="backslashreplace")  # for a crash
        try:
            stats = check(case, d)
            result["cpu_s"] += stats.cpu_s
            if stats.cpu_s > result["slowest_cpu_s"]:
                result["slowest_cpu_s"] = stats.cpu_s
                result["slowest_case"] = repr(case)[:1000]
        except harness.Violation as v:
            record(v.kind, v.detail, v.where, case)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - a failure of the harness itself is recorded too
            record("harness", f"{type(e).__name__}: {e}"[:300], harness.where(e.__traceback__), case)
        finally:
            current["started"] = None
            result["count"] += 1
            os.chdir(workdir)
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)

    done = 0
    batch = 0
    while done < args.n:
        n = min(BATCH, args.n - done)

        @seed(args.seed * 1_000 + batch)
        @settings(max_examples=n, phases=[Phase.generate], database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(case):
            one(case)

        before = result["count"]
        run()
        if result["count"] == before:
            break  # the strategy produced nothing (should not happen)
        done += result["count"] - before
        batch += 1
        save()
        print(f"  {args.child}: {result['count']} inputs, {sum(f['count'] for f in result['failures'].values())} "
              f"failing", file=sys.stderr, flush=True)
    save()
    return 0


# -- parent --------------------------------------------------------------------------------------


def _merge(total: dict, part: dict) -> None:
    total["count"] += part.get("count", 0)
    total["cpu_s"] += part.get("cpu_s", 0.0)
    if part.get("slowest_cpu_s", 0.0) > total["slowest_cpu_s"]:
        total["slowest_cpu_s"], total["slowest_case"] = part["slowest_cpu_s"], part.get("slowest_case")
    total["cadence"] = part.get("cadence", total.get("cadence"))
    for key, f in part.get("failures", {}).items():
        mine = total["failures"].setdefault(key, {**f, "count": 0, "examples": []})
        mine["count"] += f["count"]
        mine["examples"] = sorted(set(mine["examples"] + f["examples"]), key=len)[:3]


def _run_entry(entry: str, n: int, args, work: Path) -> dict:
    total = {"entry": entry, "count": 0, "cpu_s": 0.0, "slowest_cpu_s": 0.0, "failures": {}, "restarts": 0,
             "wall_s": 0.0}
    t0 = time.perf_counter()
    attempt = 0
    while total["count"] < n and attempt < 20:
        workdir = work / f"{entry}-{attempt}"
        workdir.mkdir(parents=True, exist_ok=True)
        result = workdir / "result.json"
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
        env.pop("PYTHONPATH", None)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", entry, "--n", str(n - total["count"]),
               "--seed", str(args.seed * 100 + attempt), "--result", str(result), "--workdir", str(workdir)]
        if args.src:
            cmd += ["--src", args.src]
        proc = subprocess.run(cmd, env=env)
        part = json.loads(result.read_text()) if result.exists() else {}
        progress = part.get("count", 0)
        if proc.returncode != 0:
            total["restarts"] += 1
            if proc.returncode != 70:  # 70: the watchdog recorded the hanging case itself
                last = workdir / "current.txt"
                part.setdefault("failures", {})[f"crash | | exit {proc.returncode}"] = {
                    "kind": "crash", "where": "", "detail": f"the fuzz process died with status {proc.returncode}",
                    "count": 1, "examples": [last.read_text(errors="replace")] if last.exists() else []}
                part["count"] = part.get("count", 0) + 1
        _merge(total, part)
        attempt += 1
        if proc.returncode not in (0, 70) and not progress:
            print(f"{entry}: the fuzz process failed before its first case; stopping this entry", file=sys.stderr)
            break
        subprocess.run(["rm", "-rf", str(workdir / "cases")], check=False)
    total["wall_s"] = round(time.perf_counter() - t0, 1)
    return total


def _markdown(report: dict) -> str:
    lines = [f"# Fuzz run: {report['inputs']} inputs, {report['failing']} failing", "",
             f"cadence from `{report['cadence']}`; seed {report['seed']}; {report['wall_s'] / 60:.1f} min; "
             f"limits: 2 s of CPU and 1 GiB per case.", "",
             "| entry point | inputs | failing inputs | distinct defects | slowest passing case (CPU s) |", "|---|---|---|---|---|"]
    for e in report["entries"]:
        failing = sum(f["count"] for f in e["failures"].values())
        lines.append(f"| {e['entry']} | {e['count']} | {failing} | {len(e['failures'])} | {e['slowest_cpu_s']:.2f} |")
    lines += ["", "## Defects", ""]
    for e in report["entries"]:
        for key, f in sorted(e["failures"].items(), key=lambda kv: -kv[1]["count"]):
            lines.append(f"- **{e['entry']}**, {f['kind']}, {f['count']} input(s): {f['detail']}"
                         + (f" (at `{f['where']}`)" if f["where"] else ""))
            if f["examples"]:
                lines.append(f"  - shortest input: `{f['examples'][0][:600]}`")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total", type=int, default=100_000, help="inputs across all entry points (default 100000)")
    p.add_argument("--entries", default=",".join(SHARES), help=f"comma-separated subset of {', '.join(SHARES)}")
    p.add_argument("--src", help="the src/ folder of the cadence to fuzz (default: the installed one)")
    p.add_argument("--seed", type=int, default=None, help="seed of the run (default: from the clock)")
    p.add_argument("--out", default=str(ROOT / "out" / "fuzz"), help="folder for fuzz.json and fuzz.md")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args)
    args.seed = int(time.time()) % 100_000 if args.seed is None else args.seed
    entries = [e for e in args.entries.split(",") if e]
    unknown = set(entries) - set(SHARES)
    if unknown:
        p.error(f"unknown entries {sorted(unknown)}; known: {', '.join(SHARES)}")
    share = sum(SHARES[e] for e in entries)
    counts = {e: max(1, round(args.total * SHARES[e] / share)) for e in entries}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = {"seed": args.seed, "src": args.src, "entries": []}
    with tempfile.TemporaryDirectory(prefix="cadence-fuzz-") as work:
        for entry in entries:
            print(f"{entry}: {counts[entry]} inputs", file=sys.stderr, flush=True)
            e = _run_entry(entry, counts[entry], args, Path(work))
            report["entries"].append(e)
            report["cadence"] = e.get("cadence", "")
            (out / "fuzz.json").write_text(json.dumps(report, indent=1))
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["inputs"] = sum(e["count"] for e in report["entries"])
    report["failing"] = sum(f["count"] for e in report["entries"] for f in e["failures"].values())
    (out / "fuzz.json").write_text(json.dumps(report, indent=1))
    text = _markdown(report)
    (out / "fuzz.md").write_text(text)
    print(text)
    return 1 if report["failing"] else 0


if __name__ == "__main__":
    sys.exit(main())
