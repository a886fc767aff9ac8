"""The writer thread against real stores: batches, outages, the spool, rejections.

The writer takes messages as the receiver hands them over (its ``add``);
the daemon around it, fed through the bus, is tested in test_daemon*.py.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kwapi.backoff import Backoff
from kwapi.bus.protocol import Batch
from kwapi.plugins.history.lineprotocol import LineFormat
from kwapi.plugins.history.metrics import spool_families, writer_families
from kwapi.plugins.history.spool import Spool
from kwapi.plugins.history.store import StoreClient
from kwapi.plugins.history.writer import HistoryWriter
from tests.harness.processes import free_tcp_port, wait_for
from tests.harness.stores import InfluxDB, VictoriaMetrics


@pytest.fixture
def victoria(tmp_path) -> Iterator[VictoriaMetrics]:
    store = VictoriaMetrics(tmp_path / "vm")
    store.start()
    yield store
    store.close()


def start_writer(url: str, spool_dir: Path, **options) -> HistoryWriter:
    """A started writer to *url*: small batches, quick retries."""
    writer = HistoryWriter(
        StoreClient(url, timeout=2.0),
        Spool(spool_dir, options.pop("spool_max_bytes", 10**8)),
        LineFormat(),
        batch_size=options.pop("batch_size", 500),
        flush_interval=options.pop("flush_interval", 0.1),
        backoff=Backoff(0.05, 0.3, jitter=0.5),
    )
    writer.start()
    return writer


def power_batches(probes: int, seconds: int, start: float) -> list[Batch]:
    """One batch per probe of 1 Hz samples over *seconds* from *start* (whole ms)."""
    stamps = [start + second for second in range(seconds)]
    return [
        Batch(f"p{probe}", stamps, {"w": [float(probe + second) for second in range(seconds)]})
        for probe in range(probes)
    ]


def family_values(writer: HistoryWriter) -> dict[tuple[str, tuple[str, ...]], float]:
    """What /metrics would show of *writer*: {(sample name, label values): value}."""
    families = [*writer_families(writer), *spool_families(writer.spool)]
    return {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in families
        for sample in family.samples
    }


def stored_count(store: VictoriaMetrics) -> int:
    return sum(len(points) for points in store.samples("kwapi_w").values())


def test_batches_close_at_batch_size_and_every_sample_is_stored(victoria, tmp_path):
    writer = start_writer(victoria.write_url, tmp_path / "spool", batch_size=250)
    start = float(int(time.time()) - 100)
    for batch in power_batches(20, 50, start):
        writer.add(batch)
    writer.stop(30)
    assert writer.stats.written == writer.stats.received == 1000
    assert sum(writer.stats.latency_counts) == 4  # 1000 samples in writes of 250
    samples = victoria.samples("kwapi_w")
    assert len(samples) == 20
    assert samples["p3"] == [(start + second, 3.0 + second) for second in range(50)]


def test_an_outage_keeps_every_batch_in_the_spool_and_replays_it_once(victoria, tmp_path):
    writer = start_writer(victoria.write_url, tmp_path / "spool")
    start = float(int(time.time()) - 200)
    batches = power_batches(10, 60, start)
    writer.add(batches[0])
    wait_for(lambda: writer.stats.written == 60, 10, "the first batch written")
    victoria.stop()
    for batch in batches[1:]:
        writer.add(batch)
    wait_for(lambda: writer.spool.stats.spooled == 540, 10, "the batches spooled")
    assert not writer.store.up and writer.stats.failures["none"] >= 1
    victoria.start()
    wait_for(lambda: len(writer.spool) == 0, 20, "the spool replayed")
    writer.stop(10)
    assert writer.store.up and writer.spool.stats.replayed == 540
    assert writer.stats.written == 600
    wait_for(lambda: stored_count(victoria) == 600, 10, "every sample, once, in the store")


def test_a_batch_replayed_twice_counts_once(victoria, tmp_path):
    writer = start_writer(victoria.write_url, tmp_path / "spool")
    start = float(int(time.time()) - 100)
    for batch in power_batches(5, 30, start):
        writer.add(batch)
    wait_for(lambda: writer.stats.written == 150, 10, "150 samples written")
    writer.stop(10)
    # The same bodies again, as a kill -9 between a write and the removal of its
    # spooled file would send them: VictoriaMetrics, -dedup.minScrapeInterval=1ms,
    # keeps one sample per series and millisecond.
    again = start_writer(victoria.write_url, tmp_path / "again")
    for batch in power_batches(5, 30, start):
        again.add(batch)
    again.stop(10)
    assert again.stats.written == 150
    samples = victoria.samples("kwapi_w")
    assert sum(map(len, samples.values())) == 150
    assert all(len({t for t, _ in points}) == len(points) for points in samples.values())


def test_a_malformed_batch_is_logged_once_counted_and_not_retried(tmp_path, caplog):
    influx = InfluxDB(tmp_path / "influx")
    influx.start()
    try:
        # Another writer made "w" an integer field (in the shard of the samples'
        # week): kwapi's floats now get a 400.
        seed = f"kwapi,probe=other w=1i {int(time.time() * 1000)}\n".encode()
        assert StoreClient(influx.write_url).post(gzip.compress(seed), "ms").status == 204
        writer = start_writer(influx.write_url, tmp_path / "spool", batch_size=10)
        with caplog.at_level(logging.ERROR, logger="kwapi.plugins.history.writer"):
            for batch in power_batches(3, 10, float(int(time.time()) - 50)):
                writer.add(batch)
            wait_for(lambda: writer.stats.rejected == 30, 10, "three batches rejected")
            writer.stop(10)
    finally:
        influx.close()
    assert writer.stats.rejected_batches == 3 and writer.stats.written == 0
    assert len(writer.spool) == 0 and writer.spool.stats.spooled == 0
    rejected = [r.getMessage() for r in caplog.records if "rejected a batch" in r.getMessage()]
    assert len(rejected) == 1, rejected
    assert "HTTP 400" in rejected[0] and "field type conflict" in rejected[0]
    metrics = family_values(writer)
    assert metrics[("kwapi_history_batches_rejected_total", ())] == 3
    assert metrics[("kwapi_history_samples_dropped_total", ("rejected",))] == 30


def test_a_full_spool_is_one_line_and_a_count_not_a_crash(tmp_path, caplog):
    refused = f"http://127.0.0.1:{free_tcp_port()}/write"  # nothing listens there
    with caplog.at_level(logging.WARNING):
        writer = start_writer(refused, tmp_path / "spool", spool_max_bytes=2000, batch_size=50)
        for batch in power_batches(40, 50, float(int(time.time()) - 100)):
            writer.add(batch)
        wait_for(lambda: writer.pending() == 0, 10, "every batch spooled or dropped")
        assert writer.is_alive()
        writer.stop(10)
    spool = writer.spool
    assert spool.full and spool.size <= 2000 and spool.stats.dropped_full > 0
    assert spool.stats.dropped_full + spool.samples() == 2000
    assert caplog.text.count("spool full") == 1, caplog.text
    metrics = family_values(writer)
    assert metrics[("kwapi_history_spool_full", ())] == 1
    assert metrics[("kwapi_history_samples_dropped_total", ("spool_full",))] > 0
    assert metrics[("kwapi_history_spool_bytes", ())] == spool.size
