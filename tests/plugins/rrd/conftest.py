"""Fixtures of the RRD plugin tests: a real rrdcached, storages and a filled one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.plugins.rrd.storage import RrdStorage
from tests.harness.rrd import Rrdcached, fill


@pytest.fixture
def rrd_dir(tmp_path) -> Path:
    path = tmp_path / "rrd"
    path.mkdir()
    return path


@pytest.fixture
def rrdcached(rrd_dir):
    daemon = Rrdcached(rrd_dir)
    yield daemon
    daemon.stop()


@pytest.fixture
def storage(rrd_dir) -> RrdStorage:
    return RrdStorage(rrd_dir)


@pytest.fixture
def filled(storage) -> RrdStorage:
    """A storage with three power probes and one stream probe, two minutes of data."""
    fill(storage, {"host-1": 120.0, "pdu:outlet@3": 60.0, "gpu.0": 250.0})
    now = int(time.time())
    for offset in range(60, 0, -1):
        storage.update(
            Measurement(
                "stream-1",
                float(now - offset),
                {"up": 1, "bitrate": 2_500_000 + offset * 1000, "fps": 25},
            )
        )
    return storage
