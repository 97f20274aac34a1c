"""cadence forecast live: a cooldown's predicted loss from a run's stable phase (issue 13, section 3)."""

import json

import numpy as np
import pytest

from cadence import schedules as S
from cadence.cli import main
from cadence.errors import ForecastError, LimitError
from cadence.forecast import Curve, FittedLaw
from cadence.forecast.live import cooldown_lrs, forecast_live, later_starts, stable_phase

TRUE = FittedLaw("multipower", {"L0": 2.9, "A": 0.45, "alpha": 0.5, "B": 0.4, "C": 1.5, "beta": 0.6, "gamma": 0.4}, 3e-4)
# C=0.003: a cooldown of 200 steps lowers the loss by about 0.2, as TRUE does (C=0.3 predicted -17.6, which
# FittedLaw.predict now refuses: a loss is > 0)
ANN = FittedLaw("annealing", {"L0": 2.8, "A": 0.5, "alpha": 0.5, "C": 0.003, "lam": 0.99}, 3e-4)
STABLE = "constant(value=3e-4, warmup=150)"


def rows(spec, n, law=TRUE, total=None):
    lrs = S.parse(spec).values(total or n)[:n]
    steps = np.arange(n)
    return lrs, steps, law.predict(lrs, np.maximum(steps, 1))


def write_csv(path, spec, n):
    lrs, steps, losses = rows(spec, n)
    path.write_text("step,lr,loss\n" + "".join(f"{s},{float(a)!r},{float(b)!r}\n" for s, a, b in zip(steps, lrs, losses)))
    return path


def write_run(folder, spec, n):
    """A cadence run folder: metrics.csv with the train loss every step and the val loss every 10, and run.json."""
    folder.mkdir()
    lrs, steps, losses = rows(spec, n)
    lines = ["step,samples,tokens,lr,train_loss,val_loss"]
    for s, a, b in zip(steps, lrs, losses):
        val = repr(float(b)) if (s + 1) % 10 == 0 else ""
        lines.append(f"{s},{32 * (s + 1)},{4096 * (s + 1)},{float(a)!r},{float(b) * 1.01!r},{val}")
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    (folder / "run.json").write_text(json.dumps({"format": "cadence.run/1", "status": "running", "step": n,
                                                 "rates": {"samples_per_step": 32, "tokens_per_sample": 128}}))
    return folder


@pytest.fixture
def law_file(tmp_path):
    return str(TRUE.save(tmp_path / "law.json"))


def test_cooldown_is_decay_from():
    history = S.parse(STABLE).values(1000)
    for shape in ("linear", "cosine", "1-sqrt"):
        seq = cooldown_lrs(history, 1100, 200, shape, 3e-5)
        ref = S.parse(f"decay_from({STABLE}, at=1100, duration=200, final=3e-5, shape='{shape}')").values(1300)
        np.testing.assert_allclose(seq, ref, rtol=0, atol=1e-18)


def test_recovers_the_law_value_now_and_later():
    history = S.parse(STABLE).values(1000)
    result = forecast_live(history, TRUE, 300, shape="1-sqrt", final=0.0)
    assert [p.step for p in [result.now] + result.later] == [1000] + later_starts(1000) == [1000, 1100, 1250, 1500]
    for p in [result.now] + result.later:
        truth = S.parse(f"decay_from({STABLE}, at={p.step}, duration=300, shape='1-sqrt')").values(p.step + 300)
        assert p.loss == pytest.approx(float(TRUE.predict(truth, [p.step + 299])[0]), rel=1e-12)
        assert p.low <= p.loss <= p.high
    assert result.now.loss > result.later[-1].loss  # more training at the peak, then the same cooldown: lower


def test_interval_is_the_spread_of_laws_widened_by_the_run_error():
    lrs, steps, losses = rows(STABLE, 1000)
    observed = Curve(steps=steps[150:], losses=losses[150:] * 1.02, lrs=lrs)  # the law is 2% low on this run
    result = forecast_live(lrs, [TRUE, ANN], 200, observed=observed)
    assert result.run_error == pytest.approx(0.02 / 1.02, rel=1e-6) and result.band == result.run_error
    seq = cooldown_lrs(lrs, 1000, 200)
    preds = [float(law.predict(seq, [1199])[0]) for law in (TRUE, ANN)]
    assert result.now.loss == preds[0]
    assert result.now.low == pytest.approx(min(preds) * (1 - result.band))
    assert result.now.high == pytest.approx(max(preds) * (1 + result.band))


def test_refusals_in_the_library():
    with pytest.raises(ForecastError, match="not in a constant-LR phase.*decaying"):
        stable_phase(S.parse("cosine(peak=3e-4, warmup=150)").values(1000))
    with pytest.raises(ForecastError, match="rising"):
        stable_phase(S.parse(STABLE).values(1000)[:100])
    with pytest.raises(ForecastError, match="at least 10"):
        stable_phase([3e-4] * 5)
    history = S.parse(STABLE).values(1000)
    with pytest.raises(ForecastError, match="not below"):
        forecast_live(history, TRUE, 100, final=1e-3)
    with pytest.raises(ForecastError, match="shape"):
        forecast_live(history, TRUE, 100, shape="square")
    with pytest.raises(LimitError):
        forecast_live(history, TRUE, 9_999_999)
    with pytest.raises(ForecastError, match="laws"):
        forecast_live(history, [], 100)


def test_cli_json_has_exactly_the_contract_keys_csv_and_run_folder(tmp_path, capsys, law_file):
    csv = write_csv(tmp_path / "stable.csv", STABLE, 1000)
    run = write_run(tmp_path / "stable-run", STABLE, 1000)
    outputs = []
    for source in (csv, run):
        assert main(["forecast", "live", str(source), "--law", law_file, "--cooldown", "200", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert set(data) == {"now", "later"} and isinstance(data["later"], list) and len(data["later"]) == 3
        for point in [data["now"]] + data["later"]:
            assert set(point) == {"step", "loss", "low", "high"}
            assert point["low"] <= point["loss"] <= point["high"]
        assert data["now"]["step"] == 1000
        truth = S.parse(f"decay_from({STABLE}, at=1000, duration=200, shape='1-sqrt')").values(1200)
        assert data["now"]["loss"] == pytest.approx(float(TRUE.predict(truth, [1199])[0]), rel=1e-12)
        outputs.append(data)
    assert outputs[0]["now"]["loss"] == pytest.approx(outputs[1]["now"]["loss"], rel=1e-12)
    # a duration in tokens, through the run folder's rates: 819,200 tokens = 200 steps of 32 x 128
    assert main(["forecast", "live", str(run), "--law", law_file, "--cooldown", "819200tok", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["now"] == outputs[1]["now"]
    # '20%': the cooldown is 20% of the run that ends with it (250 steps after 1000)
    assert main(["forecast", "live", str(csv), "--law", law_file, "--cooldown", "20%", "--shape", "linear",
                 "--final", "1e-5"]) == 0
    text = capsys.readouterr().out
    assert "cooldown: 250 steps, linear" in text and "| 1000 (now) |" in text and "a pilot law fitted on" in text


@pytest.mark.parametrize("case, expect", [
    ("decaying", "not in a constant-LR phase"),
    ("short", "at least 10"),
    ("not-a-law", "law file"),
    ("too-long", "limited to"),
    ("tokens-on-csv", "needs the run's rates"),
    ("whole-run", "less than 100%"),
    ("bad-duration", "--cooldown"),
    ("final-above", "not below"),
    ("missing", "no such run folder"),
])
def test_cli_bad_inputs_one_line_exit_2(tmp_path, capsys, law_file, case, expect):
    stable = str(write_csv(tmp_path / "stable.csv", STABLE, 1000))
    argv = {
        "decaying": [str(write_csv(tmp_path / "cos.csv", "cosine(peak=3e-4, warmup=150)", 1000)), "--law", law_file,
                     "--cooldown", "100"],
        "short": [str(write_csv(tmp_path / "short.csv", "constant(3e-4)", 5)), "--law", law_file, "--cooldown", "100"],
        "not-a-law": [stable, "--law", stable, "--cooldown", "100"],
        "too-long": [stable, "--law", law_file, "--cooldown", "20000000"],
        "tokens-on-csv": [stable, "--law", law_file, "--cooldown", "1Mtok"],
        "whole-run": [stable, "--law", law_file, "--cooldown", "100%"],
        "bad-duration": [stable, "--law", law_file, "--cooldown", "soon"],
        "final-above": [stable, "--law", law_file, "--cooldown", "100", "--final", "1"],
        "missing": [str(tmp_path / "nope.csv"), "--law", law_file, "--cooldown", "100"],
    }[case]
    assert main(["forecast", "live", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and len(err.splitlines()) == 1 and expect in err, err
