"""Numbers for people: energies and powers with the SI prefix that fits.

``format_energy(0.00123)`` is ``1.23 Wh``, not ``0.001 kWh``; ``format_power(1234)``
is ``1.23 kW``.  Shared by ``kwapi energy`` and the kwapi-rrd pages (whose
graph legends get the same prefixes from rrdtool's ``%s``).
"""

from __future__ import annotations

import math

#: SI prefixes from 10^-6 to 10^15, by power of 1000.
PREFIXES = {-2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G", 4: "T", 5: "P"}
_LOWEST, _HIGHEST = min(PREFIXES), max(PREFIXES)

#: What :func:`si_format` writes for a value that is missing or not finite.
UNKNOWN = "-"

WH_PER_KWH = 1000.0


def si_format(value: float | None, unit: str, digits: int = 3) -> str:
    """*value* in *unit* with the SI prefix that fits and *digits* significant digits.

    ``si_format(1234.5, "W")`` is ``1.23 kW``, ``si_format(0.5, "Wh")`` is
    ``500 mWh``, ``si_format(0, "W")`` is ``0.00 W``; None, NaN and infinities
    are :data:`UNKNOWN`.
    """
    if value is None or not math.isfinite(value):
        return UNKNOWN
    digits = max(1, digits)
    if value == 0:
        return f"{0:.{digits - 1}f} {unit}"
    exponent = min(max(math.floor(math.log10(abs(value)) / 3), _LOWEST), _HIGHEST)
    scaled = value / 1000.0**exponent
    decimals = _decimals(scaled, digits)
    # Rounding may carry into the next prefix: 999.6 Wh is 1.00 kWh, not 1000 Wh.
    if round(abs(scaled), decimals) >= 1000 and exponent < _HIGHEST:
        exponent += 1
        scaled = value / 1000.0**exponent
        decimals = _decimals(scaled, digits)
    return f"{scaled:.{decimals}f} {PREFIXES[exponent]}{unit}"


def _decimals(scaled: float, digits: int) -> int:
    """Decimals that write *scaled* with *digits* significant digits once rounded."""
    magnitude = math.floor(math.log10(abs(scaled))) if scaled else 0
    decimals = max(0, digits - 1 - magnitude)
    if decimals and round(abs(scaled), decimals) >= 10.0 ** (magnitude + 1):
        decimals -= 1  # 9.996 rounds to 10.0, not 10.00
    return decimals


def format_energy(kwh: float | None, digits: int = 3) -> str:
    """An energy given in kWh, written in Wh with the prefix that fits (``1.23 Wh``)."""
    return si_format(None if kwh is None else kwh * WH_PER_KWH, "Wh", digits)


def format_power(watts: float | None, digits: int = 3) -> str:
    """A power given in W, with the prefix that fits (``1.23 kW``)."""
    return si_format(watts, "W", digits)


def format_fraction(fraction: float | None, decimals: int = 1) -> str:
    """A fraction (0..1) as a percentage: ``0.9995`` is ``99.9 %`` (never rounded up to 100)."""
    if fraction is None or not math.isfinite(fraction):
        return UNKNOWN
    scale = 10**decimals
    percent = math.floor(fraction * 100 * scale + 1e-9) / scale
    return f"{percent:.{decimals}f} %"


def format_money(amount: float | None, currency: str = "") -> str:
    """A cost: cents from 1 up (``12.35 €``), three significant digits below (``0.00876 €``)."""
    if amount is None or not math.isfinite(amount):
        return UNKNOWN
    if abs(amount) >= 1 or amount == 0:
        text = f"{amount:.2f}"
    else:
        text = f"{amount:.{min(9, 2 - math.floor(math.log10(abs(amount))))}f}"
    return f"{text} {currency}".rstrip()
