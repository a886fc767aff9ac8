"""kwapi-rrd as a real process fed by a real publisher over ipc://."""

from __future__ import annotations

import json
import math
import signal

import pytest
import rrdtool

from kwapi.plugins.rrd.storage import probe_key
from tests.harness.configs import rrd_conf
from tests.harness.http import get
from tests.harness.processes import busy_tcp_port, free_tcp_port, run_command, wait_for
from tests.plugins.rrd.pngs import png_size


@pytest.mark.slow
def test_daemon_records_serves_and_flushes_on_sigterm(
    tmpdir_short, daemon, feeds, rrd_dir, rrdcached
):
    port = free_tcp_port()
    conf = rrd_conf(
        tmpdir_short,
        f"ipc://{tmpdir_short}/bus",
        port,
        rrd_dir,
        extra=f"rrdcached_address = {rrdcached.address}",
    )
    bus = feeds(f"ipc://{tmpdir_short}/bus", {"node-1": 150.0, "rack:pdu@2": 75.0})
    process = daemon("kwapi-rrd", "--config-file", str(conf))
    base = f"http://127.0.0.1:{port}"

    def recorded() -> bool:
        bus.send()  # keep publishing until the subscriber has joined and written
        return get(f"{base}/probe/rack:pdu@2/")[0] == 200 and get(f"{base}/probe/node-1/")[0] == 200

    def averages() -> list:
        bus.send()
        status, body = get(f"{base}/data/minute/node-1/")
        assert status == 200, body
        return json.loads(body)["meters"]["w"]["average"]

    wait_for(recorded, 20, "kwapi-rrd to know both probes")
    status, body = get(f"{base}/")
    assert status == 200 and b'href="/probe/rack:pdu@2/"' in body

    # A probe is known as soon as its first measurement arrives; its first
    # point shows once the batched update has reached rrdcached.
    # rrdtool averages each step over the fractional times of the updates: a
    # constant 150 W comes back within a rounding of 150 (150.00000000000003).
    def near_150(value: float | None) -> bool:
        return value is not None and math.isclose(value, 150.0, rel_tol=1e-12)

    wait_for(lambda: any(map(near_150, averages())), 20, "node-1's 150 W in the minute series")
    assert all(value is None or near_150(value) for value in averages())
    status, body = get(f"{base}/graph/minute/")
    assert status == 200 and png_size(body)[0] > 500

    last = bus.send()
    wait_for(lambda: rrdcached.stats()["UpdatesReceived"] >= 4, 10, "updates in rrdcached")
    path = rrd_dir / probe_key("node-1") / "w.rrd"
    wait_for(
        lambda: rrdtool.last(str(path), "--daemon", rrdcached.address) >= int(last),
        10,
        "the last update to reach rrdcached",
    )
    assert process.stop(timeout=15) == 0
    # On SIGTERM the daemon asked rrdcached to flush: the file on disk is current.
    assert rrdtool.last(str(path)) >= int(last)
    output = process.output()
    assert "Traceback" not in output
    assert "stopped:" in output


def test_daemon_restarts_on_the_same_files(tmpdir_short, daemon, feeds, rrd_dir):
    port = free_tcp_port()
    conf = rrd_conf(tmpdir_short, f"ipc://{tmpdir_short}/bus", port, rrd_dir)
    bus = feeds(f"ipc://{tmpdir_short}/bus", {"a:b@c": 10.0})
    first = daemon("kwapi-rrd", "--config-file", str(conf))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: bus.send() and get(f"{base}/probe/a:b@c/")[0] == 200, 20, "a record")
    first.signal(signal.SIGINT)
    assert first.process.wait(15) == 0
    second = daemon("kwapi-rrd", "--config-file", str(conf))
    # Known at once from the files, before any new measurement.
    wait_for(lambda: get(f"{base}/probe/a:b@c/")[0] == 200, 20, "the restarted server")
    assert second.stop(timeout=15) == 0


@pytest.mark.parametrize(
    ("port", "extra", "words"),
    [
        (None, "rrdcached_address = unix:/nonexistent/rrdcached.sock", "rrdcached_address"),
        (None, "hue = 999", "hue"),
        ("0x", "", "rrd_port"),
        (None, "signature_checking = true\n        driver_metering_secret =", "secret"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(tmpdir_short, rrd_dir, port, extra, words):
    endpoint = f"ipc://{tmpdir_short}/bus"
    conf = rrd_conf(tmpdir_short, endpoint, port or free_tcp_port(), rrd_dir, extra)
    result = run_command("kwapi-rrd", "--config-file", str(conf))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kwapi-rrd: error:")
    assert words in lines[0]
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_configuration_error(tmpdir_short, rrd_dir):
    with busy_tcp_port() as port:
        conf = rrd_conf(tmpdir_short, f"ipc://{tmpdir_short}/bus", port, rrd_dir)
        result = run_command("kwapi-rrd", "--config-file", str(conf))
    assert result.returncode == 2
    assert "rrd_port" in result.stderr and "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr
