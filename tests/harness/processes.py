"""Processes: bounded waits, free ports, short directories, daemons as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

#: Where the commands of this virtualenv are (kwapi-*, ruff, mypy, ...).
VENV_BIN = Path(sys.executable).parent
#: The root of the repository (the folder of tests/ and bench/).
ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, message: str = "") -> Any:
    """Poll *predicate* until it returns something true and return it; fail
    (AssertionError) after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        time.sleep(0.02)


def short_tmpdir(prefix: str = "kw") -> str:
    """A fresh directory with a short path (ipc:// paths are limited to ~100 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def busy_tcp_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that something listens on, for the ``with`` block."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:*port* (a connection in TIME_WAIT
    does not count: kwapi's servers bind with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def stop_process(
    process: subprocess.Popen, timeout: float = 10, signum: int = signal.SIGTERM
) -> int:
    """Send *signum* to *process* unless it has exited, wait up to *timeout* seconds,
    then SIGKILL it if it is still running; always reap it and return its exit status
    (negative: the signal that ended it)."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def run_command(command: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a command of the virtualenv to completion and capture its output."""
    return subprocess.run(
        [str(VENV_BIN / command), *args], capture_output=True, text=True, timeout=timeout
    )


class Daemon:
    """A command of the virtualenv (a kwapi daemon) run as a subprocess, its output
    kept in a file."""

    def __init__(self, command: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.command = command
        self._log_dir = tempfile.mkdtemp(prefix="kwlog")
        self.log_path = Path(self._log_dir) / f"{command}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(VENV_BIN / command), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """Everything the daemon printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_output(self, text: str, timeout: float = 10.0) -> None:
        """Wait until *text* appears in the output."""
        wait_for(lambda: text in self.output(), timeout, f"{text!r} in {self.command} output")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; SIGKILL and fail if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"{self.command} ignored SIGTERM for {timeout} s") from None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Kill it, then remove its output."""
        self.kill()
        self._log.close()
        shutil.rmtree(self._log_dir, ignore_errors=True)


class Daemons:
    """Start :class:`Daemon` s by calling it; :meth:`close` kills them all, printing
    each one's output (pytest shows it when the test failed)."""

    def __init__(self) -> None:
        self.started: list[Daemon] = []

    def __call__(self, command: str, *args: str, env: dict[str, str] | None = None) -> Daemon:
        process = Daemon(command, *args, env=env)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            process.kill()
            print(f"----- output of {process.command} -----\n{process.output()}")
            process.close()


@contextlib.contextmanager
def closing_all(make: Callable[..., T]) -> Iterator[Callable[..., T]]:
    """Yield a factory calling *make*; on exit, close everything it made."""
    made: list[Any] = []

    def start(*args: Any, **kwargs: Any) -> T:
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    try:
        yield start
    finally:
        for thing in made:
            thing.close()


def first_line(fd: int) -> tuple[bytes, bytes]:
    """(first line, what followed it) read unbuffered from *fd*, so that no
    command line is left behind in a Python buffer a selector cannot see: how
    a :class:`LineProcess` reads its settings."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


class LineProcess:
    """A Python module of this repository run as a subprocess (a simulator) that
    speaks lines: it reads its *settings* as one JSON line on standard input,
    says ``ready PORT...``, then answers each control command with one line.

    *name* says what it is in errors; :meth:`stop` closes its standard input
    and kills it if it has not exited *grace* seconds later.
    """

    grace = 5.0

    def __init__(self, module: str, name: str, settings: object, timeout: float = 30.0) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT
        )
        self._buffer = b""
        self.send(json.dumps(settings))
        words = self.reply(timeout).split()
        if words[:1] != ["ready"]:
            self.stop()
            raise RuntimeError(f"{name} did not start: {words!r}")
        self.ports = [int(port) for port in words[1:]]

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, line: str) -> None:
        """Write one line to its standard input."""
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def reply(self, timeout: float = 10.0) -> str:
        """Its next output line; raise TimeoutError after *timeout* s."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise TimeoutError(f"no line from the {self.name} within {timeout} s")
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"the {self.name} exited ({self.process.poll()})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def command(self, line: str, timeout: float = 10.0) -> str:
        """Send a control command; return its answer."""
        self.send(line)
        return self.reply(timeout)

    def stop(self) -> None:
        """Close its standard input, kill it if it lingers, close the pipes."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(self.grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process.stdout.close()

    def __enter__(self) -> LineProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
