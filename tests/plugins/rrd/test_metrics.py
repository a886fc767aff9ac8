"""kwapi-rrd's /metrics: receiver, writes, rrdcached and rrd_dir, on real storage."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kwapi.bus.protocol import Batch, Measurement
from kwapi.bus.receiver import ReceiverStats
from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.storage import RrdStorage
from tests.harness.rrd import Rrdcached


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    body = response.get_data()
    if response.content_encoding == "gzip":
        body = gzip.decompress(body)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_metrics_tell_the_receiver_the_writes_and_the_disk(rrd_dir):
    storage = RrdStorage(rrd_dir)
    receiver = ReceiverStats()
    receiver.accepted = 5
    receiver.rejected["bad_signature"] = 2
    storage.update(Measurement("host", time.time() - 1, {"w": 1.0, "v": 2.0}))

    def stats():
        return {**receiver.snapshot(), "pending_writes": 3, "write_lag_seconds": 0.25}

    client = create_app(storage, Grapher(storage), receiver_stats=stats).test_client()
    samples = scrape(client, **{"Accept-Encoding": "gzip"})
    assert samples[("kwapi_receiver_accepted_total", ())] == 5
    assert samples[("kwapi_receiver_rejected_total", (("reason", "bad_signature"),))] == 2
    assert samples[("kwapi_rrd_updates_total", ())] == 2
    assert samples[("kwapi_rrd_files_created_total", ())] == 2
    assert samples[("kwapi_rrd_probes", ())] == 1
    assert samples[("kwapi_rrd_pending_writes", ())] == 3
    assert samples[("kwapi_rrd_write_lag_seconds", ())] == 0.25
    assert samples[("kwapi_rrd_dir_writable", ())] == 1
    disk = shutil.disk_usage(rrd_dir)
    assert samples[("kwapi_rrd_dir_size_bytes", ())] == disk.total
    assert 0 < samples[("kwapi_rrd_dir_free_bytes", ())] <= disk.total
    assert ("kwapi_rrd_rrdcached_up", ()) not in samples  # rrdtool writes the files itself


def test_batched_samples_are_counted_apart_from_the_updates_they_make(rrd_dir):
    storage = RrdStorage(rrd_dir)
    start = int(time.time()) - 30
    for second in range(3):  # 3 s at 50 Hz of two meters
        timestamps = [start + second + (n + 1) / 50 for n in range(50)]
        storage.update(Batch("hf", timestamps, {"w": [100.0] * 50, "a": [0.5] * 50}))
    samples = scrape(create_app(storage, Grapher(storage)).test_client())
    assert samples[("kwapi_rrd_batched_samples_total", ())] == 300
    assert samples[("kwapi_rrd_updates_total", ())] == 6  # one per second and meter


def test_rrdcached_up_follows_the_daemon(rrd_dir):
    daemon = Rrdcached(rrd_dir)
    try:
        storage = RrdStorage(rrd_dir, daemon=daemon.address)
        client = create_app(storage, Grapher(storage)).test_client()
        assert scrape(client)[("kwapi_rrd_rrdcached_up", ())] == 1
    finally:
        daemon.stop()
    assert scrape(client)[("kwapi_rrd_rrdcached_up", ())] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only file system needs root")
def test_a_read_only_rrd_dir_is_not_writable(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        storage = RrdStorage(mount)
        client = create_app(storage, Grapher(storage)).test_client()
        assert scrape(client)[("kwapi_rrd_dir_writable", ())] == 1
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        assert scrape(client)[("kwapi_rrd_dir_writable", ())] == 0
    finally:
        subprocess.run(["umount", str(mount)], check=False)
