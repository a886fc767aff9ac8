"""kwapi-rrd as a real process fed by a real publisher over ipc://."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
import rrdtool

from kwapi.bus.protocol import Measurement
from kwapi.bus.publisher import Publisher
from kwapi.bus.signing import Signer
from kwapi.plugins.rrd.storage import probe_key
from tests.helpers import SECRET, free_tcp_port, run_command, wait_for, write_config
from tests.plugins.rrd.pngs import png_size


def rrd_conf(directory, endpoint, port, rrd_dir, extra=""):
    """kwapi-rrd's configuration file; *extra* holds more [DEFAULT] lines."""
    lines = [
        "[DEFAULT]",
        f"probes_endpoint = {endpoint}",
        f"driver_metering_secret = {SECRET}",
        f"rrd_dir = {rrd_dir}",
        "rrd_host = 127.0.0.1",
        f"rrd_port = {port}",
        "refresh_interval = 2",
        extra,
    ]
    return write_config(directory, "rrd.conf", "\n".join(lines) + "\n")


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


class Feeder:
    """A real signed publisher that sends one measurement per probe per call."""

    def __init__(self, endpoint: str, probes: dict[str, float]) -> None:
        self.publisher = Publisher(endpoint, Signer(SECRET))
        self.probes = probes
        self.last = 0.0

    def tick(self) -> float:
        # Strictly increasing timestamps, whatever the wall clock's resolution.
        self.last = max(time.time(), self.last + 0.001)
        for probe, watts in self.probes.items():
            self.publisher.publish(Measurement(probe, self.last, {"w": watts}))
        return self.last

    def close(self) -> None:
        self.publisher.close()


@pytest.fixture
def feeder(tmpdir_short):
    feeders = []

    def make(probes):
        feeder = Feeder(f"ipc://{tmpdir_short}/bus", probes)
        feeders.append(feeder)
        return feeder

    yield make
    for feeder in feeders:
        feeder.close()


@pytest.mark.slow
def test_daemon_records_serves_and_flushes_on_sigterm(
    tmpdir_short, daemon, feeder, rrd_dir, rrdcached
):
    port = free_tcp_port()
    conf = rrd_conf(
        tmpdir_short,
        f"ipc://{tmpdir_short}/bus",
        port,
        rrd_dir,
        extra=f"rrdcached_address = {rrdcached.address}",
    )
    bus = feeder({"node-1": 150.0, "rack:pdu@2": 75.0})
    process = daemon("kwapi-rrd", "--config-file", str(conf))
    base = f"http://127.0.0.1:{port}"

    def recorded() -> bool:
        bus.tick()  # keep publishing until the subscriber has joined and written
        return get(f"{base}/probe/rack:pdu@2/")[0] == 200 and get(f"{base}/probe/node-1/")[0] == 200

    def averages() -> list:
        bus.tick()
        status, body = get(f"{base}/data/minute/node-1/")
        assert status == 200, body
        return json.loads(body)["meters"]["w"]["average"]

    wait_for(recorded, 20, "kwapi-rrd to know both probes")
    status, body = get(f"{base}/")
    assert status == 200 and b'href="/probe/rack:pdu@2/"' in body
    # A probe is known as soon as its first measurement arrives; its first
    # point shows once the batched update has reached rrdcached.
    wait_for(lambda: 150.0 in averages(), 20, "node-1's 150 W in the minute series")
    assert set(averages()) <= {None, 150.0}
    status, body = get(f"{base}/graph/minute/")
    assert status == 200 and png_size(body)[0] > 500

    last = bus.tick()
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


def test_daemon_restarts_on_the_same_files(tmpdir_short, daemon, feeder, rrd_dir):
    port = free_tcp_port()
    conf = rrd_conf(tmpdir_short, f"ipc://{tmpdir_short}/bus", port, rrd_dir)
    bus = feeder({"a:b@c": 10.0})
    first = daemon("kwapi-rrd", "--config-file", str(conf))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: bus.tick() and get(f"{base}/probe/a:b@c/")[0] == 200, 20, "a record")
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
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = rrd_conf(tmpdir_short, f"ipc://{tmpdir_short}/bus", port, rrd_dir)
        result = run_command("kwapi-rrd", "--config-file", str(conf))
    assert result.returncode == 2
    assert "rrd_port" in result.stderr and "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr
