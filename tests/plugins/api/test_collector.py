"""Unit tests of the energy collector: integration, gaps, ordering, cleaning."""

from __future__ import annotations

import json
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwapi.bus.protocol import Measurement
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.energy import integrate
from tests.harness.clock import Clock

T0 = 1_700_000_000.0


def m(probe: str, t: float, **meters: float) -> Measurement:
    return Measurement(probe, t, meters)


def test_first_measurement_has_zero_energy():
    c = Collector(clock=Clock(T0))
    c.add(m("p", T0, w=100.0))
    record = c.get("p")
    assert record.kwh == 0.0
    assert record.w == 100.0
    assert record.timestamp == T0
    assert record.as_api() == {"timestamp": T0, "kwh": 0.0, "w": 100.0}


def test_trapezoid_of_a_ramp_is_exact():
    # 0 W to 3600 W over one hour is a triangle of 1800 Wh = 1.8 kWh.
    c = Collector(max_gap=3600.0, clock=Clock(T0 + 3600))
    c.add(m("p", T0, w=0.0))
    c.add(m("p", T0 + 3600, w=3600.0))
    assert c.get("p").kwh == pytest.approx(1.8, rel=1e-12)


def test_constant_power_over_uneven_intervals():
    # 1 kW for 1,000 s in uneven steps is 1000/3600 kWh whatever the steps.
    clock = Clock(T0)
    c = Collector(max_gap=900.0, clock=clock)
    t = T0
    c.add(m("p", t, w=1000.0))
    for step in (0.5, 1.0, 7.25, 100.0, 91.25, 0.001, 799.999):
        t += step
        c.add(m("p", t, w=1000.0))
    clock.now = t
    assert t - T0 == pytest.approx(1000.0)
    assert c.get("p").kwh == pytest.approx(1000.0 / 3600.0, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.001, max_value=60.0),
            st.floats(min_value=0.0, max_value=5000.0),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_energy_is_the_sum_of_trapezoids(steps):
    c = Collector(max_gap=120.0, clock=lambda: T0)
    t, w = T0 - 4000.0, 10.0
    c.add(m("p", t, w=w))
    expected = 0.0
    for dt, w_new in steps:
        t_new = t + dt
        if t_new <= t:
            continue
        expected += (w + w_new) / 2 * (t_new - t) / 3.6e6
        c.add(m("p", t_new, w=w_new))
        t, w = t_new, w_new
    record = c.records()[0]
    assert math.isclose(record.kwh, expected, rel_tol=1e-9, abs_tol=1e-15)
    assert record.gaps == 0


def test_integrate_formula():
    assert integrate(100.0, 300.0, 36.0) == pytest.approx(200.0 * 36.0 / 3.6e6)


def test_interval_longer_than_max_gap_is_skipped_and_counted():
    c = Collector(max_gap=120.0, clock=Clock(T0 + 301))
    c.add(m("p", T0, w=500.0))
    c.add(m("p", T0 + 60, w=500.0))
    assert c.get("p").kwh == pytest.approx(500 * 60 / 3.6e6)
    c.add(m("p", T0 + 60 + 120.5, w=500.0))  # gap: not integrated
    record = c.get("p")
    assert record.gaps == 1
    assert record.kwh == pytest.approx(500 * 60 / 3.6e6)
    c.add(m("p", T0 + 60 + 120.5 + 120.0, w=500.0))  # exactly max_gap: integrated
    record = c.get("p")
    assert record.gaps == 1
    assert record.kwh == pytest.approx(500 * 180 / 3.6e6)


def test_gaps_are_counted_per_probe():
    c = Collector(max_gap=10.0, clock=Clock(T0 + 100))
    for probe in ("a", "b"):
        c.add(m(probe, T0, w=1.0))
    c.add(m("a", T0 + 50, w=1.0))
    c.add(m("a", T0 + 70, w=1.0))
    c.add(m("b", T0 + 5, w=1.0))
    assert c.get("a").gaps == 2
    assert c.get("b").gaps == 0


def test_out_of_order_and_duplicate_measurements_are_ignored():
    c = Collector(clock=Clock(T0 + 10))
    c.add(m("p", T0, w=100.0))
    c.add(m("p", T0 + 10, w=100.0))
    before = c.get("p")
    c.add(m("p", T0 + 5, w=9999.0))
    c.add(m("p", T0 + 10, w=9999.0))
    assert c.out_of_order == 2
    assert c.get("p") == before


def test_other_meters_are_kept_flat_and_merged():
    c = Collector(clock=Clock(T0 + 2))
    c.add(m("gpu-0", T0, w=250.0, temperature_c=61.0))
    c.add(m("gpu-0", T0 + 1, utilization=0.9))
    c.add(m("gpu-0", T0 + 2, w=260.0))
    body = c.get("gpu-0").as_api()
    assert body == {
        "timestamp": T0 + 2,
        "kwh": pytest.approx(255.0 * 2 / 3.6e6),
        "w": 260.0,
        "temperature_c": 61.0,
        "utilization": 0.9,
    }


def test_a_meter_named_kwh_does_not_replace_the_computed_energy():
    c = Collector(clock=Clock(T0 + 1))
    c.add(m("p", T0, w=3600.0, kwh=123.0))
    c.add(m("p", T0 + 1, w=3600.0, kwh=124.0))
    assert c.get("p").as_api()["kwh"] == pytest.approx(0.001)


def test_power_gap_measured_from_the_last_power_reading():
    # Measurements without w do not reset the trapezoid's left edge.
    c = Collector(max_gap=100.0, clock=Clock(T0 + 200))
    c.add(m("p", T0, w=100.0))
    c.add(m("p", T0 + 60, temperature_c=40.0))
    c.add(m("p", T0 + 150, w=100.0))  # 150 s since the last w: a gap
    assert c.get("p").gaps == 1
    assert c.get("p").kwh == 0.0


def test_silent_probe_leaves_the_api_but_keeps_its_energy():
    clock = Clock(T0)
    c = Collector(cleaning_interval=300.0, max_gap=1e9, clock=clock)
    c.add(m("p", T0, w=3600.0))
    c.add(m("p", T0 + 1, w=3600.0))
    c.add(m("q", T0 + 1, w=10.0))
    clock.now = T0 + 301
    assert list(c.visible()) == ["p", "q"]
    clock.now = T0 + 301.5
    c.add(m("q", T0 + 301.5, w=10.0))
    assert list(c.visible()) == ["q"]
    assert c.count_visible() == 1
    assert len(c) == 2
    assert c.get("p") is None
    assert {r.probe_id for r in c.records()} == {"p", "q"}
    # p comes back: it resumes from its old energy.
    c.add(m("p", T0 + 302, w=3600.0))
    c.add(m("p", T0 + 303, w=3600.0))
    assert c.get("p").kwh == pytest.approx(0.001 + (301 + 1) / 1000.0)


def test_visible_is_sorted_by_probe_id():
    c = Collector(clock=Clock(T0))
    for probe in ("zeta", "alpha", "mid", "Beta"):
        c.add(m(probe, T0, w=1.0))
    assert list(c.visible()) == ["Beta", "alpha", "mid", "zeta"]


def test_readers_see_consistent_records_while_the_writer_runs():
    # A reader walking every record while probes are added and updated never
    # fails and never sees a record whose fields disagree.
    c = Collector(max_gap=1e9, cleaning_interval=1e9, clock=lambda: T0)
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                for record in c.visible().values():
                    assert record.meters["w"] == 100.0
                    # With a constant 100 W, energy and time always agree;
                    # probe pN is first seen at step max(0, N - 49).
                    first = T0 + max(0, int(record.probe_id[1:]) - 49)
                    expected = 100.0 * (record.timestamp - first) / 3.6e6
                    assert math.isclose(record.kwh, expected, rel_tol=1e-9, abs_tol=1e-12)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for step in range(200):
            for probe in range(step, min(step + 50, 300)):
                c.add(m(f"p{probe}", T0 + step, w=100.0))
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
    assert not errors, errors[0]
    assert len(c) == 249


def test_a_stream_that_goes_down_keeps_no_stale_meters():
    c = Collector(clock=lambda: T0 + 100)
    c.add(Measurement("live", T0, {"up": 1, "bitrate": 2e6, "fps": 25.0, "width": 1280.0}))
    c.add(Measurement("live", T0 + 10, {"up": 0}))
    assert dict(c.get("live").meters) == {"up": 0}
    c.add(Measurement("live", T0 + 20, {"up": 1, "bitrate": 1e6}))
    assert dict(c.get("live").meters) == {"up": 1, "bitrate": 1e6}
    # A probe with power and up keeps its power (and its energy) across up = 0.
    c.add(Measurement("box", T0, {"w": 100.0, "up": 1, "temperature_c": 40.0}))
    c.add(Measurement("box", T0 + 10, {"up": 0}))
    assert dict(c.get("box").meters) == {"w": 100.0, "up": 0}
    c.add(Measurement("box", T0 + 20, {"w": 100.0}))
    assert c.get("box").kwh == pytest.approx(integrate(100.0, 100.0, 20))


def test_negative_power_counts_as_zero_energy_but_is_served_as_sent():
    c = Collector(max_gap=120.0, clock=Clock(T0 + 40))
    c.add(m("p", T0, w=100.0))
    c.add(m("p", T0 + 10, w=-300.0))  # counts as 0 W: a triangle from 100 W to 0
    assert c.get("p").w == -300.0
    assert c.get("p").kwh == pytest.approx(integrate(100.0, 0.0, 10))
    before = c.get("p").kwh
    c.add(m("p", T0 + 20, w=-50.0))
    assert c.get("p").kwh == before
    assert c.get("p").as_api()["w"] == -50.0
    c.add(m("p", T0 + 30, w=200.0))
    assert c.get("p").kwh == pytest.approx(before + integrate(0.0, 200.0, 10))
    assert integrate(-100.0, -100.0, 60.0) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=30))
def test_energy_never_decreases_whatever_the_readings(readings):
    c = Collector(max_gap=120.0, clock=lambda: T0)
    kwh = []
    for step, w in enumerate(readings):
        c.add(m("p", T0 - 1000 + step, w=w))
        kwh.append(c.records()[0].kwh)
    assert kwh == sorted(kwh)
    assert c.records()[0].w == readings[-1]


@pytest.mark.parametrize(
    "readings",
    [
        [1.7e308, 1.7e308],  # the second trapezoid's sum overflows
        [5e307] * 5,  # each interval is finite; the fifth makes the total joules overflow
    ],
)
def test_an_interval_whose_energy_overflows_is_a_gap_and_kwh_stays_finite(readings):
    c = Collector(max_gap=120.0, clock=Clock(T0 + 100))
    c.add(m("p", T0, w=100.0))
    c.add(m("p", T0 + 36, w=100.0))
    integrated = c.get("p").kwh
    for step, w in enumerate(readings, start=1):
        c.add(m("p", T0 + 36 + step, w=w))
        if step < len(readings):  # every interval but the last is integrated
            assert c.get("p").kwh > integrated
            integrated = c.get("p").kwh
        assert c.get("p").gaps == (1 if step == len(readings) else 0)
    record = c.get("p")
    assert record.kwh == integrated
    assert math.isfinite(record.kwh * 3.6e6)  # what /metrics exports
    assert record.w == readings[-1]  # the reading itself is served
    json.dumps(record.as_api(), allow_nan=False)  # as strict as the state file
    # Readings back to normal are integrated again: only the ramp down is a gap.
    c.add(m("p", T0 + 60, w=100.0))
    c.add(m("p", T0 + 96, w=100.0))
    assert c.get("p").gaps == 2


def test_huge_power_on_a_fresh_counter_is_integrated_while_it_fits():
    c = Collector(max_gap=120.0, clock=Clock(T0 + 10))
    c.add(m("p", T0, w=0.0))
    c.add(m("p", T0 + 1, w=1.7e308))  # 0.85e308 J: finite, integrated
    assert c.get("p").kwh == pytest.approx(0.85e308 / 3.6e6)
    assert c.get("p").gaps == 0
