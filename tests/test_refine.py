"""cadence refine: schedule refinement from gradient norms (Defazio et al. 2023), library and CLI."""

import json
import shutil

import numpy as np
import pytest

from cadence import errors
from cadence import schedules as S
from cadence.bench.report import load_metrics
from cadence.cli import main
from cadence.forecast import refine as R
from cadence.forecast.refine import refine, refine_run, smooth, weights


def unsmoothed(norms, **kw):
    return refine(norms, filter_width=1, peak=1.0, **kw)


# -- the formula -------------------------------------------------------------------------------

def test_sgd_weights_by_hand():
    # g = 1 for 5 steps, then 2: w = 1, 1, 1, 1, 1, 1/4 x5; lr_t ~ w_t * sum_(s>t) w_s
    r = unsmoothed([1.0] * 5 + [2.0] * 5, optimizer="sgd")
    by_hand = np.array([5.25, 4.25, 3.25, 2.25, 1.25, 0.25, 0.1875, 0.125, 0.0625, 0.0]) / 5.25
    np.testing.assert_allclose(r.lrs, by_hand, rtol=1e-12, atol=0)
    np.testing.assert_allclose(weights(np.array([1.0, 2.0, 4.0]), "sgd"), [1.0, 1 / 4, 1 / 16])


def test_adam_weights_by_hand():
    # w = 1/g: 1 x5, 1/2 x5
    r = unsmoothed([1.0] * 5 + [2.0] * 5, optimizer="adamw")
    by_hand = np.array([6.5, 5.5, 4.5, 3.5, 2.5, 1.0, 0.75, 0.5, 0.25, 0.0]) / 6.5
    np.testing.assert_allclose(r.lrs, by_hand, rtol=1e-12, atol=0)
    np.testing.assert_allclose(weights(np.array([1.0, 2.0, 4.0]), "adamw"), [1.0, 1 / 2, 1 / 4])


def test_a_direct_double_sum_agrees_on_random_norms():
    rng = np.random.default_rng(0)
    g = rng.uniform(0.5, 3.0, 37)
    for optimizer, power in (("sgd", 2), ("adamw", 1)):
        w = g ** -power
        eta = np.array([w[t] * sum(w[s] for s in range(t + 1, len(g))) for t in range(len(g))])
        np.testing.assert_allclose(unsmoothed(g, optimizer=optimizer).lrs, eta / eta.max(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_constant_norms_give_linear_decay_to_zero(optimizer):
    total, peak = 200, 3e-3
    r = refine(np.full(total, 0.7), optimizer=optimizer, peak=peak)
    i = np.arange(total)
    np.testing.assert_allclose(r.lrs, peak * (total - 1 - i) / (total - 1), rtol=1e-12, atol=1e-18)
    # cadence's linear(final=0) reaches 0 one step later (peak*(1 - i/T)): at most peak/T apart
    linear = S.parse(f"linear(peak={peak}, final=0.0)").values(total)
    assert np.max(np.abs(r.lrs - linear)) <= peak / total + 1e-15


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("width", [1, None])
def test_increasing_norms_decay_at_or_below_linear(optimizer, width):
    # Non-increasing w: the tail mean of w after t is at most its mean after 0, and w_t <= w_0, so
    # lr_t/lr_0 = (w_t/w_0) * (sum_(s>t) w_s / sum_(s>0) w_s) <= (T-1-t)/(T-1): the peak is at
    # step 0 and the schedule never rises above linear decay; strictly below where w strictly falls.
    total = 300
    g = np.linspace(1.0, 3.0, total)
    r = refine(g, optimizer=optimizer, peak=1.0, filter_width=width)
    assert np.all(np.diff(r.smoothed) >= 0)  # the filter keeps a monotone sequence monotone
    linear = (total - 1 - np.arange(total)) / (total - 1)
    assert r.lrs[0] == 1.0 and np.argmax(r.lrs) == 0
    assert np.all(r.lrs <= linear + 1e-12)
    if width == 1:
        assert np.all(r.lrs[1:-1] < linear[1:-1])
    assert r.lrs[total // 2] < 0.9 * linear[total // 2]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_falling_norms_give_a_warmup(optimizer):
    # the paper's observation: norms that fall early make the refined schedule rise first
    total = 200
    g = np.concatenate([np.linspace(4.0, 1.0, 40), np.ones(total - 40)])
    r = refine(g, optimizer=optimizer, peak=1.0, filter_width=1)
    assert np.argmax(r.lrs) > 0 and r.lrs[0] < 0.5
    assert r.lrs.max() == 1.0 and r.lrs[-1] == 0.0


def test_median_filter_removes_a_single_spike():
    g = np.ones(200)
    g[50] = 100.0
    assert np.array_equal(smooth(g, 21), np.ones(200))
    r = refine(g, optimizer="sgd", peak=1.0)
    assert r.filter_width == 21  # 10% of the run, odd
    assert np.array_equal(r.smoothed, np.ones(200))
    np.testing.assert_allclose(r.lrs, (199 - np.arange(200)) / 199, rtol=1e-12)
    assert unsmoothed(g, optimizer="sgd").lrs[50] < 1e-3  # without the filter the spike shows


def test_default_filter_width_is_ten_percent_odd():
    assert refine(np.ones(10), peak=1.0).filter_width == 1
    assert refine(np.ones(60), peak=1.0).filter_width == 7
    assert refine(np.ones(1000), peak=1.0).filter_width == 101
    assert refine(np.ones(1000), peak=1.0, filter_width=5).filter_width == 5


def test_end_padding_reflects_and_start_padding_repeats():
    g = np.arange(1.0, 21.0)
    s = smooth(g, 5)
    assert s[0] == 1.0 and s[1] == 2.0  # window of 1, 1, 1, 2, 3 / 1, 1, 2, 3, 4
    assert s[-1] == 19.0  # window of 18, 19, 20, 19, 18


# -- the spec ----------------------------------------------------------------------------------

@pytest.mark.parametrize("warmup", [0, 25])
def test_spec_parses_and_equals_the_refined_values_at_its_knots(warmup):
    rng = np.random.default_rng(1)
    total = 500
    g = np.exp(np.linspace(1.0, 0.0, total)) * rng.uniform(0.8, 1.2, total)
    r = refine(g, optimizer="adamw", peak=2e-3, warmup=warmup, points=32)
    values = S.parse(r.spec).values(total)
    assert len(r.steps) <= 32 and r.steps[0] == 0 and r.steps[-1] == total - 1
    assert np.array_equal(values[r.steps], r.values)  # exactly what the spec holds
    assert np.array_equal(r.values, r.lrs[r.steps])  # and exactly the refined values
    assert values.max() == 2e-3 == r.lrs.max()  # the peak is a knot
    assert int(np.argmax(r.lrs)) in r.steps.tolist()
    assert np.all(np.diff(r.steps) > 0)
    if warmup:
        assert warmup in r.steps.tolist()
        np.testing.assert_allclose(r.lrs[:warmup], r.lrs[warmup] * np.arange(warmup) / warmup, rtol=1e-12)
        np.testing.assert_allclose(values[:warmup + 1], r.lrs[:warmup + 1], rtol=1e-12)  # the ramp is exact


def test_points_bounds_the_knots_and_every_step_fits_when_short():
    g = np.linspace(1.0, 2.0, 40)
    assert len(refine(g, peak=1.0, points=4).steps) <= 4
    r = refine(g, peak=1.0, points=64)
    assert r.steps.tolist() == list(range(40))
    assert np.array_equal(S.parse(r.spec).values(40), r.lrs)


# -- bad input ---------------------------------------------------------------------------------

G = list(np.linspace(1.0, 2.0, 30))


@pytest.mark.parametrize("norms, kw, field", [
    (G[:9], {}, "grad_norms"),
    (G[:5] + [float("nan")] + G[6:], {}, "grad_norms"),
    (G[:5] + [float("inf")] + G[6:], {}, "grad_norms"),
    (G[:5] + [-1.0] + G[6:], {}, "grad_norms"),
    (G[:5] + [0.0] + G[6:], {}, "grad_norms"),
    (["a"] * 30, {}, "grad_norms"),
    (np.ones((10, 3)), {}, "grad_norms"),
    (42, {}, "grad_norms"),
    (G, {"peak": 0.0}, "peak"),
    (G, {"peak": -1e-3}, "peak"),
    (G, {"peak": float("nan")}, "peak"),
    (G, {"peak": "1e-3"}, "peak"),
    (G, {"optimizer": "adam"}, "optimizer"),
    (G, {"warmup": 29}, "warmup"),
    (G, {"warmup": -1}, "warmup"),
    (G, {"warmup": 2.0}, "warmup"),
    (G, {"filter_width": 4}, "filter_width"),
    (G, {"filter_width": 0}, "filter_width"),
    (G, {"filter_width": 31}, "filter_width"),
    (G, {"points": 3}, "points"),
    (G, {"points": R.MAX_POINTS + 1}, "points"),
    (G, {"points": True}, "points"),
    (G, {"norm": "l3"}, "norm"),
])
def test_bad_input_is_a_one_line_forecast_error_naming_the_parameter(norms, kw, field):
    kw = {"peak": 1e-3, **kw}
    with pytest.raises(errors.ForecastError) as e:
        refine(norms, **kw)
    assert e.value.field == field
    text = str(e.value)
    assert "\n" not in text and "--" not in text and "got" in text


def test_norms_far_apart_stay_finite_or_are_refused():
    r = refine([1e-150] * 5 + [1e150] * 5, optimizer="sgd", peak=1.0, filter_width=1)
    assert np.all(np.isfinite(r.lrs)) and r.lrs.max() == 1.0
    with pytest.raises(errors.ForecastError, match="too wide a range") as e:
        refine([1e300] * 9 + [1e-300], optimizer="sgd", peak=1.0, filter_width=1)
    assert e.value.field == "grad_norms"


def test_a_run_longer_than_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(R, "MAX_STEPS", 100)
    with pytest.raises(errors.LimitError, match="100"):
        refine(np.ones(101), peak=1.0)
    assert refine(np.ones(100), peak=1.0).total == 100


# -- a real run --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("refine") / "run"
    assert main(["run", "logreg", "--steps", "60", "--out", str(out), "--no-progress"]) == 0
    return out


def copy_run(run_folder, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(run_folder, dest)
    return dest


def test_refine_run_reads_norms_lr_and_optimizer(run_folder):
    r = refine_run(run_folder)
    metrics = load_metrics(run_folder / "metrics.csv")
    assert r.optimizer == "adamw" and r.norm == "l2" and r.total == 60
    assert np.array_equal(r.grad_norms, metrics["grad_norm"])
    assert np.array_equal(r.logged_lrs, metrics["lr"])
    assert r.peak == metrics["lr"].max() == r.lrs.max()
    same = refine(metrics["grad_norm"], optimizer="adamw", peak=r.peak)
    assert np.array_equal(r.lrs, same.lrs) and r.spec == same.spec
    assert refine_run(run_folder, peak=0.5, optimizer="sgd").lrs.max() == 0.5


def test_refine_run_takes_sgd_from_run_json(run_folder, tmp_path):
    run = copy_run(run_folder, tmp_path)
    manifest = json.loads((run / "run.json").read_text())
    manifest["config"]["optimizer"] = "sgd"
    (run / "run.json").write_text(json.dumps(manifest))
    r = refine_run(run)
    assert r.optimizer == "sgd"
    assert np.array_equal(r.lrs, refine(r.grad_norms, optimizer="sgd", peak=r.peak).lrs)


def _edit(run, name, change):
    path = run / name
    path.write_text(change(path.read_text()))


def _metrics(change):
    """A change to metrics.csv's rows, given as lists of cells (the header first)."""
    return lambda run: _edit(run, "metrics.csv", lambda text: "".join(
        ",".join(row) + "\n" for row in change([line.split(",") for line in text.splitlines()])))


def _without_grad_norm(rows):
    i = rows[0].index("grad_norm")
    return [row[:i] + row[i + 1:] for row in rows]


def _nan_at_step_7(rows):
    rows[8][rows[0].index("grad_norm")] = "nan"
    return rows


@pytest.mark.parametrize("damage, error, words", [
    (lambda run: (run / "run.json").unlink(), errors.RunError, "not a cadence run folder"),
    (lambda run: (run / "run.json").write_text("{not json"), errors.RunError, "not JSON"),
    (lambda run: (run / "run.json").write_text('{"format": "other"}'), errors.RunError, "not a cadence run manifest"),
    (lambda run: _edit(run, "run.json", lambda t: t.replace('"complete"', '"running"')), errors.RunError,
     "has not finished"),
    (lambda run: (run / "metrics.csv").unlink(), errors.RunError, "cannot read"),
    (_metrics(_without_grad_norm), errors.RunError, "no grad_norm column"),
    (_metrics(lambda rows: rows[:-5]), errors.RunError, "one row for each step"),
    (_metrics(_nan_at_step_7), errors.ForecastError, "finite and > 0; got nan at step 7"),
])
def test_a_folder_that_is_not_a_usable_run_is_refused(run_folder, tmp_path, damage, error, words):
    run = copy_run(run_folder, tmp_path)
    damage(run)
    with pytest.raises(error, match=words) as e:
        refine_run(run)
    assert "\n" not in str(e.value) and "--" not in str(e.value)


def test_a_run_longer_than_the_limit_is_refused_before_reading_it(run_folder, monkeypatch):
    monkeypatch.setattr(R, "MAX_STEPS", 59)
    with pytest.raises(errors.LimitError, match="limited to 59"):
        refine_run(run_folder)


def test_a_missing_folder_or_a_file_is_not_a_run(tmp_path):
    for path in (tmp_path / "nothing", tmp_path):
        with pytest.raises(errors.RunError, match="not a cadence run folder"):
            refine_run(path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(errors.RunError):
        refine_run(tmp_path / "f")


# -- the command -------------------------------------------------------------------------------

def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_one_spec_that_cadence_run_accepts(run_folder, tmp_path, capsys):
    code, out, err = cli(capsys, "refine", str(run_folder))
    assert code == 0
    assert out.count("\n") == 1 and out.startswith("piecewise(points=[")
    spec = out.strip()
    r = refine_run(run_folder)
    assert spec == r.spec
    assert np.array_equal(S.parse(spec).values(60)[r.steps], r.values)
    assert "adamw" in err and "l2" in err and "l1" in err  # the summary states the norm caveat
    # the round trip the command exists for: cadence run --lr "$(cadence refine RUN)"
    code, _, _ = cli(capsys, "run", "logreg", "--lr", spec, "--steps", "60", "--out", str(tmp_path / "again"),
                     "--no-progress")
    assert code == 0
    logged = load_metrics(tmp_path / "again" / "metrics.csv")["lr"]
    np.testing.assert_allclose(logged, S.parse(spec).values(60), rtol=1e-12)


def test_cli_options_reach_the_library(run_folder, capsys):
    code, out, _ = cli(capsys, "refine", str(run_folder), "--peak", "0.02", "--warmup", "5", "--points", "8",
                       "--filter-width", "3")
    assert code == 0
    r = refine_run(run_folder, peak=0.02, warmup=5, points=8, filter_width=3)
    assert out.strip() == r.spec and len(r.steps) <= 8 and r.lrs.max() == 0.02


def test_cli_not_a_run_exits_2_with_one_line(tmp_path, capsys):
    code, out, err = cli(capsys, "refine", str(tmp_path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("cadence: error: ") and "Traceback" not in err


@pytest.mark.parametrize("flag, value", [("--warmup", "59"), ("--filter-width", "4"), ("--points", "2"),
                                         ("--peak", "0")])
def test_cli_errors_name_the_flag(run_folder, capsys, flag, value):
    code, out, err = cli(capsys, "refine", str(run_folder), flag, value)
    assert code == 2 and out == "" and flag in err and err.count("\n") == 1


def test_cli_plot_and_csv_are_written_and_never_overwritten(run_folder, tmp_path, capsys):
    plot, table = tmp_path / "refined.png", tmp_path / "refined.csv"
    code, out, err = cli(capsys, "refine", str(run_folder), "--plot", str(plot), "--csv", str(table))
    assert code == 0 and out.count("\n") == 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = table.read_text().splitlines()
    assert rows[0] == "step,grad_norm,smoothed,lr" and len(rows) == 61
    assert np.array_equal(np.array([float(row.split(",")[3]) for row in rows[1:]]), refine_run(run_folder).lrs)
    for path in (plot, table):
        path.write_bytes(b"user file")
        other = {"--plot": str(plot)} if path == plot else {"--csv": str(table)}
        code, out, err = cli(capsys, "refine", str(run_folder), *[x for kv in other.items() for x in kv])
        assert code == 2 and out == "" and "already exists" in err and "--overwrite" in err
        assert path.read_bytes() == b"user file"
    code, out, _ = cli(capsys, "refine", str(run_folder), "--plot", str(plot), "--csv", str(table), "--overwrite")
    assert code == 0 and plot.read_bytes()[:4] == b"\x89PNG" and table.read_text().startswith("step,")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
