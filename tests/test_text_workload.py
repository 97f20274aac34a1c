"""The text workload: domains from a folder or the standard library, per-domain columns, exact resume, bad input."""

import json

import pytest
import torch

from cadence.bench import workloads
from cadence.bench.report import load_metrics
from cadence.bench.runner import RunConfig, train
from cadence.bench.text import Text
from cadence.cli import main
from cadence.errors import CadenceError, RunError

WORDS = {
    "code": "def f(x):\n    return x * {i} + {i}\n\n",
    "prose": "The quick brown fox number {i} jumps over the lazy dog and sleeps. ",
    "numbers": "{i} {i} {i} 3.14159 2.71828 1.41421\n",
}


def make_corpus(root, files=6, repeat=40):
    """Three domains of a few files each, plus a binary file and a file that is not UTF-8."""
    for name, line in WORDS.items():
        for k in range(files):
            folder = root / name / ("sub" if k % 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{k}.txt").write_text("".join(line.format(i=i + 100 * k) for i in range(repeat)))
    (root / "code" / "blob.bin").write_bytes(b"\x00\x01\x02" * 50)
    (root / "prose" / "latin1.txt").write_bytes("caf\xe9 na\xefve ".encode("latin-1") * 20)
    return root


def fresh(data):
    """Forget the process's cached reading of a folder (a new process would read it again)."""
    workloads._INSTANCES.pop(("text", str(data)), None)


def config(data, **kw):
    base = dict(workload="text", data=str(data), size="xs", channels={"lr": "cosine(peak=2e-3, warmup=2)"},
                horizon=12, eval_every=4, checkpoint_every=4, batch_size=8)
    base.update(kw)
    return RunConfig(**base)


def test_domains_skipped_files_and_split(tmp_path):
    data = make_corpus(tmp_path / "corpus")
    w = Text(data_dir=str(data))
    assert w.domain_names() == ("code", "numbers", "prose")
    assert w._data["skipped"] == 2  # the binary file and the latin-1 one
    record = w.corpus_record()
    assert {d: r["files"] for d, r in record.items()} == {"code": 6, "numbers": 6, "prose": 6}
    again = Text(data_dir=str(data))  # the split and the batches are functions of the paths and (seed, index)
    assert all(torch.equal(a, b) for a, b in zip(w._corpus()[1], again._corpus()[1]))
    assert torch.equal(w._corpus()[0], again._corpus()[0])
    x, y, d = w.batch(3, 7, 16)
    x2, y2, d2 = again.batch(3, 7, 16)
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(d, d2) and x.shape == (16, w.context)
    assert torch.equal(d, w.draw(3, 7, 16)[0])  # the domain of each sample, as the sampler drew it
    assert sum(w.domain_counts(3, 0, 5, 16)) == 80
    assert w.weights().tolist() == pytest.approx([1 / 3] * 3)
    skewed = w.weights({"code": 0.0, "numbers": 1.0, "prose": 0.0})  # what a mixture channel passes
    assert w.domain_counts(3, 0, 2, 16, skewed) == [0, 32, 0]
    for wrong in ({"code": 1.0}, {"code": 1, "numbers": 1, "prose": 1, "x": 1}, {"code": -1, "numbers": 1, "prose": 1},
                  {"code": float("nan"), "numbers": 1, "prose": 1}, {"code": 0, "numbers": 0, "prose": 0}):
        with pytest.raises(CadenceError, match="mixture weights"):
            w.weights(wrong)


def test_per_domain_columns_and_exact_resume(tmp_path):
    data = make_corpus(tmp_path / "corpus")
    train(config(data), tmp_path / "a", threads=1)
    train(config(data), tmp_path / "b", threads=1, stop_after=6)  # last checkpoint at 4: rows 4-5 are rewritten
    train(config(data), tmp_path / "b", threads=1, resume=True)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()
    header = (tmp_path / "a" / "metrics.csv").read_text().splitlines()[0].split(",")
    for d in ("code", "numbers", "prose"):
        assert {f"mixture/{d}", f"samples/{d}", f"val_loss/{d}"} <= set(header)
    m = load_metrics(tmp_path / "a" / "metrics.csv")
    total = sum(m[f"samples/{d}"] for d in ("code", "numbers", "prose"))
    assert total.tolist() == [8 * (s + 1) for s in range(12)]  # cumulative, every sample counted once
    assert all(m[f"mixture/{d}"].tolist() == pytest.approx([1 / 3] * 12) for d in ("code", "numbers", "prose"))
    last = {d: m[f"val_loss/{d}"][-1] for d in ("code", "numbers", "prose")}
    assert m["val_loss"][-1] == pytest.approx(sum(last.values()) / 3)
    manifest = json.loads((tmp_path / "a" / "run.json").read_text())
    assert set(manifest["corpus"]) == {"code", "numbers", "prose"} and manifest["config"]["data"] == str(data)


def test_a_changed_corpus_is_refused_on_resume(tmp_path, capsys):
    data = make_corpus(tmp_path / "corpus")
    fresh(data)
    train(config(data), tmp_path / "run", threads=1, stop_after=5)
    (data / "prose" / "more.txt").write_text("Another page of prose about foxes. " * 30)
    fresh(data)
    with pytest.raises(RunError, match=r"domain 'prose': 6 files, \d+ bytes in the run; 7 files, \d+ bytes now"):
        train(config(data), tmp_path / "run", threads=1, resume=True)
    (data / "extra").mkdir()
    (data / "extra" / "a.txt").write_text("x" * 2000)
    fresh(data)
    code = main(["run", "--resume", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "domain 'extra' added" in err
    fresh(data)


def test_old_manifests_without_data_or_corpus_still_load(tmp_path):
    train(RunConfig(workload="logreg", channels={"lr": "constant(value=0.1)"}, horizon=4), tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "run.json").read_text())
    del saved["config"]["data"]
    (tmp_path / "r" / "run.json").write_text(json.dumps(saved))
    assert train(RunConfig(workload="logreg", channels={"lr": "constant(value=0.1)"}, horizon=4), tmp_path / "r",
                 resume=True)["status"] == "complete"


def bad(tmp_path, capsys, *argv):
    code = main(["run", *argv, "--steps", "2", "--size", "xs", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # refused before anything is trained or written
    return err


def test_bad_data_is_one_line_exit_2(tmp_path, capsys):
    assert "--data: data folder" in bad(tmp_path, capsys, "text", "--data", str(tmp_path / "missing")) \
        and "does not exist" in bad(tmp_path, capsys, "text", "--data", str(tmp_path / "missing"))
    (tmp_path / "file.txt").write_text("hello")
    assert "is not a folder" in bad(tmp_path, capsys, "text", "--data", str(tmp_path / "file.txt"))
    (tmp_path / "empty").mkdir()
    assert "has no subfolders" in bad(tmp_path, capsys, "text", "--data", str(tmp_path / "empty"))
    corpus = make_corpus(tmp_path / "corpus")
    (corpus / "images").mkdir()
    (corpus / "images" / "a.png").write_bytes(b"\x89PNG\x00\x00" * 10)
    assert "domain 'images'" in bad(tmp_path, capsys, "text", "--data", str(corpus)) and "no readable text" in \
        bad(tmp_path, capsys, "text", "--data", str(corpus))
    assert "--data: the logreg workload reads no data folder" in bad(tmp_path, capsys, "logreg", "--data", str(corpus))
    with pytest.raises(CadenceError, match="reads no data folder") as e:
        RunConfig(workload="digits", channels={"lr": "1e-3"}, horizon=2, data=str(corpus)).resolved()
    assert e.value.field == "data" and "--data" not in str(e.value)


def test_default_corpus_has_three_domains(tmp_path):
    w = workloads.get_workload("text")
    assert w.domain_names() == ("code", "tests", "prose")
    record = w.corpus_record()
    assert all(r["files"] > 0 and 0 < r["bytes"] <= w.budget + 400_000 for r in record.values())
    assert all(len(v) > w.context + 1 for v in w._corpus()[1])


def test_a_plan_file_names_the_data_folder(tmp_path, capsys):
    data = make_corpus(tmp_path / "corpus")
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"workload: text\nhorizon: 4\nsize: xs\nbatch_size: 8\neval_every: 4\ndata: {json.dumps(str(data))}\n"
                    "channels:\n  lr: 'constant(1e-3)'\n")
    out = tmp_path / "run"
    assert main(["run", "text", "--plan", str(plan), "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    capsys.readouterr()
    assert json.loads((out / "run.json").read_text())["config"]["data"] == str(data.resolve())
    assert main(["run", "text", "--plan", str(plan), "--data", str(data), "--out", str(tmp_path / "two")]) == 2
    assert "--data and the plan file's data both set it; keep one" in capsys.readouterr().err
    plan.write_text("workload: text\nhorizon: 4\ndata: 3\nchannels:\n  lr: 'constant(1e-3)'\n")
    assert main(["run", "text", "--plan", str(plan), "--out", str(tmp_path / "three")]) == 2
    assert "plan.yaml: data must name a folder of domains; got '3'" in capsys.readouterr().err


def test_the_text_module_may_be_imported_before_the_workloads():
    import subprocess
    import sys

    code = ("import cadence.bench.text; from cadence.bench.workloads import WORKLOADS, Text; "
            "assert list(WORKLOADS) == ['tiny-lm', 'text', 'digits', 'digits-cnn', 'logreg'] and Text.name == 'text'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0

