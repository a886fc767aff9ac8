"""The watch on rrd_dir's file system (read-only is tested on a real mount in functional/)."""

from __future__ import annotations

import logging
import os

from kwapi.bus.protocol import Batch, Measurement
from kwapi.plugins.rrd.diskwatch import RRD_FILE_BYTES, DiskState, DiskWatch, disk_state


def test_a_new_rrd_file_fits_in_the_room_asked_for(storage):
    # The largest file: a high-frequency probe's, with average, minimum and maximum.
    storage.update(Batch("lab-1", [1_700_000_000.0, 1_700_000_000.02], {"w": [1.0, 2.0]}))
    storage.update(Measurement("node-1", 1_700_000_000, {"w": 1.0}))
    three_sources = os.path.getsize(storage.path("lab-1", "w"))
    assert RRD_FILE_BYTES - 8192 < three_sources <= RRD_FILE_BYTES
    assert os.path.getsize(storage.path("node-1", "w")) < three_sources / 2


def test_states_of_a_directory(tmp_path):
    assert disk_state(str(tmp_path), min_free=0)[0] is DiskState.OK
    state, free, reason = disk_state(str(tmp_path), min_free=1 << 62)
    assert state is DiskState.FULL and free > 0 and "bytes free" in reason
    state, _, reason = disk_state(str(tmp_path / "gone"))
    assert state is DiskState.UNREADABLE and "No such file" in reason


def test_one_line_per_change_of_state(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="kwapi.plugins.rrd.diskwatch")
    watch = DiskWatch(str(tmp_path), min_free=1 << 62)
    assert watch.check() is DiskState.FULL
    assert watch.check() is DiskState.FULL
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "is full" in line.getMessage() and "new probes cannot get" in line.getMessage()
    assert watch.snapshot()["state"] == "full"
    watch.min_free = 0
    assert watch.check() is DiskState.OK
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"rrd_dir {tmp_path} is writable again (was full for 0 s)"
    ]
    assert watch.snapshot()["free_bytes"] > 0
