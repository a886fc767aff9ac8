"""SI prefixes for energies and powers, as kwapi energy and the kwapi-rrd pages print them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kwapi.units import PREFIXES, UNKNOWN, format_energy, format_fraction, format_power, si_format

FACTORS = {prefix: 1000.0**exponent for exponent, prefix in PREFIXES.items()}


def read_back(text: str, unit: str) -> float:
    """The value that *text* (``1.23 kWh``) writes."""
    number, prefixed = text.split(" ")
    assert prefixed.endswith(unit)
    return float(number) * FACTORS[prefixed[: -len(unit)]]


def test_the_issue_example_and_neighbours():
    assert format_energy(0.00123) == "1.23 Wh"  # not 0.001 kWh
    assert format_energy(1.5) == "1.50 kWh"
    assert format_energy(0.0005) == "500 mWh"
    assert format_energy(2500.0) == "2.50 MWh"
    assert format_power(1234.0) == "1.23 kW"
    assert format_power(0.0) == "0.00 W"


@pytest.mark.parametrize(("kwh", "text"), [(999.6, "1.00 MWh"), (0.0009996, "1.00 Wh")])
def test_rounding_carries_into_the_next_prefix(kwh, text):
    assert format_energy(kwh) == text


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_unknown_values(value):
    assert format_power(value) == UNKNOWN
    assert format_fraction(value) == UNKNOWN


@given(st.floats(min_value=1e-6, max_value=1e17, allow_nan=False))
def test_three_significant_digits_and_a_mantissa_under_1000(watts):
    text = si_format(watts, "W")
    number = text.split(" ")[0]
    assert 1.0 <= float(number) < 1000.0 or text.endswith("µW")
    assert len(number.replace(".", "").lstrip("0")) == 3 or text.endswith(" PW")
    assert read_back(text, "W") == pytest.approx(watts, rel=5e-3)


@given(st.floats(min_value=-1e12, max_value=-1e-6))
def test_negative_values_keep_their_sign(watts):
    assert si_format(watts, "W") == "-" + si_format(-watts, "W")


def test_coverage_is_never_rounded_up_to_complete():
    assert format_fraction(0.9995) == "99.9 %"
    assert format_fraction(1.0) == "100.0 %"
    assert format_fraction(0.25, decimals=0) == "25 %"
