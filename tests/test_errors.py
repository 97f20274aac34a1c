"""One errors module, documented exit codes, and library messages that never name CLI flags."""

import ast
import re
from pathlib import Path

import pytest

from cadence import errors
from cadence.cli import FLAGS, describe, main

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cadence"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def _library_modules():
    for path in sorted(SRC.rglob("*.py")):
        if "cli" not in path.relative_to(SRC).parts:
            yield path


def _strings(node):
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def test_library_errors_never_name_cli_flags():
    offenders = []
    for path in _library_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for text in _strings(node.exc):
                    if FLAG.search(text):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    assert not offenders, "\n".join(offenders)


def test_exception_classes_live_in_the_errors_module():
    defined = []
    for path in _library_modules():
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if any(b.endswith(("Error", "Exception", "Diverged")) for b in bases):
                    defined.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not defined, defined


def test_every_error_is_a_cadence_error_with_a_documented_exit_code():
    documented = {errors.EXIT_OK, errors.EXIT_CHECK_FAILED, errors.EXIT_BAD_INPUT, errors.EXIT_DIVERGED,
                  errors.EXIT_INTERRUPTED}
    assert documented == {0, 1, 2, 3, 130}
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.CadenceError)
            assert obj.exit_code in documented - {0, 130}
    doc = (ROOT / "docs" / "reliability.md").read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 130 |"):
        assert code in doc


def test_exit_status_follows_the_type_not_the_name(monkeypatch, capsys):
    class Renamed(errors.TrainingDiverged):  # a subclass under another name still means "diverged"
        pass

    def boom(args):
        raise Renamed("the training loss became nan at step 7")

    from cadence.cli import schedule

    monkeypatch.setattr(schedule, "_cmd_list", lambda: boom(None))
    assert main(["list"]) == errors.EXIT_DIVERGED
    assert capsys.readouterr().err == "cadence: error: the training loss became nan at step 7\n"


@pytest.mark.parametrize("field, flag", sorted(FLAGS.items()))
def test_the_cli_names_the_flag_of_a_library_parameter(field, flag):
    assert describe(errors.CadenceError("must be a positive whole number; got 0", field=field)) == \
        f"{flag}: must be a positive whole number; got 0"


def test_an_existing_file_is_reported_with_the_flag_that_replaces_it():
    assert describe(errors.ExistsError("out/a.png")) == "out/a.png already exists; pass --overwrite to replace it"
    assert "--" not in str(errors.ExistsError("out/a.png"))


def test_a_message_is_one_line_even_if_a_library_error_spans_lines():
    assert describe(errors.CadenceError("first\nsecond  third")) == "first second third"


def test_a_command_that_calls_a_parameter_otherwise_gets_its_own_flag():
    error = errors.ScheduleError("must be at most 2**53", field="total_steps")
    assert describe(error, "schedule") == "--total: must be at most 2**53"
    assert describe(error, "run") == "--steps: must be at most 2**53"


def test_no_command_is_one_line_on_stderr(capsys):
    assert main([]) == errors.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("cadence: error: name a command") and err.count("\n") == 1


def test_an_unanticipated_file_system_error_is_one_line(monkeypatch, capsys):
    from cadence.cli import schedule

    def denied():
        raise PermissionError(13, "Permission denied", "/root/x")

    monkeypatch.setattr(schedule, "_cmd_list", denied)
    assert main(["list"]) == errors.EXIT_BAD_INPUT
    assert capsys.readouterr().err == "cadence: error: Permission denied: '/root/x'\n"
