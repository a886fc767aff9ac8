"""Units and the integration rule shared by the plugins."""

from __future__ import annotations

#: The meter that carries power, in watts (bus protocol v1).
POWER_METER = "w"
JOULES_PER_KWH = 3.6e6


def integrate(w_prev: float, w_new: float, seconds: float) -> float:
    """Energy in kWh of a linear power ramp from *w_prev* to *w_new* watts (trapezoid)."""
    return (w_prev + w_new) / 2.0 * seconds / JOULES_PER_KWH
