import json

import numpy as np
import pytest

from cadence import schedules as S
from cadence.cli import main
from cadence.forecast import FittedLaw, load

TRUE = FittedLaw("multipower", {"L0": 2.9, "A": 0.45, "alpha": 0.5, "B": 0.4, "C": 1.5, "beta": 0.6, "gamma": 0.4}, 3e-4)
T = 3000


def write_csv(path, spec, every=1):
    lrs = S.parse(spec).values(T)
    steps = np.arange(0, T, every)
    losses = TRUE.predict(lrs, np.maximum(steps, 1))
    rows = "".join(f"{s},{float(lrs[s])!r},{float(l)!r}\n" for s, l in zip(steps, losses))
    path.write_text("step,lr,loss\n" + rows)
    return path


def test_fit_predict_rank_optimize_round_trip(tmp_path, capsys):
    a = write_csv(tmp_path / "const.csv", "constant(value=3e-4, warmup=150)")
    b = write_csv(tmp_path / "cos.csv", "cosine(peak=3e-4, final=3e-5, warmup=150)")
    law_path = tmp_path / "law.json"
    assert main(["forecast", "fit", str(a), str(b), "--law", "multipower", "-o", str(law_path)]) == 0
    out = capsys.readouterr().out
    assert "multipower law fitted to 2 run(s)" in out and "const: R2" in out
    law = load(law_path)
    wsd = S.parse("wsd(peak=3e-4, warmup=150, decay='20%', shape='1-sqrt')").values(T)
    assert law.predict(wsd, [T - 1])[0] == pytest.approx(TRUE.predict(wsd, [T - 1])[0], rel=5e-4)

    assert main(["forecast", "predict", str(law_path), "--schedule", "wsd(peak=3e-4, warmup=150)", "--total", str(T),
                 "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "step,lr,loss,low,high" and len(rows) == T + 1
    cells = np.array([[float(x) for x in row.split(",")[2:]] for row in rows[1:] if row.split(",")[2]])
    assert len(cells) == T - 1 and np.all(cells[:, 1] <= cells[:, 0]) and np.all(cells[:, 0] <= cells[:, 2])

    assert main(["forecast", "rank", str(law_path), "--total", str(T), "--schedule", "cos=cosine(peak=3e-4, warmup=150)",
                 "--schedule", "wsd=wsd(peak=3e-4, warmup=150, decay='20%')", "--schedule", "const=constant(value=3e-4)",
                 "--plot", str(tmp_path / "rank.png")]) == 0
    table = capsys.readouterr().out
    order = [line.split("|")[2].strip() for line in table.splitlines()[2:] if line.startswith("|")]
    assert "90% interval" in table.splitlines()[0] and ("not distinguishable from" in table or " is best: " in table)
    truth = sorted(["cos", "wsd", "const"], key=lambda n: TRUE.predict(S.parse({
        "cos": "cosine(peak=3e-4, warmup=150)", "wsd": "wsd(peak=3e-4, warmup=150, decay='20%')",
        "const": "constant(value=3e-4)"}[n]).values(T), [T - 1])[0])
    assert order == truth and order[-1] == "const"
    assert (tmp_path / "rank.png").stat().st_size > 0

    assert main(["forecast", "optimize", str(law_path), "--total", str(T), "--peak", "3e-4", "--warmup", "150",
                 "--csv", str(tmp_path / "opt.csv")]) == 0
    text = capsys.readouterr().out
    final = float(text.split("predicted final loss ")[1].split()[0])
    nearest = [float(line.split()[0]) for line in text.splitlines() if line.startswith("  ") and "(" in line and "spec" not in line
               and ("wsd(" in line or "cosine(" in line or "linear(" in line)]
    assert len(nearest) == 3 and final <= min(nearest) + 1e-6  # no ordinary family beats it under the law
    lrs = np.loadtxt(tmp_path / "opt.csv", delimiter=",", skiprows=1)[:, 1]
    assert len(lrs) == T and np.all(np.diff(lrs[150:]) <= 1e-18)  # non-increasing after warmup


def test_csv_with_gaps_needs_a_schedule(tmp_path, capsys):
    sparse = write_csv(tmp_path / "sparse.csv", "cosine(peak=3e-4, warmup=150)", every=50)
    code = main(["forecast", "fit", str(sparse), "-o", str(tmp_path / "law.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cadence: error: --schedule: ") and "rows have gaps); pass the runs' schedule" in err
    code = main(["forecast", "fit", str(sparse), "-o", str(tmp_path / "law.json"), "--law", "annealing",
                 "--schedule", "cosine(peak=3e-4, warmup=150)", "--total", str(T), "--count-warmup"])
    assert code == 0 and json.loads((tmp_path / "law.json").read_text())["warmup"] == "count"


@pytest.mark.parametrize("argv, fragment", [
    (["forecast", "predict", "missing.json", "--schedule", "cosine(peak=1)", "--total", "10"], "cannot read missing.json"),
    (["forecast", "fit", "nothing.csv", "-o", "x.json"], "no such run folder or CSV file"),
    (["forecast"], "needs an action"),
])
def test_forecast_bad_input(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
