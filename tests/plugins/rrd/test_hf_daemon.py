"""A known 50 Hz waveform, batched on a real bus, into a real kwapi-rrd and rrdcached,
read back with ``rrdtool fetch``."""

from __future__ import annotations

import time

import pytest
import rrdtool

from kwapi.bus.protocol import Batch, Measurement
from kwapi.plugins.rrd.storage import probe_key
from tests.harness.bus import bus_publisher, publish_all, publish_first
from tests.harness.daemons import no_traceback, start_rrd
from tests.harness.http import get_json
from tests.harness.processes import wait_for

SECONDS = 12  # seconds of waveform checked
LOW = 50.0


def high_samples(second: int) -> int:
    """How many of the second's 50 samples are high: 5, 15, 25, 35, 45, 5..."""
    return 5 + 10 * (second % 5)


def high_watts(second: int) -> float:
    return 200.0 + 7.0 * (second % 3)


def expected_average(second: int) -> float:
    """The second's average: each sample holds for 1/50 s."""
    high = high_samples(second)
    return (high * high_watts(second) + (50 - high) * LOW) / 50


def square_wave(second: int) -> Batch:
    """One second of a 50 Hz square wave, as one batch: high first, then LOW.

    The last sample falls right at the end of the second, so that the
    second is complete with its own batch.
    """
    timestamps = [second - 1 + (sample + 1) / 50 for sample in range(50)]
    high = high_samples(second)
    watts = [high_watts(second) if sample < high else LOW for sample in range(50)]
    return Batch("hf-1", timestamps, {"w": watts})


class RrdDaemon:
    """kwapi-rrd's receiver counters, from /stats/."""

    def __init__(self, base: str) -> None:
        self.base = base

    def accepted(self) -> int:
        return get_json(self.base + "/stats/")["receiver"]["accepted"]


def fetched(path: str, cf: str, resolution: int, start: int, end: int, daemon: str) -> dict:
    """rrdtool fetch of what rrdcached holds: {row end: {data source: value}}.

    The file is flushed first, then read: rrdcached's own FETCH ignores ``-r``.
    """
    rrdtool.flushcached("--daemon", daemon, path)
    (first, _, step), names, rows = rrdtool.fetch(
        path, cf, "-r", str(resolution), "--start", str(start), "--end", str(end)
    )
    assert step == resolution
    return {
        first + step * (n + 1): dict(zip(names, row, strict=True)) for n, row in enumerate(rows)
    }


@pytest.mark.slow
def test_rrdtool_fetch_gives_the_true_average_min_and_max_of_a_50_hz_waveform(
    tmpdir_short, daemon, rrd_dir, rrdcached
):
    endpoint = f"ipc://{tmpdir_short}/bus"
    publisher = bus_publisher(endpoint)
    try:
        process, base = start_rrd(
            daemon, tmpdir_short, endpoint, rrd_dir,
            extra=f"rrdcached_address = {rrdcached.address}\nrrd_batch_interval = 0.05",
        )  # fmt: skip
        kwapi_rrd = RrdDaemon(base)
        start = int(time.time()) - 60
        start -= start % 10  # so that (start, start + 10] is one row of the hour archive
        publish_first(kwapi_rrd, publisher, square_wave(start))  # the series begins
        batches = [square_wave(second) for second in range(start + 1, start + SECONDS + 1)]
        # A 1 Hz probe on the same bus, single samples as always.
        singles = [
            Measurement("slow-1", float(s), {"w": s % 7 * 10.0}) for s in range(start, start + 5)
        ]
        # Half a second more, still open when kwapi-rrd stops.
        end = start + SECONDS
        tail = Batch("hf-1", [end + (n + 1) / 50 for n in range(25)], {"w": [LOW] * 24 + [321.0]})
        publish_all(kwapi_rrd, publisher, [*batches, *singles, tail])

        path = str(rrd_dir / probe_key("hf-1") / "w.rrd")
        address = rrdcached.address

        def written() -> bool:
            # A value for each second of hf-1 and for each single sample of slow-1.
            return get_json(base + "/stats/")["storage"]["updated"] >= SECONDS + 1 + len(singles)

        wait_for(written, 20, "every second to be written")
        average = fetched(path, "AVERAGE", 1, start, end, address)
        minimum = fetched(path, "MIN", 1, start, end, address)
        maximum = fetched(path, "MAX", 1, start, end, address)
        for second in range(start + 1, end + 1):
            expected = expected_average(second)
            assert average[second]["value"] == pytest.approx(expected, abs=1e-3), second
            assert minimum[second]["min"] == LOW
            assert maximum[second]["max"] == high_watts(second)
        # The hour archive's 10 s row keeps the extremes of every sample in it.
        ten = fetched(path, "MAX", 10, start, start + 10, address)[start + 10]
        low = fetched(path, "MIN", 10, start, start + 10, address)[start + 10]
        assert ten["max"] == max(high_watts(s) for s in range(start + 1, start + 11))
        assert low["min"] == LOW
        # What the average's own MAX keeps is the highest 1 s average, below every peak.
        row = range(start + 1, start + 11)
        assert ten["value"] == pytest.approx(max(map(expected_average, row)), abs=1e-3)
        assert ten["value"] < min(map(high_watts, row))

        # The JSON series and /metrics tell the same.
        data = get_json(f"{base}/data/minute/hf-1/?end={end + 5}")
        at = data["timestamps"].index(start + 3)
        meter = data["meters"]["w"]
        assert (meter["min"][at], meter["max"][at]) == (LOW, high_watts(start + 3))
        assert meter["average"][at] == pytest.approx(expected_average(start + 3), abs=1e-3)
        metrics = get_json(base + "/stats/")["storage"]
        assert metrics["batched"] == 50 * (SECONDS + 1) + 25
        assert metrics["dropped_old"] == metrics["errors"] == 0

        # The single-sample probe keeps its one-source file and its 1 s values.
        slow = str(rrd_dir / probe_key("slow-1") / "w.rrd")
        values = fetched(slow, "AVERAGE", 1, start, start + 4, address)
        assert [values[s]["value"] for s in range(start + 1, start + 5)] == [
            s % 7 * 10.0 for s in range(start + 1, start + 5)
        ]
        assert list(values[start + 1]) == ["value"]

        # On SIGTERM the open half second is written too, and flushed to disk.
        assert process.stop(timeout=15) == 0
        rrdtool.flushcached("--daemon", address, path)
        last = rrdtool.lastupdate(path)
        assert last["date"].timestamp() == end  # rrdtool tells whole seconds
        assert last["ds"] == pytest.approx(
            {"value": LOW + (321 - LOW) / 25, "min": LOW, "max": 321.0}
        )
        no_traceback(process)
    finally:
        publisher.close()
