"""cadence schedule --plan: a plan file's channels previewed on its clock, equal to stepping the plan."""

import io
import json

import numpy as np
import pytest

from cadence import Plan, Rates
from cadence.cli import main

PLAN = {"unit": "token", "horizon": "200K", "batch_size": 32, "micro_batch": 16,
        "channels": {"lr": "scale_with(plateau(warmup(cosine(peak=2e-3), '5%'), patience=3), reference=32)",
                     "batch": "ramp(32, 256, '30%', shape='doubling')", "weight_decay": 0.1}}


@pytest.fixture
def plan_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(PLAN))
    return path


def stepped():
    plan = Plan(PLAN["channels"], horizon=200_000, unit="token", rates=Rates(samples_per_step=32, tokens_per_sample=128),
                micro_batch=16)
    rows = []
    while not plan.done:
        v = plan.values()
        rows.append([plan.clock.step, plan.clock.samples, plan.clock.tokens, v["lr"], v["batch"], v["weight_decay"]])
        plan.advance()
    return np.array(rows)


def test_csv_is_the_plan_stepped_one_step_at_a_time(plan_file, capsys):
    assert main(["schedule", "--plan", str(plan_file), "--tokens-per-sample", "128", "--csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "step,samples,tokens,lr,batch,weight_decay"
    got = np.array([[float(x) for x in line.split(",")] for line in out[1:]])
    want = stepped()
    assert got.shape == want.shape and np.array_equal(got, want)
    assert set(got[:, 4]) == {32, 64, 128, 256}  # the ramp really moved the clock


def test_summary_and_plot(plan_file, tmp_path, capsys):
    assert main(["schedule", "--plan", str(plan_file), "--tokens-per-sample", "128"]) == 0
    out = capsys.readouterr().out
    assert "token clock, horizon 200000 tokens" in out and "batch" in out and "val_loss (lr)" in out
    figure = tmp_path / "plan.png"
    assert main(["schedule", "--plan", str(plan_file), "--tokens-per-sample", "128", "--plot", str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["schedule", "--plan", str(plan_file), "--tokens-per-sample", "128", "--plot", str(figure)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["--tokens-per-sample", "128", "cosine(peak=1)"], "drop SPEC and --total"),
    ([], "--tokens-per-sample"),
    (["--tokens-per-sample", "128", "--total", "10"], "drop SPEC and --total"),
])
def test_bad_combinations_are_one_line(plan_file, capsys, argv, fragment):
    assert main(["schedule", "--plan", str(plan_file), *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_a_yaml_file_with_a_typo_gets_a_did_you_mean(tmp_path, capsys):
    path = tmp_path / "plan.yaml"
    path.write_text("unit: step\nhorizon: 100\nchanels:\n  lr: cosine(peak=1)\n")
    assert main(["schedule", "--plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'chanels' (did you mean 'channels'?)" in err and err.count("\n") == 1


def test_spec_without_total_is_refused(capsys):
    assert main(["schedule", "cosine(peak=1)"]) == 2
    assert "--total is required" in capsys.readouterr().err
