"""Faults: daemons and devices killed with SIGKILL, then brought back, on the real chain.

kwapi-drivers (Dummy, and a Watts up? simulator) -> kwapi-forwarder ->
kwapi-api and kwapi-rrd, as separate processes on ipc:// sockets.  Every
wait is bounded; a restarted daemon is the same command on the same files.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.drivers.simulators.wattsup_meter import WattsupMeter
from tests.harness.daemons import (
    DUMMY,
    error_lines,
    no_traceback,
    start_api,
    start_dummy_drivers,
    start_forwarder,
    start_rrd,
)
from tests.harness.http import get, get_json
from tests.harness.processes import free_tcp_port, wait_for
from tests.harness.rrd import (
    Rrdcached,
    assert_rrd_files_sound,
    flush,
    rrd_last,
    values_between,
)

pytestmark = pytest.mark.slow

MAX_WATTS = 20.0  # the highest power of DUMMY


def test_forwarder_kill_9_chain_resumes_without_restarting_the_others(daemon, tmpdir_short):
    drivers_ep, forwarder_ep = f"ipc://{tmpdir_short}/drv", f"ipc://{tmpdir_short}/fw"
    rrd_dir = Path(tmpdir_short) / "rrd"
    drivers = start_dummy_drivers(daemon, tmpdir_short, drivers_ep)
    forwarder = start_forwarder(daemon, tmpdir_short, "fw", [drivers_ep], forwarder_ep)
    api = start_api(daemon, tmpdir_short, probes_endpoint=forwarder_ep)
    rrd, _ = start_rrd(daemon, tmpdir_short, forwarder_ep, rrd_dir, free_tcp_port())
    wait_for(lambda: api.timestamp() > 0, 20, "kwapi-api to hear node-1")
    wait_for(lambda: rrd_last(rrd_dir) > 0, 20, "kwapi-rrd to record node-1")

    forwarder.kill()
    start_forwarder(daemon, tmpdir_short, "fw", [drivers_ep], forwarder_ep)
    restarted_at = time.time()

    # The plugins' SUB sockets and the forwarder's own reconnect: fresh data in both.
    wait_for(lambda: api.timestamp() > restarted_at, 20, "fresh data in kwapi-api")
    wait_for(lambda: rrd_last(rrd_dir) > restarted_at, 20, "fresh data in kwapi-rrd")
    for process in (drivers, rrd, api.process):
        assert process.process.poll() is None, f"{process.command} stopped"
    assert "restart" not in drivers.output()
    no_traceback(drivers, rrd, api.process)


def test_api_kill_9_energy_continues_from_the_state_file(daemon, tmpdir_short):
    interval = 1.0
    endpoint = f"ipc://{tmpdir_short}/drv"
    start_dummy_drivers(daemon, tmpdir_short, endpoint)
    api = start_api(daemon, tmpdir_short, probes_endpoint=endpoint, state_save_interval=interval)

    def saved_kwh() -> float:
        try:
            state = json.loads(api.state_file.read_text())
        except (OSError, ValueError):
            return 0.0
        return state["probes"].get("node-1", {}).get("kwh", 0.0)

    # Run long enough for a few saves with energy in them.
    wait_for(lambda: saved_kwh() > 0, 20, "a save with node-1's energy")
    wait_for(lambda: api.accepted() > 40, 20, "some readings")
    before = get_json(api.url + "/v1/probes/node-1/")["node-1"]
    api.process.kill()
    killed_at = time.time()

    again = start_api(
        daemon, tmpdir_short, probes_endpoint=endpoint, state_save_interval=interval, port=api.port
    )
    restored = get_json(again.url + "/v1/probes/node-1/")["node-1"]
    # What the state file can lose: at most state_save_interval of energy at the
    # highest power (plus scheduling slack on a loaded machine).
    slack = 1.5
    most_lost = MAX_WATTS * (interval + slack) / 3.6e6
    # (A save may fall between the read and the kill: allow that much more.)
    assert restored["kwh"] >= before["kwh"] - most_lost
    # The new process may already have integrated live readings (and the gap
    # before them): never more than the highest power over the time between the
    # two readings the counters stand at.
    gained_at_most = MAX_WATTS * max(restored["timestamp"] - before["timestamp"], 0) / 3.6e6
    assert restored["kwh"] <= before["kwh"] + gained_at_most * 1.001 + 1e-12
    # Then the counter goes on from there with the live readings: the gap is
    # integrated (it is shorter than max_gap), so nothing of the outage is lost.
    wait_for(lambda: again.timestamp() > killed_at + 1, 20, "fresh readings")
    after = get_json(again.url + "/v1/probes/node-1/")["node-1"]
    assert after["kwh"] > before["kwh"]
    elapsed = after["timestamp"] - before["timestamp"]
    assert after["kwh"] - before["kwh"] <= MAX_WATTS * elapsed / 3.6e6 * 1.001
    assert json.loads(again.state_file.read_text())["version"] == 1
    no_traceback(again.process)


def test_rrd_kill_9_files_readable_and_history_kept(daemon, tmpdir_short):
    endpoint = f"ipc://{tmpdir_short}/drv"
    rrd_dir = Path(tmpdir_short) / "rrd"
    port = free_tcp_port()
    start_dummy_drivers(daemon, tmpdir_short, endpoint)
    rrd, base = start_rrd(daemon, tmpdir_short, endpoint, rrd_dir, port)
    first = wait_for(lambda: rrd_last(rrd_dir), 20, "a first value")
    wait_for(lambda: rrd_last(rrd_dir) >= first + 3, 20, "three seconds of history")
    rrd.kill()  # in the middle of a stream of writes
    # The row of the last second is completed by the next value: compare the ones before.
    last_before = rrd_last(rrd_dir)
    history = values_between(rrd_dir, first, last_before - 1)
    assert len(history) >= 3 and all(10 <= w <= 20 for w in history)
    assert assert_rrd_files_sound(rrd_dir) == 2

    restarted, base = start_rrd(daemon, tmpdir_short, endpoint, rrd_dir, port)
    # Known again from the files, with the history before the kill...
    assert get(base + "/probe/node-1/")[0] == 200
    assert values_between(rrd_dir, first, last_before - 1) == history
    # ...and new values appended after it.
    wait_for(lambda: rrd_last(rrd_dir) > last_before + 1, 20, "new values after the restart")
    status, body = get(f"{base}/data/minute/node-1/")
    assert status == 200
    assert any(v is not None for v in json.loads(body)["meters"]["w"]["average"])
    assert assert_rrd_files_sound(rrd_dir) == 2
    no_traceback(restarted)


def test_rrdcached_kill_9_updates_resume_nothing_corrupt(daemon, tmpdir_short):
    endpoint = f"ipc://{tmpdir_short}/drv"
    rrd_dir = Path(tmpdir_short) / "rrd"
    rrd_dir.mkdir()
    cached = Rrdcached(rrd_dir)
    directory = cached.directory
    try:
        start_dummy_drivers(daemon, tmpdir_short, endpoint)
        rrd, base = start_rrd(
            daemon,
            tmpdir_short,
            endpoint,
            rrd_dir,
            free_tcp_port(),
            extra=f"rrdcached_address = {cached.address}",
        )
        first = wait_for(lambda: rrd_last(rrd_dir, daemon=cached.address), 20, "a first value")
        wait_for(lambda: rrd_last(rrd_dir, daemon=cached.address) >= first + 2, 20, "some history")
        flush(rrd_dir, cached.address)  # this much is on disk
        flushed = rrd_last(rrd_dir) - 1  # the last row is completed by the next value
        history = values_between(rrd_dir, first, flushed)
        assert history

        cached.process.kill()
        cached.process.wait(10)
        killed_at = time.time()
        wait_for(
            lambda: any("rrdcached" in line for line in error_lines(rrd)),
            20,
            "kwapi-rrd to report it",
        )
        # Still serving what does not need rrdcached.
        assert get(base + "/probe/node-1/")[0] == 200
        # What needs it says so (503, not a 500 error), with when to try again.
        status, body = get(f"{base}/data/minute/node-1/")
        assert status == 503 and "rrdcached" in json.loads(body)["error"]
        status, body = get(f"{base}/rrd/node-1/")
        assert status == 503 and b"rrdcached" in body
        assert rrd.process.poll() is None

        cached = Rrdcached(rrd_dir, directory=directory)  # same socket, same journal
        wait_for(
            lambda: rrd_last(rrd_dir, daemon=cached.address) > killed_at + 1,
            30,
            "updates through the new rrdcached",
        )
        flush(rrd_dir, cached.address)
        # Files sound, the history flushed before the kill intact.
        assert assert_rrd_files_sound(rrd_dir) == 2
        assert values_between(rrd_dir, first, flushed) == history
        status, body = get(f"{base}/data/minute/node-1/")
        assert status == 200, body
        assert rrd.process.poll() is None
        no_traceback(rrd)
    finally:
        cached.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_one_dead_device_does_not_slow_the_other_wattmeters(daemon, tmpdir_short, bus_client):
    meter = WattsupMeter(Path(tmpdir_short) / "ttyWATTSUP", watts=42.0).start()
    try:
        endpoint = f"ipc://{tmpdir_short}/drv"
        body = DUMMY + (
            "\n[Bench]\ndriver = Wattsup\nprobes = ['bench-1']\n"
            f"parameters = {{'device': '{meter.link}', 'interval': 1, 'max_backoff': 1}}\n"
        )
        client = bus_client(endpoint)
        drivers = start_dummy_drivers(daemon, tmpdir_short, endpoint, body)

        def rates(count: int) -> dict[str, float]:
            """Readings per second of each probe, on the drivers' own timestamps."""
            seen: dict[str, list[float]] = {}
            for measurement in client.collect(count, timeout=30):
                seen.setdefault(measurement.probe_id, []).append(measurement.timestamp)
            return {
                probe: (len(stamps) - 1) / (stamps[-1] - stamps[0])
                for probe, stamps in seen.items()
                if len(stamps) > 2
            }

        wait_for(lambda: client.receive(20).probe_id == "bench-1", 30, "the Watts up? meter")
        before = rates(60)
        meter.unplug()  # the device dies: its port vanishes under the driver
        drivers.wait_output("wattmeter Bench: DeviceError", 20)
        after = rates(60)
        assert "bench-1" not in after
        for probe in ("node-1", "node-2"):
            assert after[probe] >= 0.8 * before[probe], (before, after)
            assert after[probe] >= 7  # about 10 a second
        meter.plug()  # a new meter on the same port: its thread picks it up again
        wait_for(lambda: client.receive(20).probe_id == "bench-1", 30, "the meter back")
        assert drivers.process.poll() is None
        no_traceback(drivers)
    finally:
        meter.stop()
