import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cadence.bench.report import load_metrics
from cadence.bench.runner import RunConfig, TrainingDiverged, train
from cadence.cli import main
from cadence.errors import CadenceError

CLI = [sys.executable, "-m", "cadence.cli"]


def digits_config(**kw):
    base = dict(workload="digits", plan={"lr": "cosine(peak=3e-3, warmup=5)"}, steps=40, eval_every=10, checkpoint_every=10)
    base.update(kw)
    return RunConfig(**base)


def test_metrics_schema_and_manifest(tmp_path):
    cfg = digits_config(plan={"lr": "cosine(peak=3e-3, warmup=5)", "weight_decay": "linear(peak=1e-3, final=0.0)"})
    manifest = train(cfg, tmp_path / "run")
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["step", "samples", "tokens", "lr", "weight_decay", "train_loss", "grad_norm", "val_loss", "val_accuracy"]
    m = load_metrics(tmp_path / "run" / "metrics.csv")
    assert m["step"].tolist() == list(range(40))
    assert m["samples"][-1] == 40 * 64
    assert (~torch.isnan(torch.tensor(m["val_loss"]))).sum() == 4  # every 10 steps
    assert m["lr"][0] == 0.0 and m["lr"][5] == pytest.approx(3e-3)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["status"] == "complete" and saved["config"]["plan"]["lr"].startswith("cosine(")
    assert {"torch", "numpy", "python", "cadence"} <= set(saved["versions"])
    assert manifest["parameters"] == saved["parameters"] > 1000
    assert len((tmp_path / "run" / "timing.csv").read_text().splitlines()) == 41
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 40


def test_stopped_and_resumed_in_process_is_identical(tmp_path):
    train(digits_config(), tmp_path / "a")
    train(digits_config(), tmp_path / "b", stop_after=25)  # last checkpoint at 20; rows 20-24 get rewritten
    train(digits_config(), tmp_path / "b", resume=True)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()


def _wait_for_rows(path: Path, rows: int, proc, limit=60.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        if path.exists() and path.read_text().count("\n") > rows:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("the run made no progress")


@pytest.mark.parametrize("workload, extra", [
    ("digits", ["--steps", "1500", "--checkpoint-every", "25", "--eval-every", "20"]),
    ("tiny-lm", ["--size", "xs", "--steps", "90", "--checkpoint-every", "7", "--eval-every", "30"]),
])
def test_killed_and_resumed_run_writes_the_same_metrics(tmp_path, workload, extra):
    args = [workload, "--lr", "cosine(peak=2e-3, warmup=10)", "--seed", "3", "--threads", "1", "--no-progress", *extra]
    victim = tmp_path / "victim"
    proc = subprocess.Popen(CLI + ["run", *args, "--out", str(victim)], stderr=subprocess.PIPE, text=True)
    _wait_for_rows(victim / "metrics.csv", 30, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((victim / "run.json").read_text())["status"] == "running"
    done = subprocess.run(CLI + ["run", "--resume", "--out", str(victim), "--threads", "1", "--no-progress"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    clean = subprocess.run(CLI + ["run", *args, "--out", str(tmp_path / "clean")], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert (victim / "metrics.csv").read_bytes() == (tmp_path / "clean" / "metrics.csv").read_bytes()
    assert not list(victim.glob(".*.tmp"))  # no half-written checkpoint left behind


def test_divergence_stops_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main(["run", "digits", "--lr", "constant(value=1e6)", "--optimizer", "sgd", "--steps", "100",
                 "--checkpoint-every", "1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "became nan" in err and "is kept in" in err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "diverged"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == manifest["step"] and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("argv, fragment", [
    (["run", "mnist", "--out", "x"], "unknown workload 'mnist'"),
    (["run", "digits", "--lr", "cosine(peak=", "--out", "x"], "cannot parse"),
    (["run", "digits", "--lr", "cosine(peak=1, warmup=900)", "--steps", "100", "--out", "x"], "leaves no steps"),
    (["run", "digits", "--lr", "wsd(peak=1, decay='3ep')", "--steps", "10", "--out", "x"], "longer than the run"),
    (["run", "digits", "--set", "weight_decay", "--out", "x"], "FIELD=SPEC"),
    (["run", "digits", "--size", "huge", "--out", "x"], "unknown --size"),
    (["run", "--out", "x"], "name a WORKLOAD"),
    (["run", "digits", "--device", "tpu", "--out", "x"], "must be 'cpu' or 'cuda[:N]'"),
    (["run", "digits", "--steps", "5", "--eval-every", "0", "--out", "x"], "--eval-every"),
    (["run", "--resume", "--out", "nothing-here"], "holds no cadence run"),
    (["bench", "digits", "--plan", "a=cosine(peak=1)", "--plan", "a=linear(peak=1)"], "name 'a' is given twice"),
    (["bench", "digits", "--plan", "bad name=cosine(peak=1)", "--out", "b"], "plan name"),
    (["bench", "digits", "--quick"], "--quick is defined for tiny-lm only"),
    (["bench", "digits", "--plan", "a=cosine(peak=1)", "--baseline", "b", "--out", "b"], "--baseline 'b' is not one"),
])
def test_bad_input_one_line(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cadence: error:") and err.count("\n") == 1, err
    assert fragment in err


def test_output_folder_rules(tmp_path, capsys):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("my notes")
    with pytest.raises(CadenceError, match="not empty and holds no cadence run"):
        train(digits_config(steps=8), own)
    out = tmp_path / "run"
    train(digits_config(steps=8), out)
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(CadenceError, match="pass --resume to continue it or --overwrite"):
        train(digits_config(steps=8), out)
    train(digits_config(steps=9), out, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"  # --overwrite replaces only the run's own files
    with pytest.raises(CadenceError, match="other settings.*steps: 9 in the run, 12 asked"):
        train(digits_config(steps=12), out, resume=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete-metrics"])
def test_corrupt_resume_is_a_clear_error(tmp_path, damage, capsys):
    out = tmp_path / "run"
    train(digits_config(), out, stop_after=25)
    if damage == "truncate":
        data = (out / "checkpoint.pt").read_bytes()
        (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
        fragment = "unreadable or corrupt"
    elif damage == "garbage":
        (out / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
        fragment = "unreadable or corrupt"
    else:
        (out / "metrics.csv").unlink()
        fragment = "missing or has other columns"
    code = main(["run", "--resume", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1


def test_resume_removes_a_checkpoint_write_cut_short(tmp_path):
    out = tmp_path / "run"
    train(digits_config(), out, stop_after=25)
    partial = out / ".checkpoint.pt.abc123.tmp"  # what a kill during atomic_write leaves behind
    partial.write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("not ours")
    train(digits_config(), out, resume=True)
    assert not partial.exists() and (out / "notes.tmp").exists()
