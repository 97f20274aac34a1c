"""Every error cadence raises on purpose, and the exit status each one maps to.

A message is one line: what is wrong and what is allowed. Library code names its own
parameters (``total``, ``overwrite``), never command-line flags; the CLI
(``cadence.cli``) adds the flag when it reports an error whose ``field`` it knows.

Exit statuses, used by every command (docs/reliability.md):

====  =========================================================================
0     ok
1     a check failed (``recommend --strict`` with an input outside a law's range,
      ``forecast predict|rank|optimize|live --strict`` with a schedule outside what a law was fitted on)
2     bad input: a spec, a flag, a file or a state that cannot be honoured
3     training diverged (non-finite loss); the last good checkpoint is kept
130   interrupted (SIGINT or SIGTERM)
====  =========================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

__all__ = ["CadenceError", "DurationError", "ScheduleError", "SpecError", "PlanError", "LimitError", "ForecastError",
           "RunError", "ExistsError", "TrainingDiverged", "CheckFailed",
           "EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_BAD_INPUT", "EXIT_DIVERGED", "EXIT_INTERRUPTED"]


class CadenceError(ValueError):
    """Base class of user-facing errors. ``field`` names the library parameter at fault, if one is."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DurationError(CadenceError):
    """A duration string or a unit conversion is invalid."""


class ScheduleError(CadenceError):
    """A schedule parameter is out of range or does not fit the run."""


class SpecError(CadenceError):
    """A schedule spec string cannot be parsed."""


class PlanError(CadenceError):
    """A plan's channels, horizon, unit, signals or saved state do not fit together."""


class LimitError(CadenceError):
    """An input exceeds one of cadence's documented limits (docs/schedules.md, docs/reliability.md)."""


class ForecastError(CadenceError):
    """A loss curve, a law file or a forecast request is invalid."""


class RunError(CadenceError):
    """A run or comparison folder cannot be started, resumed or read as asked."""


class ExistsError(CadenceError):
    """A file or folder a user already has would be replaced; cadence replaces only when asked."""

    def __init__(self, path, what: str = "") -> None:
        self.path = str(path)
        super().__init__(f"{what + ' ' if what else ''}{path} already exists; it is replaced only when overwriting "
                         "is asked for", field="overwrite")


class TrainingDiverged(CadenceError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept."""

    exit_code = EXIT_DIVERGED


class CheckFailed(CadenceError):
    """A check the user asked for did not pass."""

    exit_code = EXIT_CHECK_FAILED
