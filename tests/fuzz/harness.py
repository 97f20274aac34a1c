"""The properties every fuzz case must hold, and the limits it runs under.

Properties (issue 9):

* the only exceptions that escape the library are cadence's own (``CadenceError`` and its
  subclasses); Python warnings count too, since a user sees them;
* every CLI invocation ends with exit 0 and a correct result, or a non-zero exit and one
  line on stderr (``cadence: error: ...``), never a traceback;
* no case takes more than 2 s of CPU or grows the process by more than 1 GiB.

Plans (issue 10, ``check_plan``, ``check_plan_file``): every value a Plan gives is a finite
number >= 0 and its batch a whole number of micro-batches; a refused call (observe, advance,
load_state_dict, set_horizon) leaves the plan as it was; state_dict() is JSON (no NaN) and a
fresh plan that loads it gives the same values ever after; a tampered state is refused with
PlanError; preview() equals stepping values()/advance() without observations; a plan file's
YAML tags are never run, alias bombs are bounded, and an error names only flags the command has.

A check function takes one generated case and raises :class:`Violation` when a property
fails; a CadenceError ends a case as a pass. ``guard`` runs a check under the limits:
an interval timer (SIGPROF, CPU time, so a loaded machine does not fail a case) raises
``CaseTimeout``, a wall-clock timer (SIGALRM) catches cases that block, and a soft
``RLIMIT_AS`` of the current address space plus 1 GiB turns an oversized allocation into a
MemoryError. The timers raise BaseException subclasses so that no ``except Exception`` in
the code under test can swallow them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CPU_LIMIT_S = 2.0
# `run` and `bench` train for as many steps as they are asked to: a successful one is work done,
# not a hang. They get this much CPU (the fuzz grammar asks for at most a few logreg/digits steps).
TRAINING_CPU_LIMIT_S = 15.0
WALL_LIMIT_S = 30.0  # only for cases that block instead of computing
MEMORY_LIMIT = 1 << 30
EXIT_CODES = {0, 1, 2, 3}


class Violation(AssertionError):
    """A property failed. ``kind`` and ``where`` group violations into distinct defects."""

    def __init__(self, kind: str, detail: str, where: str = "") -> None:
        super().__init__(f"[{kind}] {detail}" + (f" (at {where})" if where else ""))
        self.kind, self.detail, self.where = kind, detail, where


class CaseTimeout(BaseException):
    """More than CPU_LIMIT_S of CPU in one case."""


class CaseHang(BaseException):
    """More than WALL_LIMIT_S of wall-clock time in one case."""


def _cadence_error():
    from cadence.errors import CadenceError

    return CadenceError


def _vmsize() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


_EXPIRED = {"cpu": False, "wall": False}  # set by the timers, for a timeout raised where it was swallowed


def _raise_timeout(signum, frame):
    _EXPIRED["cpu"] = True
    raise CaseTimeout()


def _raise_hang(signum, frame):
    _EXPIRED["wall"] = True
    raise CaseHang()


def where(tb) -> str:
    """The innermost frame of cadence's own code in a traceback (file:line function)."""
    found = ""
    for frame in traceback.extract_tb(tb):
        path = frame.filename.replace("\\", "/")
        if "/cadence/" in path and "/tests/" not in path:
            found = f"{path.split('/cadence/', 1)[1]}:{frame.lineno} {frame.name}"
    if not found:
        frames = traceback.extract_tb(tb)
        if frames:
            last = frames[-1]
            found = f"{Path(last.filename).name}:{last.lineno} {last.name}"
    return found


@dataclass
class Stats:
    cpu_s: float = 0.0
    wall_s: float = 0.0


@contextlib.contextmanager
def limits(stats: Stats | None = None, cpu_s: float = CPU_LIMIT_S, memory: int = MEMORY_LIMIT):
    """Run the block with a CPU-time limit, a wall-clock backstop and an address-space limit."""
    stats = stats if stats is not None else Stats()
    old_prof = signal.signal(signal.SIGPROF, _raise_timeout)
    old_alrm = signal.signal(signal.SIGALRM, _raise_hang)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vmsize() + memory
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    c0, w0 = time.process_time(), time.perf_counter()
    _EXPIRED["cpu"] = _EXPIRED["wall"] = False
    signal.setitimer(signal.ITIMER_PROF, cpu_s)
    signal.setitimer(signal.ITIMER_REAL, WALL_LIMIT_S)
    try:
        yield stats
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        stats.cpu_s, stats.wall_s = time.process_time() - c0, time.perf_counter() - w0
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGPROF, old_prof)
        signal.signal(signal.SIGALRM, old_alrm)


_QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ResourceWarning)


def guard(check, *args, cpu_s: float = CPU_LIMIT_S, **kwargs) -> Stats:
    """Run ``check(*args)`` under the limits; raise Violation for every broken property."""
    CadenceError = _cadence_error()
    stats = Stats()
    cwd = os.getcwd()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with limits(stats, cpu_s=cpu_s):
                check(*args, **kwargs)
        except Violation:
            if _EXPIRED["cpu"]:  # the timer's exception was swallowed and printed somewhere: a time violation
                raise Violation("time", f"more than {cpu_s:g} s of CPU ({stats.cpu_s:.2f} s)") from None
            raise
        except CaseTimeout:
            raise Violation("time", f"more than {cpu_s:g} s of CPU", where(sys.exc_info()[2])) from None
        except CaseHang:
            raise Violation("hang", f"more than {WALL_LIMIT_S:g} s of wall-clock time") from None
        except MemoryError as e:
            raise Violation("memory", f"more than 1 GiB ({type(e).__name__}: {_line(e)})",
                            where(e.__traceback__)) from None
        except CadenceError:
            pass  # an error the user can read: the case passes
        except Exception as e:  # noqa: BLE001 - the property under test
            frames = traceback.extract_tb(e.__traceback__)
            kind = "harness" if frames and frames[-1].filename.endswith(("fuzz/harness.py", "fuzz/strategies.py")) \
                else "escaped"
            raise Violation(kind, f"{type(e).__name__}: {_line(e)}", where(e.__traceback__)) from None
        finally:
            os.chdir(cwd)
    # A timer's exception can be swallowed (raised inside a gc callback or a bare except):
    # the flags and the measured CPU time still tell.
    if _EXPIRED["cpu"] or stats.cpu_s > cpu_s + 0.05:
        raise Violation("time", f"more than {cpu_s:g} s of CPU ({stats.cpu_s:.2f} s)")
    if _EXPIRED["wall"]:
        raise Violation("hang", f"more than {WALL_LIMIT_S:g} s of wall-clock time")
    for w in caught:
        if issubclass(w.category, _QUIET_WARNINGS) and "/cadence/" not in str(w.filename):
            continue
        path = str(w.filename).replace("\\", "/")
        at = f"{path.split('/cadence/', 1)[-1] if '/cadence/' in path else Path(path).name}:{w.lineno}"
        raise Violation("warning", f"{w.category.__name__}: {_line(w.message)}", at)
    return stats


def _line(e) -> str:
    text = " ".join(str(e).split())
    return text[:200]


def attempt(fn, *args, **kwargs):
    """``fn(*args)``, or the CadenceError it raised (any other exception propagates)."""
    try:
        return fn(*args, **kwargs)
    except _cadence_error() as e:
        return e


def failed(result) -> bool:
    return isinstance(result, _cadence_error())


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# -- schedules ----------------------------------------------------------------------------------


def _rates(value):
    from cadence.time import Rates

    return None if value is None else Rates(*value)


def value_at(schedule, step, total, rates):
    """One step's value through the documented single-step method (``value_at``, formerly ``at``)."""
    from cadence.schedules import Schedule

    if hasattr(Schedule, "value_at"):
        return schedule.value_at(step, total, rates)
    if not callable(schedule.at):  # join, decay_from and rewarm store their parameter `at` over the method
        raise Violation("escaped", f"TypeError: {type(schedule.at).__name__} object is not callable: "
                        f"{schedule.name}().at(step) is the parameter at, not the method", "schedules/base.py at")
    return schedule.at(step, total, rates)


def check_schedule(case: dict) -> None:
    """parse(spec).values(total, rates): finite, one per step, equal to value_at and to the round trip."""
    from cadence.schedules import parse

    s = parse(case["spec"])
    text = s.spec()
    if not isinstance(text, str):
        raise Violation("wrong", f"spec() returned {type(text).__name__}")
    again = attempt(parse, text)
    if failed(again):
        raise Violation("wrong", f"parse(s.spec()) fails: {_line(again)}", "spec round trip")
    if again.spec() != text:
        raise Violation("wrong", "parse(s.spec()).spec() differs from s.spec()", "spec round trip")
    rates = _rates(case["rates"])
    total = case["total"]
    values = s.values(total, rates)
    if not isinstance(values, np.ndarray) or values.shape != (total,) or values.dtype != np.float64:
        raise Violation("wrong", f"values({total!r}) has shape {getattr(values, 'shape', None)}", "values")
    if not np.all(np.isfinite(values)):
        bad = int(np.argmax(~np.isfinite(values)))
        raise Violation("wrong", f"values() gives {values[bad]} at step {bad}", "values")
    if isinstance(total, int) and total > 2**24:  # a second array of 2**26 values would double the case's 1 GiB
        other = [attempt(value_at, again, i, total, rates) for i in (0, total // 3, total // 2, total - 1)]
        same = not any(map(failed, other)) and all(_same(o, values[i]) for o, i in
                                                   zip(other, (0, total // 3, total // 2, total - 1)))
    else:
        other = attempt(again.values, total, rates)
        same = not failed(other) and _same(values, other)
    if not same:
        raise Violation("wrong", "the round-tripped spec gives other values", "spec round trip")
    step = case["step"]
    one = attempt(value_at, s, step, total, rates)
    if isinstance(step, int) and not isinstance(step, bool) and 0 <= step < total:
        if failed(one) or not _same(one, values[step]):
            raise Violation("wrong", f"value_at({step}) = {one!r} but values()[{step}] = {values[step]!r}", "value_at")
    called = attempt(s, np.arange(min(total, 50)), total, rates)
    if failed(called) or not _same(called, values[:50]):
        raise Violation("wrong", "s(steps, total) differs from values(total)", "__call__")


# -- the torch Scheduler ------------------------------------------------------------------------


def random_mutation(value, rng: random.Random, edits: int = 2):
    """Structural edits of a JSON-like value driven by ``rng`` (for state dicts made at run time)."""
    junk = [None, True, 0, -1, 2**63, 10**400, 1.5, float("nan"), float("inf"), "", "x", [], {}, [0, 10, "replan"]]
    value = json.loads(json.dumps(value))

    def edit(node):
        if isinstance(node, dict) and node and rng.random() < 0.75:
            key = rng.choice(sorted(node))
            op = rng.randrange(4)
            if op == 0:
                del node[key]
            elif op == 1:
                node[key] = rng.choice(junk)
            else:
                node[key] = edit(node[key])
            return node
        if isinstance(node, list) and node and rng.random() < 0.75:
            i = rng.randrange(len(node))
            if rng.random() < 0.3:
                del node[i]
            else:
                node[i] = edit(node[i])
            return node
        return rng.choice(junk)

    for _ in range(edits):
        value = edit(value)
    return value


def _optimizer(kind: str, lrs: list[float]):
    import torch

    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=0.1)
    return torch.optim.AdamW(groups, lr=0.1)


def _group_values(opt, field="lr"):
    out = []
    for g in opt.param_groups:
        v = g.get(field)
        out.append(float(v) if isinstance(v, (int, float)) else repr(v))
    return out


def check_torch(case: dict) -> None:
    """Scheduler(...), step(), set_total(), state_dict() round trips and load_state_dict(garbage)."""
    from cadence.torch import Scheduler

    rates = _rates(case["rates"])

    def build():
        opt = _optimizer(case["optimizer"], case["group_lrs"])
        kwargs = {"field": case["field"], "rates": rates}
        if case["ratios"] is not None:
            kwargs["ratios"] = case["ratios"]
        return opt, Scheduler(opt, case["schedule"], case["total"], **kwargs)

    opt, sched = build()
    single = isinstance(case["schedule"], str) and case["field"] == "lr" and case["ratios"] is None
    expected = None
    if single and isinstance(case["total"], int) and case["total"] <= 100_000:
        from cadence.schedules import parse

        expected = attempt(lambda: parse(case["schedule"]).values(case["total"], rates))
        expected = None if failed(expected) else expected
    k = 0
    rng = random.Random(case["mutations"][0] if case["mutations"] else 0)

    def agrees(what):
        if expected is None or not 0 <= k < len(expected):
            return
        top = max(case["group_lrs"])
        for g, lr0 in zip(opt.param_groups, case["group_lrs"]):
            ratio = lr0 / top if top > 0 else 1.0
            want = float(expected[k]) if ratio == 1.0 else float(expected[k]) * ratio
            if not _same(float(g["lr"]), want):
                raise Violation("wrong", f"after {what} the group LR is {g['lr']!r}, the schedule says {want!r} "
                                f"at step {k}", "Scheduler")

    agrees("construction")
    for op in case["ops"]:
        name = op[0]
        if name == "step":
            for _ in range(op[1]):
                sched.step()
                k += 1
            agrees(f"{op[1]} step() calls")
        elif name == "step_to":
            before = _group_values(opt)
            r = attempt(sched.step, op[1])
            if failed(r):
                if _group_values(opt) != before:
                    raise Violation("wrong", "a refused step() changed the optimizer", "Scheduler.step")
            else:
                k = k + 1 if op[1] is None else op[1]
                agrees(f"step({op[1]!r})")
        elif name == "set_total":
            before = _group_values(opt)
            r = attempt(sched.set_total, op[1]) if op[2] is None else attempt(sched.set_total, op[1], op[2])
            if failed(r):
                if _group_values(opt) != before:
                    raise Violation("wrong", "a refused set_total() changed the optimizer", "Scheduler.set_total")
            else:
                expected = None
        elif name == "roundtrip":
            state = sched.state_dict()
            try:
                json.dumps(state)
            except (TypeError, ValueError) as e:
                raise Violation("wrong", f"state_dict() is not plain data ({e})", "Scheduler.state_dict") from None
            opt2, fresh = build()
            fresh.load_state_dict(state)
            if fresh.get_last_lr() != sched.get_last_lr() or _group_values(opt2) != _group_values(opt):
                raise Violation("wrong", "a fresh Scheduler loading state_dict() has other values",
                                "Scheduler.load_state_dict")
        elif name == "load":
            state = sched.state_dict()
            garbage = random_mutation(state, random.Random(op[1])) if op[1] % 3 else \
                case["garbage"][op[1] % len(case["garbage"])]
            before, last = _group_values(opt), list(sched.get_last_lr())
            r = attempt(sched.load_state_dict, garbage)
            if failed(r):
                if _group_values(opt) != before or sched.get_last_lr() != last or sched.state_dict() != state:
                    raise Violation("wrong", "a refused load_state_dict() changed the scheduler",
                                    "Scheduler.load_state_dict")
            else:
                expected = None
        elif name == "get_lr":
            sched.get_lr()
    for g in opt.param_groups:
        for key in ("lr", "weight_decay", "momentum"):
            v = g.get(key)
            if isinstance(v, float) and not math.isfinite(v):
                raise Violation("wrong", f"param group {key} became {v}", "Scheduler")
    _ = rng


# -- curves and laws ---------------------------------------------------------------------------


def check_curve(case: dict, workdir: Path) -> None:
    """read_run on a CSV or run folder; a Curve it returns is valid; a quick fit of it is finite."""
    from cadence.forecast import fit, load
    from cadence.forecast.io import read_run

    if case["folder"]:
        (workdir / "run").mkdir()
        path = workdir / "run"
        (path / "metrics.csv").write_bytes(case["csv"])
    else:
        path = workdir / "curve.csv"
        path.write_bytes(case["csv"])
    kwargs = {"schedule": case["schedule"], "total": case["total"], "skip_warmup": case["skip_warmup"]}
    if case["loss"] is not None:
        kwargs["loss"] = case["loss"]
    curve = read_run(path, **kwargs)
    steps, losses, lrs = curve.steps, curve.losses, curve.lrs
    if steps.ndim != 1 or len(steps) == 0 or len(steps) != len(losses) or np.any(np.diff(steps) <= 0) or steps[0] < 0:
        raise Violation("wrong", "read_run returned a curve whose steps are not increasing whole numbers", "read_run")
    if not np.all(np.isfinite(losses)) or np.any(losses <= 0) or not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
        raise Violation("wrong", "read_run returned non-finite or non-positive losses or LRs", "read_run")
    if len(lrs) <= steps[-1]:
        raise Violation("wrong", "read_run returned fewer LRs than steps", "read_run")
    if case["fit"] is None or len(steps) > 60:
        return
    law = fit([curve], law=case["fit"], starts=1, candidates=4, max_iter=25, strict=case["strict"])
    if not all(isinstance(v, float) and math.isfinite(v) for v in law.params.values()):
        raise Violation("wrong", f"fit returned non-finite parameters {law.params}", "fit")
    pred = law.predict(curve.lrs, curve.steps)
    if not np.all(np.isfinite(pred)):
        raise Violation("wrong", "a fitted law predicts non-finite losses on its own curve", "fit")
    law.save(workdir / "fitted.json")
    back = load(workdir / "fitted.json")
    if back.params != law.params:
        raise Violation("wrong", "save/load changes a fitted law's parameters", "FittedLaw.save")


def check_law(case: dict, workdir: Path) -> None:
    """load(law file): a law it returns predicts finite losses and survives save/load."""
    from cadence.forecast import load
    from cadence.schedules import parse

    path = workdir / "law.json"
    path.write_bytes(case["law"])
    law = load(path)
    lrs = parse(case["spec"]).values(case["total"])
    pred = law.predict(lrs, np.arange(case["total"]))
    if pred.shape != (case["total"],) or not np.all(np.isfinite(pred)):
        raise Violation("wrong", "a law that load() accepted predicts non-finite losses", "load/predict")
    law.save(workdir / "again.json")
    back = load(workdir / "again.json")
    if back.params != law.params or back.law != law.law:
        raise Violation("wrong", "save/load changes a law", "FittedLaw.save")


# -- the command line --------------------------------------------------------------------------


class _Sink(io.StringIO):
    def close(self) -> None:  # main() closes stderr after a broken pipe
        pass

    def isatty(self) -> bool:
        return False


@dataclass
class CliResult:
    code: object
    out: str
    err: str


def run_cli(argv: list[str]) -> CliResult:
    """``main(argv)`` in this process, as a user would see it (stdout, stderr, exit status)."""
    from cadence.cli import main

    out, err = _Sink(), _Sink()
    stdin = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as e:  # argparse's --help and --version
                code = 0 if e.code is None else e.code
                if isinstance(code, str):
                    err.write(code + "\n")
                    code = 1
    finally:
        sys.stdin = stdin
    return CliResult(code, out.getvalue(), err.getvalue())


_NON_FINITE = re.compile(r"(?<![A-Za-z_'\"])-?(nan|inf)(?![A-Za-z_'\"])", re.IGNORECASE)


def _args(argv):
    from cadence.cli import build_parser

    with contextlib.redirect_stdout(_Sink()), contextlib.redirect_stderr(_Sink()):
        return build_parser().parse_args(list(argv))


def check_result(argv: list[str], r: CliResult, cwd: Path) -> None:
    """The CLI contract for one finished invocation, and the result of a successful one."""
    if "Traceback" in r.err or "Traceback" in r.out:
        raise Violation("traceback", "a traceback was printed", argv[0] if argv else "")
    if not isinstance(r.code, int) or r.code not in EXIT_CODES:
        raise Violation("exit", f"exit status {r.code!r}", argv[0] if argv else "")
    lines = [line for line in r.err.splitlines() if line.strip()]
    python_warnings = [line for line in lines if re.search(r"\w+Warning: ", line)]
    if python_warnings:
        raise Violation("warning", f"a Python warning on stderr: {python_warnings[0][:150]}", argv[0] if argv else "")
    if r.code != 0:
        prefix = ("cadence: error:", "cadence: warning:") if r.code == 1 else ("cadence: error:",)
        if len(lines) != 1 or not lines[0].startswith(prefix):
            shown = lines[:2] if lines else ["(nothing)"]
            raise Violation("stderr", f"exit {r.code} with {len(lines)} stderr line(s): {shown!r}"[:300],
                            argv[0] if argv else "(no command)")
        return
    if any(a in ("--help", "-h", "--version") for a in argv):
        if not r.out.strip():
            raise Violation("wrong", "--help/--version printed nothing", argv[0])
        return
    _check_success(argv, r, cwd)


def _finite_output(r: CliResult, what: str) -> None:
    m = _NON_FINITE.search(r.out)
    if m:
        line = next(line for line in r.out.splitlines() if m.group(0) in line)
        raise Violation("wrong", f"{what} printed a non-finite number: {line[:150]!r}", what)


def _check_success(argv, r: CliResult, cwd: Path) -> None:
    from cadence.schedules import COMBINATORS, FAMILIES, parse

    args = _args(argv)
    command = args.command
    if command == "schedule" and getattr(args, "plan", None) is not None:
        _check_plan_schedule(args, r, cwd)
    elif command == "schedule":
        from cadence.time import Rates

        rates = Rates(args.samples_per_step, args.tokens_per_sample, args.steps_per_epoch)
        expected = parse(args.spec).values(args.total, rates)
        if args.csv:
            rows = r.out.splitlines()
            want = ["step,value"] + [f"{i},{v!r}" for i, v in enumerate(expected.tolist())]
            if rows != want:
                raise Violation("wrong", f"schedule --csv: {len(rows)} lines, expected {len(want)} equal to "
                                "parse(spec).values(total)", "schedule")
        elif not args.plot and r.out.splitlines()[:1] != [parse(args.spec).spec()]:
            raise Violation("wrong", "schedule: the first line is not the normalised spec", "schedule")
        if not np.all(np.isfinite(expected)):
            raise Violation("wrong", "schedule exited 0 for a schedule with non-finite values", "schedule")
        if args.plot and not (cwd / args.plot).is_file():
            raise Violation("wrong", f"schedule --plot exited 0 without writing {args.plot}", "schedule")
        _finite_output(r, "schedule")
    elif command == "list":
        missing = [c.name for c in (*FAMILIES, *COMBINATORS) if f"{c.name}(" not in r.out]
        if missing:
            raise Violation("wrong", f"list misses {missing}", "list")
    elif command == "gallery":
        if not (cwd / args.out).is_file():
            raise Violation("wrong", "gallery exited 0 without writing its figure", "gallery")
    elif command == "recommend":
        if args.json:
            data = json.loads(r.out)
            numbers = [v for a in data for v in a["values"].values()]
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
                raise Violation("wrong", "recommend --json gave a non-finite value", "recommend")
        _finite_output(r, "recommend")
    elif command == "forecast":
        _check_forecast(args, r, cwd)
    elif command == "run":
        metrics = cwd / args.out / "metrics.csv"
        manifest = json.loads((cwd / args.out / "run.json").read_text())
        steps = manifest["step"]  # optimizer steps taken (the horizon may be in samples or tokens)
        rows = metrics.read_text().splitlines()
        if manifest.get("status") != "complete" or len(rows) != steps + 1 or \
                [line.split(",")[0] for line in rows[1:]] != [str(i) for i in range(steps)]:
            raise Violation("wrong", f"run exited 0 but {metrics.name} has {len(rows) - 1} rows for {steps} steps "
                            f"(status {manifest.get('status')!r})", "run")
        _finite_output(r, "run")
    elif command in ("bench", "report"):
        folder = cwd / (args.folder if command == "report" else (args.out or ""))
        if command == "bench" and not args.out:
            return
        if not (folder / "report.md").is_file():
            raise Violation("wrong", f"{command} exited 0 without a report.md", command)


def _check_forecast(args, r: CliResult, cwd: Path) -> None:
    from cadence.forecast import load
    from cadence.schedules import parse

    action = args.forecast_command
    if action == "fit":
        law = load(cwd / args.out)
        if not all(math.isfinite(v) for v in law.params.values()):
            raise Violation("wrong", "forecast fit wrote non-finite parameters", "forecast fit")
        return
    law = load(cwd / args.law)
    if action == "predict":
        lrs = parse(args.schedule).values(args.total)
        losses, low, high = law.predict_interval(lrs, np.arange(args.total), level=getattr(args, "level", 0.9))
        if args.csv:
            want = ["step,lr,loss,low,high"] + [f"{i},{lr!r},{l!r},{lo!r},{hi!r}" for i, (lr, l, lo, hi) in
                                                enumerate(zip(lrs.tolist(), losses.tolist(), low.tolist(), high.tolist()))]
            if r.out.splitlines() != want:
                raise Violation("wrong", "forecast predict --csv differs from law.predict", "forecast predict")
        if not np.all(np.isfinite(losses)):
            raise Violation("wrong", "forecast predict exited 0 with non-finite predicted losses", "forecast predict")
    elif action == "rank":
        rows = [line for line in r.out.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
        names = {item.partition("=")[0].strip() for item in args.schedule}
        if len(rows) != len(names):
            raise Violation("wrong", f"forecast rank printed {len(rows)} rows for {len(names)} plans", "forecast rank")
    elif action == "optimize" and args.csv:
        rows = (cwd / args.csv).read_text().splitlines()
        if len(rows) != args.total + 1:
            raise Violation("wrong", "forecast optimize --csv has the wrong number of rows", "forecast optimize")
    _finite_output(r, f"forecast {action}")


def warm_up_library(workdir: Path) -> None:
    """First-call costs (imports, torch's lazy optimizer set-up, scipy, pandas) outside the limits."""
    for kind in ("sgd", "adam", "adamw"):
        check_torch({"schedule": "cosine(peak=1.0)", "field": "lr", "total": 10, "rates": None, "optimizer": kind,
                     "group_lrs": [0.1, 0.2], "ratios": None, "ops": [("step", 2), ("roundtrip",), ("load", 1)],
                     "garbage": [None], "mutations": []})
    check_schedule({"spec": "cosine(peak=1.0)", "total": 10, "rates": (1, 2, 3), "step": 1})
    workdir.mkdir(parents=True, exist_ok=True)
    rows = "step,lr,loss\n" + "".join(f"{i},{1e-3 * (1 - i / 30)!r},{2 + 1 / (i + 1)!r}\n" for i in range(30))
    for law in ("multipower", "annealing"):
        try:
            check_curve({"csv": rows.encode(), "folder": False, "schedule": None, "total": None, "loss": "val",
                         "skip_warmup": True, "fit": law, "strict": False}, workdir)
        except _cadence_error():
            pass


# -- inputs that need files ---------------------------------------------------------------------


class Corpus:
    """Real files the CLI cases start from: a run, a stopped run, a comparison, a curve and laws."""

    def __init__(self, root: Path) -> None:
        from cadence.bench.runner import RunConfig, train

        from fuzz.strategies import base_laws

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        quiet = contextlib.redirect_stdout(_Sink()), contextlib.redirect_stderr(_Sink())
        with quiet[0], quiet[1]:
            self.run = self.root / "run"
            if not (self.run / "run.json").exists():
                train(RunConfig(workload="logreg", channels={"lr": "linear(peak=0.1, final=0.0)"}, horizon=4,
                                checkpoint_every=2), self.run)
            self.stopped = self.root / "stopped"
            if not (self.stopped / "run.json").exists():
                train(RunConfig(workload="logreg", channels={"lr": "cosine(peak=0.1)"}, horizon=6, checkpoint_every=2),
                      self.stopped, stop_after=2)
            self.bench = self.root / "bench"
            if not (self.bench / "report.md").exists():
                from cadence.cli import main

                main(["bench", "logreg", "--candidate", "a=cosine(peak=0.1)", "--candidate", "b=linear(peak=0.1)", "--steps",
                      "3", "--seeds", "1", "--out", str(self.bench), "--no-progress"])
            self.curve = self.root / "curve.csv"
            steps = np.arange(40)
            lrs = 1e-3 * (1 - steps / 40)
            losses = 2.0 + 3.0 * (np.cumsum(lrs) * 1000 + 1) ** -0.5
            self.curve.write_text("step,lr,loss\n" + "".join(f"{i},{a!r},{b!r}\n" for i, a, b in zip(steps, lrs, losses)))
            self.laws = {}
            for doc in base_laws():
                path = self.root / f"{doc['law']}.json"
                path.write_text(json.dumps(doc))
                self.laws[doc["law"]] = path

    def warm_up(self) -> None:
        """Import and first-call costs (torch, sklearn data, matplotlib fonts) outside the limits."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        import cadence.bench.compare  # noqa: F401
        import cadence.bench.report  # noqa: F401
        import cadence.forecast.hyper  # noqa: F401
        import cadence.forecast.optimize  # noqa: F401
        import cadence.plotting  # noqa: F401

        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        ax.set_title("warm up")
        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)
        run_cli(["schedule", "cosine(peak=1)", "--total", "10", "--plot", str(self.root / "warm.png"), "--overwrite"])
        run_cli(["forecast", "predict", str(self.laws["multipower"]), "--schedule", "cosine(peak=1e-3)", "--total", "20",
                 "--plot", str(self.root / "warm2.png"), "--overwrite"])
        run_cli(["run", "--resume", "--out", str(self.run), "--no-progress"])


def _materialise(argv, workdir: Path, corpus: Corpus) -> list[str]:
    from fuzz.strategies import File

    out = []
    for i, item in enumerate(argv):
        if not isinstance(item, File):
            out.append(item)
            continue
        if item.kind == "file":
            path = workdir / f"{i}-{item.name}"
            path.write_bytes(item.content)
            out.append(str(path))
        elif item.kind == "path":
            out.append(item.name)
        elif item.kind == "existing":
            if item.name == "existing.txt":
                (workdir / item.name).write_text("the user's file\n")
            elif item.name == "existing-dir":
                (workdir / item.name).mkdir(exist_ok=True)
                (workdir / item.name / "keep.txt").write_text("the user's file\n")
            out.append(item.name)
        elif item.kind == "law":
            out.append(str(corpus.laws[item.name]))
        elif item.kind == "corpus":
            source = {"bench": corpus.bench, "run": corpus.run, "curve": corpus.curve}[item.name]
            target = workdir / f"{i}-{item.name}"
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)
            out.append(str(target))
        else:
            raise AssertionError(item.kind)
    return out


def cli_cpu_limit(argv) -> float:
    """The CPU limit of one command line: TRAINING_CPU_LIMIT_S for `run` and `bench`, else CPU_LIMIT_S."""
    named = [a for a in argv if isinstance(a, str)]
    return TRAINING_CPU_LIMIT_S if {"run", "bench"} & set(named[:2]) else CPU_LIMIT_S


def check_cli(argv, workdir: Path, corpus: Corpus) -> None:
    """One command line, run in ``workdir``: the exit status/stderr contract and, on success, the result."""
    import torch

    argv = _materialise(argv, workdir, corpus)
    existed = {p: p.read_bytes() for p in (workdir / "existing.txt", workdir / "existing-dir" / "keep.txt")
               if p.exists()}
    os.chdir(workdir)
    threads = torch.get_num_threads()
    try:
        r = run_cli(argv)
        check_result(argv, r, workdir)
    finally:
        torch.set_num_threads(threads)
        _close_figures()
    for path, data in existed.items():
        if "--overwrite" in argv:
            break  # replacing was asked for
        if not path.exists() or path.read_bytes() != data:
            raise Violation("lost-file", f"the user's {path.name} was replaced or removed", argv[0] if argv else "")


def _close_figures() -> None:
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def check_run_json(case: dict, workdir: Path, corpus: Corpus) -> None:
    """Edit a real run folder's run.json (and sometimes its other files), then `cadence run --resume`."""
    import torch

    source = corpus.stopped if case["stopped"] else corpus.run
    run = workdir / "run"
    shutil.copytree(source, run)
    manifest = json.loads((run / "run.json").read_text())
    for kind, key, value in case["edits"]:
        if kind == "config" and isinstance(manifest, dict) and isinstance(manifest.get("config"), dict):
            manifest["config"][key] = value
        elif kind == "top" and isinstance(manifest, dict):
            manifest[key] = value
        elif kind == "delete" and isinstance(manifest, dict):
            parts = key.split(".")
            node = manifest
            for p in parts[:-1]:
                node = node.get(p) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(parts[-1], None)
        elif kind == "tree":
            manifest = random_mutation(manifest, random.Random(key))
    (run / "run.json").write_text(json.dumps(manifest))
    if case["raw"] is not None:
        (run / "run.json").write_bytes(case["raw"])
    for name, how in case["files"]:
        path = run / name
        if path.is_file():
            if how == "delete":
                path.unlink()
            elif how == "truncate":
                path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
            elif how == "garbage":
                path.write_bytes(bytes(range(256)))
            elif how == "empty":
                path.write_bytes(b"")
            elif how == "dir":
                path.unlink()
                path.mkdir()
    argv = ["run", "--resume", "--out", str(run), "--no-progress", *case["extra"]]
    if "logreg" in case["extra"]:
        argv = ["run", "logreg", "--resume", "--out", str(run), "--no-progress"]
    os.chdir(workdir)
    threads = torch.get_num_threads()
    try:
        r = run_cli(argv)
        check_result(argv, r, workdir)
    finally:
        torch.set_num_threads(threads)


# -- plans (issue 10) ---------------------------------------------------------------------------

PLAN_MAX_STEPS = 400  # optimizer steps driven per case, over all its "steps" operations
PLAN_PREVIEW_STEPS = 1500  # steps of a fresh plan compared between preview() and values()/advance()
PLAN_PREVIEW_UNITS = 200_000  # a horizon (in the plan's unit) above this is previewed with stop=
PLAN_SIGNAL_KEYS = ("train_loss", "val_loss", "grad_norm", "noise_g2", "noise_trace", "loss_z", "val_accuracy")


def build_plan(case: dict):
    """Plan(channels, horizon, unit, rates, micro_batch=...) from a plan case."""
    from cadence import Plan, Rates

    rates = case["rates"]
    if isinstance(rates, tuple) and rates and rates[0] == "not-rates":
        rates = rates[1]
    elif rates is not None:
        rates = Rates(*rates)
    kwargs = {} if isinstance(case["micro_batch"], str) and case["micro_batch"] == "absent" else \
        {"micro_batch": case["micro_batch"]}
    if case.get("guards") is not None:
        kwargs["guards"] = case["guards"]
    if "domains" in case:
        kwargs["domains"] = case["domains"]
    return Plan(case["channels"], case["horizon"], case["unit"], rates, **kwargs)


def _plan_snapshot(plan) -> tuple:
    """What a refused call must leave as it was: clock, controller states, horizon records."""
    return plan.clock.counters(), repr(plan.states), plan.horizons, plan.horizon, repr(plan.guard_states)


def value_keys(plan) -> list[str]:
    """The keys of values() and preview(): a channel's name, or '<channel>/<key>' per key of a vector channel."""
    return [name if not getattr(s, "vector", False) else f"{name}/{k}" for name, s in plan.schedules.items()
            for k in (s.keys if getattr(s, "vector", False) else (None,))]


def check_weights(plan, vals, what: str, where: str = "Plan.values") -> None:
    """A vector channel (mixture/<d>, curriculum/<k>): weights >= 0 that sum to 1 within 1e-9."""
    for name, s in plan.schedules.items():
        if not getattr(s, "vector", False):
            continue
        ws = [vals[f"{name}/{k}"] for k in s.keys]
        total = math.fsum(float(w) for w in ws)
        if any(not w >= 0 for w in ws) or not abs(total - 1.0) <= 1e-9:
            raise Violation("wrong", f"{what}: {name} weights {[float(w) for w in ws]!r:.160} (sum {total!r}) are not "
                            ">= 0 summing to 1", where)


def check_plan_values(plan, vals, what: str) -> None:
    """values(): one finite number >= 0 per channel; the batch a whole number of micro-batches;
    a vector channel's weights (mixture/<d>, curriculum/<k>) >= 0 summing to 1."""
    if not isinstance(vals, dict) or set(vals) != set(value_keys(plan)):
        raise Violation("wrong", f"{what}: values() has keys {sorted(map(str, vals))[:6]}, the plan has channels "
                        f"{sorted(value_keys(plan))[:6]}", "Plan.values")
    m = plan.micro_batch or 1
    for name, v in vals.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise Violation("wrong", f"{what}: values()[{name!r}] is a {type(v).__name__}", "Plan.values")
        if not math.isfinite(v) or v < 0:
            raise Violation("wrong", f"{what}: values()[{name!r}] = {v!r} at {plan.clock.counters()}", "Plan.values")
        if name == "batch" and (not float(v).is_integer() or v < m or int(v) % m):
            raise Violation("wrong", f"{what}: batch {v!r} is not a whole number (>= 1) of micro-batches of {m}",
                            "Plan.values")
    check_weights(plan, vals, what)


def _state_json(plan, what: str) -> str:
    state = plan.state_dict()
    try:
        return json.dumps(state, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise Violation("wrong", f"{what}: state_dict() is not JSON-safe ({type(e).__name__}: {_line(e)})",
                        "Plan.state_dict") from None


class _Drive:
    """A plan and its resumed twins, driven by the same calls: every outcome must agree."""

    def __init__(self, case: dict) -> None:
        self.case = case
        self.plans = [build_plan(case)]
        self.steps = 0
        self.trusted = True  # no tampered state has been accepted: every accepted call must keep working

    @property
    def plan(self):
        return self.plans[0]

    def values(self, what: str):
        """Every twin's values(), checked and equal; None when the plan refuses (an untrusted plan only)."""
        outs = [attempt(p.values) for p in self.plans]
        if any(failed(o) for o in outs):
            if self.trusted and failed(outs[0]) and not self.plan.done:
                raise Violation("wrong", f"{what}: values() refused mid-run at {self.plan.clock.counters()}: "
                                f"{_line(outs[0])}", "Plan.values")
            if not all(failed(o) for o in outs):
                raise Violation("wrong", f"{what}: values() refused by one resumed twin only", "Plan.load_state_dict")
            return None
        for p, vals in zip(self.plans, outs):
            check_plan_values(p, vals, what)
        for vals in outs[1:]:
            if vals.keys() != outs[0].keys() or any(not _same(vals[k], outs[0][k]) for k in vals):
                raise Violation("wrong", f"{what}: a plan resumed from state_dict() gives {vals}, the original "
                                f"{outs[0]}"[:400], "Plan.load_state_dict")
        return outs[0]

    def call(self, method: str, *args, must_accept: bool = False):
        """``method(*args)`` on every twin; a refusal leaves each unchanged; all twins agree."""
        results = []
        for p in self.plans:
            before = _plan_snapshot(p)
            r = attempt(getattr(p, method), *args)
            if failed(r) and _plan_snapshot(p) != before:
                raise Violation("wrong", f"a refused {method}() changed the plan ({_line(r)})", f"Plan.{method}")
            results.append(r)
        if len({failed(r) for r in results}) > 1:
            raise Violation("wrong", f"{method}{args!r:.100}: the original and its resumed twin disagree "
                            f"(one refused: {_line(next(r for r in results if failed(r)))})", "Plan.load_state_dict")
        if must_accept and failed(results[0]):
            raise Violation("wrong", f"{method}() refused valid input {args!r:.120}: {_line(results[0])}",
                            f"Plan.{method}")
        return results[0]

    def run(self, n: int, profile: str, seed: int) -> None:
        rng = random.Random(seed)
        keys = list(dict.fromkeys([*self.plan.monitors, *PLAN_SIGNAL_KEYS, *self.data_keys()]))
        for _ in range(n):
            if self.steps >= PLAN_MAX_STEPS or self.plan.done:
                return
            vals = self.values(f"step {self.steps} ({profile})")
            if vals is None:
                return
            if rng.random() < 0.04:
                self.call("skip")
                continue
            if self.plan.guards and rng.random() < 0.9:  # the guards judge the step before it is applied
                spike = rng.random() < 0.1
                signals = {"train_loss": rng.choice([2.0 + rng.random() * 0.01, 50.0 if spike else 2.0, float("nan")])
                           if profile != "hostile" else rng.choice([None, float("inf"), -1e300, 10**400, 2.0]),
                           "grad_norm": 1.0 + rng.random() * 0.01 + (30.0 if spike else 0.0)}
                verdict = self.call("guard", signals)
                if failed(verdict):
                    return  # gave up (TrainingDiverged): every twin at the same step
                if verdict not in ("apply", "skip", "rollback"):
                    raise Violation("wrong", f"guard() answered {verdict!r}", "Plan.guard")
                if verdict != "apply":
                    self.call("skip", must_accept=self.trusted)
                    continue
            if profile != "silent" and rng.random() < 0.8:
                signals = _random_signals(rng, profile, keys, list(vals))
                self.call("observe", signals, must_accept=profile == "clean" and self.trusted)
            args = ()
            if rng.random() < 0.15:
                args = (int(vals["batch"]) if "batch" in vals else rng.choice([0, 1, 8, 32]),)
            r = self.call("advance", *args)
            if failed(r):
                return  # this plan cannot count a step without being told its size
            self.steps += 1

    def data_keys(self) -> list[str]:
        """Per-domain and per-bucket losses (docs/data.md), read or not by the plan's controllers."""
        domains = self.plan.domains or ()
        return [*(f"{p}/{d}" for p in ("train_loss", "probe_loss") for d in domains),
                *(f"bucket_loss/{k}" for k in range(4))]

    def roundtrip(self) -> None:
        text = _state_json(self.plan, "roundtrip")
        fresh = build_plan(self.case)
        if fresh.horizons[:1] != self.plan.horizons[:1]:
            # set_horizon() at position 0 made it a plan of another horizon (docs/plans.md): its twin is built so
            fresh = build_plan({**self.case, "horizon": self.plan.horizons[0][1]})
        r = attempt(fresh.load_state_dict, json.loads(text))
        if failed(r):
            raise Violation("wrong", f"a fresh plan refuses its twin's state_dict(): {_line(r)}", "Plan.load_state_dict")
        again = _state_json(fresh, "roundtrip")
        if json.loads(again) != json.loads(text):
            raise Violation("wrong", "state_dict() after load_state_dict(state) differs from state", "Plan.load_state_dict")
        self.plans = [self.plan, fresh]
        self.values("after a state_dict() round trip")

    def load(self, state, must_refuse: str | None) -> None:
        from cadence.errors import PlanError

        plan = self.plan
        before, vals = _plan_snapshot(plan), attempt(plan.values)
        r = attempt(plan.load_state_dict, state)
        if failed(r):
            if not isinstance(r, PlanError):
                raise Violation("wrong", f"load_state_dict() refused with {type(r).__name__}, not PlanError",
                                "Plan.load_state_dict")
            after = attempt(plan.values)
            if _plan_snapshot(plan) != before or failed(after) != failed(vals) or \
                    (not failed(vals) and any(not _same(after[k], vals[k]) for k in vals)):
                raise Violation("wrong", f"a refused load_state_dict() changed the plan ({_line(r)})",
                                "Plan.load_state_dict")
            return
        if must_refuse:
            raise Violation("wrong", f"load_state_dict() accepted a state with {must_refuse}", "Plan.load_state_dict")
        self.trusted = False
        self.plans = [plan]
        _state_json(plan, "after an accepted tampered state")
        self.values("after an accepted tampered state")


def _random_signals(rng: random.Random, profile: str, keys: list, channels: list) -> dict:
    out = {}
    for key in keys:
        if rng.random() < 0.4:
            continue
        if "/" in key:  # a domain's or a bucket's loss: spread so that the controllers move
            v = rng.choice([rng.uniform(0.5, 5.0), rng.uniform(1.0, 1.1), 0.0, rng.uniform(1.0, 1.0 + 1e-12)])
            if profile in ("noisy", "hostile") and rng.random() < 0.3:
                v = rng.choice([None, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 2**70, np.float32(2.5)])
            if profile == "hostile" and rng.random() < 0.1:
                v = rng.choice(["2.0", "nan", b"1", [], True])
            out[key] = v
            continue
        if key == "noise_g2":
            v = rng.uniform(-0.01, 0.05)
        elif key == "noise_trace":
            v = rng.uniform(0.0, 10.0)
        elif rng.random() < 0.5:
            v = rng.choice([1.5, 1.5, 1.4, 2.0])
        else:
            v = 2.0 + rng.random()
        if rng.random() < 0.1:
            v = None
        if profile in ("noisy", "hostile") and rng.random() < 0.3:
            v = rng.choice([math.nan, math.inf, -math.inf, np.float32(v or 1.0), np.float64(v or 1.0), np.int64(3), 0,
                            -1.0, 1e308, -1e308, 5e-324, -0.0, np.float16(65504), 2**70, np.float32("nan")])
        if profile == "hostile" and rng.random() < 0.05:
            v = rng.choice(["1.0", True, np.bool_(True), [], b"1", 1j, 10**400, np.uint64(2**63), {}])
        out[key] = v
    if profile in ("noisy", "hostile") and channels and rng.random() < 0.1:
        out[rng.choice(channels)] = rng.choice([0.0, 1e308, math.nan, 3.0])  # a signal named like a channel
    if profile == "hostile" and rng.random() < 0.03:
        out[rng.choice([1, None, b"k", ("a",)])] = 1.0
    return out


def _find_dicts(node, key: str, path=()):
    """Paths to every dict under ``node`` that has ``key``."""
    found = []
    if isinstance(node, dict):
        if key in node:
            found.append(path)
        for k, v in node.items():
            found += _find_dicts(v, key, (*path, k))
    return found


def _at(node, path):
    for k in path:
        node = node[k]
    return node


def must_refuse_states(state: dict) -> list[tuple[str, object]]:
    """Edits of a real state_dict() that load_state_dict() must refuse: (what, state)."""
    out = []

    def edit(what, fn):
        s = json.loads(json.dumps(state))
        fn(s)
        out.append((what, s))

    for junk in (None, [], "x", {}, 1):
        out.append((f"the whole state {junk!r}", junk))
    edit("format cadence.plan/2", lambda s: s.__setitem__("format", "cadence.plan/2"))
    edit("no format", lambda s: s.pop("format"))
    edit("another unit", lambda s: s.__setitem__("unit", "token" if s["unit"] != "token" else "step"))
    edit("an extra channel", lambda s: s["channels"].__setitem__("zz", "constant(value=1.0, warmup=0)"))
    edit("no channels", lambda s: s.__setitem__("channels", {}))
    edit("channels as a list", lambda s: s.__setitem__("channels", list(s["channels"])))
    if state.get("horizons"):
        def other_horizon(s):
            s["horizons"][0][1] += 1
            if len(s["horizons"]) == 1:
                s["horizon"] = s["horizons"][0][1]
        edit("another horizon", other_horizon)
        edit("a horizon record that starts at 1", lambda s: s["horizons"][0].__setitem__(0, 1))
        edit("a horizon record with mode 'x'", lambda s: s["horizons"][0].__setitem__(2, "x"))
    edit("horizons 'x'", lambda s: s.__setitem__("horizons", "x"))
    for key, bad in (("step", -1), ("step", True), ("step", 1.5), ("step", 2**53 + 1), ("step", "3"), ("step", None),
                     ("samples", -1), ("tokens", 10**400), ("skipped", -1)):
        edit(f"clock {key}={bad!r}", lambda s, key=key, bad=bad: s["clock"].__setitem__(key, bad))
    edit("a clock without skipped", lambda s: s["clock"].pop("skipped"))
    edit("a clock with an extra key", lambda s: s["clock"].__setitem__("epoch", 0))
    edit("clock []", lambda s: s.__setitem__("clock", []))
    edit("states {}", lambda s: s.__setitem__("states", {}))
    edit("an extra controller state", lambda s: s["states"].__setitem__("zz", None))
    edit("states with NaN", lambda s: s["states"].__setitem__(next(iter(s["states"])), math.nan))
    for name, value in state["states"].items():
        for path in _find_dicts(value, "rule"):
            for key, bad in (("scale", 2.0), ("scale", 0), ("scale", -0.5), ("scale", math.nan), ("scale", "x"),
                             ("bad", -1), ("observations", 1.5), ("cooldown", True), ("best", "x"), ("best", [])):
                edit(f"{name} rule {key}={bad!r}",
                     lambda s, n=name, p=path, k=key, b=bad: _at(s["states"][n], p)["rule"].__setitem__(k, b))
        for path in _find_dicts(value, "noise"):
            for key, bad in (("batch", 1e18), ("batch", -1.0), ("batch", math.nan), ("batch", "x")):
                edit(f"{name} noise batch={bad!r}",
                     lambda s, n=name, p=path, k=key, b=bad: _at(s["states"][n], p).__setitem__(k, b))
            edit(f"{name} noise count -1", lambda s, n=name, p=path: _at(s["states"][n], p)["noise"].__setitem__(
                "count", -1))
    return out


def check_plan(case: dict) -> None:
    """A Plan built from generated input, driven step by step, round-tripped, tampered with and previewed."""
    d = _Drive(case)
    d.values("after construction")
    for op in case["ops"]:
        name = op[0]
        if name == "steps":
            d.run(op[1], op[2], op[3])
        elif name == "observe":
            d.call("observe", op[1])
        elif name == "advance":
            args = [op[1]] if op[2] is None else [op[1], op[2]]
            if not failed(d.call("advance", *args)):
                d.values(f"after advance{tuple(args)!r:.60}")
        elif name == "skip":
            d.call("skip")
        elif name == "roundtrip":
            d.roundtrip()
        elif name == "tamper":
            state = d.plan.state_dict()
            d.load(random_mutation(state, random.Random(op[1])), None)
        elif name == "refuse":
            options = must_refuse_states(d.plan.state_dict())
            what, state = options[op[1] % len(options)]
            d.load(state, what)
        elif name == "preview":
            _check_preview_call(d.plan, op[1])
        elif name == "set_horizon":
            args = [op[1]] if op[2] is None else [op[1], op[2]]
            if not failed(d.call("set_horizon", *args)):
                d.values("after set_horizon")
    _state_json(d.plan, "at the end")
    for twin in d.plans[1:]:
        if json.loads(_state_json(twin, "at the end")) != json.loads(_state_json(d.plan, "at the end")):
            raise Violation("wrong", "a resumed twin's state_dict() differs from the original's after the same calls",
                            "Plan.load_state_dict")
    if case["preview_check"]:
        check_preview_steps(case)


def _check_preview_call(plan, stop) -> None:
    """preview(stop): bounded (a large or open-ended horizon is previewed with stop), well-formed, no side effect."""
    if stop is None and (plan.horizon is None or plan.horizon > PLAN_PREVIEW_UNITS):
        stop = 1000
    before = _plan_snapshot(plan)
    pv = attempt(plan.preview, stop)
    if _plan_snapshot(plan) != before:
        raise Violation("wrong", "preview() changed the plan", "Plan.preview")
    if failed(pv):
        return
    _check_preview_arrays(plan, pv, stop)


def _check_preview_arrays(plan, pv, stop) -> int:
    keys = ["step", "samples", "tokens", *value_keys(plan)]
    if not isinstance(pv, dict) or sorted(pv) != sorted(keys):
        raise Violation("wrong", f"preview() has keys {sorted(pv)[:8]}", "Plan.preview")
    n = len(pv["step"])
    if any(not isinstance(pv[k], np.ndarray) or pv[k].shape != (n,) for k in keys):
        raise Violation("wrong", "preview() arrays differ in length", "Plan.preview")
    if n == 0 or (stop is not None and n > stop) or not np.array_equal(pv["step"], np.arange(n)):
        raise Violation("wrong", f"preview(stop={stop!r}) has {n} steps", "Plan.preview")
    m = plan.micro_batch or 1
    for k in keys:
        a = pv[k].astype(np.float64)
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            i = int(np.argmax(~np.isfinite(a) | (a < 0)))
            raise Violation("wrong", f"preview()[{k!r}] is {a[i]!r} at step {i}", "Plan.preview")
        if k == "batch" and (np.any(a < m) or np.any(a % m)):
            raise Violation("wrong", f"preview() batch is not a whole number of micro-batches of {m}", "Plan.preview")
    if np.any(np.diff(pv["samples"]) < 0) or np.any(np.diff(pv["tokens"]) < 0):
        raise Violation("wrong", "preview() samples or tokens decrease", "Plan.preview")
    for name, s in plan.schedules.items():  # a vector channel's weights, at every step
        if getattr(s, "vector", False):
            w = np.stack([pv[f"{name}/{k}"].astype(np.float64) for k in s.keys])
            bad = np.any(w < 0, axis=0) | ~(np.abs(w.sum(axis=0) - 1.0) <= 1e-9)
            if np.any(bad):
                i = int(np.argmax(bad))
                check_weights(plan, {k: pv[k][i] for k in keys}, f"preview() step {i}", "Plan.preview")
    return n


def check_preview_steps(case: dict) -> None:
    """A fresh plan's preview() equals stepping it with values()/advance() and no observation."""
    plan = build_plan(case)
    h = plan.horizon
    stop = None if h is not None and h <= PLAN_PREVIEW_UNITS else 300
    pv = attempt(plan.preview, stop)
    if failed(pv):
        return
    n = _check_preview_arrays(plan, pv, stop)
    # A mixing controller or a bandit curriculum previews its initial weights, held (controllers/base.py,
    # VectorController.preview); stepping gives its real weights (aioli's perturbed mixtures, odm's eps_t
    # rounding), so only their sums and signs are checked there. mix(...) is a function of the clock: exact.
    held = {name for name, s in plan.schedules.items() if getattr(s, "vector", False) and s.name != "mix"}
    exact = [k for k in value_keys(plan) if k.split("/", 1)[0] not in held]
    for k in range(min(n, PLAN_PREVIEW_STEPS)):
        c = plan.clock
        counters = (c.step, c.samples, c.tokens)
        want = (int(pv["step"][k]), int(pv["samples"][k]), int(pv["tokens"][k]))
        if counters != want:
            raise Violation("wrong", f"preview() says step, samples, tokens = {want} before step {k}; stepping "
                            f"gives {counters}", "Plan.preview")
        if plan.done:
            raise Violation("wrong", f"preview() has {n} steps but the plan is done after {k}", "Plan.preview")
        vals = attempt(plan.values)
        if failed(vals):
            raise Violation("wrong", f"values() refused at step {k} where preview() gave values: {_line(vals)}",
                            "Plan.values")
        for name in exact:
            if not _same(vals[name], pv[name][k]):
                raise Violation("wrong", f"preview()[{name!r}][{k}] = {pv[name][k]!r} but values() at that step gives "
                                f"{vals[name]!r}", "Plan.preview")
        r = attempt(plan.advance)
        if failed(r):
            raise Violation("wrong", f"advance() refused at step {k} where preview() goes on: {_line(r)}",
                            "Plan.advance")
    if stop is None and n <= PLAN_PREVIEW_STEPS and not plan.done:
        raise Violation("wrong", f"preview() ends after {n} steps but the plan is not done then "
                        f"({plan.clock.counters()}, horizon {h})", "Plan.preview")


# -- plan files (issue 10) ----------------------------------------------------------------------


def plan_file_cpu_limit(case: dict) -> float:
    """`run` trains (TRAINING_CPU_LIMIT_S); `schedule --plan` gets CPU_LIMIT_S."""
    return TRAINING_CPU_LIMIT_S if case["command"] == "run" else CPU_LIMIT_S


def plan_file_argv(case: dict) -> list[str]:
    name = "plan" + case["suffix"]
    if case["command"] == "run":
        return ["run", "logreg", "--plan", name, "--out", "out", "--no-progress", *case["flags"]]
    argv = ["schedule", "--plan", name, *case["flags"]]
    if case["command"] == "csv":
        argv.append("--csv")
    elif case["command"] == "plot":
        argv += ["--plot", "plan.png"]
    return argv


def _command_flags(command: str) -> set[str]:
    from cadence.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return set(sub.choices[command]._option_string_actions)


def check_plan_file(case: dict, workdir: Path) -> None:
    """`cadence schedule --plan FILE` or `cadence run logreg --plan FILE` on a generated plan file."""
    import torch

    (workdir / ("plan" + case["suffix"])).write_bytes(case["content"])
    argv = plan_file_argv(case)
    os.chdir(workdir)
    threads = torch.get_num_threads()
    try:
        r = run_cli(argv)
        if (workdir / "PWNED").exists():
            raise Violation("executed", "a YAML tag in the plan file ran code", argv[0])
        check_result(argv, r, workdir)
    finally:
        torch.set_num_threads(threads)
        _close_figures()
    if r.code != 0:
        m = re.match(r"cadence: error: (--[A-Za-z][\w-]*)", r.err.strip())
        if m and m.group(1) not in _command_flags(argv[0]):
            raise Violation("wrong", f"the error names {m.group(1)}, a flag `cadence {argv[0]}` does not have: "
                            f"{r.err.strip()[:160]!r}", argv[0])
    elif argv[0] == "run":
        _check_plan_run(case, workdir)


def _check_plan_run(case: dict, workdir: Path) -> None:
    from cadence.cli.common import PLAN_FILE_SETTINGS
    from cadence.plan import read_plan_file

    data = read_plan_file(workdir / ("plan" + case["suffix"]), PLAN_FILE_SETTINGS)
    manifest = json.loads((workdir / "out" / "run.json").read_text())
    if data.get("unit", "step") == "step" and isinstance(data.get("horizon"), int) and "--steps" not in case["flags"] \
            and manifest["step"] != data["horizon"]:
        raise Violation("wrong", f"a plan of {data['horizon']} steps ran {manifest['step']} steps", "run --plan")
    rows = (workdir / "out" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    micro = manifest["config"].get("micro_batch") or 1
    for name in data["channels"]:
        if name not in header and not any(h.startswith(name + "/") for h in header):
            raise Violation("wrong", f"metrics.csv has no column for channel {name!r}", "run --plan")
        i = header.index(name)
        for row in rows[1:]:
            v = float(row.split(",")[i])
            if not math.isfinite(v) or v < 0 or (name == "batch" and (v % micro or v < micro)):
                raise Violation("wrong", f"metrics.csv has {name} = {v!r}", "run --plan")


def _check_plan_schedule(args, r: CliResult, cwd: Path) -> None:
    """`cadence schedule --plan FILE` exited 0: the summary, the CSV or the figure is the library's preview."""
    from cadence.cli.common import PLAN_FILE_SETTINGS
    from cadence.plan import Plan, read_plan_file
    from cadence.time import Rates, Unit

    data = read_plan_file(cwd / args.plan, PLAN_FILE_SETTINGS)
    rates = Rates(args.samples_per_step, args.tokens_per_sample, args.steps_per_epoch)
    if rates.samples_per_step is None and isinstance(data.get("batch_size"), int):
        rates = Rates(data["batch_size"], rates.tokens_per_sample, rates.steps_per_epoch)
    from cadence.cli.schedule import _domains

    plan = Plan(data["channels"], horizon=data.get("horizon"), unit=data.get("unit", "step"), rates=rates,
                micro_batch=data.get("micro_batch") if "batch" in data["channels"] else None,
                domains=_domains(args.domains, data["channels"].get("mixture")))
    pv = plan.preview()
    _check_preview_arrays(plan, pv, None)
    channels = value_keys(plan)
    n = pv["step"].size
    unit = {Unit.STEP: "step", Unit.SAMPLE: "sample", Unit.TOKEN: "token"}[plan.unit]
    if args.csv:
        columns = ["step", "samples", "tokens", *channels]
        rows = r.out.splitlines()
        if rows[:1] != [",".join(columns)] or len(rows) != n + 1:
            raise Violation("wrong", f"schedule --plan --csv: {len(rows)} lines and header {rows[:1]!r:.80} for {n} "
                            f"steps of {columns}"[:300], "schedule --plan")
        arrays = [pv[c].tolist() for c in columns]
        for i in (0, n // 2, n - 1):
            if rows[i + 1] != ",".join(repr(a[i]) for a in arrays):
                raise Violation("wrong", f"schedule --plan --csv row {i} differs from Plan.preview()", "schedule --plan")
    elif args.plot:
        if not (cwd / args.plot).is_file() or not (cwd / args.plot).stat().st_size:
            raise Violation("wrong", f"schedule --plan --plot exited 0 without writing {args.plot}", "schedule --plan")
    else:
        first = f"plan on a {unit} clock, horizon {plan.horizon} {unit}s: {n} optimizer steps"
        lines = r.out.splitlines()
        if lines[:1] != [first] or len(lines) < 2 + len(channels):
            raise Violation("wrong", f"schedule --plan printed {lines[:1]!r:.120}, expected {first!r}", "schedule --plan")
    _finite_output(r, "schedule --plan")


def warm_up_plans(workdir: Path) -> None:
    """First-call costs of plans (controllers, preview, yaml, plots, a logreg run) outside the limits."""
    workdir.mkdir(parents=True, exist_ok=True)
    check_plan({"channels": {"lr": "plateau(cosine(peak=1e-3), patience=1)", "batch": "ramp(8, 32, 10)",
                             "weight_decay": "scale_with(linear(peak=0.1), reference=8)"},
                "horizon": 20, "unit": "step", "rates": None, "micro_batch": 8,
                "ops": [("steps", 10, "noisy", 1), ("roundtrip",), ("refuse", 1), ("preview", None)],
                "preview_check": True})
    check_plan({"channels": {"batch": "noise_batch(start=16, max=64, min_observations=1)"}, "horizon": "1Ksa",
                "unit": "sample", "rates": (16, 4, None), "micro_batch": 8, "ops": [("steps", 5, "clean", 2)],
                "preview_check": True})
    cases = [{"suffix": ".yaml", "content": b"horizon: 3\neval_every: 1\nchannels: {lr: 'cosine(peak=0.1)'}\n",
              "command": "run", "flags": []},
             {"suffix": ".yaml", "content": b"horizon: 20\nchannels: {lr: 'cosine(peak=0.1)', batch: 'ramp(8, 32, 5)'}\n"
              b"micro_batch: 8\n", "command": "plot", "flags": []},
             {"suffix": ".json", "content": b'{"horizon": 20, "channels": {"lr": 0.1}}', "command": "csv", "flags": []}]
    for i, case in enumerate(cases):
        d = workdir / f"plan-warm-{i}"
        d.mkdir(exist_ok=True)
        cwd = os.getcwd()
        try:
            check_plan_file(case, d)
        finally:
            os.chdir(cwd)
