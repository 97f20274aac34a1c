"""The runner's spike guards on real (short) runs, with corrupted batches injected by a monkeypatched workload.

The data of micro-batch ``i`` of a run is ``workload.batch(seed, i, micro_batch)``, skipped
steps' batches included; the tests replace that method on the process's workload instance so
that chosen indices come back with every label wrong (benchmarks/guard_spikes.py measures the
same on every workload).
"""

from __future__ import annotations

import csv
import json

import pytest

from cadence.bench import runner
from cadence.bench.runner import RunConfig, train
from cadence.bench.workloads import get_workload
from cadence.errors import EXIT_DIVERGED, RunError, TrainingDiverged

LR = "linear(peak=0.1)"  # logreg's default
SPIKE = {"loss_spike": {}}  # the defaults: window 128, 6 sigma, judged from the 65th value, 10 skips in a row
ROLLBACK = {"loss_spike": {}, "rollback": {}}  # and 3 skips within 100 attempts: back to the last checkpoint


def _config(horizon: int, guards=None, **kw) -> RunConfig:
    return RunConfig("logreg", channels={"lr": LR}, horizon=horizon, seed=3, checkpoint_every=50, guards=guards, **kw)


def _corrupt(monkeypatch, bad) -> list[int]:
    """Labels flipped in the logreg micro-batches whose index is in ``bad`` (a set or a predicate);
    returns the list of indices drawn, in order."""
    w = get_workload("logreg")
    clean = type(w).batch
    drawn: list[int] = []

    def batch(seed, i, batch_size):
        drawn.append(i)
        x, y = clean(w, seed, i, batch_size)
        return (x, 1 - y) if (bad(i) if callable(bad) else i in bad) else (x, y)

    monkeypatch.setattr(w, "batch", batch)
    return drawn


def _rows(out) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_guard_that_never_fires_changes_nothing(tmp_path):
    plain = train(_config(120), tmp_path / "plain", threads=1)
    guarded = train(_config(120, SPIKE), tmp_path / "guarded", threads=1)
    assert plain["status"] == guarded["status"] == "complete" and "skipped" not in guarded
    a, b = _rows(tmp_path / "plain"), _rows(tmp_path / "guarded")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]
    assert {r["loss_spike.skipped"] for r in b} == {"0"}
    assert guarded["config"]["guards"] == {"loss_spike": {"window": 128, "sigma": 6.0, "min_history": 64,
                                                          "signal": "train_loss", "max_in_a_row": 10}}


def test_an_injected_corrupted_batch_is_skipped_and_the_clock_does_not_move(tmp_path, monkeypatch):
    drawn = _corrupt(monkeypatch, {100})
    unguarded = train(_config(150), tmp_path / "unguarded", threads=1)
    del drawn[:]
    guarded = train(_config(150, SPIKE), tmp_path / "guarded", threads=1)
    assert unguarded["status"] == guarded["status"] == "complete"
    assert "skipped" not in unguarded and guarded["skipped"] == 1
    assert drawn == list(range(151))  # 150 steps applied, one skipped: its batch was drawn too

    u, g = _rows(tmp_path / "unguarded"), _rows(tmp_path / "guarded")
    assert [int(r["step"]) for r in g] == list(range(150))  # no gap: the skipped step has no row
    assert [int(r["samples"]) for r in g] == [32 * (t + 1) for t in range(150)]  # nor samples
    assert [int(r["loss_spike.skipped"]) for r in g] == [0] * 100 + [1] * 50
    assert [r["lr"] for r in g] == [r["lr"] for r in u]  # the plan's values follow the clock, not the attempts
    assert [r["train_loss"] for r in g[:100]] == [r["train_loss"] for r in u[:100]]  # the same run up to the spike
    spike = float(u[100]["train_loss"])
    typical = sorted(float(r["train_loss"]) for r in u[50:100])[25]
    assert spike > 10 * typical  # the unguarded run took the corrupted batch at step 100
    assert float(g[100]["train_loss"]) < 3 * typical  # the guarded one took batch 101 at step 100


def test_a_loss_that_stays_high_is_a_diverged_run(tmp_path, monkeypatch):
    drawn = _corrupt(monkeypatch, lambda i: i >= 100)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="11 steps in a row were skipped"):
        train(_config(150, SPIKE), out, threads=1)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "diverged" and manifest["diverged_at"] == 100 and manifest["step"] == 100
    assert manifest["skipped"] == 10  # the steps the guard skipped before the 11th stopped the run
    assert len(_rows(out)) == 100 and drawn == list(range(111))  # one attempt and 10 more at step 100
    assert TrainingDiverged("").exit_code == EXIT_DIVERGED == 3
    with pytest.raises(TrainingDiverged):  # resumed, it diverges again at the same step
        train(_config(150, SPIKE), out, resume=True)
    assert json.loads((out / "run.json").read_text())["diverged_at"] == 100


def test_max_in_a_row_sets_when_skipping_becomes_diverged(tmp_path, monkeypatch):
    drawn = _corrupt(monkeypatch, lambda i: i >= 100)
    with pytest.raises(TrainingDiverged, match="max_in_a_row=3"):
        train(_config(150, {"loss_spike": {"max_in_a_row": 3}}), tmp_path / "run", threads=1)
    assert drawn[-1] == 103


@pytest.mark.parametrize("how", ["plan file", "--guard"])
def test_the_cli_stops_a_diverged_guarded_run_with_exit_3(tmp_path, monkeypatch, capsys, how):
    from cadence.cli import main

    _corrupt(monkeypatch, lambda i: i >= 70)
    out = tmp_path / "run"
    if how == "plan file":
        plan = tmp_path / "plan.yaml"
        plan.write_text(f"horizon: 120\nchannels:\n  lr: \"{LR}\"\nguards:\n  loss_spike: {{sigma: 6}}\n")
        args = ["--plan", str(plan)]
    else:
        args = ["--lr", LR, "--steps", "120", "--guard", "loss_spike:sigma=6"]
    code = main(["run", "logreg", *args, "--out", str(out), "--no-progress", "--threads", "1"])
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["guards"]["loss_spike"]["sigma"] == 6.0
    assert code == EXIT_DIVERGED and manifest["status"] == "diverged" and manifest["diverged_at"] == 70
    assert "11 steps in a row were skipped" in capsys.readouterr().err


# -- kill and resume ---------------------------------------------------------------------------

BAD = {110, 114, 118}  # skipped at steps 110, 113 and 116: the third asks for the checkpoint of step 100


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the runner catches it (files are closed, run.json says running)."""


@pytest.fixture()
def reference(tmp_path, monkeypatch):
    drawn = _corrupt(monkeypatch, BAD)
    out = tmp_path / "reference"
    manifest = train(_config(200, ROLLBACK), out, threads=1, warn=lambda message: None)
    assert manifest["status"] == "complete"
    assert manifest["rollbacks"] == [{"at_step": 116, "to_step": 100, "drawn": 119, "skipped": 3}]
    assert drawn == list(range(219))  # 119 batches up to the rollback, then the next 100: none seen twice
    return (out / "metrics.csv").read_bytes()


def _resume(out) -> dict:
    return train(_config(200, ROLLBACK), out, resume=True, warn=lambda message: None)


@pytest.mark.parametrize("stops", [[60], [112], [150], [60, 112, 117, 180]])
def test_stopped_and_resumed_runs_write_the_same_bytes(tmp_path, reference, stops):
    out = tmp_path / "run"
    for i, k in enumerate(stops):
        manifest = train(_config(200, ROLLBACK), out, resume=i > 0, threads=1, stop_after=k, warn=lambda m: None)
        assert manifest["status"] == "stopped"
    manifest = _resume(out)
    assert manifest["status"] == "complete" and (out / "metrics.csv").read_bytes() == reference


@pytest.mark.parametrize("when", ["after the rollback", "in the rollback", "first row after the rollback"])
def test_a_run_killed_at_a_rollback_resumes_to_the_same_bytes(tmp_path, monkeypatch, reference, when):
    out = tmp_path / "run"
    armed = {"on": True, "rows": 0}
    roll_back = runner._roll_back

    def kill_after(*args, **kwargs):
        result = roll_back(*args, **kwargs)
        if armed["on"]:
            armed["on"] = False
            raise Killed
        return result

    def kill_point(name, **kwargs):
        armed["rows"] += name == "row"
        if not armed["on"]:
            return
        # "truncated:metrics.csv" is reached in a new run only when a rollback cuts metrics.csv back
        # (before its new checkpoint); the 117th row is the first one written after the rollback
        if (when == "in the rollback" and name == "truncated:metrics.csv") or \
                (when == "first row after the rollback" and armed["rows"] == 117):
            armed["on"] = False
            raise Killed

    if when == "after the rollback":
        monkeypatch.setattr(runner, "_roll_back", kill_after)
    else:
        monkeypatch.setattr(runner, "kill_point", kill_point)
    with pytest.raises(Killed):
        train(_config(200, ROLLBACK), out, threads=1, warn=lambda message: None)
    assert not armed["on"] and json.loads((out / "run.json").read_text())["status"] == "running"
    manifest = _resume(out)
    assert manifest["status"] == "complete" and (out / "metrics.csv").read_bytes() == reference


def test_a_resumed_run_keeps_the_record_of_its_rollbacks(tmp_path, monkeypatch):
    _corrupt(monkeypatch, BAD)
    out = tmp_path / "run"
    train(_config(200, ROLLBACK), out, threads=1, stop_after=117, warn=lambda message: None)  # rolled back, stopped
    assert json.loads((out / "run.json").read_text())["rollbacks"] == [{"at_step": 116, "to_step": 100, "drawn": 119, "skipped": 3}]
    manifest = _resume(out)
    assert manifest["status"] == "complete"
    assert manifest.get("rollbacks") == [{"at_step": 116, "to_step": 100, "drawn": 119, "skipped": 3}]


def test_other_guard_settings_on_resume_are_refused(tmp_path):
    out = tmp_path / "run"
    train(_config(100, {"loss_spike": {"sigma": 6}}), out, threads=1, stop_after=60)
    for guards in ({"loss_spike": {"sigma": 5}}, None, {"grad_spike": {}}, ROLLBACK):
        with pytest.raises(RunError, match="other settings.*guards"):
            train(_config(100, guards), out, resume=True)
    # run.json edited to other guard settings: the checkpoint it was written with refuses it
    manifest = json.loads((out / "run.json").read_text())
    manifest["config"]["guards"]["loss_spike"]["sigma"] = 4.0
    (out / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="does not match the checkpoint"):
        train(RunConfig(workload="", channels={}, horizon=0), out, resume=True)
    manifest["config"]["guards"]["loss_spike"]["sigma"] = 6.0
    (out / "run.json").write_text(json.dumps(manifest))
    assert train(_config(100, {"loss_spike": {"sigma": 6}}), out, resume=True)["status"] == "complete"


def test_review_fixes_rollback_before_a_checkpoint_nonfinite_and_unknown_signals(tmp_path, monkeypatch):
    """A rollback verdict before the first checkpoint is a skip (the run completes); a non-finite loss read by a
    spike guard is skipped, not a divergence; a guard on a signal measured after the step is refused."""
    _corrupt(monkeypatch, {80, 82, 84})
    cfg = RunConfig(workload="logreg", channels={"lr": LR}, horizon=150, seed=0, checkpoint_every=100,
                    guards={"loss_spike": {}, "rollback": {}})
    manifest = train(cfg, tmp_path / "early", threads=1, warn=lambda message: None)
    assert manifest["status"] == "complete" and manifest["skipped"] == 3 and "rollbacks" not in manifest
    from cadence.errors import PlanError
    for signal in ("val_loss", "foo"):
        with pytest.raises(PlanError, match=f"reads '{signal}'.*before its optimizer step"):
            RunConfig(workload="logreg", channels={"lr": LR}, horizon=10,
                      guards={"loss_spike": {"signal": signal}}).resolved()


def test_a_nonfinite_loss_under_a_spike_guard_is_skipped(tmp_path, monkeypatch):
    w = get_workload("logreg")
    clean = type(w).batch
    monkeypatch.setattr(w, "batch", lambda seed, i, n: (lambda x, y: (x * float("nan"), y) if i == 90 else (x, y))(
        *clean(w, seed, i, n)))
    manifest = train(_config(120, SPIKE), tmp_path / "run", threads=1)
    assert manifest["status"] == "complete" and manifest["skipped"] == 1
