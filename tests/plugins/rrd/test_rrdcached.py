"""Every update, fetch and graph goes through a real rrdcached when one is configured."""

from __future__ import annotations

import time

import rrdtool

from kwapi.bus.protocol import Measurement
from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.periods import PERIODS
from kwapi.plugins.rrd.storage import RrdStorage


def test_updates_wait_in_rrdcached_until_flushed(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    storage.check_daemon()
    now = int(time.time())
    for offset in range(20, 0, -1):
        storage.update(Measurement("host", float(now - offset), {"w": 100.0 + offset}))
        storage.update(Measurement("a:b@c", float(now - offset), {"w": 5.0}))
    stats = rrdcached.stats()
    assert stats["UpdatesReceived"] == 40
    path = str(storage.path("host", "w"))
    # The file on disk has not seen them yet (rrdcached holds them, -w 3600)...
    assert rrdtool.last(path) < now - 1
    # ...but a fetch through the daemon does.
    series = storage.fetch("host", "w", PERIODS["minute"], end=now)
    assert 101.0 in series.average
    storage.flush()
    assert rrdtool.last(path) == now - 1


def test_graphs_go_through_rrdcached(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    now = int(time.time())
    for offset in range(30, 0, -1):
        storage.update(Measurement("host", float(now - offset), {"w": 4000.0}))
    # The values are only in rrdcached: a graph drawn from the file alone is empty...
    direct = Grapher(RrdStorage(rrd_dir)).draw_probe(PERIODS["minute"], "host", end=now)
    assert direct.value_max is None or direct.value_max < 4000.0
    # ...and one drawn through the daemon shows them.
    graph = Grapher(storage).draw_probe(PERIODS["minute"], "host", end=now)
    assert graph.value_max is not None and graph.value_max >= 4000.0
    summary = Grapher(storage).draw_summary(PERIODS["minute"], end=now)
    assert summary.value_max is not None and summary.value_max >= 4000.0


def test_old_updates_through_rrdcached_are_dropped_not_raised(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    now = int(time.time())
    storage.update(Measurement("host", float(now - 5), {"w": 1.0}))
    restarted = RrdStorage(rrd_dir, daemon=rrdcached.address)  # forgets what it wrote
    assert restarted.update(Measurement("host", float(now - 9), {"w": 2.0})) == 0
    assert restarted.stats["dropped_old"] == 1


def test_download_is_flushed_first(rrd_dir, rrdcached, tmp_path):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    now = int(time.time())
    for offset in range(10, 0, -1):
        storage.update(Measurement("host", float(now - offset), {"w": 7.0}))
    assert rrdtool.last(str(storage.path("host", "w"))) < now - 1  # still in rrdcached
    client = create_app(storage, Grapher(storage)).test_client()
    response = client.get("/rrd/host/")
    assert response.status_code == 200
    copy = tmp_path / "copy.rrd"
    copy.write_bytes(response.get_data())
    assert rrdtool.last(str(copy)) == now - 1
