"""Kill the runner (SIGKILL) at exact points and at random instants, resume, compare bytes.

Exact points come from the test hook CADENCE_KILL_AT=POINT:N (cadence._atomic.kill_point).
Victims are forked from a forkserver that has torch imported, so a kill costs milliseconds,
not an interpreter start. benchmarks/kill_runner.py does the same many more times.
The closed-loop cases at the end kill runs whose plan has active controllers (a plateau with a
batch ramp; noise_batch with scale_with) and check that the controllers act in those runs.
"""

import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cadence.bench.runner import TEMP_FILES, RunConfig, train

CTX = multiprocessing.get_context("forkserver")
# torch._dynamo: the optimizers import it on first use, 3 s a child if the forkserver has not
CTX.set_forkserver_preload(["cadence.bench.runner", "cadence.bench.compare", "cadence.bench.report", "cadence.cli",
                            "sklearn.datasets", "torch._dynamo"])
SETTINGS = dict(workload="digits", channels={"lr": "cosine(peak=3e-3, warmup=5)"}, horizon=40, eval_every=10,
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


def _finish(out: Path, settings: dict | None = None) -> bytes:
    manifest = train(RunConfig(**(settings or SETTINGS)), out, resume=True, threads=1)
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
    argv = ["run", "digits", "--lr", SETTINGS["channels"]["lr"], "--steps", "40", "--eval-every", "10",
            "--checkpoint-every", "10", "--threads", "1", "--no-progress", "--out", str(out)]
    env = {"CADENCE_KILL_AT": "row:25", "CADENCE_KILL_SIGNAL": sig}  # the process signals itself after row 25
    assert _child(_cli, argv, env) == 130
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["step"] == 20
    assert _finish(out) == reference


def test_tiny_lm_killed_from_outside_resumes_to_the_same_bytes(tmp_path):
    """The transformer workload, killed by another process once its 30th row is on disk."""
    settings = dict(workload="tiny-lm", size="xs", channels={"lr": "cosine(peak=2e-3, warmup=10)"}, horizon=45, eval_every=15,
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


# -- closed loops: controllers whose state the checkpoint must carry ---------------------------------
# A plateau on val_loss over a warmup+cosine with a linear batch ramp, and noise_batch (the batch grows
# with the measured gradient noise scale) with an LR that follows it (scale_with), both on a sample clock
# with two or more micro-batches per step. A resume must restore the controllers' state (best, bad count,
# scale, noise averages, the unrounded batch), the data cursor and the clock, or the bytes differ.

LOOPS = {
    "plateau": dict(workload="digits", channels={"lr": "plateau(warmup(cosine(peak=0.05), '10%'), patience=1, factor=0.5)",
                                                 "batch": "ramp(32, 128, '40%', shape='linear')"},
                    unit="sample", horizon=12000, micro_batch=32, eval_every=3, checkpoint_every=5),
    "noise": dict(workload="digits", channels={"lr": "scale_with(cosine(peak=0.05), reference=64)",
                                               "batch": "noise_batch(start=64, max=256, growth=1.2, min_observations=3)"},
                  unit="sample", horizon=12000, micro_batch=32, eval_every=3, checkpoint_every=5),
}
# Where the resume scenarios start: killed mid-way, while the ramp and the noise batch are still moving.
LOOP_BASE_ROW = {"plateau": 38, "noise": 33}


def _column(data: bytes, name: str) -> list[str]:
    lines = data.decode().splitlines()
    at = lines[0].split(",").index(name)
    return [line.split(",")[at] for line in lines[1:]]


@pytest.fixture(scope="module")
def loop_reference(tmp_path_factory) -> dict[str, bytes]:
    """Uninterrupted runs of both loops, and proof that their controllers act in them."""
    import numpy as np

    from cadence import Plan
    from cadence.bench.workloads import get_workload

    refs = {}
    for name, settings in LOOPS.items():
        out = tmp_path_factory.mktemp(f"loop-{name}") / "run"
        train(RunConfig(**settings), out, threads=1)
        refs[name] = data = (out / "metrics.csv").read_bytes()
        batches = [int(b) for b in _column(data, "batch")]
        assert len(set(batches)) >= 3, f"{name}: the batch never changed ({sorted(set(batches))})"
        assert all(b % 32 == 0 for b in batches)
        state = torch.load(out / "checkpoint.pt", weights_only=True)["plan"]["states"]
        if name == "plateau":
            assert len(state["lr"]["rule"]["reductions"]) >= 1, "the plateau never reduced the LR"
            # the LR is below what the same schedule gives without the plateau rule: the halvings reached the run
            open_loop = Plan({"lr": "warmup(cosine(peak=0.05), '10%')", "batch": settings["channels"]["batch"]},
                             horizon=settings["horizon"], unit="sample", rates=get_workload("digits").rates(32),
                             micro_batch=32).preview()
            lr = np.array([float(v) for v in _column(data, "lr")])
            assert open_loop["batch"].tolist() == batches
            assert (lr <= open_loop["lr"]).all() and (lr < 0.6 * open_loop["lr"]).any()
        else:
            assert batches[0] == 64 and max(batches) > 64 and state["batch"]["batch"] > 64
            assert any(_column(data, "noise_g2")), "the noise scale was never measured"
    return refs


@pytest.fixture(scope="module")
def loop_killed_mid_run(tmp_path_factory) -> dict[str, Path]:
    bases = {}
    for name, settings in LOOPS.items():
        out = tmp_path_factory.mktemp(f"loop-base-{name}") / "run"
        assert _child(_victim, str(out), f"row:{LOOP_BASE_ROW[name]}", False, settings) == SIGKILLED
        bases[name] = out
    return bases


LOOP_RESUME_POINTS = [("plateau", p) for p in ("truncate:metrics.csv:1", "truncated:timing.csv:1", "rename:run.json:1",
                                               "write:checkpoint.pt:1", "renamed:checkpoint.pt:1", "row:3",
                                               "write:checkpoint.pt:4", "rename:run.json:2")]
LOOP_RESUME_POINTS += [("noise", p) for p in ("truncated:metrics.csv:1", "write:checkpoint.pt:1", "row:4",
                                              "renamed:checkpoint.pt:3")]


@pytest.mark.parametrize("loop, point", LOOP_RESUME_POINTS)
def test_closed_loop_killed_during_resume_at_an_exact_point(loop, point, loop_killed_mid_run, loop_reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(loop_killed_mid_run[loop], out)
    assert _child(_victim, str(out), point, True, LOOPS[loop]) == SIGKILLED, f"{point} was never reached"
    assert _finish(out, LOOPS[loop]) == loop_reference[loop]


@pytest.mark.parametrize("loop, point", [("plateau", "row:1"), ("plateau", "write:checkpoint.pt:2"),
                                         ("plateau", "renamed:checkpoint.pt:9"), ("noise", "row:12"),
                                         ("noise", "renamed:checkpoint.pt:4")])
def test_closed_loop_killed_in_a_new_run_at_an_exact_point(loop, point, loop_reference, tmp_path):
    out = tmp_path / "run"
    assert _child(_victim, str(out), point, False, LOOPS[loop]) == SIGKILLED
    assert _finish(out, LOOPS[loop]) == loop_reference[loop]


def _killed_at_random_rows(settings: dict, reference: bytes, out: Path, seed: str) -> None:
    """SIGKILL at a random row, resume, SIGKILL the resume at a random row of its own, twice more, finish."""
    rng = random.Random(seed)
    rows = reference.count(b"\n") - 1
    kills = []
    for attempt in range(3):
        done = torch.load(out / "checkpoint.pt", weights_only=True)["step"] if (out / "checkpoint.pt").exists() else 0
        row = rng.randrange(1, rows - done)
        kills.append((done, row))
        assert _child(_victim, str(out), f"row:{row}", attempt > 0, settings) == SIGKILLED, kills
    assert _finish(out, settings) == reference, kills


@pytest.mark.parametrize("loop", list(LOOPS))
def test_closed_loop_killed_at_random_rows_again_and_again(loop, loop_reference, tmp_path):
    _killed_at_random_rows(LOOPS[loop], loop_reference[loop], tmp_path / "run", f"closed-loop-{loop}")


def test_closed_loop_plan_file_through_the_command_line_sigterm_then_resume(loop_reference, tmp_path):
    """`cadence run digits --plan f.yaml`, SIGTERM after its 50th row: exit 130, `interrupted`; `--resume`: same bytes."""
    settings = LOOPS["plateau"]
    lines = [f"{key}: {settings[key]}" for key in ("unit", "horizon", "micro_batch", "eval_every", "checkpoint_every")]
    lines += ["channels:"] + [f"  {name}: {json.dumps(spec)}" for name, spec in settings["channels"].items()]
    plan = tmp_path / "f.yaml"
    plan.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    argv = ["run", "digits", "--plan", str(plan), "--threads", "1", "--no-progress", "--out", str(out)]
    assert _child(_cli, argv, {"CADENCE_KILL_AT": "row:50", "CADENCE_KILL_SIGNAL": "TERM"}) == 130
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["step"] == 45  # row 50 was written, its checkpoint not
    assert manifest["config"] == asdict(RunConfig(**settings).resolved())
    assert _child(_cli, ["run", "--resume", "--out", str(out), "--no-progress"], {}) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert (out / "metrics.csv").read_bytes() == loop_reference["plateau"]


# -- data over time: an online mixer, a bandit curriculum and per-sample weights, all acting ----------------------

DATA_LOOP = dict(workload="text", size="xs", horizon=48, batch_size=16, eval_every=8, checkpoint_every=5,
                 difficulty="length",
                 channels={"lr": "cosine(peak=3e-3, warmup=4)",
                           "mixture": "aioli(rounds=3, sweeps=1, probe_every=2, eta=2.0)",
                           "curriculum": "sec()", "sample_weights": "reweight(burn_in=10)"})


@pytest.fixture(scope="module")
def data_loop(tmp_path_factory) -> "tuple[dict, bytes, Path]":
    """The settings (on a small corpus of three domains), the uninterrupted run's bytes, a run killed mid-way;
    and proof that the mixer, the curriculum and the weights act in that run."""
    from test_text_workload import make_corpus

    root = tmp_path_factory.mktemp("data-loop")
    settings = {**DATA_LOOP, "data": str(make_corpus(root / "corpus"))}
    train(RunConfig(**settings), root / "reference", threads=1)
    data = (root / "reference" / "metrics.csv").read_bytes()
    for domain in ("code", "numbers", "prose"):
        assert len(set(_column(data, f"mixture/{domain}"))) >= 3, f"the mixture of {domain} never moved"
    assert len(set(_column(data, "curriculum/0"))) >= 3, "the curriculum never moved"
    assert set(_column(data, "sample_weights")) == {"0.0", "1.0"}
    assert any(_column(data, "probe_loss/code")), "the mixer's probe was never measured"
    base = root / "killed"
    assert _child(_victim, str(base), "row:23", False, settings) == SIGKILLED
    return settings, data, base


@pytest.mark.parametrize("point", ["truncate:metrics.csv:1", "rename:run.json:1", "write:checkpoint.pt:1",
                                   "renamed:checkpoint.pt:2", "row:5"])
def test_data_channels_killed_during_resume_at_an_exact_point(point, data_loop, tmp_path):
    settings, reference, base = data_loop
    out = tmp_path / "run"
    shutil.copytree(base, out)
    assert _child(_victim, str(out), point, True, settings) == SIGKILLED, f"{point} was never reached"
    assert _finish(out, settings) == reference


def test_data_channels_killed_at_random_rows_again_and_again(data_loop, tmp_path):
    settings, reference, _ = data_loop
    _killed_at_random_rows(settings, reference, tmp_path / "run", "data-loop")
