"""systemd's notify protocol: READY, WATCHDOG and STOPPING from each real daemon.

Each daemon runs under a fake ``$NOTIFY_SOCKET``: a datagram socket bound
here, as systemd binds its own, with a 2 s watchdog (``WATCHDOG_USEC``).
The daemon must say READY=1 once it serves, feed the watchdog at least
every second while its work goes on (and stop feeding when it is stuck),
survive SIGHUP, and say STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kwapi import service, systemd
from kwapi.drivers.aio import EventLoopThread
from kwapi.drivers.manager import DriverManager
from tests.harness.clock import Clock
from tests.harness.configs import api_config, drivers_conf, forwarder_conf, rrd_conf
from tests.harness.http import get
from tests.harness.processes import VENV_BIN, free_tcp_port, stop_process, wait_for

EXTRA_DRIVERS = str(Path(__file__).parent / "fixtures" / "extra_drivers")
WATCHDOG_USEC = 2_000_000
#: The longest gap allowed between two WATCHDOG=1: half the interval, as
#: sd_watchdog_enabled(3) asks, plus slack for a machine busy with other tests.
LONGEST_GAP = WATCHDOG_USEC / 1e6 / 2 + 0.5


class NotifySocket:
    """A datagram socket standing in for systemd's; what arrives is kept with its time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self.received: list[tuple[float, str]] = []

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a daemon under this socket, with a 2 s watchdog."""
        return {"NOTIFY_SOCKET": self.address, "WATCHDOG_USEC": str(WATCHDOG_USEC), **extra}

    def pump(self, timeout: float) -> None:
        """Take in what arrives within *timeout* seconds (at least what is queued)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.socket], [], [], left)[0]:
                return
            message = self.socket.recv(4096).decode()
            now = time.monotonic()
            self.received.extend((now, line) for line in message.splitlines())

    def times(self, assignment: str, after: float = 0.0) -> list[float]:
        """When *assignment* arrived, after monotonic time *after*."""
        return [at for at, line in self.received if line == assignment and at > after]

    def wait(self, assignment: str, timeout: float = 20.0, after: float = 0.0) -> float:
        """Wait until *assignment* arrives (after *after*); return when it did."""
        deadline = time.monotonic() + timeout
        while not self.times(assignment, after):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {assignment} within {timeout} s: {self.received}")
            self.pump(min(left, 0.2))
        return self.times(assignment, after)[0]

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def notify_socket(tmpdir_short) -> Iterator[NotifySocket]:
    sock = NotifySocket(f"{tmpdir_short}/notify")
    yield sock
    sock.close()


def assert_feeds(sock: NotifySocket, seconds: float = 3.0) -> list[float]:
    """Listen *seconds*; the watchdog must be fed all along, never more than LONGEST_GAP apart."""
    start = time.monotonic()
    sock.pump(seconds)
    end = time.monotonic()
    feeds = sock.times(systemd.WATCHDOG, start)
    assert len(feeds) >= seconds / LONGEST_GAP - 1, (len(feeds), sock.received[-10:])
    gaps = [b - a for a, b in zip([start, *feeds], [*feeds, end], strict=True)]
    assert max(gaps) < LONGEST_GAP, gaps
    return feeds


def hup_then_term(sock: NotifySocket, process: subprocess.Popen) -> None:
    """SIGHUP must leave the daemon running and fed; SIGTERM must say STOPPING=1, exit 0."""
    process.send_signal(signal.SIGHUP)
    assert_feeds(sock, 1.5)
    assert process.poll() is None, "SIGHUP stopped the daemon"
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    sock.wait(systemd.STOPPING, 10, after=sent)
    assert process.wait(15) == 0
    assert sock.received[0][1] == systemd.READY, sock.received[:3]
    assert len(sock.times(systemd.READY)) == 1


# -- the protocol, in this process ----------------------------------------------


def test_notify_does_nothing_without_notify_socket():
    assert systemd.notify(systemd.READY, environ={}) is False
    assert systemd.socket_address({"NOTIFY_SOCKET": ""}) is None
    assert systemd.socket_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_notify_sends_one_datagram_to_a_path_socket(notify_socket):
    env = {"NOTIFY_SOCKET": notify_socket.address}
    assert systemd.notify(systemd.READY, "STATUS=serving", environ=env) is True
    notify_socket.pump(1)
    assert [line for _, line in notify_socket.received] == ["READY=1", "STATUS=serving"]


def test_notify_speaks_the_abstract_namespace():
    sock = NotifySocket(f"@kwapi-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        assert systemd.notify(systemd.STOPPING, environ={"NOTIFY_SOCKET": sock.address})
        sock.pump(1)
        assert [line for _, line in sock.received] == ["STOPPING=1"]
    finally:
        sock.close()


def test_a_socket_nobody_listens_on_is_not_an_error(tmpdir_short):
    env = {"NOTIFY_SOCKET": f"{tmpdir_short}/nobody"}
    assert systemd.notify(systemd.WATCHDOG, environ=env) is False


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "2000000"}, 2.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, 2.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4243"}, None),  # another process'
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_reads_the_environment_as_sd_watchdog_enabled(environ, expected):
    assert systemd.watchdog_interval(environ, pid=4242) == expected


def test_watchdog_feeds_once_per_period_and_only_while_healthy(notify_socket, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    clock, healthy = Clock(100.0), [True]
    watchdog = systemd.Watchdog(2.0, lambda: healthy[0], clock)
    assert watchdog.enabled and watchdog.period == 0.5
    assert watchdog.feed() is True
    assert watchdog.feed() is False  # not due yet
    clock.now += 0.5
    healthy[0] = False
    with caplog.at_level(logging.WARNING, "kwapi.systemd"):
        assert watchdog.feed() is False
        clock.now += 0.5
        assert watchdog.feed() is False
        healthy[0] = True
        assert watchdog.feed() is True
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]  # once each way
    notify_socket.pump(1)
    assert [line for _, line in notify_socket.received] == ["WATCHDOG=1", "WATCHDOG=1"]


def test_a_health_check_that_raises_is_unhealthy(notify_socket, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    watchdog = systemd.Watchdog(2.0, lambda: 1 / 0, Clock(100.0))
    assert watchdog.feed() is False


def test_without_watchdog_nothing_is_fed_and_loops_wait_as_they_wish():
    watchdog = systemd.Watchdog(None)
    assert not watchdog.enabled and watchdog.period is None and not watchdog.feed()
    heartbeat = service.Heartbeat(watchdog=watchdog)
    assert heartbeat.longest_wait(0.3) == 0.3
    assert heartbeat.longest_wait(30) == service.LONGEST_TURN  # a SIGHUP is seen within it
    assert service.Heartbeat(watchdog=systemd.Watchdog(0.4)).longest_wait(30) == 0.1


def test_event_loop_responds_until_a_callback_blocks_it():
    loop_thread = EventLoopThread(name="test-loop")
    try:
        assert loop_thread.responds()  # nothing sent yet: sends the first ping
        wait_for(loop_thread.responds, 5, "the first ping to run")
        blocking, release = threading.Event(), threading.Event()
        loop_thread.loop.call_soon_threadsafe(lambda: (blocking.set(), release.wait(10)))
        assert blocking.wait(5)
        assert loop_thread.responds()  # the previous ping ran: sends one, now stuck
        assert not loop_thread.responds()
        assert not loop_thread.responds()  # and does not pile up pings
        release.set()
        wait_for(loop_thread.responds, 5, "the loop to run the ping once released")
    finally:
        release.set()
        loop_thread.loop.call_soon_threadsafe(loop_thread.loop.stop)
        loop_thread.thread.join(5)
    assert not loop_thread.responds()  # a loop that no longer runs
    loop_thread.loop.close()


class CountingHeartbeat:
    def __init__(self) -> None:
        self.turns = 0

    def longest_wait(self, wanted: float) -> float:
        return min(wanted, 0.02)

    def turn(self) -> None:
        self.turns += 1


def test_the_driver_manager_turns_the_heartbeat_between_its_checks():
    manager = DriverManager([], lambda measurement: None, check_interval=60)
    stop, heartbeat = threading.Event(), CountingHeartbeat()
    runner = threading.Thread(target=manager.run, args=(stop, heartbeat))
    runner.start()
    try:
        wait_for(lambda: heartbeat.turns >= 5, 5, "heartbeat turns")
    finally:
        stop.set()
        runner.join(5)
    assert not runner.is_alive()


# -- each real daemon ----------------------------------------------------------


@pytest.mark.slow
def test_kwapi_forwarder(tmpdir_short, daemon, notify_socket):
    conf = forwarder_conf(
        tmpdir_short, [f"ipc://{tmpdir_short}/drivers"], f"ipc://{tmpdir_short}/forwarder"
    )
    process = daemon("kwapi-forwarder", "--config-file", str(conf), env=notify_socket.env())
    notify_socket.wait(systemd.READY)
    assert "relaying" in process.output()  # ready once bound and relaying
    assert_feeds(notify_socket)
    hup_then_term(notify_socket, process.process)


@pytest.mark.slow
def test_watchdog_pid_names_the_daemon_itself(tmpdir_short, notify_socket):
    # As systemd does: WATCHDOG_PID is the daemon's pid (the shell's $$, kept by exec).
    conf = forwarder_conf(
        tmpdir_short, [f"ipc://{tmpdir_short}/drivers"], f"ipc://{tmpdir_short}/forwarder"
    )
    command = f'WATCHDOG_PID=$$ exec "{VENV_BIN}/kwapi-forwarder" --config-file "{conf}"'
    process = subprocess.Popen(
        ["sh", "-c", command],
        env={**os.environ, **notify_socket.env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        notify_socket.wait(systemd.READY)
        assert_feeds(notify_socket, 2)
    finally:
        assert stop_process(process) == 0


@pytest.mark.slow
def test_kwapi_drivers(tmpdir_short, daemon, notify_socket, bus_client):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    sections = "[Rack]\ndriver = Dummy\nprobes = ['node-1']\nparameters = {'interval': 0.1}\n"
    conf = drivers_conf(tmpdir_short, endpoint, sections, "check_drivers_interval = 30\n")
    process = daemon("kwapi-drivers", "--config-file", str(conf), env=notify_socket.env())
    notify_socket.wait(systemd.READY)
    # Ready once publishing: a subscriber gets measurements.
    assert bus_client(endpoint).receive(10).probe_id == "node-1"
    # Fed from the manager's loop, though it checks its drivers only every 30 s.
    assert_feeds(notify_socket)
    hup_then_term(notify_socket, process.process)


@pytest.mark.slow
def test_kwapi_drivers_starves_the_watchdog_when_its_event_loop_is_stuck(
    tmpdir_short, daemon, notify_socket, bus_client
):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    sections = """
        [Stuck]
        driver = LoopBlocker
        probes = ['stuck']
        parameters = {'interval': 3}

        [Rack]
        driver = Dummy
        probes = ['node-1']
        parameters = {'interval': 0.1}
        """
    conf = drivers_conf(tmpdir_short, endpoint, sections)
    env = {**notify_socket.env(), "PYTHONPATH": EXTRA_DRIVERS}
    process = daemon("kwapi-drivers", "--config-file", str(conf), env=env)
    ready = notify_socket.wait(systemd.READY)
    # Fed while the event loop answers (its first reading, then 3 s of waiting).
    notify_socket.wait(systemd.WATCHDOG, 10, after=ready)
    process.wait_output("blocking the event loop", 15)
    # A ping sent just before the loop blocked may still earn one feed; then none.
    notify_socket.pump(1.5)
    quiet_from = time.monotonic()
    notify_socket.pump(3)
    assert notify_socket.times(systemd.WATCHDOG, quiet_from) == []
    assert process.process.poll() is None  # alive, only stuck
    client = bus_client(endpoint, probes=("node-1",))
    assert client.receive(10).probe_id == "node-1"  # the thread drivers still publish
    assert "no longer feeding systemd's watchdog" in process.output()


@pytest.mark.slow
def test_kwapi_api(tmpdir_short, daemon, notify_socket):
    port = free_tcp_port()
    conf = api_config(tmpdir_short, port)
    process = daemon("kwapi-api", "--config-file", str(conf), env=notify_socket.env())
    notify_socket.wait(systemd.READY)
    # Ready means serving: /healthz answers at once, without retries.
    assert get(f"http://127.0.0.1:{port}/healthz", timeout=3)[0] == 200
    assert_feeds(notify_socket)
    hup_then_term(notify_socket, process.process)
    assert "stopped; state of" in process.output()


@pytest.mark.slow
def test_kwapi_rrd(tmpdir_short, daemon, notify_socket):
    pytest.importorskip("rrdtool")
    port = free_tcp_port()
    rrd_dir = Path(tmpdir_short) / "rrd"
    rrd_dir.mkdir()
    conf = rrd_conf(tmpdir_short, f"ipc://{tmpdir_short}/bus", port, rrd_dir)
    process = daemon("kwapi-rrd", "--config-file", str(conf), env=notify_socket.env())
    notify_socket.wait(systemd.READY)
    assert get(f"http://127.0.0.1:{port}/", timeout=3)[0] == 200
    assert_feeds(notify_socket)
    hup_then_term(notify_socket, process.process)


@pytest.mark.slow
def test_without_notify_socket_a_daemon_runs_as_before(tmpdir_short, daemon):
    port = free_tcp_port()
    conf = api_config(tmpdir_short, port)
    env = {"NOTIFY_SOCKET": "", "WATCHDOG_USEC": ""}
    process = daemon("kwapi-api", "--config-file", str(conf), env=env)
    wait_for(
        lambda: get(f"http://127.0.0.1:{port}/healthz", timeout=1)[0] == 200,
        20,
        "kwapi-api to answer",
    )
    assert process.stop() == 0
