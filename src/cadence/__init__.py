"""cadence: plan, drive and forecast everything that changes during a training run."""

from cadence.errors import CadenceError
import cadence.controllers  # noqa: F401  (registers the controllers: specs may call them)
from cadence.schedules import Schedule, parse
from cadence.plan import Plan
from cadence.time import Clock, Duration, Rates, Unit, parse_duration

__version__ = "0.1.0"
__all__ = ["CadenceError", "Plan", "Clock", "Schedule", "parse", "Duration", "Rates", "Unit", "parse_duration", "__version__"]
