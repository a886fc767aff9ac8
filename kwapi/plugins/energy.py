"""Units and the integration rules shared by the plugins."""

from __future__ import annotations

import math

from oslo_config import cfg

JOULES_PER_KWH = 3.6e6

#: The gap rule's option, the same in every daemon that integrates energy.
max_gap_opt = cfg.FloatOpt(
    "max_gap",
    default=120.0,
    min=0.0,
    help="Longest interval, in seconds of the drivers' clock, between two power "
    "readings of a probe that is integrated into its energy; a longer one is "
    "skipped and counted as a gap.",
)


def integrate(w_prev: float, w_new: float, seconds: float) -> float:
    """Energy in kWh of a linear power ramp from *w_prev* to *w_new* watts (trapezoid).

    A negative reading counts as 0 W, so that an energy counter never
    decreases (the reading itself is still served as the meter sent it).
    """
    w_prev = w_prev if w_prev > 0.0 else 0.0
    w_new = w_new if w_new > 0.0 else 0.0
    return (w_prev + w_new) / 2.0 * seconds / JOULES_PER_KWH


def energy_step(
    kwh: float, w_prev: float, w_new: float, seconds: float, max_gap: float
) -> float | None:
    """Counter *kwh* after *seconds* of a ramp from *w_prev* to *w_new* W; None for a gap.

    The interval is a gap, and the counter stays as it was, when it lasts
    more than *max_gap* seconds or when its energy would make the counter
    (or the same counter in joules) overflow: a counter stays finite.
    """
    total = kwh + integrate(w_prev, w_new, seconds)
    if seconds > max_gap or not math.isfinite(total * JOULES_PER_KWH):
        return None
    return total
