"""Every plan-file example in the data pages builds a Plan: the worked examples of each channel and controller."""

import re
from pathlib import Path

import pytest
import yaml

from cadence.plan import Plan, read_plan_file

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("data.md", "mixing-controllers.md", "curricula.md", "continual.md")
DEFAULT_DOMAINS = ("code", "tests", "prose")


def blocks():
    for page in PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, flags=re.S)):
            yield pytest.param(page, block, id=f"{page}-{i}")


@pytest.mark.parametrize("page, block", list(blocks()))
def test_the_example_builds_a_plan(page, block, tmp_path):
    data = yaml.safe_load(block)
    if not isinstance(data, dict) or "channels" not in data:  # a fragment: a channel or two
        data = {"channels": {"lr": "cosine(peak=2e-3, warmup='5%')", **(data or {})}}
    path = tmp_path / "plan.yaml"
    text = yaml.safe_dump(data)
    # a reference run's losses are read by the runner; a Plan alone is given them
    text = re.sub(r"doremi\(reference='[^']*'", "doremi(reference_loss=[2.0, 2.0, 2.0]", text)
    path.write_text(text)
    plan_data = read_plan_file(path, ("data", "size", "eval_every", "dense_eval", "difficulty", "init"))
    channels = plan_data["channels"]
    mixture = channels.get("mixture")
    domains = tuple(mixture) if isinstance(mixture, dict) else DEFAULT_DOMAINS
    plan = Plan(channels, horizon=plan_data.get("horizon", 1200), domains=domains)
    values = plan.values()
    if "mixture" in channels:
        assert sum(values[f"mixture/{d}"] for d in domains) == pytest.approx(1.0)
    preview = plan.preview(stop=50)
    assert all(v.shape == (50,) for v in preview.values()) and len(preview) > 3


def test_every_data_channel_and_controller_has_an_example():
    text = "".join((DOCS / page).read_text(encoding="utf-8") for page in PAGES)
    found = "".join(re.findall(r"```yaml\n(.*?)```", text, flags=re.S))
    for needle in ("mixture:", "odm()", "doremi(", "aioli()", "curriculum: \"pace(", "sec()", "dump()",
                   "sample_weights:", "reweight("):
        assert needle in found, needle
