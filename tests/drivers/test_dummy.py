"""The Dummy driver's simulated load."""

import itertools
import random

import pytest

from kwapi.drivers.dummy import DummyDriver, DummyParameters, LoadProfile


def hour_of_load(seed):
    """One load sample per second over an hour of simulated time."""
    profile = LoadProfile(random.Random(seed))
    start = 1_700_000_000.0
    return [profile.sample(start + second) for second in range(3600)]


def test_load_is_smooth_and_covers_a_plausible_range():
    for seed in range(5):
        load = hour_of_load(seed)
        assert all(0.0 <= value <= 1.0 for value in load)
        steps = [abs(b - a) for a, b in itertools.pairwise(load)]
        assert max(steps) < 0.15  # no jumps from one second to the next
        assert max(load) - min(load) > 0.2  # but a machine that works, not a flat line


def test_same_seed_same_profile():
    assert hour_of_load(7)[:100] == hour_of_load(7)[:100]
    assert hour_of_load(7)[:100] != hour_of_load(8)[:100]


def test_driver_maps_load_between_min_and_max_per_probe():
    driver = DummyDriver("demo", ["A", None, "B"], DummyParameters(min=50, max=150, seed=1), print)
    driver.setup()
    for _ in range(50):
        reading = driver.read()
        assert set(reading) == {"A", "B"}
        assert all(50 <= meters["w"] <= 150 for meters in reading.values())
    assert reading["A"] != reading["B"]


def test_min_must_be_below_max():
    with pytest.raises(ValueError):
        DummyParameters(min=10, max=10)
