"""The state file: round trip, atomic saves, corrupt or unreadable files."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import resource
import signal

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.plugins.api.collector import Collector, ProbeRecord
from kwapi.plugins.api.state import PeriodicSaver, StateStore
from tests.harness.processes import wait_for

T0 = 1_700_000_000.0


def filled_collector() -> Collector:
    c = Collector(max_gap=10.0, clock=lambda: T0 + 100)
    c.add(Measurement("node-1", T0, {"w": 100.0}))
    c.add(Measurement("node-1", T0 + 5, {"w": 200.0, "temperature_c": 40.5}))
    c.add(Measurement("node-1", T0 + 50, {"w": 200.0}))  # a gap
    c.add(Measurement("gpu:0@host", T0 + 1, {"utilization": 0.5}))
    return c


def test_round_trip_keeps_every_field(tmp_path):
    store = StateStore(str(tmp_path / "state.json"))
    before = filled_collector()
    assert store.save(before.records()) == 2
    loaded = StateStore(str(tmp_path / "state.json")).load()
    assert sorted(loaded, key=lambda r: r.probe_id) == sorted(
        before.records(), key=lambda r: r.probe_id
    )
    node = next(r for r in loaded if r.probe_id == "node-1")
    assert node.gaps == 1
    assert node.power_timestamp == T0 + 50
    assert node.kwh == pytest.approx(150.0 * 5 / 3.6e6)


def test_loaded_state_continues_the_counter(tmp_path):
    store = StateStore(str(tmp_path / "state.json"))
    store.save(filled_collector().records())
    c = Collector(max_gap=10.0, clock=lambda: T0 + 100, records=store.load())
    c.add(Measurement("node-1", T0 + 60, {"w": 200.0}))
    assert c.get("node-1").kwh == pytest.approx((150.0 * 5 + 200.0 * 10) / 3.6e6)


def test_missing_file_is_an_empty_state(tmp_path):
    assert StateStore(str(tmp_path / "none.json")).load() == []


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "state.json"
    store = StateStore(str(path))
    store.save(filled_collector().records())
    store.save(filled_collector().records())
    assert os.listdir(path.parent) == ["state.json"]
    assert json.loads(path.read_text())["version"] == 1


def test_a_save_that_fails_midway_keeps_the_previous_state(tmp_path):
    # The kernel refuses to grow any file past 4 kB (RLIMIT_FSIZE, root included):
    # the temporary file gets its first 4 kB, then the write fails with EFBIG.
    path = tmp_path / "state.json"
    store = StateStore(str(path))
    store.save(filled_collector().records())
    previous = path.read_bytes()
    big = Collector(max_gap=10.0, clock=lambda: T0)
    for probe in range(500):
        big.add(Measurement(f"node-{probe}", T0, {"w": 100.0, "temperature_c": 40.5}))
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG rather than death
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        with pytest.raises(OSError) as failed:
            store.save(big.records())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert failed.value.errno == errno.EFBIG
    assert path.read_bytes() == previous
    assert os.listdir(tmp_path) == ["state.json"]
    assert {r.probe_id for r in store.load()} == {"node-1", "gpu:0@host"}


def test_a_number_json_cannot_hold_fails_the_save_and_keeps_the_previous_state(tmp_path):
    path = tmp_path / "state.json"
    store = StateStore(str(path))
    store.save(filled_collector().records())
    previous = path.read_bytes()
    with pytest.raises(ValueError):
        store.save([ProbeRecord("p", T0, math.inf)])
    with pytest.raises(ValueError):
        store.save(filled_collector().records(), {"streams": {"hd": math.inf}})
    assert path.read_bytes() == previous
    assert os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize(
    "content, detail",
    [
        (b"{not json", "is corrupt"),
        (b'{"version": 1, "saved_at": 1, "probes": {"p": {"kwh": 1}}}', "timestamp"),
        (b'{"version": 2, "saved_at": 1, "probes": {}}', "version"),
        (
            b'{"version": 1, "saved_at": 1, "probes": {"bad id!": {"timestamp": 1, "kwh": 0}}}',
            "invalid probe id",
        ),
        (
            b'{"version": 1, "saved_at": 1, "probes": {"p": {"timestamp": 1, "kwh": NaN}}}',
            "kwh",
        ),
        (b"\xff\xfe\x00", "is corrupt"),
        (b"", "is corrupt"),
    ],
)
def test_corrupt_file_is_reported_and_moved_aside(tmp_path, caplog, content, detail):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="kwapi.plugins.api.state"):
        assert StateStore(str(path)).load() == []
    assert not path.exists()
    aside = [name for name in os.listdir(tmp_path) if name.startswith("state.json.corrupt-")]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_bytes() == content
    assert detail in caplog.text
    assert "moved to" in caplog.text


def test_unreadable_file_is_reported_and_moved_aside(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.mkdir()  # a directory where the file should be cannot be read
    with caplog.at_level(logging.ERROR, logger="kwapi.plugins.api.state"):
        assert StateStore(str(path)).load() == []
    assert "cannot be read" in caplog.text
    assert not path.exists()


def test_periodic_saver_saves_and_survives_failures(tmp_path, caplog):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory is needed")
    bad = StateStore(str(blocker / "state.json"))
    collector = filled_collector()
    saver = PeriodicSaver(bad, collector.records, 0.05)
    with caplog.at_level(logging.ERROR, logger="kwapi.plugins.api.state"):
        assert saver.save_now() is False
        assert saver.save_now() is False
    assert caplog.text.count("cannot save state") == 1  # reported once, not at every try

    good = StateStore(str(tmp_path / "state.json"))
    saver = PeriodicSaver(good, collector.records, 0.05)
    saver.start()
    try:
        wait_for(lambda: saver.saves >= 2, 10, "two periodic saves")
    finally:
        saver.stop()
    assert not saver.is_alive()
    assert {r.probe_id for r in good.load()} == {"node-1", "gpu:0@host"}


def test_energy_per_stream_is_saved_beside_the_records(tmp_path):
    streams = {
        "hosts": {
            "enc": {
                "power_timestamp": T0 + 10,
                "w": 120.0,
                "streaming_w": 120.0,
                "kwh": 0.002,
                "gaps": 1,
                "stream_w": {"hd": 96.0, "sd": 24.0},
                "history": [[T0, 0.0], [T0 + 10, 0.002]],
            }
        },
        "streams": {"hd": 0.0016, "sd": 0.0004},
    }
    store = StateStore(str(tmp_path / "state.json"))
    store.save(filled_collector().records(), streams)
    again = StateStore(str(tmp_path / "state.json"))
    assert len(again.load()) == 2
    loaded = json.loads(json.dumps(again.streams))
    assert loaded == streams
    # A state file of before (no "streams") still loads, with no energy per stream.
    store.save(filled_collector().records())
    assert len(again.load()) == 2 and again.streams is None


def test_corrupt_energy_per_stream_sets_the_file_aside(tmp_path, caplog):
    path = tmp_path / "state.json"
    StateStore(str(path)).save(filled_collector().records(), {"streams": {"bad id": 1.0}})
    with caplog.at_level(logging.ERROR):
        assert StateStore(str(path)).load() == []
    assert "is corrupt" in caplog.text
