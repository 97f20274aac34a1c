"""Prediction intervals and the combined law (issue 13, section 2)."""

import json

import numpy as np
import pytest

from cadence import schedules as S
from cadence.cli import main
from cadence.forecast import CombinedLaw, Curve, FittedLaw, ForecastError, fit, load

T = 2000
TRUE = FittedLaw("annealing", {"L0": 2.0, "A": 3.0, "alpha": 0.5, "C": 0.004, "lam": 0.99}, 1e-3)
SPECS = {
    "constant": "constant(value=1e-3, warmup=100)",
    "cosine": "cosine(peak=1e-3, final=0.0, warmup=100)",
    "wsd": "wsd(peak=1e-3, warmup=100, decay='20%', final=0.0)",
    "linear": "linear(peak=1e-3, final=0.0, warmup=100)",
}


def noisy(name: str, sigma: float, seed: int, every: int = 20, law=TRUE) -> Curve:
    lrs = S.parse(SPECS[name]).values(T)
    steps = np.arange(100, T, every)
    rng = np.random.default_rng(seed)
    losses = law.predict(lrs, steps) * np.exp(sigma * rng.standard_normal(len(steps)))
    return Curve(steps, losses, lrs, name=name)


@pytest.fixture(scope="module")
def annealing_fit():
    return fit([noisy("constant", 0.003, 1), noisy("cosine", 0.003, 2)], law="annealing")


def test_a_fit_records_its_uncertainty_and_the_interval_holds_new_measurements(annealing_fit):
    info = annealing_fit.report["uncertainty"]
    # two curves: only the later-steps refit (a refit on one curve is far weaker than the fit: no such fold)
    assert info["folds"] == 1 and info["scale"] >= 1 and info["scatter"] == pytest.approx(0.003, rel=0.3)
    assert len(info["cov"]) == len(info["params"]) >= 3
    inside = []
    for name, seed in (("wsd", 3), ("linear", 4), ("wsd", 5)):
        c = noisy(name, 0.003, seed)
        pred, low, high = annealing_fit.predict_interval(c.lrs, c.steps, level=0.9)
        assert np.all(low < pred) and np.all(pred < high)
        inside.append((c.losses >= low) & (c.losses <= high))
    coverage = float(np.mean(np.concatenate(inside)))
    assert 0.8 <= coverage <= 1.0, coverage
    # a wider level gives a wider interval; a lower one a narrower
    c = noisy("wsd", 0.003, 3)
    _, lo50, hi50 = annealing_fit.predict_interval(c.lrs, c.steps, level=0.5)
    _, lo99, hi99 = annealing_fit.predict_interval(c.lrs, c.steps, level=0.99)
    assert np.all(hi50 - lo50 < hi99 - lo99)


def test_three_curves_or_more_add_leave_one_out_refits():
    law = fit([noisy("constant", 0.003, 1), noisy("cosine", 0.003, 2), noisy("linear", 0.003, 3)], law="annealing")
    assert law.report["uncertainty"]["folds"] == 4  # later steps, and each of the three curves left out
    no = fit([noisy("constant", 0.003, 1), noisy("cosine", 0.003, 2)], law="annealing", intervals=False)
    assert "uncertainty" not in no.report and not no.has_interval


def test_the_interval_widens_where_the_law_extrapolates(annealing_fit):
    long = S.parse("constant(value=1e-3, warmup=100)").values(8 * T)
    pred, low, high = annealing_fit.predict_interval(long, [T - 1, 8 * T - 1])
    width = (high - low) / pred
    assert width[1] > width[0]


def test_level_must_be_a_probability(annealing_fit):
    lrs = S.parse(SPECS["wsd"]).values(T)
    for bad in (0, 1, 1.5, -0.1, True, "0.9"):
        with pytest.raises(ForecastError, match="level must be a number between 0 and 1"):
            annealing_fit.predict_interval(lrs, [T - 1], level=bad)


def test_a_law_without_recorded_uncertainty_gives_a_point_and_says_so(tmp_path, capsys):
    assert not TRUE.has_interval
    lrs = S.parse(SPECS["wsd"]).values(T)
    pred, low, high = TRUE.predict_interval(lrs, [T - 1])
    assert low[0] == pred[0] == high[0]
    path = tmp_path / "old.json"
    TRUE.save(path)
    assert main(["forecast", "predict", str(path), "--schedule", SPECS["wsd"], "--total", str(T)]) == 0
    assert "no interval: this law file records no uncertainty" in capsys.readouterr().out


def test_a_malformed_uncertainty_in_a_law_file_is_one_line(tmp_path, annealing_fit):
    data = annealing_fit.to_dict()
    for change, fragment in [
        (lambda u: u.update(cov=[[1.0]]), "cov must be a"),
        (lambda u: u.update(params=["nope"]), "params must be a list of distinct parameters"),
        (lambda u: u.update(scale=0.5), "scale must be >= 1"),
        (lambda u: u.update(extra=-1.0), "extra must be >= 0"),
        (lambda u: u.update(scatter="x"), "scatter"),
    ]:
        bad = json.loads(json.dumps(data))
        change(bad["report"]["uncertainty"])
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ForecastError, match=fragment) as e:
            load(path)
        assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def combined_fit():
    # the truth is the multipower law: the annealing member is misspecified, and the two disagree
    truth = FittedLaw("multipower", {"L0": 2.0, "A": 3.0, "alpha": 0.5, "B": 0.6, "C": 0.05, "beta": 0.5,
                                     "gamma": 0.5}, 1e-3)
    return fit([noisy("constant", 0.002, 1, law=truth), noisy("cosine", 0.002, 2, law=truth)], law="combined"), truth


def test_combined_predicts_the_geometric_mean_and_its_interval_holds_both_members(combined_fit, tmp_path):
    law, _ = combined_fit
    assert isinstance(law, CombinedLaw)
    assert sorted((m.law, m.warmup) for m in law.members) == [("annealing", "count"), ("annealing", "skip"),
                                                             ("multipower", "count"), ("multipower", "skip")]
    lrs = S.parse(SPECS["wsd"]).values(T)
    steps = np.arange(200, T, 50)
    members = [m.predict(lrs, steps) for m in law.members]
    assert np.allclose(law.predict(lrs, steps), np.prod(members, axis=0) ** 0.25, rtol=1e-12)
    pred, low, high = law.predict_interval(lrs, steps)
    for m in law.members:
        p, lo, hi = m.predict_interval(lrs, steps)
        assert np.all(low <= np.minimum(lo, p) * (1 + 1e-12)) or np.all(np.log(high / pred) >= np.log(hi / p) - 1e-12)
        assert np.all(np.log(high / pred) >= np.abs(np.log(p / pred)) - 1e-12)  # each member's prediction is inside
    path = tmp_path / "combined.json"
    law.save(path)
    again = load(path)
    assert isinstance(again, CombinedLaw)
    assert np.array_equal(again.predict(lrs, steps), law.predict(lrs, steps))
    assert np.array_equal(again.predict_interval(lrs, steps)[2], high)


def test_a_combined_law_file_is_checked(tmp_path, combined_fit):
    law, _ = combined_fit
    data = law.to_dict()
    ann = [m.law for m in law.members].index("annealing")
    with pytest.raises(ForecastError, match="fits each law under both warmup conventions"):
        fit([noisy("constant", 0.002, 1), noisy("cosine", 0.002, 2)], law="combined", warmup="count")
    for change, fragment in [
        (lambda d: d.update(members=[d["members"][0]]), "needs 'members', a list of 2 to 4 laws"),
        (lambda d: d.update(members=[d["members"][0], d["members"][0]]), "members must be different laws or warmup conventions"),
        (lambda d: d["members"][0].update(law="combined"), "member 1: unknown law 'combined'"),
        (lambda d: d["members"][ann]["params"].update(lam=2.0), f"member {ann + 1}: parameter lam"),
    ]:
        bad = json.loads(json.dumps(data))
        change(bad)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ForecastError, match=fragment):
            load(path)


def test_combined_through_the_cli_rank_says_when_candidates_cannot_be_told_apart(tmp_path, capsys, combined_fit):
    law, truth = combined_fit
    path = tmp_path / "law.json"
    law.save(path)
    same = ["--schedule", "a=wsd(peak=1e-3, warmup=100, decay='20%')", "--schedule", "b=wsd(peak=1e-3, warmup=100, decay='21%')"]
    assert main(["forecast", "rank", str(path), "--total", str(T)] + same) == 0
    out = capsys.readouterr().out
    assert "| 90% interval |" in out and "not distinguishable from" in out
    apart = ["--schedule", "wsd=wsd(peak=1e-3, warmup=100, decay='20%')", "--schedule", "flat=constant(value=1e-3, warmup=100)"]
    assert main(["forecast", "rank", str(path), "--total", str(T), "--level", "0.5"] + apart) == 0
    out = capsys.readouterr().out
    assert "wsd is best: no other candidate's 50% interval reaches its own" in out
    assert main(["forecast", "rank", str(path), "--total", str(T), "--level", "2"] + apart) == 2
    assert "level must be a number between 0 and 1" in capsys.readouterr().err


def test_optimize_and_predict_take_a_combined_law(tmp_path, capsys, combined_fit):
    law, _ = combined_fit
    path = tmp_path / "law.json"
    law.save(path)
    assert main(["forecast", "optimize", str(path), "--total", str(T), "--peak", "1e-3", "--warmup", "100"]) == 0
    out = capsys.readouterr().out
    final = float(out.split("predicted final loss ")[1].split()[0])
    assert "90% interval" in out.split("\n")[0] or "90% interval" in out
    wsd = law.predict(S.parse(SPECS["wsd"]).values(T), [T - 1])[0]
    assert final <= wsd + 1e-9  # the search does at least as well as WSD under the combined law
    assert main(["forecast", "predict", str(path), "--schedule", SPECS["wsd"], "--total", str(T), "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "step,lr,loss,low,high" and float(rows[-1].split(",")[2]) == pytest.approx(wsd, rel=1e-12)


def test_forecast_fit_defaults_to_the_combined_law_and_says_how_its_intervals_were_made(tmp_path, capsys):
    for name, seed in (("constant", 1), ("cosine", 2)):
        c = noisy(name, 0.002, seed)
        rows = {int(s): l for s, l in zip(c.steps, c.losses)}
        (tmp_path / f"{name}.csv").write_text("step,lr,loss\n" + "".join(
            f"{i},{lr!r},{rows.get(i, '')}\n" for i, lr in enumerate(c.lrs.tolist())))
    out_path = tmp_path / "law.json"
    assert main(["forecast", "fit", str(tmp_path / "constant.csv"), str(tmp_path / "cosine.csv"), "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("combined law fitted to 2 run(s)")
    assert "multipower intervals: calibrated on" in out and "annealing (warmup counted) intervals: calibrated on" in out
    assert isinstance(load(out_path), CombinedLaw)


def test_a_long_prediction_interpolates_its_interval_closely(annealing_fit):
    from cadence.forecast.intervals import GRID

    n = 4 * GRID + 17
    lrs = S.parse("cosine(peak=1e-3, final=0.0, warmup=100)").values(n)
    steps = np.arange(1, n)
    _, low, high = annealing_fit.predict_interval(lrs, steps)
    sample = steps[:: 97]
    _, low_exact, high_exact = annealing_fit.predict_interval(lrs, sample)  # under GRID points: computed exactly
    assert np.allclose(high[::97], high_exact, rtol=1e-4) and np.allclose(low[::97], low_exact, rtol=1e-4)


def test_a_combined_fit_beyond_the_annealing_limit_keeps_the_multipower_members(monkeypatch):
    from cadence.forecast.laws import Annealing

    monkeypatch.setattr(Annealing, "fit_steps", 500)
    law = fit([noisy("constant", 0.002, 1), noisy("cosine", 0.002, 2)], law="combined", intervals=False)
    assert sorted((m.law, m.warmup) for m in law.members) == [("multipower", "count"), ("multipower", "skip")]
    assert len(law.report["skipped"]) == 1 and law.report["skipped"][0].startswith("annealing: ")
