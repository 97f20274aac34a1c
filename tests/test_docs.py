"""The README stays true to the code: its family table lists every family, its commands exist."""

from pathlib import Path

from cadence import schedules as S

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_lists_every_family():
    readme = (ROOT / "README.md").read_text()
    for cls in S.FAMILIES:
        assert f"| `{cls.name}` |" in readme, cls.name


def test_readme_commands_are_make_targets_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in readme and f"\n{target}:" in makefile
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]


def test_readme_quick_start_runs():
    import torch

    from cadence.torch import Scheduler

    model = torch.nn.Linear(3, 1)
    loader = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(5)]
    loss_fn = torch.nn.functional.mse_loss
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Quick start in a plain PyTorch loop")[1].split("```python")[1].split("```")[0]
    code = code.replace("total_steps=10_000", "total_steps=500")
    namespace = {"torch": torch, "model": model, "loader": loader, "loss_fn": loss_fn, "Scheduler": Scheduler}
    exec(compile(code, "README", "exec"), namespace)  # our own README, not user input
    assert namespace["sched"].last_epoch == 5


def test_plans_page_examples_run():
    """Every Python example on docs/plans.md runs and its assertions hold."""
    text = (ROOT / "docs" / "plans.md").read_text()
    blocks = [part.split("```")[0] for part in text.split("```python")[1:]]
    assert len(blocks) >= 3
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/plans.md example {i + 1}", "exec"), {})  # our own docs, not user input


def test_plan_file_settings_are_the_runners():
    """The keys a plan file may hold are exactly the runner's settings (besides unit, horizon, channels)."""
    from cadence.bench.runner import CONFIG_FIELDS
    from cadence.cli.common import PLAN_FILE_SETTINGS
    from cadence.plan import PLAN_KEYS

    assert set(PLAN_FILE_SETTINGS) == (set(CONFIG_FIELDS) - set(PLAN_KEYS)) | {"workload", "tensorboard"} - {"unit"}


def test_integrations_page_examples_run(tmp_path, monkeypatch):
    """Every Python example on docs/integrations.md runs and its assertions hold (transformers, Lightning,
    the torch protocol); method snippets only define functions."""
    monkeypatch.chdir(tmp_path)  # frameworks write logs next to where they run
    text = (ROOT / "docs" / "integrations.md").read_text()
    blocks = [part.split("```")[0] for part in text.split("```python")[1:]]
    assert len(blocks) >= 6
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/integrations.md example {i + 1}", "exec"), {"__name__": "docs_example"})
