"""cadence bench on a workload with domains (text): per-domain figures, the average and worst-domain table, the
summary's per-domain columns, --data; and a comparison without domains gets the report it got before."""

import csv
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from cadence.bench.compare import BenchConfig
from cadence.bench.report import _grid, load_metrics, summarise, write_report
from cadence.cli import main
from cadence.errors import CadenceError, PlanError

# summary.csv's header before domains existed (a step clock): a contract, so new columns only ever come after it.
LEGACY_HEADER = ["candidate", "seeds", "final_val_mean", "final_val_std", "final_train_mean", "final_train_std",
                 "steps_to_target", "reached", "speedup", "diverged", "diverged_at"]
DOMAIN_HEADER = ["domains_val_mean", "domains_val_std", "worst_domain", "worst_domain_val_mean", "worst_domain_val_std"]
PNG = b"\x89PNG"


def fake_run(run_dir: Path, steps: int, finals: "dict[str, float] | None", eval_every: int = 4, mixture=None):
    """metrics.csv as the runner writes it (per-domain columns when ``finals`` names domains): a loss falling
    linearly to each domain's final value, evaluated every ``eval_every`` steps and at the last step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    domains = list(finals or {})
    header = ["step", "lr", "train_loss", *(f"mixture/{d}" for d in domains), *(f"samples/{d}" for d in domains),
              "val_loss", *(f"val_loss/{d}" for d in domains)]
    rows = []
    for step in range(steps):
        left = (steps - 1 - step) / max(steps - 1, 1)
        evaluated = (step + 1) % eval_every == 0 or step == steps - 1
        per = {d: finals[d] + left for d in domains}
        weights = mixture(step) if mixture else {d: 1 / len(domains) for d in domains}
        val = (sum(per.values()) / len(per) if per else 2.0 + left) if evaluated else None
        rows.append([step, 0.01, 2.5 + left, *(weights[d] for d in domains), *(step * 2 for _ in domains),
                     "" if val is None else val, *(("" if not evaluated else per[d]) for d in domains)])
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[repr(v) if isinstance(v, float) else v for v in row] for row in rows])


def fake_comparison(folder: Path, finals: dict, steps: int = 12, workload: str = "text", **kw) -> BenchConfig:
    """A finished comparison folder: bench.json as run_bench writes it and one metrics.csv per (candidate, seed);
    ``finals[candidate][seed]`` is that run's {domain: final loss} (empty: no domains)."""
    mixture = kw.pop("mixture", None)
    config = BenchConfig(workload=workload, candidates={name: "constant(value=0.01)" for name in finals}, steps=steps,
                         seeds=len(next(iter(finals.values()))), eval_every=4, **kw)
    folder.mkdir(parents=True)
    (folder / "bench.json").write_text(json.dumps(config.record(), indent=2) + "\n")
    for name, seeds in finals.items():
        for seed, per in enumerate(seeds):
            fake_run(folder / "runs" / name / f"seed-{seed}", steps, per, mixture=mixture)
    return config


def summary_rows(folder: Path) -> tuple[list[str], dict[str, dict]]:
    with open(folder / "summary.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}


# "even": prose has the highest single final loss (seed 1), but averaged over seeds code is the worst domain
FINALS = {
    "even": [{"code": 3.0, "prose": 2.0, "tests": 2.5}, {"code": 3.0, "prose": 3.5, "tests": 2.4},
             {"code": 3.0, "prose": 2.0, "tests": 2.6}],
    "skew": [{"code": 2.8, "prose": 2.9, "tests": 2.2}, {"code": 2.9, "prose": 3.1, "tests": 2.3},
             {"code": 2.7, "prose": 3.0, "tests": 2.1}],
}


def test_average_and_worst_domain_in_table_summary_and_report(tmp_path):
    folder = tmp_path / "b"
    fake_comparison(folder, FINALS)
    result = write_report(folder)
    assert result["figures"] == ["loss.png", "val_loss.png", "val_loss_domains.png", "mixture.png"]
    for name in result["figures"]:
        assert (folder / name).read_bytes()[:4] == PNG, name
    header, rows = summary_rows(folder)
    assert header[:len(LEGACY_HEADER)] == LEGACY_HEADER  # existing columns keep their names and places
    assert header[len(LEGACY_HEADER):] == DOMAIN_HEADER + [f"final_val/{d}_{s}" for d in ("code", "prose", "tests")
                                                           for s in ("mean", "std")]
    for name, seeds in FINALS.items():
        row = rows[name]
        for d in ("code", "prose", "tests"):
            values = [s[d] for s in seeds]
            assert float(row[f"final_val/{d}_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(row[f"final_val/{d}_std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        means = [np.mean(list(s.values())) for s in seeds]
        assert float(row["domains_val_mean"]) == pytest.approx(np.mean(means), abs=1e-12)
        assert float(row["domains_val_std"]) == pytest.approx(np.std(means, ddof=1), abs=1e-12)
    assert rows["even"]["worst_domain"] == "code" and float(rows["even"]["worst_domain_val_mean"]) == pytest.approx(
        3.0, abs=1e-12)
    assert rows["skew"]["worst_domain"] == "prose" and float(rows["skew"]["worst_domain_val_mean"]) == pytest.approx(
        3.0, abs=1e-12)
    report = (folder / "report.md").read_text()
    assert "| candidate | mean over domains | worst domain | worst-domain loss | `code` | `prose` | `tests` |" in report
    assert "| even | 2.6667 ± 0.2603 | `code` | 3.0000 ± 0.0000 |" in report
    assert "![validation loss per domain](val_loss_domains.png)" in report
    assert "![mixture weights per candidate](mixture.png)" in report
    assert "worst-domain loss" in result["table"]  # what cadence bench and cadence report print


def test_a_comparison_without_domains_gets_the_report_it_got_before(tmp_path):
    folder = tmp_path / "b"
    fake_comparison(folder, {"a": [{}, {}], "b": [{}, {}]}, workload="logreg")
    result = write_report(folder)
    assert result["figures"] == ["loss.png", "val_loss.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["bench.json", "loss.png", "report.md", "runs", "summary.csv",
                                                         "val_loss.png"]
    header, rows = summary_rows(folder)
    assert header == LEGACY_HEADER and all(len(r) == len(LEGACY_HEADER) for r in rows.values())
    report = (folder / "report.md").read_text()
    assert "domain" not in report and "mixture" not in report and "Data:" not in report
    # the table is followed by one blank line and the explanation, as before: no empty section in between
    lines = report.splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("| b"))
    assert lines[last + 1] == "" and lines[last + 2].startswith("Final val loss:")
    assert result["table"].count("| candidate |") == 1
    assert summarise(folder)["domains"] == []


def test_mixture_over_time_and_many_domains(tmp_path):
    domains = [f"d{k}" for k in range(8)]

    def moving(step):  # all weight on d0 at first, moving to uniform
        t = step / 11
        return {d: (1 - t) * (d == "d0") + t / len(domains) for d in domains}

    finals = {"mix": [{d: 2.0 + k / 10 for k, d in enumerate(domains)}]}
    folder = tmp_path / "b"
    fake_comparison(folder, finals, mixture=moving)
    result = write_report(folder)
    assert "val_loss_domains.png" in result["figures"] and "mixture.png" in result["figures"]
    assert summarise(folder)["rows"][0]["worst_domain"] == "d7"
    assert [_grid(n) for n in (1, 2, 3, 4, 5, 6, 7, 8)] == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 3), (2, 3), (2, 4),
                                                            (2, 4)]
    # 8 domains in a 2 x 4 grid: wider than tall, not one long row
    width, height = struct.unpack(">II", (folder / "val_loss_domains.png").read_bytes()[16:24])
    assert 1.2 < width / height < 3


def test_a_candidate_whose_runs_all_diverged_and_one_without_a_domain(tmp_path):
    folder = tmp_path / "b"
    finals = {"ok": [{"code": 2.0, "prose": 3.0}], "boom": [{"code": 2.0, "prose": 3.0}],
              "other": [{"code": 2.5, "extra": 2.2}]}  # a plan candidate with a data folder of its own
    fake_comparison(folder, finals)
    run = folder / "runs" / "boom" / "seed-0"
    (run / "run.json").write_text(json.dumps({"status": "diverged", "diverged_at": 5}))
    result = write_report(folder)
    table = result["table"]
    assert "| boom | - | - | - | - | - | - |" in table
    assert "| other | 2.3500 ± 0.0000 | `code` | 2.5000 ± 0.0000 | 2.5000 ± 0.0000 | - | 2.2000 ± 0.0000 |" in table
    _, rows = summary_rows(folder)
    assert rows["boom"]["worst_domain"] == "" and rows["boom"]["final_val/code_mean"] == ""
    assert rows["other"]["final_val/prose_mean"] == "" and rows["ok"]["worst_domain"] == "prose"


def test_bench_json_records_data_and_reads_files_from_before_it(tmp_path, capsys):
    without = BenchConfig(workload="text", candidates={"c": "constant(value=0.01)"}, steps=5).record()
    assert without["format"] == "cadence.bench/2" and "data" not in without["config"]  # as written before
    plan = {"file": "p.yaml", "channels": {"lr": "constant(value=0.01)"}}
    assert "data" not in BenchConfig(workload="text", candidates={"p": plan}, steps=5).record()["config"]
    record = BenchConfig(workload="text", candidates={"c": "constant(value=0.01)"}, steps=5, data="/corpus").record()
    assert record["format"] == "cadence.bench/3" and record["config"]["data"] == "/corpus"
    assert BenchConfig.from_record(record, "bench.json").data == "/corpus"
    assert BenchConfig.from_record(without, "bench.json").data is None
    old3 = {"format": "cadence.bench/3", "config": {k: v for k, v in record["config"].items() if k != "data"}}
    assert BenchConfig.from_record(old3, "bench.json").data is None  # a /3 file written before data existed
    # tampered: one line, exit 2
    folder = tmp_path / "b"
    fake_comparison(folder, {"a": [{"code": 2.0, "prose": 2.5}]})
    bad = json.loads((folder / "bench.json").read_text())
    bad["format"], bad["config"]["data"] = "cadence.bench/3", 3
    (folder / "bench.json").write_text(json.dumps(bad))
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data must name a folder; got '3'" in err


def corpus(root: Path) -> Path:
    """Three small domains, a few KB each."""
    lines = {"code": "def f(x):\n    return x * {i} + {i}\n\n", "prose": "The fox number {i} jumps over the dog. ",
             "numbers": "{i} {i} 3.14159 2.71828\n"}
    for name, line in lines.items():
        (root / name).mkdir(parents=True)
        for k in range(3):
            (root / name / f"f{k}.txt").write_text("".join(line.format(i=i + 100 * k) for i in range(30)))
    return root


def bench(capsys, *argv):
    code = main(["bench", *argv, "--seeds", "1", "--steps", "2", "--size", "xs", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_data_for_another_workload_a_bad_folder_or_a_clash_is_one_line(tmp_path, capsys):
    data = corpus(tmp_path / "corpus")
    out = str(tmp_path / "out")
    code, _, err = bench(capsys, "logreg", "--data", str(data), "--candidate", "c=constant(value=0.01)", "--out", out)
    assert code == 2 and err == "cadence: error: --data: the logreg workload reads no data folder (only text does)\n"
    plan = tmp_path / "p.yaml"
    plan.write_text("channels:\n  lr: 'constant(value=0.01)'\n")
    code, _, err = bench(capsys, "logreg", "--data", str(data), "--candidate", f"p={plan}", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "--data: the logreg workload reads no data folder" in err
    code, _, err = bench(capsys, "text", "--data", str(tmp_path / "missing"), "--candidate", "c=constant(value=0.01)",
                         "--out", out)
    assert code == 2 and err.count("\n") == 1 and "--data: data folder" in err and "does not exist" in err, err
    code, _, err = bench(capsys, "text", "--data", str(tmp_path / "missing"), "--candidate", f"p={plan}", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "--data: data folder" in err, err  # not blamed on the candidate
    code, _, err = bench(capsys, "text", "--data", " ", "--candidate", "c=constant(value=0.01)", "--out", out)
    assert code == 2 and err == "cadence: error: --data must name a folder of domains; got ' '\n"
    other = corpus(tmp_path / "other")
    plan.write_text(f"data: {json.dumps(str(other))}\nchannels:\n  lr: 'constant(value=0.01)'\n")
    code, _, err = bench(capsys, "text", "--data", str(data), "--candidate", f"p={plan}", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "name different folders; keep one" in err and "--data" in err
    assert not os.path.exists(out)  # refused before anything was written


def test_a_plan_candidates_data_is_the_comparisons_or_refused(tmp_path, monkeypatch):
    data = corpus(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    same = {"file": "p.yaml", "data": "corpus", "size": "xs", "channels": {"lr": "constant(value=0.01)"}}
    config = BenchConfig(workload="text", candidates={"p": same, "c": "constant(value=0.01)"}, steps=2, seeds=1,
                         data=str(data))
    assert {cfg.data for _, _, cfg in config.runs()} == {str(data)}  # one folder, however it is spelt
    config.candidates["p"] = {**same, "data": str(corpus(tmp_path / "other"))}
    with pytest.raises(PlanError, match="name different folders; give it in one place") as e:
        config.runs()
    assert e.value.field == "candidates"
    with pytest.raises(CadenceError, match="data must name a folder") as e:
        BenchConfig(workload="text", candidates={"c": "constant(value=0.01)"}, data="").check()
    assert e.value.field == "data"


def test_cadence_bench_text_with_data_end_to_end(tmp_path, capsys):
    data = corpus(tmp_path / "corpus")
    out = tmp_path / "b"
    code = main(["bench", "text", "--data", str(data), "--candidate", "cos=cosine(peak=3e-3, warmup=1)",
                 "--candidate", "const=constant(value=3e-3)", "--seeds", "2", "--steps", "4", "--eval-every", "2",
                 "--size", "xs", "--batch-size", "8", "--threads", "1", "--out", str(out), "--no-progress"])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "| candidate | mean over domains | worst domain | worst-domain loss |" in printed
    for name in ("val_loss_domains.png", "mixture.png"):
        assert (out / name).read_bytes()[:4] == PNG, name
    record = json.loads((out / "bench.json").read_text())
    assert record["config"]["data"] == str(data.resolve())
    runs = {(c, s): load_metrics(out / "runs" / c / f"seed-{s}" / "metrics.csv") for c in ("cos", "const")
            for s in (0, 1)}
    assert all(json.loads((out / "runs" / c / f"seed-{s}" / "run.json").read_text())["config"]["data"]
               == str(data.resolve()) for c, s in runs)
    header, rows = summary_rows(out)
    assert "worst_domain" in header and header[:len(LEGACY_HEADER)] == LEGACY_HEADER
    for c in ("cos", "const"):
        finals = {d: [float(runs[c, s][f"val_loss/{d}"][-1]) for s in (0, 1)] for d in ("code", "numbers", "prose")}
        for d, values in finals.items():
            assert float(rows[c][f"final_val/{d}_mean"]) == pytest.approx(np.mean(values), rel=1e-12)
        worst = max(finals, key=lambda d: np.mean(finals[d]))
        assert rows[c]["worst_domain"] == worst
        assert float(rows[c]["worst_domain_val_mean"]) == pytest.approx(np.mean(finals[worst]), rel=1e-12)
    report = (out / "report.md").read_text()
    assert "| worst domain |" in report and f"Data: `{data.resolve()}`" in report


def test_a_plan_candidate_may_give_a_weight_per_domain(tmp_path):
    data = corpus(tmp_path / "corpus")
    weights = {"code": 0.5, "numbers": 0.25, "prose": 0.25}
    plan = {"file": "m.yaml", "size": "xs", "channels": {"lr": "constant(value=0.01)", "mixture": weights}}
    config = BenchConfig(workload="text", candidates={"m": plan}, steps=2, seeds=1, data=str(data))
    (_, _, cfg), = config.runs()
    assert cfg.channels["mixture"] == weights and config.record()["config"]["candidates"]["m"] == plan
    for bad in ({}, {"code": [0.5]}, {"code": float("nan")}, {"code": {"deeper": 1}}):
        with pytest.raises(PlanError, match="channels must map channel names"):
            BenchConfig(workload="text", candidates={"m": {**plan, "channels": {"lr": "1e-3", "mixture": bad}}},
                        steps=2).check()
