"""Byte sources read as they grow: a command's standard output, a file being appended to.

Both are read without blocking: :meth:`read` returns what arrived since the
last call (``b""`` when nothing did) and raises
:class:`~kwapi.drivers.base.DeviceError` when the source is gone for good.
A :class:`FollowedFile` follows its file across rotations: a file replaced
or truncated under the same name, or, with ``strftime`` fields in the
path, the next file of the series.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from collections import deque
from typing import IO

from kwapi.drivers.base import DEVICE_GONE, DeviceError

LOG = logging.getLogger(__name__)

#: The most bytes one call to :meth:`read` returns.
READ_LIMIT = 1 << 20
#: Seconds between two looks for a rotated file while at the end of the current one.
ROTATION_CHECK = 0.5
#: The ``strftime`` fields a rotated path may hold, the ones whose text sorts and parses back.
TIME_FIELD = re.compile(r"%[YmdHMSjyb%]")


class CommandOutput:
    """The standard output of *command* (split like a shell would, run without one).

    The command runs in a session of its own, so that :meth:`close` ends it
    and its children.  Its last lines of standard error explain its end.
    """

    def __init__(self, command: str) -> None:
        self.command = command
        argv = shlex.split(command)
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise DeviceError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        assert self.process.stdout is not None and self.process.stderr is not None
        self._stdout = self.process.stdout.fileno()
        self._stderr = self.process.stderr.fileno()
        os.set_blocking(self._stdout, False)
        os.set_blocking(self._stderr, False)
        self._errors: deque[bytes] = deque(maxlen=20)
        self._error_tail = b""

    def describe(self) -> str:
        """What this source is, for a log line."""
        return f"command {self.command!r} (pid {self.process.pid})"

    def read(self) -> bytes:
        """What the command wrote since the last call; DeviceError once it ended."""
        self._read_errors()
        chunks: list[bytes] = []
        size = 0
        while size < READ_LIMIT:
            try:
                chunk = os.read(self._stdout, READ_LIMIT - size)
            except BlockingIOError:
                return b"".join(chunks)
            if not chunk:  # end of file: the command closed its output
                break
            chunks.append(chunk)
            size += len(chunk)
        if chunks:
            return b"".join(chunks)  # the end, if any, is seen at the next call
        raise DeviceError(self._ended(), DEVICE_GONE)

    def close(self) -> None:
        """End the command (SIGTERM, then SIGKILL after a second) and its pipes."""
        for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def _read_errors(self) -> None:
        """Keep the last lines of standard error, to say why the command ended."""
        while True:
            try:
                chunk = os.read(self._stderr, 65536)
            except (BlockingIOError, ValueError, OSError):
                return
            if not chunk:
                return
            *lines, self._error_tail = (self._error_tail + chunk).split(b"\n")
            self._errors.extend(line for line in lines if line.strip())
            self._error_tail = self._error_tail[-4096:]

    def _ended(self) -> str:
        """Why the output ended: the exit status and the last line of standard error."""
        try:
            status = self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            status = None
        self._read_errors()
        last = (self._error_tail.strip() or (self._errors[-1] if self._errors else b"")).decode(
            "utf-8", errors="replace"
        )
        how = "closed its output" if status is None else f"exited with status {status}"
        return f"command {self.command!r} {how}" + (f": {last[:200]}" if last else "")


def series_glob(pattern: str) -> str:
    """The glob matching every file of the series *pattern* (its time fields as ``*``)."""
    return TIME_FIELD.sub(lambda match: "%" if match.group() == "%%" else "*", pattern)


def series_time(pattern: str, path: str) -> datetime.datetime | None:
    """The time *path* stands for in the series *pattern*, None if it is not one of it."""
    try:
        return datetime.datetime.strptime(path, pattern)
    except ValueError:
        return None


class FollowedFile:
    """A file read as it is appended to, from its end, across rotations.

    *path* names one file, or, with ``strftime`` fields (``%Y``, ``%m``,
    ``%d``, ``%H``...), a series of files, one per hour for instance: the
    newest of the series (by the time its name gives) is followed, and once
    it is read to its end and a newer one exists, the next one is read from
    its start.  A single file replaced under the same name (rename and
    create) is read to its end, then the new one from its start; a file
    truncated in place is read again from its start.  *resume* (an earlier
    instance's :meth:`position`) starts where that one stopped, if its file
    is still there.
    """

    def __init__(self, path: str, resume: tuple[str, int, int] | None = None) -> None:
        self.pattern = path
        self.series = TIME_FIELD.search(path.replace("%%", "")) is not None
        self._handle: IO[bytes] | None = None
        self.path = ""
        self._inode = 0
        self._next_check = 0.0
        self.opened: list[str] = []  # files opened, for the log: the caller takes them
        current = self._newest()
        offset: int | None = None  # None: from the end
        if resume is not None and self._inode_of(resume[0]) == resume[1]:
            current, offset = resume[0], resume[2]  # where it stopped, the rest follows
        elif resume is not None and resume[0] == current:
            offset = 0  # replaced meanwhile: the new file from its start
        if current is None:
            raise DeviceError(f"no file {self._what()}", DEVICE_GONE)
        self._open(current, offset)

    def describe(self) -> str:
        """What this source is now, for a log line."""
        return f"file {self.path}"

    def position(self) -> tuple[str, int, int] | None:
        """The file, its inode and the offset reached: where a new instance may resume."""
        if self._handle is None:
            return None
        return self.path, self._inode, self._handle.tell()

    def read(self) -> bytes:
        """What was appended since the last call, switching files at a rotation."""
        assert self._handle is not None
        data = self._handle.read(READ_LIMIT)
        if data:
            return data
        now = time.monotonic()
        if now < self._next_check:
            return b""
        self._next_check = now + ROTATION_CHECK
        rotated = self._rotation()
        if rotated is None:
            return b""
        data = self._handle.read(READ_LIMIT)  # what came just before the rotation
        if data:
            self._next_check = 0.0  # look again once this is read
            return data
        path, offset = rotated
        self._open(path, offset)
        return b""

    def close(self) -> None:
        """Close the file being read."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _rotation(self) -> tuple[str, int] | None:
        """The file to read next and where from, if the current one was rotated."""
        assert self._handle is not None
        if self.series:
            newer = self._newer()
            return None if newer is None else (newer, 0)
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None  # moved away, the new one not created yet: finish this one
        if stat.st_ino != self._inode:
            return self.path, 0
        if stat.st_size < self._handle.tell():  # truncated in place
            self._handle.seek(0)
            LOG.info("%s was truncated: reading it again from its start", self.path)
        return None

    def _open(self, path: str, offset: int | None) -> None:
        """Switch to *path*, at *offset* (None: its end)."""
        try:
            handle = open(path, "rb")  # noqa: SIM115 (kept open across calls)
        except FileNotFoundError:
            raise DeviceError(f"{path} disappeared", DEVICE_GONE) from None
        self.close()
        self._handle = handle
        self.path = path
        self._inode = os.fstat(handle.fileno()).st_ino
        if offset is None:
            handle.seek(0, os.SEEK_END)
        else:
            handle.seek(min(offset, os.fstat(handle.fileno()).st_size))
        self.opened.append(path)

    def _newest(self) -> str | None:
        if not self.series:
            return self.pattern if os.path.exists(self.pattern) else None
        files = self._dated()
        return files[-1][1] if files else None

    def _newer(self) -> str | None:
        """The oldest file of the series newer than the current one."""
        current = series_time(self.pattern, self.path)
        for stamp, path in self._dated():
            if current is None or stamp > current:
                return path
        return None

    def _dated(self) -> list[tuple[datetime.datetime, str]]:
        found = []
        for path in glob.glob(series_glob(self.pattern)):
            stamp = series_time(self.pattern, path)
            if stamp is not None:
                found.append((stamp, path))
        return sorted(found)

    @staticmethod
    def _inode_of(path: str) -> int:
        try:
            return os.stat(path).st_ino
        except OSError:
            return -1

    def _what(self) -> str:
        if self.series:
            return f"matches {self.pattern} (looked for {series_glob(self.pattern)})"
        return f"at {self.pattern}"
