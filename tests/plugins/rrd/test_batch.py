"""Batched writes: rrdcached's BATCH command, the writer thread and /stats/, on real rrdcached."""

from __future__ import annotations

import time

import pytest
import rrdtool

from kwapi.bus.protocol import Batch, Measurement
from kwapi.bus.receiver import ReceiverStats
from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.periods import PERIODS
from kwapi.plugins.rrd.rrdcached import RrdcachedClient
from kwapi.plugins.rrd.storage import RrdStorage
from kwapi.plugins.rrd.writer import BatchWriter
from tests.harness.processes import wait_for


def test_one_batch_writes_every_value_in_one_round_trip(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    now = int(time.time())
    batch = [
        Measurement(probe, float(now - offset), {"w": 10.0 * offset, "v": 230.0})
        for offset in range(30, 0, -1)
        for probe in ("host", "a:b@c")
    ]
    assert storage.update_many(batch) == 120
    assert storage.stats["updated"] == 120
    assert rrdcached.stats()["UpdatesReceived"] == 120
    series = storage.fetch("host", "w", PERIODS["minute"], end=now)
    assert 10.0 in series.average and 300.0 in series.average
    # rrdtool.last through rrdcached flushes that file to disk first.
    assert rrdtool.last(str(storage.path("a:b@c", "v")), "--daemon", rrdcached.address) == now - 1


def test_two_updates_in_the_same_second_are_both_kept_through_rrdcached(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    base = int(time.time()) - 30
    storage.update_many([Measurement("host", float(base - 1), {"w": 5.0})])
    # Both in one batch, then the end of that second in the next one.
    batch = [
        Measurement("host", base + 0.2, {"w": 10.0}),
        Measurement("host", base + 0.7, {"w": 30.0}),
    ]
    assert storage.update_many(batch) == 2
    assert storage.update_many([Measurement("host", base + 1.0, {"w": 30.0})]) == 1
    assert storage.stats["dropped_old"] == 0 and storage.stats["errors"] == 0
    assert rrdcached.stats()["UpdatesReceived"] == 4
    # As written directly: 10 W for 0.2 s, then 30 W for 0.8 s over (base, base+1].
    series = storage.fetch("host", "w", PERIODS["minute"], end=base + 10)
    values = dict(zip(series.timestamps, series.average, strict=True))
    assert values[base + 1] == pytest.approx(10 * 0.2 + 30 * 0.8)


def test_old_values_are_dropped_in_a_batch_not_raised(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    now = int(time.time())
    storage.update_many([Measurement("host", float(now - 5), {"w": 1.0})])
    # Not newer than what this storage wrote: dropped before it is sent.
    assert storage.update_many([Measurement("host", float(now - 5), {"w": 2.0})]) == 0
    assert storage.stats["dropped_old"] == 1
    # A restarted storage does not know: rrdcached refuses it, and it is counted the same.
    restarted = RrdStorage(rrd_dir, daemon=rrdcached.address)
    written = restarted.update_many(
        [
            Measurement("host", float(now - 9), {"w": 3.0}),
            Measurement("host", float(now - 1), {"w": 4.0}),
        ]
    )
    assert written == 1
    assert restarted.stats["dropped_old"] == 1
    assert restarted.stats["errors"] == 0


def test_batch_reports_rrdcached_errors_by_command(rrd_dir, rrdcached):
    client = RrdcachedClient(rrdcached.address)
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    now = int(time.time())
    storage.update(Measurement("host", float(now - 10), {"w": 1.0}))
    path = storage.path("host", "w")
    errors = client.batch(
        [
            f"UPDATE {path} {now - 5}:2",
            f"UPDATE {rrd_dir}/missing.rrd {now}:1",
            f"UPDATE {path} {now - 6}:3",
        ]
    )
    assert [index for index, _ in errors] == [1, 2]
    assert "missing.rrd" in errors[0][1]
    assert "illegal attempt to update" in errors[1][1]
    assert client.batch([]) == []
    client.close()


def test_batches_survive_an_rrdcached_restart(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    now = int(time.time())
    assert storage.update_many([Measurement("host", float(now - 20), {"w": 1.0})]) == 1
    rrdcached.stop()  # flushes on exit (-F); the client's connection is now broken
    assert storage.update_many([Measurement("host", float(now - 19), {"w": 2.0})]) == 0
    assert storage.stats["errors"] == 1  # counted, not raised
    again = type(rrdcached)(rrd_dir)
    try:
        storage.client.address = storage.daemon = again.address
        assert storage.update_many([Measurement("host", float(now - 18), {"w": 3.0})]) == 1
        assert again.stats()["UpdatesReceived"] == 1
    finally:
        again.stop()


def test_without_rrdcached_update_many_writes_each_value(storage):
    now = int(time.time())
    batch = [Measurement("host", float(now - offset), {"w": 5.0}) for offset in range(10, 0, -1)]
    batch.append(Measurement("host", float(now - 20), {"w": 6.0}))  # older: dropped
    assert storage.update_many(batch) == 10
    assert storage.stats["dropped_old"] == 1
    assert rrdtool.last(str(storage.path("host", "w"))) == now - 1


def test_writer_writes_within_its_interval_and_everything_on_stop(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    writer = BatchWriter(storage, batch_size=1000, interval=0.05)
    writer.start()
    now = int(time.time())
    writer.add(Measurement("host", float(now - 30), {"w": 1.0}))
    wait_for(lambda: storage.stats["updated"] == 1, 10, "the interval to write one value")
    assert writer.pending() == 0
    for offset in range(29, 0, -1):
        writer.add(Measurement("host", float(now - offset), {"w": 2.0}))
    writer.stop()
    assert not writer.is_alive()
    assert writer.pending() == 0
    assert storage.stats["updated"] == 30
    assert rrdcached.stats()["UpdatesReceived"] == 30


def test_writer_writes_a_full_batch_without_waiting(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    writer = BatchWriter(storage, batch_size=50, interval=10.0)
    writer.start()
    try:
        now = int(time.time())
        for index in range(50):
            writer.add(Measurement(f"p{index}", float(now - 1), {"w": 1.0}))
        # Well before the 10 s interval: a full batch wakes the writer.
        wait_for(lambda: storage.stats["updated"] == 50, 5, "the full batch")
    finally:
        writer.stop()


def test_writer_backlog_is_written_by_the_caller(rrd_dir):
    storage = RrdStorage(rrd_dir)
    writer = BatchWriter(storage, batch_size=2, interval=10.0)  # thread not started
    now = int(time.time())
    for offset in range(40, 0, -1):
        writer.add(Measurement("host", float(now - offset), {"w": 1.0}))
    # 2 x BACKLOG_BATCHES (20) queued: add() wrote them itself.
    assert writer.pending() == 0
    assert storage.stats["updated"] == 40


def test_stats_route_shows_receiver_and_storage_counters(rrd_dir):
    storage = RrdStorage(rrd_dir)
    receiver = ReceiverStats()
    receiver.accepted = 3
    receiver.rejected["replay"] = 2
    receiver.observe_delay(0.003)
    storage.update(Measurement("host", time.time() - 1, {"w": 1.0, "v": 2.0}))
    client = create_app(storage, Grapher(storage), receiver_stats=receiver.snapshot).test_client()
    response = client.get("/stats/")
    assert response.status_code == 200
    body = response.get_json()
    assert body["receiver"]["accepted"] == 3
    assert body["receiver"]["rejected"]["replay"] == 2
    assert body["receiver"]["delay"]["counts"][2] == 1
    assert body["storage"]["probes"] == 1
    assert body["storage"]["updated"] == 2
    assert body["storage"]["created"] == 2
    # Without a receiver (the app alone), the storage counters are still served.
    alone = create_app(storage, Grapher(storage)).test_client().get("/stats/").get_json()
    assert alone["receiver"] is None and alone["storage"]["updated"] == 2


def test_writer_lag_is_the_age_of_the_oldest_queued_measurement(rrd_dir):
    storage = RrdStorage(rrd_dir)
    writer = BatchWriter(storage, batch_size=100, interval=10.0)  # thread not started
    assert writer.lag() == 0.0
    writer.add(Measurement("host", time.time() - 1, {"w": 1.0}))
    wait_for(lambda: writer.lag() > 0.05, 5, "the queued measurement to age")
    writer.add(Measurement("host", time.time(), {"w": 2.0}))
    assert writer.lag() > 0.05  # still the first one's age
    writer.write_pending()
    assert writer.lag() == 0.0 and writer.pending() == 0


def test_writer_queues_batches_by_samples_and_writes_open_seconds_on_stop(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    writer = BatchWriter(storage, batch_size=100, interval=10.0)  # thread not started
    start = int(time.time()) - 30
    samples = [start + n / 50 for n in range(1, 76)]  # 50 Hz, from one second into the next
    writer.add(Batch("hf", samples, {"w": [float(n) for n in range(1, 76)]}))
    writer.add(Measurement("slow", float(start), {"w": 1.0}))
    assert writer.pending() == 76
    writer.stop()
    assert writer.pending() == 0
    # One update for the whole second, one for the half second open on stop, one single sample.
    assert storage.stats["batched"] == 75
    assert storage.stats["updated"] == 3
    assert rrdcached.stats()["UpdatesReceived"] == 3
    path = str(storage.path("hf", "w"))
    rrdtool.flushcached("--daemon", rrdcached.address, path)
    last = rrdtool.lastupdate(path)
    assert last["ds"] == pytest.approx({"value": 63.0, "min": 51.0, "max": 75.0})
