"""High-frequency probes in RRD files: one update a second with the true average, min and max.

The reference for averages is rrdtool itself, fed the same samples one by
one; minima and maxima are checked against a direct scan of the samples.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import rrdtool

from kwapi.bus.protocol import Batch, Measurement
from kwapi.plugins.rrd.periods import PERIODS
from kwapi.plugins.rrd.storage import RrdStorage

HEARTBEAT = 10  # RrdStorage's default


def irregular_signal(rng: random.Random, start: float) -> tuple[list[float], list[float]]:
    """About 50 Hz with jitter for 8 s, a gap longer than the heartbeat, then 0.3 to 2.5 s apart."""
    timestamps: list[float] = []
    at = start
    while at < start + 8:
        timestamps.append(at)
        at += rng.uniform(0.005, 0.035)
    at += 15
    while at < start + 45:
        timestamps.append(at)
        at += rng.uniform(0.3, 2.5)
    return timestamps, [rng.uniform(-20.0, 500.0) for _ in timestamps]


def per_sample_reference(path: Path, start: int, timestamps, values) -> dict[int, float]:
    """rrdtool's own 1 s averages of the samples written one by one."""
    rrdtool.create(
        str(path), "--step", "1", "--start", str(start), "DS:value:GAUGE:10:U:U",
        "RRA:AVERAGE:0.5:1:600",
    )  # fmt: skip
    for timestamp, value in zip(timestamps, values, strict=True):
        rrdtool.update(str(path), f"{timestamp:.6f}:{value!r}")
    (first, last, _), _, rows = rrdtool.fetch(
        str(path), "AVERAGE", "-r", "1", "--start", str(start), "--end", str(start + 120)
    )
    return dict(zip(range(first + 1, last + 1), (row[0] for row in rows), strict=False))


def held(timestamps, values, step: int) -> tuple[float, float, float] | None:
    """Average, min and max over (step-1, step] of the samples, each held over (t_prev, t].

    Only intervals within the heartbeat are known; None if none meets the step.
    """
    weights: list[tuple[float, float]] = []
    for index in range(1, len(timestamps)):
        before, at = timestamps[index - 1], timestamps[index]
        overlap = min(at, step) - max(before, step - 1)
        if at - before <= HEARTBEAT and overlap > 0:
            weights.append((overlap, values[index]))
    if not weights:
        return None
    seconds = sum(w for w, _ in weights)
    average = sum(w * v for w, v in weights) / seconds
    return average, min(v for _, v in weights), max(v for _, v in weights)


def feed_in_batches(storage: RrdStorage, rng: random.Random, probe: str, timestamps, values):
    """Send the samples as batches of 1 to 80 samples."""
    index = 0
    while index < len(timestamps):
        size = rng.randint(1, 80)
        end = index + size
        storage.update(Batch(probe, timestamps[index:end], {"w": values[index:end]}))
        index = end


def test_batches_give_each_second_its_time_weighted_average_and_true_extremes(storage, tmp_path):
    rng = random.Random(13)
    start = int(time.time()) - 100
    timestamps, values = irregular_signal(rng, start + 0.013)
    feed_in_batches(storage, rng, "hf", timestamps, values)
    reference = per_sample_reference(tmp_path / "ref.rrd", start, timestamps, values)
    series = storage.fetch("hf", "w", PERIODS["minute"], end=start + 60)
    rows = zip(series.timestamps, series.average, series.minimum, series.maximum, strict=True)
    known = agreeing = 0
    for step, average, low, high in rows:
        expected = held(timestamps, values, step)
        if average is None:  # unknown: no sample held over it, or its second is not over yet
            assert expected is None or step > timestamps[-1], step
            continue
        assert expected is not None
        assert (average, low, high) == pytest.approx(expected, rel=1e-9), step
        assert low <= average <= high
        known += 1
        # Samples less than a second apart, each second wholly known: as rrdtool
        # has it sample by sample (to the microsecond it rounds timestamps to).
        if step in range(start + 2, start + 8):
            assert average == pytest.approx(reference[step], rel=2e-5), step
            agreeing += 1
    assert known >= 25 and agreeing == 6
    # One update a second at most (plus a mark where the gap begins), not one per sample.
    assert storage.stats["batched"] == len(timestamps)
    assert storage.stats["updated"] < 50 < len(timestamps)
    assert storage.stats["dropped_old"] == storage.stats["errors"] == 0


def test_coarser_archives_keep_the_spikes_that_averages_hide(storage):
    start = int(time.time()) - 700
    start -= start % 10  # a whole 10 s row of the hour archive
    timestamps, values = [], []
    for second in range(start, start + 30):
        for sample in range(1, 51):  # 50 Hz, the last one right at the end of the second
            timestamps.append(second + sample / 50)
            values.append(1000.0 if sample in (20, 21, 22) else 100.0)  # a 60 ms spike
    for first in range(0, len(timestamps), 50):
        storage.update(
            Batch("gpu", timestamps[first : first + 50], {"w": values[first : first + 50]})
        )
    hour = storage.fetch("gpu", "w", PERIODS["hour"], end=start + 100)
    row = hour.timestamps.index(start + 20)
    assert hour.step == 10
    assert hour.average[row] == pytest.approx(100 + 900 * 0.06, abs=1e-3)
    assert hour.minimum[row] == 100.0 and hour.maximum[row] == 1000.0
    # What the value's own MAX archive keeps is the highest 1 s average, not the spike.
    (_, _, _), names, rows = rrdtool.fetch(
        str(storage.path("gpu", "w")), "MAX", "-r", "10", "--start", str(start + 10),
        "--end", str(start + 20),
    )  # fmt: skip
    assert names == ("value", "min", "max")
    assert rows[0][0] == pytest.approx(154.0, abs=1e-3)
    assert storage.extremes("gpu", "w") == ("min", "max")


def test_single_samples_keep_one_source_files_and_either_form_follows_the_same_rule(
    storage, rrd_dir
):
    start = int(time.time()) - 100
    for second in range(10):
        storage.update(Measurement("slow", float(start + second), {"w": 10.0 * second}))
    assert rrdtool.info(str(storage.path("slow", "w")))["ds[value].index"] == 0
    assert "ds[min].index" not in rrdtool.info(str(storage.path("slow", "w")))
    assert storage.extremes("slow", "w") == ("value", "value")
    # Batches into that file: each second's average, held from the last single sample on.
    storage.update(Batch("slow", [start + 9.5, start + 10.0], {"w": [100.0, 200.0]}))
    # A single sample into a batched probe's file goes through the same per-second rule.
    storage.update(Batch("fast", [start + 0.5, start + 1.0], {"w": [1.0, 2.0]}))
    storage.update(Measurement("fast", start + 1.25, {"w": 8.0}))
    storage.update(Batch("fast", [start + 1.5, start + 2.0], {"w": [4.0, 6.0]}))
    slow = storage.fetch("slow", "w", PERIODS["minute"], end=start + 20)
    fast = storage.fetch("fast", "w", PERIODS["minute"], end=start + 20)
    at = {step: index for index, step in enumerate(slow.timestamps)}
    assert slow.average[at[start + 9]] == 90.0
    assert slow.average[at[start + 10]] == pytest.approx(150.0)
    assert fast.average[at[start + 1]] == pytest.approx(2.0)  # (0.5, 1] at 2 W
    assert fast.average[at[start + 2]] == pytest.approx(0.25 * 8 + 0.25 * 4 + 0.5 * 6)
    assert (fast.minimum[at[start + 2]], fast.maximum[at[start + 2]]) == (4.0, 8.0)
    # After a restart the files keep their layout, and the time in between stays unknown.
    again = RrdStorage(rrd_dir)
    assert again.extremes("fast", "w") == ("min", "max")
    again.update(Batch("fast", [start + 30.5, start + 31.0, start + 32.0], {"w": [5.0, 7.0, 9.0]}))
    fast = again.fetch("fast", "w", PERIODS["minute"], end=start + 40)
    known = {s: a for s, a in zip(fast.timestamps, fast.average, strict=True) if a is not None}
    assert known == pytest.approx(
        {start + 1: 2.0, start + 2: 6.0, start + 31: 7.0, start + 32: 9.0}
    )
    assert again.stats["errors"] == 0


def test_open_seconds_are_written_when_asked(storage):
    start = int(time.time()) - 100
    storage.update(Batch("hf", [start + 0.5, start + 1.0, start + 1.25], {"w": [1.0, 3.0, 5.0]}))
    path = str(storage.path("hf", "w"))
    assert rrdtool.lastupdate(path)["date"].timestamp() == start + 1
    assert storage.write_open_steps(idle=3600) == 0  # not idle yet
    assert storage.write_open_steps() == 1
    last = rrdtool.lastupdate(path)
    assert last["ds"] == {"value": 5.0, "min": 5.0, "max": 5.0}
    assert storage.write_open_steps() == 0  # nothing new since
    # Later samples go on from there.
    storage.update(Batch("hf", [start + 1.75, start + 2.0], {"w": [7.0, 1.0]}))
    fast = storage.fetch("hf", "w", PERIODS["minute"], end=start + 10)
    row = fast.timestamps.index(start + 2)
    # (1, 1.25] at 5 W written on demand, then (1.25, 1.75] at 7 W and (1.75, 2] at 1 W.
    assert fast.average[row] == pytest.approx(0.25 * 5 + 0.5 * 7 + 0.25 * 1)
