"""`cadence run ... --forecast law.json`: the law's predicted loss before the run and next to the real loss.

The prediction is the law's (FittedLaw.predict) on the run's own LRs (metrics.csv's lr column), made once
over the whole horizon; a resumed run (killed, with the law file gone, without the flag) writes the same
bytes; what a law cannot forecast is refused with one line before anything is written.
"""

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cadence.bench.run_forecast import forecast_run
from cadence.bench.runner import RunConfig, resolve, train
from cadence.cli import main
from cadence.forecast import FittedLaw

MPL = {"L0": 0.3, "A": 1.2, "alpha": 0.4, "B": 0.5, "C": 1.5, "beta": 0.6, "gamma": 0.4}
LR = "cosine(peak=3e-3, warmup=5)"  # 0 at step 0: that step has no prediction
STEPS = 40
LINE = re.compile(r"^forecast: the (\w+) law \((.*)\) predicts a final loss of ([0-9.]+) at step (\d+)$")


def law(**kw) -> FittedLaw:
    base = dict(law="multipower", params=MPL, lr_scale=3e-3, report={"curves": {"constant": {}, "cosine": {}}})
    base.update(kw)
    return FittedLaw(**base)


@pytest.fixture
def law_file(tmp_path) -> Path:
    path = tmp_path / "law.json"
    law().save(path)
    return path


def config(**kw) -> RunConfig:
    base = dict(workload="digits", channels={"lr": LR}, horizon=STEPS, eval_every=10, checkpoint_every=10)
    base.update(kw)
    return RunConfig(**base)


def rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def cli(*argv: str, capsys) -> tuple[int, str, str]:
    """`cadence ARGV`, with one torch thread for a run (as the kill tests: quick on a shared machine)."""
    extra = ["--threads", "1"] if argv[0] == "run" and "--threads" not in argv else []
    code = main([*argv, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_is_the_law(out: Path, fitted: FittedLaw) -> None:
    """Every row's forecast is the law's prediction at its step from the run's actual LRs; empty where the LR
    area is still 0."""
    table = rows(out)
    lrs = np.array([float(r["lr"]) for r in table])
    assert [int(r["step"]) for r in table] == list(range(len(table)))
    first = int(np.argmax(lrs > 0))
    want = fitted.predict(lrs, np.arange(first, len(lrs)))
    assert [r["forecast"] for r in table[:first]] == [""] * first
    assert [float(r["forecast"]) for r in table[first:]] == want.tolist()  # exactly: the same call on the same LRs


# -- what it prints and logs ----------------------------------------------------------------

def test_the_printed_prediction_is_the_laws_final_loss(tmp_path, law_file, capsys):
    out = tmp_path / "run"
    code, stdout, err = cli("run", "digits", "--lr", LR, "--steps", str(STEPS), "--eval-every", "10",
                            "--forecast", str(law_file), "--out", str(out), "--no-progress", capsys=capsys)
    assert code == 0 and err == ""
    first = stdout.splitlines()[0]
    m = LINE.match(first)
    assert m, first
    lrs = np.array([float(r["lr"]) for r in rows(out)])
    final = float(law().predict(lrs, [STEPS - 1])[0])
    assert m.group(1) == "multipower" and m.group(2) == "fitted on constant, cosine"
    assert m.group(3) == f"{final:.4f}" and int(m.group(4)) == STEPS - 1
    assert f"(forecast {final:.4f})" in stdout.splitlines()[1]  # the run's last line: the real loss beside it


@pytest.mark.parametrize("clock", [dict(horizon=STEPS), dict(unit="sample", horizon=2500)])  # 2500 samples: 40 steps of 64
def test_the_forecast_column_is_the_law_at_every_step(tmp_path, clock):
    out = tmp_path / "run"
    manifest = train(config(forecast=law(), **clock), out, threads=1)
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["step", "samples", "tokens", "lr", "train_loss", "grad_norm", "val_loss", "forecast",
                      "val_accuracy"]  # next to the real loss
    assert len(rows(out)) == STEPS and rows(out)[0]["forecast"] == ""  # warmup from 0: no LR area at step 0
    assert_is_the_law(out, law())
    recorded = manifest["config"]["forecast"]  # the law's content, not its path
    assert recorded["law"] == "multipower" and recorded["params"] == MPL and recorded["lr_scale"] == 3e-3
    assert "cadence" not in recorded  # the version of whoever read it is not the law's


def test_a_token_clock_is_converted_through_the_runs_batch():
    cfg, plan = resolve(RunConfig(workload="tiny-lm", size="xs", channels={"lr": "cosine(peak=2e-3, warmup='5%')"},
                                  unit="token", horizon="100K", forecast=law(lr_scale=2e-3)))
    predicted = forecast_run(plan, cfg.forecast)
    per_step = cfg.batch_size * plan.rates.tokens_per_sample
    assert predicted.steps == math.ceil(100_000 / per_step)
    lrs = []
    while not plan.done:  # the LR the runner applies at each step
        lrs.append(plan.values()["lr"])
        plan.advance(samples=cfg.batch_size, tokens=per_step)
    assert predicted.lrs.tolist() == lrs
    assert predicted.final == law(lr_scale=2e-3).predict(np.array(lrs), [len(lrs) - 1])[0]


def test_tensorboard_gets_the_forecast_too(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the test command installs it

    train(config(forecast=law(), horizon=20), tmp_path / "run", tensorboard=tmp_path / "tb", threads=1)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    logged = [(e.step, e.value) for e in acc.Scalars("forecast")]
    want = [(int(r["step"]), float(np.float32(float(r["forecast"])))) for r in rows(tmp_path / "run") if r["forecast"]]
    assert logged == want and len(want) == 19  # every step but the first, whose LR is 0


# -- resume -----------------------------------------------------------------------------------

def test_a_resumed_run_writes_the_same_bytes(tmp_path):
    train(config(forecast=law()), tmp_path / "a", threads=1)
    train(config(forecast=law()), tmp_path / "b", stop_after=25, threads=1)  # checkpoint at 20; rows 20-24 are written again
    train(config(forecast=law()), tmp_path / "b", resume=True, threads=1)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()


def test_a_killed_run_resumes_without_the_flag_or_the_law_file(tmp_path, law_file, capsys):
    flags = ["--lr", LR, "--steps", str(STEPS), "--eval-every", "10", "--checkpoint-every", "10", "--threads", "1",
             "--no-progress"]
    assert main(["run", "digits", *flags, "--forecast", str(law_file), "--out", str(tmp_path / "whole")]) == 0
    killed = tmp_path / "killed"
    child = subprocess.run([sys.executable, "-m", "cadence", "run", "digits", *flags, "--forecast", str(law_file),
                            "--out", str(killed)], env={**os.environ, "CADENCE_KILL_AT": "row:25"},
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr  # SIGKILLed after its 25th row
    assert LINE.match(child.stdout.splitlines()[0])  # said before the first step
    os.remove(law_file)  # run.json holds the law itself
    capsys.readouterr()
    code, stdout, err = cli("run", "--resume", "--out", str(killed), "--no-progress", capsys=capsys)
    assert code == 0 and err == ""
    assert LINE.match(stdout.splitlines()[0])
    assert (tmp_path / "whole" / "metrics.csv").read_bytes() == (killed / "metrics.csv").read_bytes()
    assert json.loads((killed / "run.json").read_text())["bit_exact"]


def test_a_run_folder_from_before_forecasts_still_resumes(tmp_path):
    """A run.json and a checkpoint written before RunConfig had `forecast` (neither holds the key)."""
    train(config(), tmp_path / "a", threads=1)
    out = tmp_path / "b"
    train(config(), out, stop_after=25, threads=1)
    manifest = json.loads((out / "run.json").read_text())
    del manifest["config"]["forecast"]
    (out / "run.json").write_text(json.dumps(manifest, indent=2) + "\n")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    settings = json.loads(state["settings"])
    del settings["forecast"]
    state["settings"] = json.dumps(settings, sort_keys=True)
    torch.save(state, out / "checkpoint.pt")
    assert train(config(), out, resume=True, threads=1)["status"] == "complete"
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (out / "metrics.csv").read_bytes()
    assert "forecast" not in rows(out)[0]


def test_a_resume_keeps_its_own_law(tmp_path, law_file, capsys):
    out = tmp_path / "run"
    train(config(forecast=law()), out, stop_after=15, threads=1)
    code, _, err = cli("run", "--resume", "--out", str(out), "--forecast", str(law_file), capsys=capsys)
    assert code == 2 and "drop --forecast" in err and err.count("\n") == 1
    other = tmp_path / "other.json"
    law(params={**MPL, "L0": 0.5}).save(other)
    code, _, err = cli("run", "digits", "--lr", LR, "--steps", str(STEPS), "--eval-every", "10", "--checkpoint-every",
                       "10", "--forecast", str(other), "--out", str(out), "--resume", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot resume" in err
    assert "forecast: a multipower law (L0=0.3," in err and "a multipower law (L0=0.5," in err  # not whole reports


# -- plan files ---------------------------------------------------------------------------------

def test_a_plan_file_names_the_law(tmp_path, law_file, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"horizon: 20\neval_every: 10\nchannels:\n  lr: \"{LR}\"\nforecast: {law_file}\n")
    out = tmp_path / "run"
    code, stdout, _ = cli("run", "digits", "--plan", str(plan), "--out", str(out), "--no-progress", capsys=capsys)
    assert code == 0 and LINE.match(stdout.splitlines()[0])
    assert_is_the_law(out, law())
    code, _, err = cli("run", "digits", "--plan", str(plan), "--forecast", str(law_file), "--out", str(tmp_path / "x"),
                       capsys=capsys)
    assert code == 2 and "--forecast and the plan file's forecast both set it" in err
    plan.write_text(f"horizon: 20\nchannels:\n  lr: \"{LR}\"\nforecast: {tmp_path / 'missing.json'}\n")
    code, _, err = cli("run", "digits", "--plan", str(plan), "--out", str(tmp_path / "x"), capsys=capsys)
    assert code == 2 and err.startswith(f"cadence: error: {plan}: forecast: cannot read") and err.count("\n") == 1
    plan.write_text(f"horizon: 20\nchannels:\n  lr: \"{LR}\"\nforecast: 3\n")
    code, _, err = cli("run", "digits", "--plan", str(plan), "--out", str(tmp_path / "x"), capsys=capsys)
    assert code == 2 and "forecast must name a law file" in err


# -- refusals and warnings ----------------------------------------------------------------------

@pytest.mark.parametrize("flags, law_text, fragment", [
    (["--lr", "plateau(cosine(peak=3e-3), patience=2)"], None,
     "--forecast: the run: channel 'lr' is a controller (plateau) that follows val_loss measured during the run"),
    (["--set", "batch=ramp(32, 128, '30%')"], None, "--forecast: the run: channel 'batch' changes over the run"),
    (["--set", "weight_decay=linear(peak=0.1)"], None, "channel 'weight_decay' changes over the run"),
    ([], "missing", "--forecast: cannot read"),
    ([], "{\"format\": \"something else\"}", "is not a cadence.forecast.law/1 law file"),
    ([], "not json", "is not JSON"),
    ([], json.dumps({**law().to_dict(), "params": {**MPL, "alpha": float("nan")}}), "parameter alpha"),
    (["--lr", "constant(value=0.0)"], None, "the run's LR is 0 at every step"),
    ([], json.dumps(law(params={**MPL, "L0": 0.0, "A": 0.01, "B": 5.0}).to_dict()), "predicts a loss of -0.0"),
])
def test_what_a_law_cannot_forecast_is_refused_in_one_line(tmp_path, law_file, capsys, flags, law_text, fragment):
    if law_text == "missing":
        law_file = tmp_path / "nowhere.json"
    elif law_text is not None:
        law_file.write_text(law_text)
    out = tmp_path / "run"
    code, stdout, err = cli("run", "digits", "--steps", "20", *flags, "--forecast", str(law_file), "--out", str(out),
                            "--no-progress", capsys=capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1, err
    assert err.startswith("cadence: error: ") and fragment in err and "Traceback" not in err
    assert not out.exists()  # refused before the run folder is made


@pytest.mark.parametrize("scale, params, warned", [
    (1e-2, MPL, "is 0.3x the peak LR the multipower law was fitted at (0.01): a law fitted at a different peak"),
    (1e-3, {**MPL, "L0": 1.5}, "is 3x the largest LR the multipower law was fitted on (0.001)"),  # L0: stays > 0
    (5e-3, MPL, None),  # at 0.6x: within the range notes' 0.5x .. 1.1x
])
def test_a_law_fitted_at_another_peak_warns(tmp_path, capsys, scale, params, warned):
    path = tmp_path / "law.json"
    law(lr_scale=scale, params=params).save(path)
    out = tmp_path / "run"
    code, stdout, err = cli("run", "digits", "--lr", LR, "--steps", "20", "--forecast", str(path), "--out", str(out),
                            "--no-progress", capsys=capsys)
    assert code == 0 and LINE.match(stdout.splitlines()[0])
    if warned:  # the range notes of every forecast command: one rule everywhere
        assert err.count("\n") == 1 and err.startswith("cadence: warning: the forecast is an extrapolation: the "
                                                       "schedule's peak LR 0.003 ")
        assert warned in err
    else:
        assert err == ""
    assert_is_the_law(out, law(lr_scale=scale, params=params))


def test_a_horizon_past_what_a_forecast_previews_is_refused_before_training():
    from cadence.errors import LimitError

    with pytest.raises(LimitError, match=r"the run takes 2,097,152 optimizer steps; a forecast of a plan covers at "
                                         r"most 1,048,576") as caught:
        resolve(config(forecast=law(), horizon=2**21))
    assert caught.value.field == "forecast"
    assert resolve(config(horizon=2**21))[0].forecast is None  # without a law: the runner's own limit
