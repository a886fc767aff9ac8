"""RrdStorage: file naming, the probe index across restarts, timestamps and archives."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import rrdtool

from kwapi.bus.protocol import Measurement
from kwapi.plugins.rrd.periods import PERIODS
from kwapi.plugins.rrd.rrdcached import parse_daemon_address
from kwapi.plugins.rrd.storage import (
    RrdStorage,
    StorageError,
    archive_definitions,
    probe_key,
)

NOW = int(time.time())


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("probe", ["...", ".a", "a:b@c", "-rf", "A" * 255, "x.rrd", "probe"])
def test_valid_ids_stay_inside_rrd_dir(storage, rrd_dir, probe):
    storage.update(Measurement(probe, NOW - 5.0, {"w": 1.0}))
    path = storage.path(probe, "w")
    assert path.exists()
    assert path.resolve().parent.parent == rrd_dir.resolve()
    assert path.parent.name == probe_key(probe)
    assert len(path.parent.name) == 32 and set(path.parent.name) <= set("0123456789abcdef")
    # Nothing was written beside rrd_dir.
    assert all(rrd_dir.resolve() in f.resolve().parents for f in files_under(rrd_dir.parent))


@pytest.mark.parametrize("probe", ["../x", "/etc/passwd", "a/b", "", "a b", "é", ".", ".."])
def test_invalid_ids_are_refused_before_touching_the_disk(storage, rrd_dir, probe):
    before = files_under(rrd_dir.parent)
    with pytest.raises(ValueError):
        storage.update(Measurement(probe, NOW - 5.0, {"w": 1.0}))
    assert files_under(rrd_dir.parent) == before


def test_invalid_meter_names_are_refused(storage):
    with pytest.raises(ValueError):
        storage.path("host", "../w")


def test_index_survives_a_restart_and_ignores_foreign_directories(storage, rrd_dir):
    storage.update(Measurement("a:b@c", NOW - 10.0, {"w": 1.0}))
    storage.update(Measurement("...", NOW - 10.0, {"w": 2.0}))
    storage.update(Measurement("stream-1", NOW - 10.0, {"bitrate": 1e6, "fps": 25.0}))
    # A directory whose id file does not hash to its name is not a probe.
    forged = rrd_dir / probe_key("victim")
    forged.mkdir()
    (forged / "probe").write_text("attacker\n")
    (forged / "w.rrd").write_bytes(b"")
    (rrd_dir / "notes.txt").write_text("not a probe")

    again = RrdStorage(rrd_dir)
    assert again.probes() == ["...", "a:b@c", "stream-1"]
    assert again.meters("stream-1") == ["bitrate", "fps"]
    assert again.meters("attacker") == [] and again.meters("victim") == []
    # ...and goes on writing to the same files.
    again.update(Measurement("a:b@c", NOW - 5.0, {"w": 3.0}))
    assert rrdtool.last(str(again.path("a:b@c", "w"))) == NOW - 5


def test_two_updates_in_the_same_second_are_both_kept(storage):
    base = NOW - 30
    storage.update(Measurement("host", base + 0.2, {"w": 10.0}))
    storage.update(Measurement("host", base + 0.7, {"w": 30.0}))
    storage.update(Measurement("host", base + 1.0, {"w": 30.0}))
    assert storage.stats["updated"] == 3
    assert storage.stats["dropped_old"] == 0
    # A gauge holds each value since the previous update: over (base, base+1]
    # that is 10 W for 0.2 s, then 30 W for 0.8 s.
    series = storage.fetch("host", "w", PERIODS["minute"], end=base + 10)
    values = dict(zip(series.timestamps, series.average, strict=True))
    assert values[base + 1] == pytest.approx(10 * 0.2 + 30 * 0.8)


def test_old_and_repeated_updates_are_dropped_and_counted(storage, rrd_dir):
    storage.update(Measurement("host", NOW - 10.0, {"w": 10.0}))
    storage.update(Measurement("host", NOW - 10.0, {"w": 11.0}))  # same timestamp
    storage.update(Measurement("host", NOW - 20.0, {"w": 12.0}))  # older
    assert storage.stats["dropped_old"] == 2
    assert storage.stats["updated"] == 1
    # After a restart the file itself says what is old; still no exception.
    again = RrdStorage(rrd_dir)
    assert again.update(Measurement("host", NOW - 15.0, {"w": 13.0})) == 0
    assert again.stats["dropped_old"] == 1
    assert again.update(Measurement("host", NOW - 5.0, {"w": 13.0})) == 1


def test_min_and_max_are_real_extremes_not_averages(storage):
    start = NOW - NOW % 10 - 600  # a 10 s row of the hour archive, well in the past
    values = [10.0, 90.0, 20.0, 80.0, 30.0, 70.0, 40.0, 60.0, 50.0, 50.0]
    storage.update(Measurement("host", float(start), {"w": 0.0}))
    for second, value in enumerate(values, start=1):
        storage.update(Measurement("host", float(start + second), {"w": value}))
    series = storage.fetch("host", "w", PERIODS["hour"], end=start + 100)
    row = series.timestamps.index(start + 10)
    assert series.step == 10
    assert series.average[row] == pytest.approx(sum(values) / 10)
    assert series.minimum[row] == pytest.approx(10.0)
    assert series.maximum[row] == pytest.approx(90.0)


def test_archives_cover_every_period_with_three_consolidations(storage):
    storage.update(Measurement("host", NOW - 5.0, {"w": 1.0}))
    info = rrdtool.info(str(storage.path("host", "w")))
    assert info["step"] == 1
    rras = {
        (info[f"rra[{i}].cf"], info[f"rra[{i}].pdp_per_row"] * info[f"rra[{i}].rows"])
        for i in range(len(archive_definitions()))
    }
    for period in PERIODS.values():
        for cf in ("AVERAGE", "MIN", "MAX"):
            assert any(name == cf and seconds >= period.seconds for name, seconds in rras), (
                period.name,
                cf,
            )


def test_every_meter_gets_its_own_file(storage):
    storage.update(Measurement("s", NOW - 5.0, {"up": 1.0, "bitrate": 3e6, "fps": 30.0}))
    assert storage.meters("s") == ["bitrate", "fps", "up"]
    series = storage.fetch("s", "bitrate", PERIODS["minute"], end=NOW)
    assert 3e6 in series.average


def test_a_file_in_place_of_the_directory_is_a_storage_error(tmp_path):
    (tmp_path / "rrd").write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create"):
        RrdStorage(tmp_path / "rrd" / "sub")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("unix:/run/kwapi/r.sock", "/run/kwapi/r.sock"),
        ("/run/r.sock", "/run/r.sock"),
        ("127.0.0.1:4000", ("127.0.0.1", 4000)),
        ("cache.example", ("cache.example", 42217)),
        ("[::1]:4000", ("::1", 4000)),
    ],
)
def test_daemon_addresses(address, expected):
    assert parse_daemon_address(address)[1] == expected
