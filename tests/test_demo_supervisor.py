"""bin/kwapi-demo leaves nothing behind, however it ends, and runs once per folder.

Each test runs the real bin/kwapi-demo (the seven processes of `make run` and
its watchdog) on a folder and ports of its own (--run-dir, --log-dir, --port),
so that it can run beside a `make run`.  "Everything stopped" means: none of
the processes that the demo started (recorded by pid and start time from
/proc before the demo is stopped) still runs, and every port of the demo is
free again.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.processes import (
    free_tcp_port,
    free_udp_port,
    port_taken,
    short_tmpdir,
    wait_for,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("ffmpeg") and shutil.which("ffprobe")), reason="ffmpeg is not installed"
    ),
]

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "bin" / "kwapi-demo"
READY = "Press Ctrl-C to stop every daemon."
CHILDREN = (
    "demo-stream",
    "victoria-metrics",
    "kwapi-drivers",
    "kwapi-forwarder",
    "kwapi-rrd",
    "kwapi-api",
    "kwapi-history",
)
STOP_WITHIN = 30.0  # seconds: the daemons stop in one or two; a loaded machine is slower


def demo_port_names() -> list[str]:
    """NAME of every NAME_port (not 0) of etc/kwapi/demo/: the TCP ports the demo listens on."""
    names = set()
    for path in (ROOT / "etc" / "kwapi" / "demo").glob("*.conf"):
        text = path.read_text(encoding="utf-8")
        names.update(re.findall(r"^(\w+)_port\s*=\s*0*[1-9]", text, flags=re.MULTILINE))
    return sorted(names)


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of process *pid*, or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def children_of(pid: int) -> dict[int, int]:
    """The running children of *pid*, {pid: start time}, from /proc/<pid>/task/*/children."""
    found = {}
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in map(int, listing.read_text().split()):
                stat = proc_stat(child)
                if stat:
                    found[child] = stat[1]
    return found


def descendants(pid: int) -> dict[int, int]:
    """Every running descendant of *pid*, {pid: start time}."""
    found: dict[int, int] = {}
    queue = [pid]
    while queue:
        for child, start in children_of(queue.pop()).items():
            if child not in found:
                found[child] = start
                queue.append(child)
    return found


def running(known: dict[int, int]) -> list[int]:
    """Those of *known* still running: same start time, not a zombie."""
    alive = []
    for pid, start in known.items():
        stat = proc_stat(pid)
        if stat and stat[1] == start and stat[0] not in "ZXx":
            alive.append(pid)
    return alive


def default_signals() -> None:
    """preexec_fn: SIGINT and SIGHUP as a terminal would deliver them (not ignored,
    even if this test runs under nohup or as a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@dataclass
class Demo:
    """One bin/kwapi-demo, its output read from *fd* without threads (bounded waits)."""

    process: subprocess.Popen[bytes]
    argv: list[str]
    fd: int
    run_dir: Path
    log_dir: Path
    tcp_ports: list[int]
    output: bytes = b""
    children: dict[int, int] = field(default_factory=dict)  # its seven and its watchdog
    family: dict[int, int] = field(default_factory=dict)  # and their descendants

    def close_output(self) -> None:
        """Close our end of its output: the reader is gone."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def read_until(self, done: Callable[[str], bool], timeout: float) -> bool:
        """Read its output until done(output) or end of file; whether done within *timeout*."""
        deadline = time.monotonic() + timeout
        while not done(self.text()):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: a pty whose other side is gone
                chunk = b""
            if not chunk:
                return done(self.text())
            self.output += chunk
        return True

    def wait_ready(self) -> None:
        """Wait for its banner and every port listening; record every process it started."""
        assert self.read_until(lambda text: READY in text, 60), self.text()
        wait_for(lambda: all(map(port_taken, self.tcp_ports)), 60, "the demo's ports")
        assert self.process.poll() is None, self.text()
        self.children = children_of(self.process.pid)
        self.family = descendants(self.process.pid)
        names = re.findall(r"^started (\S+) \(pid (\d+)\)", self.text(), flags=re.MULTILINE)
        assert sorted(name for name, _ in names) == sorted(CHILDREN), self.text()
        # The seven children of `make run` and the watchdog.
        assert {int(pid) for _, pid in names} < set(self.children), (self.children, self.text())
        assert len(self.children) == len(CHILDREN) + 1, self.children

    def supervisor_log(self) -> str:
        path = self.log_dir / "kwapi-demo.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def assert_everything_stopped(self, within: float = STOP_WITHIN) -> None:
        """No process of the demo left and its ports free, within *within* seconds."""
        wait_for(
            lambda: not running(self.family) and not any(map(port_taken, self.tcp_ports)),
            within,
            "every process of the demo gone and its ports free",
        )


@pytest.fixture
def demo_factory() -> Iterator[Callable[..., Demo]]:
    """Start demos on a folder and free ports; whatever a test leaves is killed afterwards."""
    demos: list[Demo] = []
    folders: list[str] = []

    def start(*, terminal: bool = False, like: Demo | None = None) -> Demo:
        """A new demo; *like*: same folder and ports; *terminal*: output to a pty."""
        if like:
            argv, run_dir, log_dir, tcp_ports = (
                like.argv,
                like.run_dir,
                like.log_dir,
                like.tcp_ports,
            )
        else:
            folder = short_tmpdir()  # ipc:// paths must be short
            folders.append(folder)
            run_dir, log_dir = Path(folder) / "run", Path(folder) / "logs"
            ports = {name: free_tcp_port() for name in [*demo_port_names(), "store"]}
            tcp_ports = list(ports.values())
            ports["stream"] = free_udp_port()
            argv = [
                sys.executable,
                str(DEMO),
                f"--run-dir={run_dir}",
                f"--log-dir={log_dir}",
                *(f"--port={name}={port}" for name, port in ports.items()),
            ]
        if terminal:
            fd, output = pty.openpty()
        else:
            fd, output = os.pipe()
        process = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
            preexec_fn=default_signals,  # the test runs one thread
        )  # fmt: skip
        os.close(output)
        demo = Demo(process, argv, fd, run_dir, log_dir, tcp_ports)
        demos.append(demo)
        return demo

    yield start
    for demo in demos:
        if demo.process.poll() is None:
            demo.process.kill()
        demo.process.wait(10)
        for pid in running(demo.family):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        demo.close_output()
        print(f"----- output of {demo.argv} -----\n{demo.text()}")
        print(f"----- kwapi-demo.log -----\n{demo.supervisor_log()}")
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_a_stop_signal_stops_every_daemon(demo_factory, signum):
    demo = demo_factory()
    demo.wait_ready()
    demo.process.send_signal(signum)
    assert demo.process.wait(STOP_WITHIN * 2) == 0, demo.text()
    demo.read_until(lambda _text: False, 10)  # to end of file
    for name in CHILDREN:
        assert f"\n{name} stopped\n" in demo.text(), demo.text()
    demo.assert_everything_stopped()


def close_pipe(demo: Demo) -> None:
    """The reader of `make run | tee` exits."""
    demo.close_output()


def close_pipe_and_interrupt(demo: Demo) -> None:
    """Ctrl-C on `make run 2>&1 | tee run.log`: tee exits, the demo gets SIGINT."""
    demo.close_output()
    demo.process.send_signal(signal.SIGINT)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("terminal", "lose_output"),
    [(False, close_pipe), (False, close_pipe_and_interrupt), (True, close_pipe)],
    ids=["pipe-closed", "tee-and-ctrl-c", "terminal-closed"],
)
def test_lost_output_stops_every_daemon(demo_factory, terminal, lose_output):
    """Whether its output is a pipe (EPIPE) or a terminal (hang-up), its reader
    vanishing stops the demo within seconds, though the demo prints nothing."""
    demo = demo_factory(terminal=terminal)
    demo.wait_ready()
    lose_output(demo)
    assert demo.process.wait(STOP_WITHIN) == 0
    demo.assert_everything_stopped()
    log = demo.supervisor_log()
    assert "output closed" in log, log
    for name in CHILDREN:
        assert f" {name} stopped\n" in log, log


@pytest.mark.timeout(180)
def test_kill_9_of_the_demo_leaves_no_child(demo_factory):
    demo = demo_factory()
    demo.wait_ready()
    demo.process.kill()
    demo.process.wait(10)
    demo.assert_everything_stopped(within=20)


@pytest.mark.timeout(180)
def test_a_second_demo_refuses_in_one_line_and_leaves_the_first_running(demo_factory):
    first = demo_factory()
    first.wait_ready()

    # Same folder and ports: the lock.
    second = demo_factory(like=first)
    assert second.process.wait(30) == 1
    second.read_until(lambda _text: False, 10)
    assert len(second.text().strip().splitlines()) == 1, second.text()
    assert "a demo is already running on" in second.text(), second.text()
    assert f"pid {first.process.pid}" in second.text(), second.text()

    # Another folder, the same ports: the port check.
    argv = [arg for arg in first.argv if not arg.startswith("--run-dir=")]
    other = subprocess.run(
        [*argv, f"--run-dir={first.run_dir}-other"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    shutil.rmtree(f"{first.run_dir}-other", ignore_errors=True)
    assert other.returncode == 1
    lines = (other.stdout + other.stderr).strip().splitlines()
    assert len(lines) == 1 and "is in use by another program" in lines[0], lines

    # The first one runs on, undisturbed.
    assert first.process.poll() is None
    assert sorted(running(first.children)) == sorted(first.children)
    assert all(map(port_taken, first.tcp_ports))
    first.process.send_signal(signal.SIGINT)
    assert first.process.wait(STOP_WITHIN * 2) == 0
    first.assert_everything_stopped()


def start_watchdog() -> tuple[subprocess.Popen[str], int]:
    """`bin/kwapi-demo --watchdog` as the demo starts it, and the write end of its pipe."""
    read_end, write_end = os.pipe()
    watchdog = subprocess.Popen(
        [sys.executable, str(DEMO), "--watchdog"],
        cwd=ROOT,
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(read_end)
    return watchdog, write_end


@pytest.mark.timeout(60)
def test_the_watchdog_kills_what_ignores_sigterm_and_its_descendants():
    """Beyond the parent-death signal: SIGKILL after the grace, grandchildren included."""
    stubborn = subprocess.Popen(
        ["sh", "-c", 'trap "" TERM; sleep 1000 & wait'], start_new_session=True
    )
    family: dict[int, int] = {}
    watchdog, write_end = start_watchdog()
    try:
        wait_for(lambda: descendants(stubborn.pid), 10, "sh's sleep")
        family = {stubborn.pid: proc_stat(stubborn.pid)[1], **descendants(stubborn.pid)}
        os.write(write_end, f"{stubborn.pid}\n".encode())
        os.close(write_end)  # as when the demo dies
        assert watchdog.wait(30) == 0
        wait_for(lambda: not running(family), 5, "sh and its sleep gone")
        assert stubborn.wait(5) == -signal.SIGKILL
        assert "SIGKILL" in watchdog.stderr.read()
    finally:
        for pid in running(family):
            os.kill(pid, signal.SIGKILL)
        for process in (stubborn, watchdog):
            process.kill()
            process.wait(5)


@pytest.mark.timeout(60)
def test_the_watchdog_leaves_alone_what_the_demo_stopped_itself():
    """After "done" (the demo stopped its children and exits), the watchdog kills nothing."""
    sleeper = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    watchdog, write_end = start_watchdog()
    try:
        os.write(write_end, f"{sleeper.pid}\ndone\n".encode())
        os.close(write_end)
        assert watchdog.wait(10) == 0
        assert sleeper.poll() is None
    finally:
        for process in (sleeper, watchdog):
            process.kill()
            process.wait(5)
