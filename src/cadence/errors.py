"""Errors a user can cause. Every message is one line: what is wrong and what is allowed."""


class CadenceError(ValueError):
    """Base class for user-facing errors; the CLI prints these as one line and exits 2."""


class DurationError(CadenceError):
    """A duration string or a unit conversion is invalid."""


class ScheduleError(CadenceError):
    """A schedule parameter is out of range or does not fit the run."""


class SpecError(CadenceError):
    """A schedule spec string cannot be parsed."""
