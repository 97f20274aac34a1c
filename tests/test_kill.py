"""Kill the runner (SIGKILL) at exact points and at random instants, resume, compare bytes.

Exact points come from the test hook CADENCE_KILL_AT=POINT:N (cadence._atomic.kill_point).
Victims are forked from a forkserver that has torch imported, so a kill costs milliseconds,
not an interpreter start. benchmarks/kill_runner.py does the same many more times.
"""

import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from cadence.bench.runner import TEMP_FILES, RunConfig, train

CTX = multiprocessing.get_context("forkserver")
# torch._dynamo: the optimizers import it on first use, 3 s a child if the forkserver has not
CTX.set_forkserver_preload(["cadence.bench.runner", "cadence.bench.compare", "cadence.bench.report", "cadence.cli",
                            "sklearn.datasets", "torch._dynamo"])
SETTINGS = dict(workload="digits", plan={"lr": "cosine(peak=3e-3, warmup=5)"}, steps=40, eval_every=10,
                checkpoint_every=10)
SIGKILLED = -signal.SIGKILL


def _victim(out: str, kill_at: str, resume: bool, settings: dict | None = None) -> None:
    """Runs in a forked child: train until the kill point fires (exit 0 means it never did)."""
    os.environ["CADENCE_KILL_AT"] = kill_at
    train(RunConfig(**(settings or SETTINGS)), out, resume=resume, threads=1)
    os._exit(0)


def _cli(argv: list[str], env: dict[str, str]) -> None:
    """Runs in a forked child: the real command line, with its signal handling."""
    from cadence.cli import main

    os.environ.update(env)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    sys.exit(main(argv))


def _child(target, *args, timeout: float = 120.0):
    proc = CTX.Process(target=target, args=args)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        pytest.fail(f"{target.__name__}{args} did not end in {timeout}s")
    return proc.exitcode


def _finish(out: Path) -> bytes:
    manifest = train(RunConfig(**SETTINGS), out, resume=True, threads=1)
    assert manifest["status"] == "complete" and manifest["bit_exact"]
    assert not [n for n in TEMP_FILES if os.path.lexists(out / n)]
    return (out / "metrics.csv").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("reference") / "run"
    train(RunConfig(**SETTINGS), out, threads=1)
    return (out / "metrics.csv").read_bytes()


@pytest.fixture(scope="module")
def killed_mid_run(tmp_path_factory) -> Path:
    """A run SIGKILLed after its 25th row: checkpoint at step 20, rows 20-24 maybe on disk."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert _child(_victim, str(out), "row:25", False) == SIGKILLED
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    return out


# Points during a resume: each CSV's first write (the cut back), the rename of run.json (status
# running, then complete), the checkpoint's write (torn temporary file) and rename, a row.
RESUME_POINTS = ["truncate:metrics.csv:1", "truncated:metrics.csv:1", "truncated:timing.csv:1", "rename:run.json:1",
                 "write:checkpoint.pt:1", "rename:checkpoint.pt:1", "renamed:checkpoint.pt:1", "row:3",
                 "rename:checkpoint.pt:2", "rename:run.json:2"]


@pytest.mark.parametrize("point", RESUME_POINTS)
def test_kill_during_resume_at_an_exact_point(point, killed_mid_run, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(killed_mid_run, out)
    assert _child(_victim, str(out), point, True) == SIGKILLED, f"{point} was never reached"
    assert (out / "metrics.csv").stat().st_size > 0  # the history is never emptied
    assert _finish(out) == reference


@pytest.mark.parametrize("point", ["rename:run.json:1", "write:checkpoint.pt:1", "renamed:checkpoint.pt:1", "row:1"])
def test_kill_during_a_new_run_at_an_exact_point(point, reference, tmp_path):
    out = tmp_path / "run"
    assert _child(_victim, str(out), point, False) == SIGKILLED
    if not (out / "run.json").exists():  # killed before its manifest: the same command starts it again
        assert not [p for p in out.iterdir() if p.name not in TEMP_FILES]
        train(RunConfig(**SETTINGS), out, threads=1)
    assert _finish(out) == reference


def _started(out: Path, before: int | None, proc) -> bool:
    """The child has written run.json (a new inode: rename), so the kill lands in training, not in imports."""
    try:
        return os.stat(out / "run.json").st_ino != before
    except FileNotFoundError:
        return not proc.is_alive()


def test_kills_at_random_instants_then_resume(reference, tmp_path):
    """A chain: start, kill at a random instant, resume, kill again (often mid-resume), ..., finish."""
    rng = random.Random(20240917)
    out = tmp_path / "run"
    kills = 0
    for attempt in range(5):
        before = os.stat(out / "run.json").st_ino if (out / "run.json").exists() else None
        proc = CTX.Process(target=_victim, args=(str(out), "none:0", attempt > 0))
        proc.start()
        deadline = time.time() + 60
        while not _started(out, before, proc) and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.08))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        kills += proc.exitcode == SIGKILLED
        if proc.exitcode == 0:
            break  # finished before the kill: nothing more to interrupt
    assert kills >= 1
    assert _finish(out) == reference


@pytest.mark.parametrize("sig", ["TERM", "INT"])
def test_sigterm_and_sigint_leave_an_interrupted_resumable_run(sig, reference, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "digits", "--lr", SETTINGS["plan"]["lr"], "--steps", "40", "--eval-every", "10",
            "--checkpoint-every", "10", "--threads", "1", "--no-progress", "--out", str(out)]
    env = {"CADENCE_KILL_AT": "row:25", "CADENCE_KILL_SIGNAL": sig}  # the process signals itself after row 25
    assert _child(_cli, argv, env) == 130
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["step"] == 20
    assert _finish(out) == reference


def test_tiny_lm_killed_from_outside_resumes_to_the_same_bytes(tmp_path):
    """The transformer workload, killed by another process once its 30th row is on disk."""
    settings = dict(workload="tiny-lm", size="xs", plan={"lr": "cosine(peak=2e-3, warmup=10)"}, steps=45, eval_every=15,
                    checkpoint_every=7)
    victim = tmp_path / "victim"
    proc = CTX.Process(target=_victim, args=(str(victim), "none:0", False, settings))
    proc.start()
    deadline = time.time() + 300
    while not ((victim / "metrics.csv").exists() and (victim / "metrics.csv").read_bytes().count(b"\n") > 30):
        assert proc.is_alive() and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == SIGKILLED and json.loads((victim / "run.json").read_text())["status"] == "running"
    train(RunConfig(**settings), victim, resume=True, threads=1)
    train(RunConfig(**settings), tmp_path / "clean", threads=1)
    assert (victim / "metrics.csv").read_bytes() == (tmp_path / "clean" / "metrics.csv").read_bytes()
    assert not [n for n in TEMP_FILES if os.path.lexists(victim / n)]


def _children(pid: int) -> set[int]:
    kids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.add(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped; only its exit status is left


@pytest.mark.parametrize("sig", ["TERM", "KILL"])
def test_bench_workers_stop_with_the_bench(sig, tmp_path):
    """SIGTERM: the bench stops its workers and exits 130. SIGKILL: the orphaned workers notice and stop."""
    out = tmp_path / "b"
    argv = ["bench", "logreg", "--plan", "a=constant(value=0.01)", "--plan", "b=constant(value=0.02)", "--seeds", "1",
            "--steps", "1000000", "--eval-every", "100000", "--jobs", "2", "--threads", "1", "--no-progress",
            "--out", str(out)]
    proc = CTX.Process(target=_cli, args=(argv, {}))
    proc.start()
    runs = [out / "runs" / plan / "seed-0" / "metrics.csv" for plan in ("a", "b")]
    deadline = time.time() + 180
    while not all(p.exists() and p.read_bytes().count(b"\n") > 3 for p in runs):
        assert proc.is_alive() and time.time() < deadline, "the bench did not start both runs"
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 2  # two workers (and multiprocessing's resource tracker)
    os.kill(proc.pid, getattr(signal, "SIG" + sig))
    proc.join(60)
    assert proc.exitcode == (130 if sig == "TERM" else SIGKILLED)
    deadline = time.time() + 30
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived the bench"
    sizes = [p.stat().st_size for p in runs]
    time.sleep(0.5)
    assert [p.stat().st_size for p in runs] == sizes  # nobody writes any more
    for p in runs:
        assert json.loads((p.parent / "run.json").read_text())["status"] == "interrupted"
