"""kwapi-history into the other stores: vmagent (then VictoriaMetrics) and InfluxDB 1.x."""

from __future__ import annotations

import time

import pytest

from tests.harness.history import bus, connect, messages, power_series, start_history
from tests.harness.processes import wait_for
from tests.harness.stores import InfluxDB, VictoriaMetrics, Vmagent

pytestmark = pytest.mark.slow

PROBES = [f"rack-{index:02d}" for index in range(50)]


def send_minute(history, directory) -> dict[str, list[tuple[float, float]]]:
    """A minute of 1 Hz samples of each of PROBES, published to *history*; the series."""
    publisher = bus(directory)
    connect(history, publisher)
    series = power_series(PROBES, 60, time.time() - 120)
    for message in messages(series, batched=PROBES[::2]):
        publisher.publish(message)
    connect(history, publisher)  # received after them all: they all were
    publisher.close()
    return series


def test_through_vmagent_every_sample_reaches_victoriametrics(daemon, tmpdir_short):
    victoria = VictoriaMetrics(f"{tmpdir_short}/vm")
    agent = Vmagent(victoria, f"{tmpdir_short}/agent")
    try:
        victoria.start()
        agent.start()
        history = start_history(daemon, tmpdir_short, agent.write_url)
        series = send_minute(history, tmpdir_short)

        def arrived() -> dict | None:
            stored = victoria.samples('kwapi_w{probe=~"rack-.*"}')
            return stored if sum(map(len, stored.values())) >= 3000 else None

        assert wait_for(arrived, 30, "3,000 samples in VictoriaMetrics") == series
        assert history.metric("kwapi_history_samples_spooled_total") == 0
        assert history.process.stop() == 0
    finally:
        agent.close()
        victoria.close()


@pytest.mark.parametrize("precision", ["ms", "ns"])
def test_into_influxdb_every_sample_is_counted_by_influxql(daemon, tmpdir_short, precision):
    influx = InfluxDB(f"{tmpdir_short}/influx")
    try:
        influx.start()
        history = start_history(daemon, tmpdir_short, influx.write_url, store_precision=precision)
        series = send_minute(history, tmpdir_short)
        count = 'SELECT count("w") FROM "kwapi" WHERE "probe" =~ /^rack-/'

        def counted() -> int:
            results = influx.query(count)["results"][0]
            return results["series"][0]["values"][0][1] if "series" in results else 0

        wait_for(lambda: counted() == 3000, 30, "3,000 samples counted in InfluxDB")
        answer = influx.query('SELECT "w" FROM "kwapi" WHERE "probe" = \'rack-07\'')
        rows = answer["results"][0]["series"][0]["values"]  # [ms since 1970, w]
        assert [(t / 1000, w) for t, w in rows] == series["rack-07"]
        assert history.process.stop() == 0
    finally:
        influx.close()
