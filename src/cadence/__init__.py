"""cadence: plan, drive and forecast everything that changes during a training run."""

from cadence.errors import CadenceError
from cadence.schedules import Schedule, parse
from cadence.time import Duration, Rates, Unit, parse_duration

__version__ = "0.1.0"
__all__ = ["CadenceError", "Schedule", "parse", "Duration", "Rates", "Unit", "parse_duration", "__version__"]
