"""A simulated Watts up? PRO meter on a pseudo-terminal.

The meter appears as a symlink (like /dev/serial/by-id/...) to the slave side
of a pty.  Like the real one it stays quiet until told to log: on
``#L,W,3,E,<mode>,<n>;`` it sends a ``#d,-,18,...;`` record every *n*
seconds, the fourth field being the watts in tenths.  The test can change
the watts, inject raw bytes, fall silent, and unplug / plug the meter back
(the pty is closed and the symlink removed, then a new pty is linked).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import termios
import threading
import time
import tty
from pathlib import Path

COMMAND = re.compile(rb"#([A-Za-z]),([A-Za-z-]),(\d+)((?:,[^,;#]*)*);")


class WattsupMeter:
    """The meter: one thread serving one pty at a time."""

    def __init__(self, link: str | Path, watts: float = 123.4) -> None:
        self.link = Path(link)
        self.watts = watts
        self.silent = False
        self.commands: list[bytes] = []
        self.records_sent = 0
        self.plugs = 0
        self._lock = threading.Lock()
        self._interval: float | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- test controls -------------------------------------------------------

    def start(self) -> WattsupMeter:
        self.plug()
        self._thread = threading.Thread(target=self._serve, name="wattsup-meter", daemon=True)
        self._thread.start()
        return self

    def plug(self) -> None:
        """Connect a fresh meter: new pty, link created, not logging yet."""
        master, slave = os.openpty()
        tty.setraw(slave)
        _set_line(slave, termios.B9600, termios.CSTOPB)
        with self._lock:
            self._master, self._slave = master, slave
            self._interval = None
            self.plugs += 1
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link)
        self._wake()

    def unplug(self) -> None:
        """Pull the cable: the link vanishes and the open port starts failing."""
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        with self._lock:
            master, slave = self._master, self._slave
            self._master = self._slave = None
            self._interval = None
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        self._wake()

    def inject(self, data: bytes) -> None:
        """Send raw bytes now (noise, a partial record...)."""
        with self._lock:
            if self._master is not None:
                os.write(self._master, data)

    def line_settings(self) -> tuple[int, int, int]:
        """The pty's input speed, output speed and c_cflag, as the port's user set them.

        A pty keeps the speed and stop bits its user asks for without
        applying them; each plug starts at 9600 baud with two stop bits, so
        that 115200 and one stop bit here show that the driver asked for
        them.  Linux forces 8 data bits and no parity on every pty, whatever
        is asked: those the pty cannot show.
        """
        with self._lock:
            if self._slave is None:
                raise RuntimeError("the meter is unplugged")
            _, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(self._slave)
        return ispeed, ospeed, cflag

    @property
    def logging(self) -> bool:
        return self._interval is not None

    def stop(self) -> None:
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        self.unplug()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the meter -----------------------------------------------------------

    def record(self) -> bytes:
        """One external-logging record with the current watts."""
        tenths = round(self.watts * 10)
        volts, milliamps = 1198, round(self.watts / 119.8 * 1000)
        fields = [tenths, volts, milliamps, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 98, 0, 0, 600]
        return ("#d,-,18," + ",".join(str(f) for f in fields) + ";").encode("ascii")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _serve(self) -> None:
        pending = b""
        next_record = 0.0
        while not self._stop:
            with self._lock:
                master, interval = self._master, self._interval
            timeout = None
            if master is not None and interval is not None:
                timeout = max(0.0, next_record - time.monotonic())
            fds = [self._wake_r] + ([master] if master is not None else [])
            try:
                readable, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):  # the pty was closed under us by unplug()
                continue
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
                pending = b""
                continue
            if master is not None and master in readable:
                try:
                    data = os.read(master, 4096)
                except OSError:  # no one holds the port open any more
                    data = b""
                pending += data
                pending, commands = _split_commands(pending)
                for command in commands:
                    self._handle(command)
                    if command.startswith(b"#L,"):
                        next_record = time.monotonic() + (self._interval or 1.0)
            with self._lock:
                if self._master is None or self._interval is None:
                    continue
                now = time.monotonic()
                if now >= next_record:
                    next_record = now + self._interval
                    if not self.silent:
                        try:
                            os.write(self._master, self.record())
                            self.records_sent += 1
                        except OSError:
                            pass

    def _handle(self, command: bytes) -> None:
        self.commands.append(command)
        match = COMMAND.fullmatch(command)
        if match is None:
            return
        kind, args = match.group(1), match.group(4).split(b",")[1:]
        if kind == b"L" and len(args) == 3:
            with self._lock:
                self._interval = float(args[2])


def _set_line(fd: int, speed: int, stop_bits: int) -> None:
    """Set the terminal *fd* to *speed* and *stop_bits* (0 or termios.CSTOPB)."""
    attributes = termios.tcgetattr(fd)
    attributes[2] = attributes[2] & ~termios.CSTOPB | stop_bits
    attributes[4] = attributes[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attributes)


def _split_commands(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split complete ``#...;`` commands off *data*; return the rest and the commands."""
    commands = []
    while True:
        start = data.find(b"#")
        if start < 0:
            return b"", commands
        end = data.find(b";", start)
        if end < 0:
            return data[start:], commands
        commands.append(data[start : end + 1])
        data = data[end + 1 :]
