"""The documented limits of the schedule library (docs/schedules.md, "Limits").

Each bounds the work or memory one call can take; an input beyond a limit is refused with
a :class:`cadence.errors.LimitError` that names the limit, never silently cut. Work below
them grows linearly: in the number of values asked for, and in the size of the spec.
"""

from __future__ import annotations

from cadence.time import MAX_TOTAL_STEPS

__all__ = ["MAX_SPEC_CHARS", "MAX_DEPTH", "MAX_ITEMS", "MAX_TOTAL_STEPS", "MAX_VALUES", "MAX_RESTARTS", "CHUNK",
           "PLOT_POINTS", "SUMMARY_POINTS"]

MAX_SPEC_CHARS = 100_000    # characters in a spec string (a 48-knot piecewise spec is about 1,300)
MAX_DEPTH = 32              # nesting: brackets in a spec string, schedules inside schedules
MAX_ITEMS = 10_000          # entries of one list: milestones, points, join pieces, replanned records
MAX_VALUES = 2**26          # values materialised at once (67,108,864 float64 = 512 MiB): values(), --csv rows
MAX_RESTARTS = 1_000_000    # sgdr cycles enumerated up to the last step asked for (mult > 1)
CHUNK = 2**16               # steps per numpy call when a long range is evaluated piece by piece
PLOT_POINTS = 2**16         # a plot of a longer run shows the values at this many evenly spaced steps
SUMMARY_POINTS = 2**20      # a summary of a run longer than MAX_VALUES is taken at this many steps
