"""Issue 9 for forecasting: any curve file, law file or argument gives a result or a one-line error.

Each test names the defect it keeps fixed. Timing goals (a 200 MB curve read in seconds) are
measured by benchmarks/forecast_large_csv.py, not here; these tests check the mechanisms
(limits, thinning, validation) on small inputs.
"""

import json
import os

import numpy as np
import pytest

from cadence import schedules as S
from cadence.cli import main
from cadence.errors import CadenceError, ForecastError, LimitError
from cadence.forecast import FittedLaw, fit, load
from cadence.forecast import io as fio
from cadence.forecast import limits
from cadence.forecast.hyper import recommend
from cadence.forecast.io import read_run
from cadence.forecast.optimize import optimize_schedule

MPL = {"L0": 2.9, "A": 0.45, "alpha": 0.5, "B": 0.4, "C": 1.5, "beta": 0.6, "gamma": 0.4}
ANNEAL = {"L0": 2.9, "A": 0.45, "alpha": 0.5, "C": 0.002, "lam": 0.995}
LAW = {"format": "cadence.forecast.law/1", "law": "annealing", "params": ANNEAL, "lr_scale": 3e-4}


def curve_text(n=40):
    """A step,lr,loss CSV of a decaying LR from step 0, its losses exactly those of the annealing law ANNEAL."""
    lrs = 3e-4 * (1 - np.arange(n) / (2 * n))
    losses = FittedLaw("annealing", ANNEAL, 3e-4).predict(lrs, np.arange(n))
    return "step,lr,loss\n" + "".join(f"{i},{lr!r},{loss!r}\n" for i, (lr, loss) in enumerate(zip(lrs.tolist(), losses.tolist())))


def one_error_line(capsys, argv, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("cadence: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- curve files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty"),
    (b"step,lr,loss\n", "has a header but no rows"),
    (b"step,lr,loss,loss\n0,1,2,3\n", "column 'loss' appears twice"),
    (b"step,lr,loss\n0,1e-3,2\n1,1e-3,inf\n", "loss is inf at step 1"),
    (b"step,lr,loss\n0,nan,2\n1,1e-3,2\n", "lr must be a finite number >= 0 at every step; got an empty or NaN cell at step 0"),
    (b"step,lr,loss\n0,1e-3,2\n1,-inf,2\n", "got -inf at step 1"),
    (b"step,lr,loss\n-1,1e-3,2\n0,1e-3,2\n", "step must be a whole number in 0..9,999,999; got -1"),
    (b"step,lr,loss\n0,1e-3,2\n1.5,1e-3,2\n", "got 1.5"),
    (b"step,lr,loss\n0,1e-3,2\n2,1e-3,2\n1,1e-3,2\n", "steps must increase strictly; step 1 follows 2"),
    (b"step,lr,loss\n0,1e-3,2\n1,1e-3,2\n1,1e-3,2\n", "steps must increase strictly; step 1 follows 1"),
    (b"step,lr,loss\n0,abc,2\n", "not a CSV of numbers (could not convert string to float: 'abc')"),
    (b"step,lr,loss\n0,1e-3,\"2\n", "not a CSV of numbers"),
    (bytes(range(256)) * 40, "not a text CSV file"),
    (b"\xff\xfe" + "step,lr,loss\n".encode("utf-16-le"), "not a text CSV file"),
    (b"step,lr,loss\n0,1e-3,\xff\xfe\n", "not a text CSV file (not UTF-8)"),
    (b"lr,loss\n1,2\n", "needs columns step and val_loss or loss (found 'lr', 'loss')"),
    (b"step,lr,loss\n5,1e-3,2\n6,1e-3,2\n", "rows have gaps"),
    (b"step,loss\n0,2\n", "no lr column"),
    (b"step,lr,loss\n0,0,2\n1,0,2\n", "every LR is 0: nothing to fit"),
])
def test_malformed_curve_files_are_one_line_errors(tmp_path, capsys, content, fragment):
    """Defects 1-4: every malformed curve file is refused in one line, by the library and the CLI."""
    path = tmp_path / "run.csv"
    path.write_bytes(content)
    with pytest.raises(CadenceError) as info:
        curve = read_run(path)
        fit(curve, law="annealing", starts=1, candidates=4, max_iter=5, strict=False)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    one_error_line(capsys, ["forecast", "fit", str(path), "-o", str(tmp_path / "law.json")])
    assert not (tmp_path / "law.json").exists()


def test_bom_crlf_quotes_blank_lines_and_empty_loss_cells_read_correctly(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text(curve_text())
    expected = read_run(plain, skip_warmup=False)
    lines = curve_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ","  # loss not measured at step 4
    lines[7] = ",".join(f'"{c}"' for c in lines[7].split(","))
    messy = tmp_path / "messy.csv"
    messy.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines[:10] + [""] + lines[10:]).encode() + b"\r\n")
    got = read_run(messy, skip_warmup=False)
    assert np.array_equal(got.lrs, expected.lrs)
    assert list(got.steps) == [s for s in expected.steps if s != 4]
    assert np.array_equal(got.losses, expected.losses[expected.steps != 4])


def test_values_read_exactly_and_nan_losses_mean_not_measured(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("step,lr,loss\n0,0.1,\n1,0.30000000000000004,NaN\n2,0.1,2.5\n")
    c = read_run(path, skip_warmup=False)
    assert c.lrs.tolist() == [0.1, 0.30000000000000004, 0.1] and c.steps.tolist() == [2] and c.losses.tolist() == [2.5]


def test_run_folders_without_metrics_and_paths_that_are_not_files(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text("{corrupt")
    with pytest.raises(ForecastError, match="folder without metrics.csv: not a cadence run folder"):
        read_run(folder)
    (folder / "metrics.csv").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ForecastError, match="not a text CSV file"):
        read_run(folder)
    (folder / "metrics.csv").unlink()
    (folder / "metrics.csv").mkdir()
    with pytest.raises(ForecastError, match="it is a folder, not a curve file"):
        read_run(folder)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # opening it would block until a writer came: refused from stat alone
    with pytest.raises(ForecastError, match="not a regular file"):
        read_run(fifo)
    with pytest.raises(ForecastError, match="no such run folder or CSV file"):
        read_run(tmp_path / "missing.csv")
    with pytest.raises(ForecastError, match=r"^'a\\x00b.csv': no such run folder"):
        read_run("a\x00b.csv")
    one_error_line(capsys, ["forecast", "fit", str(fifo), "-o", str(tmp_path / "law.json")])


def test_a_run_folder_gives_its_validation_loss_or_its_training_loss(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    rows = "".join(f"{i},{32 * (i + 1)},{1e-3 * (1 - i / 60)!r},{3 - i / 100!r},1.0,{'' if i % 5 else repr(2.9 - i / 90)}\n"
                   for i in range(40))
    (folder / "metrics.csv").write_text("step,samples,lr,train_loss,grad_norm,val_loss\n" + rows)
    val = read_run(folder)
    assert val.steps.tolist() == list(range(0, 40, 5)) and val.name == "run"
    train = read_run(folder, loss="train")
    assert len(train.steps) == 40 and train.losses[1] == 3 - 1 / 100


def test_a_non_utf8_file_name_is_read_and_printed(tmp_path, capsys):
    name = os.fsdecode(b"curve-\xff")
    path = tmp_path / f"{name}.csv"
    path.write_text(curve_text(n=60))
    assert read_run(path).name == "curve-\\udcff"
    assert main(["forecast", "fit", str(path), "--law", "annealing", "-o", str(tmp_path / "law.json")]) == 0
    out = capsys.readouterr().out
    assert "curve-\\udcff: R2" in out
    out.encode("utf-8")  # printable on a UTF-8 terminal


def test_read_run_arguments_are_checked(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(curve_text())
    for kwargs, fragment in [({"loss": "x"}, "loss must be 'val' or 'train'"), ({"skip_warmup": 0}, "True or False"),
                             ({"schedule": "cosine(peak=1e-3)"}, "needs the run's length"),
                             ({"schedule": "cosine(peak=1e-3)", "total": 2.5}, "whole number of steps"),
                             ({"schedule": "cosine(peak=1e-3)", "total": 10}, "rows up to step 39 but the run is given as 10"),
                             ({"schedule": 5, "total": 100}, "must be a spec string")]:
        with pytest.raises(ForecastError, match=fragment):
            read_run(path, **kwargs)
    with pytest.raises(LimitError, match="a curve is limited to 10,000,000 steps") as info:
        read_run(path, schedule="cosine(peak=1e-3)", total=10**8)
    assert info.value.field == "total"


def test_curve_limits_are_refusals_in_one_line(tmp_path, monkeypatch):
    """Defect 1: a file over the size or row limit is refused before or while reading, never parsed in full."""
    path = tmp_path / "c.csv"
    path.write_text(curve_text(n=50))
    monkeypatch.setattr(fio, "MAX_CSV_BYTES", 100)
    with pytest.raises(LimitError, match="a curve file is limited to 100"):
        read_run(path)
    monkeypatch.setattr(fio, "MAX_CSV_BYTES", limits.MAX_CSV_BYTES)
    monkeypatch.setattr(fio, "MAX_STEPS", 20)
    with pytest.raises(LimitError, match="has more than 20 rows"):
        read_run(path)
    monkeypatch.setattr(fio, "MAX_HEADER_BYTES", 8)
    with pytest.raises(LimitError, match="header line is longer than 8 bytes"):
        read_run(path)


def test_a_long_curve_is_fitted_on_evenly_spaced_points_and_scored_on_all(tmp_path):
    """Defect 1: fitting cost is bounded by MAX_FIT_POINTS per curve, whatever the curve's length."""
    lrs = S.parse("cosine(peak=3e-4, final=3e-5)").values(3000)
    truth = FittedLaw("annealing", ANNEAL, 3e-4)
    steps = np.arange(1, 3000)
    from cadence.forecast import Curve

    curve = Curve(steps=steps, losses=truth.predict(lrs, steps), lrs=lrs, name="long")
    law = fit(curve, law="annealing", max_points=200, starts=2, candidates=16)
    assert law.report["points"] == {"long": [200, 2999]}
    assert law.score(curve)["worst_e"] < 1e-3  # scored on every measured point


def test_an_annealing_fit_over_too_many_steps_is_refused_before_it_starts(monkeypatch):
    """Defect 1: the annealing law filters every step at each of its thousands of evaluations; a
    fit over a 200 MB curve would have run for about half an hour."""
    from cadence.forecast import Curve
    from cadence.forecast.laws import Annealing

    monkeypatch.setattr(Annealing, "fit_steps", 500)
    lrs = np.full(600, 3e-4)
    curve = Curve(steps=np.arange(1, 600), losses=np.linspace(3, 2, 599), lrs=lrs)
    with pytest.raises(LimitError, match="a fit of the annealing law is limited to 500 steps of LR .* these have 600: "
                                         "fit the multipower law"):
        fit(curve, law="annealing")


@pytest.mark.parametrize("losses, lr", [(np.linspace(1e308, 1e307, 40), 1e-3), (np.linspace(1e-300, 1e-301, 40), 1e-3),
                                        (np.linspace(3, 2, 40), 1.5e308)])
def test_fits_of_values_near_the_float_range_end_without_overflow(losses, lr):
    """Found by fuzzing: exp() of the L0 coordinate, the scores and a sum of LRs overflowed (warnings are errors here)."""
    from cadence.forecast import Curve

    curve = Curve(steps=np.arange(5, 45), losses=losses, lrs=np.full(50, lr))
    for name in ("multipower", "annealing"):
        law = fit(curve, law=name, starts=1, candidates=4, max_iter=25, strict=False)
        assert all(np.isfinite(v) for v in law.params.values())
        assert all(v is None or np.isfinite(v) for v in law.report["curves"]["curve0"].values())


# -- law files --------------------------------------------------------------------------------------

def law_doc(**changes):
    doc = json.loads(json.dumps(LAW))
    for key, value in changes.items():
        if key in ANNEAL:
            doc["params"][key] = value
        elif value is ...:
            del doc[key]
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize("doc, fragment", [
    (law_doc(L0=float("nan")), "parameter L0 must be a finite number; got nan"),
    (law_doc(A=float("inf")), "parameter A must be a finite number"),
    (law_doc(alpha=10 ** 400), "parameter alpha must be a finite number"),
    (law_doc(C="0.002"), "parameter C must be a number; got '0.002'"),
    (law_doc(lam=True), "parameter lam must be a number; got True"),
    (law_doc(lam=1.0), "parameter lam of the annealing law must be in [0, 1); got 1.0"),
    (law_doc(A=-1), "parameter A of the annealing law must be >= 0"),
    (law_doc(lr_scale=0), "lr_scale must be > 0"),
    (law_doc(lr_scale=[]), "lr_scale must be a number"),
    (law_doc(lr_scale=...), "has no 'lr_scale'"),
    (law_doc(params=...), "has no 'params'"),
    (law_doc(params=[1, 2]), "needs parameters L0, A, alpha, C, lam"),
    (law_doc(params={"L0": 1}), "needs parameters L0, A, alpha, C, lam; got 'L0'"),
    (law_doc(law=["annealing"]), "unknown law ['annealing']"),
    (law_doc(warmup={"a": 1}), "warmup must be one of skip, count"),
    (law_doc(report=[]), "report must be a JSON object"),
    (law_doc(format=None), "is not a cadence.forecast.law/1 law file"),
])
def test_malformed_law_files_are_refused_at_load(tmp_path, capsys, doc, fragment):
    """Defect 2: every field is checked at load; a NaN parameter no longer predicts 'nan' with exit 0."""
    path = tmp_path / "law.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ForecastError) as info:
        load(path)
    assert fragment in str(info.value)
    one_error_line(capsys, ["forecast", "predict", str(path), "--schedule", "cosine(peak=3e-4)", "--total", "100"])


@pytest.mark.parametrize("raw, fragment", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # was RecursionError
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
    (bytes(range(256)), r"not JSON \(not UTF-8 text\)"),
    (b'{"format": "cadence.forecast.law/1", "params": ', "is not JSON"),
    (b'"' + b"9" * 5000 + b'"', "is not a cadence.forecast.law/1 law file"),
    (b"9" * 5000, "is not JSON"),  # beyond Python's int digit limit
    (b"", "is not JSON"),
])
def test_broken_law_files(tmp_path, raw, fragment):
    """Defect 3: a deeply nested or binary law file was a RecursionError or UnicodeDecodeError."""
    path = tmp_path / "law.json"
    path.write_bytes(raw)
    with pytest.raises(ForecastError, match=fragment):
        load(path)


def test_law_file_size_limit_and_non_files(tmp_path, monkeypatch):
    path = tmp_path / "law.json"
    path.write_text(json.dumps(LAW))
    monkeypatch.setattr("cadence.forecast.fitting.MAX_LAW_BYTES", 50)
    with pytest.raises(LimitError, match="a law file is limited to 50"):
        load(path)
    with pytest.raises(ForecastError, match="it is a folder"):
        load(tmp_path)


def test_fitted_law_checks_its_fields():
    with pytest.raises(ForecastError, match="unknown law"):
        FittedLaw("power", ANNEAL, 1.0)
    with pytest.raises(ForecastError, match="parameter beta of the multipower law must be > 0"):
        FittedLaw("multipower", {**MPL, "beta": 0.0}, 1.0)
    with pytest.raises(ForecastError, match="lr_scale must be a finite number"):
        FittedLaw("annealing", ANNEAL, float("nan"))


# -- predictions ------------------------------------------------------------------------------------

def test_a_prediction_that_overflows_is_an_error_not_nan():
    """Defect 2: a law whose prediction overflows for some schedule raised nothing and printed nan."""
    law = FittedLaw("annealing", {**ANNEAL, "alpha": 300.0}, 3e-4)
    tiny = np.full(100, 1e-9)  # LR area far below 1: area^-300 overflows
    with pytest.raises(ForecastError, match="prediction overflows at step 0 .* fitted with LRs up to 0.0003"):
        law.predict(tiny, np.arange(100))


def test_steps_without_lr_area_have_no_prediction():
    law = FittedLaw("multipower", MPL, 3e-4)
    lrs = S.parse("cosine(peak=3e-4, warmup=10)").values(100)
    assert np.all(np.isfinite(law.predict(lrs, np.arange(1, 100))))
    with pytest.raises(ForecastError, match="no prediction at step 0: the LR is 0 at step 0"):
        law.predict(lrs, np.arange(100))
    with pytest.raises(ForecastError, match="the LR is 0 at every step"):
        law.predict(np.zeros(10), [5])


def test_a_schedule_that_ends_at_exactly_zero_predicts_finite_losses():
    """The exact Multi-Power sum gave nan (0 * inf) when the LR dropped to exactly 0 in few steps."""
    lrs = S.parse("piecewise(points=[[0, 3e-4], [50, 3e-4], [60, 0.0]])").values(100)
    pred = FittedLaw("multipower", MPL, 3e-4).predict(lrs, [40, 59, 60, 99])
    assert np.all(np.isfinite(pred)) and pred[1] == pred[3]  # no LR after step 59: no further change


@pytest.mark.parametrize("lrs, steps, fragment", [
    ("abc", [1], "must be a 1-D sequence of numbers; got a string"),
    ([[1.0, 2.0]], [0], "must be a 1-D array"),
    ([1.0, None], [0], "real numbers"),
    ([1.0, 1j], [0], "real numbers"),
    ([1.0, 2.0], [0.5], "whole numbers"),
    ([1.0, 2.0], [-1], "whole numbers"),
    ([1.0, 2.0], [5], "covers steps 0..1"),
    ([1.0, 2.0], [], "non-empty"),
    ([1.0, float("nan")], [0], "finite and >= 0; got nan at step 1"),
    ([], [0], "non-empty"),
    (5, [0], "got int"),
])
def test_predict_arguments(lrs, steps, fragment):
    with pytest.raises(ForecastError, match=fragment):
        FittedLaw("annealing", ANNEAL, 1.0).predict(lrs, steps)


def test_forecast_totals_are_limited_and_the_limit_names_the_flag(tmp_path, capsys):
    path = tmp_path / "law.json"
    path.write_text(json.dumps(LAW))
    err = one_error_line(capsys, ["forecast", "predict", str(path), "--schedule", "cosine(peak=3e-4)", "--total",
                                  str(limits.MAX_STEPS + 1)])
    assert "--total: a forecast is limited to 10,000,000 steps" in err
    err = one_error_line(capsys, ["forecast", "optimize", str(path), "--peak", "3e-4", "--total",
                                  str(limits.MAX_OPTIMIZE_STEPS + 1)])
    assert "--total: forecast optimize is limited to 100,000 steps" in err


def test_predict_csv_leaves_the_loss_empty_where_there_is_no_prediction(tmp_path, capsys):
    path = tmp_path / "law.json"
    path.write_text(json.dumps(LAW))
    assert main(["forecast", "predict", str(path), "--schedule", "cosine(peak=3e-4, warmup=2)", "--total", "6", "--csv",
                 "--plot", str(tmp_path / "p.png")]) == 0
    rows = capsys.readouterr().out.splitlines()
    law = load(path)
    lrs = S.parse("cosine(peak=3e-4, warmup=2)").values(6)
    assert rows[:2] == ["step,lr,loss,low,high", "0,0.0,,,"]
    # a law without recorded uncertainty: low = high = the prediction
    assert rows[2:] == [f"{i},{lrs[i].item()!r},{v!r},{v!r},{v!r}"
                        for i, v in zip(range(1, 6), law.predict(lrs, np.arange(1, 6)).tolist())]
    one_error_line(capsys, ["forecast", "predict", str(path), "--schedule", "constant(value=0.0)", "--total", "5"])


def test_rank_reports_the_plan_that_cannot_be_predicted(tmp_path, capsys):
    path = tmp_path / "law.json"
    path.write_text(json.dumps(LAW))
    err = one_error_line(capsys, ["forecast", "rank", str(path), "--total", "10", "--schedule", "a=cosine(peak=3e-4)",
                                  "--schedule", "zero=constant(value=0.0)"])
    assert "--schedule zero: no prediction at step 9" in err


def test_outputs_are_checked_before_the_work(tmp_path, capsys):
    curve = tmp_path / "c.csv"
    curve.write_text(curve_text())
    err = one_error_line(capsys, ["forecast", "fit", str(curve), "-o", str(tmp_path / "no" / "law.json")])
    assert "--out: cannot write" in err and "does not exist" in err
    err = one_error_line(capsys, ["forecast", "fit", str(curve), "-o", str(tmp_path), "--overwrite"])
    assert "is a folder" in err
    err = one_error_line(capsys, ["forecast", "fit", str(curve), "-o", "x" * 300 + ".json"])  # was OSError
    assert "--out: cannot write xxx" in err and "File name too long" in err
    err = one_error_line(capsys, ["forecast", "fit", str(curve), "-o", "a\x00b.json"])  # was ValueError after the fit
    assert "--out: a file name cannot contain a NUL byte" in err
    with pytest.raises(ForecastError, match="cannot write 'a.x00b': embedded null byte"):
        FittedLaw("annealing", ANNEAL, 1.0).save("a\x00b")


# -- optimize ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, fragment", [
    (["--total", "1", "--peak", "3e-4"], "--total: forecast optimize needs a run of at least 2 steps; got 1"),
    (["--total", "100", "--peak", "3e-4", "--warmup", "-5"], "--warmup: the warmup must leave at least 2 steps"),
    (["--total", "100", "--peak", "3e-4", "--warmup", "9" * 30], "--warmup: the warmup must leave at least 2 steps"),
    (["--total", "100", "--peak", "3e-4", "--warmup", "99"], "0 <= warmup <= total - 2 = 98; got 99"),
    (["--total", "100", "--peak", "1e308"], "prediction overflows"),
    (["--total", "100", "--peak", "nan"], "expected a positive number"),
])
def test_optimize_bad_arguments(tmp_path, capsys, extra, fragment):
    """Defect 5: negative or huge --warmup, a huge --peak and --total 1 are one-line errors."""
    path = tmp_path / "law.json"
    path.write_text(json.dumps(LAW))
    err = one_error_line(capsys, ["forecast", "optimize", str(path), *extra])
    assert fragment in err


def test_optimize_a_short_run_and_a_huge_peak_without_overflow():
    law = FittedLaw("annealing", ANNEAL, 1.0)
    lrs, final = optimize_schedule(law, 3, 1e-3, warmup=1)
    assert lrs.shape == (3,) and lrs[0] == 0 and np.isfinite(final)
    huge = FittedLaw("annealing", ANNEAL, 1e308)
    lrs, final = optimize_schedule(huge, 20, 1e308)  # peak / lr_scale = 1: no overflow anywhere (warnings are errors)
    assert np.all(np.isfinite(lrs)) and np.isfinite(final) and lrs.max() <= 1e308


# -- recommend --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e999", "10**9", "9" * 5000, "\u0661\u0662", "1e308", "0.5",
                                   "1.1e18", "", "1_000"])
def test_recommend_refuses_bad_counts_in_one_line(capsys, value):
    """Defect 3: --tokens 1e308 was an OverflowError; every bad count is now a one-line error."""
    err = one_error_line(capsys, ["recommend", "--params", "1B", "--tokens", value, "--seq-len", "4096"])
    assert err.startswith("cadence: error: --tokens: the token count D ")
    one_error_line(capsys, ["recommend", "--params", value, "--tokens", "1B"])


def test_recommend_at_the_limits_is_finite():
    for advice in recommend("1e18", "1e18", seq_len=10**18, batch_sequences=1e18) + recommend(1, 1, seq_len=1):
        for value in advice.to_dict()["values"].values():
            assert np.isfinite(value)
    with pytest.raises(ForecastError, match="the sequence length must be a whole number") as info:
        recommend("1B", "1B", seq_len=10**300)
    assert info.value.field == "seq_len"
    with pytest.raises(LimitError, match="the batch size in sequences is limited to 1e"):
        recommend("1B", "1B", seq_len=4096, batch_sequences=1e308)
