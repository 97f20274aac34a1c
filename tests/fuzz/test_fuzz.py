"""Fuzz every entry point with a small sample (the large run is `make fuzz`).

Each test draws cases from the grammar in strategies.py and asserts the properties in
harness.py: only cadence's own errors escape, the CLI ends with exit 0 and a correct result
or one line on stderr, and no case takes more than 2 s of CPU or 1 GiB. Plans (issue 10):
a Plan driven step by step (values finite and >= 0, batches whole micro-batches, exact
resume from JSON state, tampered states refused without a change, preview equal to
stepping), and plan files through `cadence schedule --plan` and `cadence run logreg --plan`.
"""

import tempfile
from pathlib import Path

from hypothesis import given

from fuzz import strategies as S
from fuzz.harness import (
    TRAINING_CPU_LIMIT_S, check_cli, check_curve, check_law, check_plan, check_plan_file, check_run_json, check_schedule,
    check_torch, cli_cpu_limit, guard, plan_file_cpu_limit,
)
from fuzz.settings import fuzz_settings


def _workdir(scratch):
    return tempfile.TemporaryDirectory(dir=scratch)


@fuzz_settings(300)
@given(case=S.schedule_case())
def test_specs_parse_and_evaluate(case):
    guard(check_schedule, case)


@fuzz_settings(100)
@given(case=S.torch_case())
def test_torch_scheduler(case):
    guard(check_torch, case)


@fuzz_settings(100)
@given(case=S.curve_case())
def test_curve_csv(case, scratch):
    with _workdir(scratch) as d:
        guard(check_curve, case, Path(d))


@fuzz_settings(100)
@given(case=S.law_case())
def test_law_json(case, scratch):
    with _workdir(scratch) as d:
        guard(check_law, case, Path(d))


@fuzz_settings(12)
@given(case=S.run_json_case())
def test_run_json_resume(case, scratch, corpus):
    with _workdir(scratch) as d:
        guard(check_run_json, case, Path(d), corpus, cpu_s=TRAINING_CPU_LIMIT_S)


@fuzz_settings(120)
@given(argv=S.cli_argv())
def test_cli_arguments(argv, scratch, corpus):
    with _workdir(scratch) as d:
        guard(check_cli, argv, Path(d), corpus, cpu_s=cli_cpu_limit(argv))


@fuzz_settings(60, shrink=False)
@given(case=S.plan_case())
def test_plans(case):
    guard(check_plan, case)


@fuzz_settings(40, shrink=False)
@given(case=S.plan_file_case())
def test_plan_files(case, scratch, plan_warm):
    with _workdir(scratch) as d:
        guard(check_plan_file, case, Path(d), cpu_s=plan_file_cpu_limit(case))
