"""Helpers shared by the tests: bounded waits, daemons as subprocesses, bus clients."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from kwapi.bus.protocol import Measurement
from kwapi.bus.receiver import MessageValidator, Rejected
from kwapi.bus.signing import Verifier

VENV_BIN = Path(sys.executable).parent
SECRET = "test-secret"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, message: str = "") -> object:
    """Poll *predicate* until it returns something true; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        time.sleep(0.02)


def short_tmpdir() -> str:
    """A fresh directory with a short path (ipc:// paths are limited to ~100 bytes)."""
    return tempfile.mkdtemp(prefix="kw", dir="/tmp")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(directory: str | Path, name: str, text: str) -> Path:
    """Write a configuration file (dedented) and return its path."""
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


class Daemon:
    """A kwapi daemon run as a subprocess, its output kept in a file."""

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
        self.kill()
        self._log.close()
        shutil.rmtree(self._log_dir, ignore_errors=True)


def run_command(command: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a kwapi command to completion and capture its output."""
    return subprocess.run(
        [str(VENV_BIN / command), *args], capture_output=True, text=True, timeout=timeout
    )


class BusClient:
    """A SUB socket that collects verified measurements from an endpoint."""

    def __init__(self, endpoint: str, secret: str | None = SECRET, probes: tuple = ()) -> None:
        self.validator = MessageValidator(Verifier([secret]) if secret else None)
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for probe in probes:
            self.socket.setsockopt(zmq.SUBSCRIBE, probe.encode() + b".")
        if not probes:
            self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(endpoint)
        self.rejected: list[Rejected] = []

    def receive(self, timeout: float = 10.0) -> Measurement:
        """Return the next valid measurement; fail after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(int(left * 1000) + 1):
                raise AssertionError(f"no measurement within {timeout} s")
            frames = self.socket.recv_multipart()
            try:
                return self.validator.check(frames)
            except Rejected as exc:
                self.rejected.append(exc)

    def collect(self, count: int, timeout: float = 10.0) -> list[Measurement]:
        """Return the next *count* valid measurements."""
        deadline = time.monotonic() + timeout
        return [self.receive(max(0.01, deadline - time.monotonic())) for _ in range(count)]

    def close(self) -> None:
        self.socket.close()


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
