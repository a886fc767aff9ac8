"""Energy over a range from raw samples (kwapi-api's rules) and series steps: pure functions."""

from __future__ import annotations

import math
import random
from itertools import pairwise

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.energy import JOULES_PER_KWH
from kwapi.plugins.history.energy_range import (
    ProbeEnergy,
    Samples,
    energy_document,
    probe_energy,
)
from kwapi.plugins.history.series_steps import raw_rows, step_rows

T0 = 1_765_000_000  # seconds
MAX_GAP = 120.0


def samples(*points: tuple[float, float]) -> Samples:
    """Samples at (seconds after T0, watts), timestamps in whole milliseconds."""
    return Samples([round((T0 + t) * 1000) for t, _ in points], [w for _, w in points])


def joules(result: ProbeEnergy) -> float:
    return result.kwh * JOULES_PER_KWH


def energy(data: Samples, start: float, end: float, max_gap: float = MAX_GAP) -> ProbeEnergy:
    return probe_energy(data, T0 + start, T0 + end, max_gap)


def test_constant_power_over_exactly_its_samples():
    result = energy(samples(*((t, 100.0) for t in range(11))), 0, 10)
    assert joules(result) == pytest.approx(1000.0, rel=1e-12)
    assert result.joules == pytest.approx(1000.0, rel=1e-12)
    assert (result.samples, result.coverage, result.gaps) == (11, 1.0, 0)


def test_edges_interpolated_between_two_samples_outside_the_range():
    # 0 W at 0 s, 100 W at 10 s: 25 W at 2.5 s, 75 W at 7.5 s.
    result = energy(samples((0, 0.0), (10, 100.0)), 2.5, 7.5)
    assert joules(result) == pytest.approx(250.0, rel=1e-12)
    assert (result.samples, result.coverage, result.gaps) == (0, 1.0, 0)


def test_edges_interpolated_around_samples_inside():
    result = energy(samples((0, 0.0), (10, 100.0), (20, 100.0)), 5, 15)
    assert joules(result) == pytest.approx((50 + 100) / 2 * 5 + 100 * 5, rel=1e-12)
    assert (result.samples, result.coverage) == (1, 1.0)


def test_range_without_samples_outside_is_partly_covered():
    result = energy(samples((10, 60.0), (20, 60.0)), 0, 40)
    assert joules(result) == pytest.approx(600.0, rel=1e-12)
    assert result.coverage == pytest.approx(10 / 40)
    assert result.gaps == 0


def test_a_gap_longer_than_max_gap_is_skipped_and_counted():
    data = samples((0, 100.0), (1, 100.0), (200, 100.0), (201, 100.0))
    result = energy(data, 0, 201)
    assert joules(result) == pytest.approx(200.0, rel=1e-12)
    assert result.gaps == 1
    assert result.coverage == pytest.approx(2 / 201)
    assert energy(data, 0, 201, max_gap=200.0).gaps == 0


def test_a_gap_at_the_edge_counts_once_and_is_not_interpolated():
    data = samples((-150, 100.0), (10, 100.0), (11, 100.0))
    result = energy(data, 0, 11)
    assert joules(result) == pytest.approx(100.0, rel=1e-12)
    assert (result.gaps, result.samples) == (1, 2)
    # A gap that ends exactly at start does not overlap the range.
    assert energy(samples((-150, 1.0), (0, 1.0), (1, 1.0)), 0, 1).gaps == 0


def test_negative_watts_count_as_zero_like_kwapi_api():
    result = energy(samples((0, -50.0), (10, 100.0)), 0, 10)
    assert joules(result) == pytest.approx((0 + 100) / 2 * 10, rel=1e-12)
    # Cut at 5 s: the power runs from 0 W (the clamped reading) to 100 W.
    first, second = (energy(samples((0, -100.0), (10, 100.0)), a, b) for a, b in ((0, 5), (5, 10)))
    assert joules(second) == pytest.approx((50 + 100) / 2 * 5, rel=1e-12)
    assert joules(first) + joules(second) == pytest.approx(500.0, rel=1e-12)


def test_nan_counts_as_zero_and_infinite_power_is_a_gap_like_kwapi_api():
    assert joules(energy(samples((0, math.nan), (10, 100.0)), 0, 10)) == pytest.approx(500.0)
    result = energy(samples((0, 10.0), (1, math.inf), (2, 10.0), (3, 10.0)), 0, 3)
    assert math.isfinite(result.kwh)
    assert joules(result) == pytest.approx(10.0, rel=1e-12)
    assert result.gaps == 2


def test_a_timestamp_twice_counts_once_the_first_value():
    once = samples((0, 10.0), (1, 20.0), (2, 30.0), (3, 40.0))
    stamps = [t for t in once.timestamps for _ in (0, 1)]
    values = [w for w in once.values for w in (w, w * 7)]
    twice = Samples(stamps, values)
    assert energy(twice, 0.5, 2.5) == energy(once, 0.5, 2.5)
    assert energy(twice, 0, 3) == energy(once, 0, 3)
    assert energy(twice, 0, 3).samples == 4


def test_no_samples_is_listed_with_zero_coverage():
    assert energy(Samples([], []), 0, 10) == ProbeEnergy(0.0, 0, 0.0, 0)
    assert energy(samples((-5, 100.0)), 0, 10) == ProbeEnergy(0.0, 0, 0.0, 0)
    assert energy(samples((15, 100.0)), 0, 10).coverage == 0.0


def test_end_must_follow_start():
    with pytest.raises(ValueError, match="end must be after start"):
        energy(samples((0, 1.0)), 5, 5)


def random_stream(rng: random.Random, count: int) -> list[tuple[int, float]]:
    """(milliseconds, watts): ~1 s apart with jitter, negatives, now and then a long gap."""
    stamp = T0 * 1000
    points = []
    for _ in range(count):
        stamp += rng.choice([rng.randint(200, 2500), rng.randint(200, 2500), 150_000])
        watts = round(rng.uniform(-20.0, 400.0), 3)
        points.append((stamp, watts))
    return points


@pytest.mark.parametrize("seed", range(5))
def test_equal_to_kwapi_api_collector_bit_for_bit(seed):
    """Over exactly its samples, the energy is kwapi-api's collector's, to the last bit."""
    points = random_stream(random.Random(seed), 3000)
    collector = Collector(max_gap=MAX_GAP, clock=lambda: points[-1][0] / 1000.0)
    for stamp, watts in points:
        collector.add(Measurement("p", stamp / 1000.0, {"w": watts}))
    record = collector.latest("p")
    assert record is not None
    data = Samples([s for s, _ in points], [w for _, w in points])
    result = probe_energy(data, points[0][0] / 1000.0, points[-1][0] / 1000.0, MAX_GAP)
    assert result.kwh == record.kwh
    assert result.gaps == record.gaps
    assert result.samples == len(points)


@pytest.mark.parametrize("seed", range(5))
def test_ranges_cut_anywhere_add_up(seed):
    rng = random.Random(seed)
    points = random_stream(rng, 500)
    data = Samples([s for s, _ in points], [w for _, w in points])
    first, last = points[0][0] / 1000.0, points[-1][0] / 1000.0
    cuts = sorted(rng.uniform(first - 50, last + 50) for _ in range(6))
    whole = probe_energy(data, cuts[0], cuts[-1], MAX_GAP)
    parts = [probe_energy(data, a, b, MAX_GAP) for a, b in pairwise(cuts)]
    assert sum(p.kwh for p in parts) == pytest.approx(whole.kwh, rel=1e-12)
    covered = sum(p.coverage * (b - a) for p, (a, b) in zip(parts, pairwise(cuts), strict=True))
    assert covered == pytest.approx(whole.coverage * (cuts[-1] - cuts[0]), rel=1e-9)


def test_document_shape_and_total():
    probes = {"b": ProbeEnergy(1.0, 3, 0.5, 1), "a": ProbeEnergy(0.25, 0, 0.0, 0)}
    document = energy_document(10.0, 20.0, probes)
    assert document == {
        "start": 10.0,
        "end": 20.0,
        "probes": {
            "b": {"kwh": 1.0, "joules": 3.6e6, "samples": 3, "coverage": 0.5, "gaps": 1},
            "a": {"kwh": 0.25, "joules": 9e5, "samples": 0, "coverage": 0.0, "gaps": 0},
        },
        "total": {"kwh": 1.25, "joules": 4.5e6},
    }
    assert list(document["probes"]) == ["b", "a"]


def test_raw_rows_within_the_range_first_of_each_timestamp():
    data = Samples([1000, 2000, 2000, 3000, 4000], [1.0, 2.0, 9.0, 3.0, 4.0])
    assert list(raw_rows(data, 2.0, 3.0)) == [(2.0, 2.0), (3.0, 3.0)]


def test_step_averages_are_time_weighted():
    # A ramp 0 -> 100 over [0, 10], then flat 100 to 20; a gap, then 50 from 200 to 210.
    data = samples((0, 0.0), (10, 100.0), (20, 100.0), (200, 50.0), (210, 50.0))
    rows = step_rows(data, T0 + 0, T0 + 220, 10.0, MAX_GAP)
    assert len(rows) == 22
    values = dict((round(t - T0), v) for t, v in rows)
    assert values[0] == pytest.approx(50.0)
    assert values[10] == pytest.approx(100.0)
    assert values[20] is None and values[190] is None
    assert values[200] == pytest.approx(50.0)
    assert values[210] is None
    # A step cutting the ramp: 5..15 -> (75 * 5 + 100 * 5) / 10.
    rows = step_rows(data, T0 + 5, T0 + 15, 10.0, MAX_GAP)
    assert rows == [(T0 + 5, pytest.approx(87.5))]


def test_step_averages_keep_negative_readings_and_cut_the_last_step_short():
    data = samples((0, -10.0), (10, -10.0), (15, -10.0))
    rows = step_rows(data, T0, T0 + 15, 10.0, MAX_GAP)
    assert rows == [(T0, pytest.approx(-10.0)), (T0 + 10, pytest.approx(-10.0))]
