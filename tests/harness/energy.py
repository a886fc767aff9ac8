"""The energy rule written out plainly, for tests to compare the daemons against."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

JOULES_PER_KWH = 3.6e6


def trapezoid_joules(
    points: Sequence[tuple[float, float]], max_gap: float = math.inf
) -> tuple[float, int]:
    """Joules and gaps of (seconds, watts) *points*: the trapezoid between
    neighbours, negative watts as 0, an interval over *max_gap* skipped as a gap."""
    joules, gaps = 0.0, 0
    for (t0, w0), (t1, w1) in itertools.pairwise(points):
        if t1 - t0 > max_gap:
            gaps += 1
        else:
            joules += (max(w0, 0.0) + max(w1, 0.0)) / 2 * (t1 - t0)
    return joules, gaps


def trapezoid_kwh(
    points: Sequence[tuple[float, float]], max_gap: float = math.inf
) -> tuple[float, int]:
    """kWh and gaps of *points*, as :func:`trapezoid_joules`."""
    joules, gaps = trapezoid_joules(points, max_gap)
    return joules / JOULES_PER_KWH, gaps
