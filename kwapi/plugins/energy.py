"""Units and the integration rule shared by the plugins."""

from __future__ import annotations

#: The meter that carries power, in watts (bus protocol v1).
POWER_METER = "w"
JOULES_PER_KWH = 3.6e6


def integrate(w_prev: float, w_new: float, seconds: float) -> float:
    """Energy in kWh of a linear power ramp from *w_prev* to *w_new* watts (trapezoid).

    A negative reading counts as 0 W, so that an energy counter never
    decreases (the reading itself is still served as the meter sent it).
    """
    w_prev = w_prev if w_prev > 0.0 else 0.0
    w_new = w_new if w_new > 0.0 else 0.0
    return (w_prev + w_new) / 2.0 * seconds / JOULES_PER_KWH
