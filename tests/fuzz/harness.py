"""The properties every fuzz case must hold, and the limits it runs under.

Properties (issue 9):

* the only exceptions that escape the library are cadence's own (``CadenceError`` and its
  subclasses); Python warnings count too, since a user sees them;
* every CLI invocation ends with exit 0 and a correct result, or a non-zero exit and one
  line on stderr (``cadence: error: ...``), never a traceback;
* no case takes more than 2 s of CPU or grows the process by more than 1 GiB.

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
    other = attempt(again.values, total, rates)
    if failed(other) or not _same(values, other):
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
    if command == "schedule":
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
        losses = law.predict(lrs, np.arange(args.total))
        if args.csv:
            want = ["step,lr,loss"] + [f"{i},{lr!r},{l!r}" for i, (lr, l) in enumerate(zip(lrs.tolist(), losses.tolist()))]
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
