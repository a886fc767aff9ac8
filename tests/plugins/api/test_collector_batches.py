"""The collector on batched messages: every sample integrated, as if sent one by one."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwapi.bus.protocol import Batch, Measurement, Message
from kwapi.plugins.api.collector import Collector
from tests.harness.clock import Clock
from tests.harness.energy import trapezoid_kwh

T0 = 1_700_000_000.0
MAX_GAP = 1.0


def trapezoid(samples: list[tuple[float, float]], max_gap: float = MAX_GAP) -> tuple[float, int]:
    """kWh and gaps of (time, watts) *samples*, computed here from the rule's text."""
    return trapezoid_kwh(samples, max_gap)


def fold_one_by_one(messages: list[Message], max_gap: float = MAX_GAP) -> Collector:
    """A collector fed every sample as its own message."""
    collector = Collector(max_gap=max_gap, clock=Clock(T0))
    for message in messages:
        for measurement in message.measurements():
            collector.add(measurement)
    return collector


def fold(messages: list[Message], max_gap: float = MAX_GAP) -> Collector:
    collector = Collector(max_gap=max_gap, clock=Clock(T0))
    for message in messages:
        collector.fold(message)
    return collector


def batch(probe: str, start: float, watts: list[float], step: float = 0.02, **others) -> Batch:
    times = [start + i * step for i in range(len(watts))]
    return Batch(probe, times, {"w": watts, **others})


def test_a_batch_integrates_every_sample_to_the_trapezoid():
    watts = [100.0 + 50 * math.sin(i / 7) for i in range(50)]
    message = batch("p", T0, watts)
    record = fold([message]).latest("p")
    expected, gaps = trapezoid(list(zip(message.timestamps, watts, strict=True)))
    assert record.kwh == pytest.approx(expected, rel=1e-9) and record.kwh > 0
    assert (record.gaps, gaps) == (0, 0)
    assert record.timestamp == message.timestamps[-1] == record.power_timestamp
    assert record.as_api() == {
        "timestamp": message.timestamps[-1],
        "kwh": record.kwh,
        "w": watts[-1],
    }


def test_batches_join_across_message_boundaries():
    first = batch("p", T0, [100.0] * 50)
    second = batch("p", T0 + 1.0, [300.0] * 50)  # 20 ms after the last sample of the first
    record = fold([first, second]).latest("p")
    samples = [
        *zip(first.timestamps, first.meters["w"], strict=True),
        *zip(second.timestamps, [300.0] * 50, strict=True),
    ]
    expected, _ = trapezoid(samples)
    assert record.kwh == pytest.approx(expected, rel=1e-9)
    # The boundary interval, a ramp from 100 W to 300 W over 20 ms, is in.
    inside = trapezoid(samples[:50])[0] + trapezoid(samples[50:])[0]
    assert record.kwh - inside == pytest.approx(200.0 * 0.02 / 3.6e6, rel=1e-6)


def test_a_gap_inside_a_batch_is_skipped_and_counted():
    times = [T0, T0 + 0.5, T0 + 3.0, T0 + 3.5]  # 2.5 s > max_gap between the 2nd and 3rd
    message = Batch("p", times, {"w": [100.0, 100.0, 400.0, 400.0]})
    record = fold([message]).latest("p")
    assert record.gaps == 1
    assert record.kwh == pytest.approx((100.0 * 0.5 + 400.0 * 0.5) / 3.6e6, rel=1e-12)


def test_negative_samples_count_as_zero_and_are_served_as_sent():
    message = batch("p", T0, [100.0, -50.0, -20.0, 100.0], step=0.5)
    record = fold([message]).latest("p")
    assert record.kwh == pytest.approx((100 * 0.25 + 0 + 100 * 0.25) / 3.6e6, rel=1e-12)
    assert record.w == 100.0
    assert fold([batch("q", T0, [10.0, -5.0], step=0.5)]).latest("q").w == -5.0


def test_a_batch_mixed_with_single_samples():
    messages: list[Message] = [
        Measurement("p", T0, {"w": 50.0, "temperature_c": 30.0}),
        batch("p", T0 + 0.1, [60.0, 70.0, 80.0], step=0.1),
        Measurement("p", T0 + 0.4, {"w": 90.0}),
        batch("p", T0 + 0.5, [100.0, 110.0], step=0.1, temperature_c=[31.0, 32.0]),
    ]
    record = fold(messages).latest("p")
    samples = [(T0 + i / 10, 50.0 + 10 * i) for i in range(7)]
    assert record.kwh == pytest.approx(trapezoid(samples)[0], rel=1e-9)
    assert dict(record.meters) == {"w": 110.0, "temperature_c": 32.0}
    assert record == fold_one_by_one(messages).latest("p")


def test_samples_not_newer_than_the_record_are_ignored_and_counted():
    collector = Collector(max_gap=MAX_GAP, clock=Clock(T0))
    collector.add(Measurement("p", T0 + 0.05, {"w": 100.0}))
    message = batch("p", T0, [1.0, 2.0, 3.0, 200.0, 200.0])  # T0 + 0.00 .. 0.08
    collector.add_batch(message)
    record = collector.latest("p")
    assert collector.out_of_order == 3
    samples = [(T0 + 0.05, 100.0), *zip(message.timestamps[3:], [200.0, 200.0], strict=True)]
    assert record.kwh == pytest.approx(trapezoid(samples)[0], rel=1e-9)
    collector.add_batch(batch("p", T0, [5.0, 6.0]))
    assert collector.out_of_order == 5 and collector.latest("p") is record


def test_a_stream_going_down_inside_a_batch_keeps_only_power():
    before = Measurement("s", T0, {"w": 20.0, "up": 1, "bitrate": 2e6})
    down = Batch("s", [T0 + 1, T0 + 2], {"up": [0, 1]})
    record = fold([before, down]).latest("s")
    assert dict(record.meters) == {"w": 20.0, "up": 1}
    assert record == fold_one_by_one([before, down]).latest("s")


samples_st = st.lists(
    st.tuples(
        st.floats(min_value=0.001, max_value=2.0),  # some intervals are gaps (max_gap 1 s)
        st.floats(min_value=-1e3, max_value=1e6),
        st.sampled_from([0, 1]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(samples_st, st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=40))
def test_folding_batches_equals_folding_their_samples_one_by_one(samples, cuts):
    # Any split of a series into batches and single samples gives the very same record.
    t, times = T0, []
    for step, *_ in samples:
        t += step
        times.append(t)
    messages: list[Message] = []
    index = 0
    for size in cuts:
        if index >= len(samples):
            break
        part = slice(index, index + size)
        meters = {"w": [s[1] for s in samples[part]], "up": [float(s[2]) for s in samples[part]]}
        if size == 1:
            messages.append(Measurement("p", times[index], {k: v[0] for k, v in meters.items()}))
        else:
            messages.append(Batch("p", times[part], meters))
        index += size
    assert fold(messages).records() == fold_one_by_one(messages).records()
