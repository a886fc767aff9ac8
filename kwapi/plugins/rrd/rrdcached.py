"""A minimal client of rrdcached's text protocol: STATS, FLUSHALL and BATCH.

rrdcached answers every command with a status line ``<count> <message>``:
a negative count is an error, otherwise *count* more lines follow (STATS
lists its counters that way).  A BATCH is answered twice: once to accept
the batch, then, after the terminating ``.``, with the number of commands
that failed followed by one line ``<command number> <error>`` each.
Addresses are read as rrdtool reads ``--daemon``: ``unix:PATH`` or a path,
``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` (port 42217 by default).
"""

from __future__ import annotations

import io
import socket
import threading
import time

DEFAULT_PORT = 42217
#: Seconds to wait before each new try of a batch whose connection broke.
RECONNECT_PAUSES = (0.0, 0.05, 0.25)

Address = str | tuple[str, int]


class RrdcachedError(Exception):
    """rrdcached refused a command or closed the connection before answering."""


def parse_daemon_address(address: str) -> tuple[int, Address]:
    """Return (socket family, address) of an rrdcached address as rrdtool reads it."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[len("unix:") :]
    if address.startswith("/"):
        return socket.AF_UNIX, address
    host, port = address, DEFAULT_PORT
    if address.startswith("["):  # [v6]:port
        host, _, rest = address[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
        return socket.AF_INET6, (host, port)
    if address.count(":") == 1:
        host, port_text = address.split(":")
        port = int(port_text)
    return socket.AF_INET, (host, port)


class RrdcachedClient:
    """A client of one rrdcached: :meth:`batch` of updates, :meth:`stats`, :meth:`flush_all`.

    :meth:`command` opens a connection per call; :meth:`batch` keeps one
    open (guarded by a lock) and reconnects when it breaks.
    """

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._reader: io.BufferedReader | None = None

    def _open(self) -> socket.socket:
        """A new connected socket, with this client's timeout."""
        family, target = parse_daemon_address(self.address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Close the connection :meth:`batch` keeps open."""
        with self._lock:
            self._disconnect()

    def _disconnect(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._socket is not None:
            self._socket.close()
        self._socket = self._reader = None

    def _status(self, reader: io.BufferedReader) -> tuple[int, str]:
        """The next status line read from *reader*: (count, message)."""
        line = reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError(f"rrdcached at {self.address} closed the connection")
        count_text, _, message = line.decode("utf-8", "replace").rstrip("\n").partition(" ")
        return int(count_text), message

    def batch(self, commands: list[str]) -> list[tuple[int, str]]:
        """Send *commands* (e.g. ``UPDATE file time:value``) in one BATCH.

        Return the errors rrdcached reported: (index in *commands*, message).
        A broken connection is reopened and the batch sent again, after each
        of :data:`RECONNECT_PAUSES` (rrdcached was seen to drop a new
        connection now and then, right after it started); OSError if the
        last try fails too, RrdcachedError if rrdcached refuses the batch
        itself.
        """
        if not commands:
            return []
        payload = ("BATCH\n" + "\n".join(commands) + "\n.\n").encode("utf-8")
        with self._lock:
            for pause in RECONNECT_PAUSES:
                try:
                    return self._send_batch(payload)
                except (OSError, ValueError):  # a broken connection: reopen it
                    self._disconnect()
                time.sleep(pause)
            try:
                return self._send_batch(payload)
            except (OSError, ValueError):
                self._disconnect()
                raise

    def _send_batch(self, payload: bytes) -> list[tuple[int, str]]:
        """One try of :meth:`batch` on the kept connection (opened if need be)."""
        if self._socket is None or self._reader is None:
            self._socket = self._open()
            self._reader = self._socket.makefile("rb")
        self._socket.sendall(payload)
        go_ahead, message = self._status(self._reader)
        if go_ahead < 0:
            self._disconnect()
            raise RrdcachedError(f"rrdcached at {self.address}: {message}")
        count, _ = self._status(self._reader)
        errors = []
        for _ in range(count):
            number, message = self._status(self._reader)
            errors.append((number - 1, message))
        return errors

    def command(self, line: str) -> list[str]:
        """Send one command; return the status line followed by any extra lines."""
        with self._open() as sock:
            sock.sendall(line.encode("ascii") + b"\n")
            reader = sock.makefile("r", encoding="utf-8", newline="\n")
            status = reader.readline().rstrip("\n")
            if not status:
                raise RrdcachedError(f"rrdcached at {self.address} closed the connection")
            count_text, _, message = status.partition(" ")
            count = int(count_text)
            if count < 0:
                raise RrdcachedError(f"rrdcached at {self.address}: {message}")
            return [status] + [reader.readline().rstrip("\n") for _ in range(count)]

    def stats(self) -> dict[str, int]:
        """Return rrdcached's counters (UpdatesReceived, DataSetsWritten...)."""
        lines = self.command("STATS")[1:]
        return {name: int(value) for name, _, value in (ln.partition(": ") for ln in lines)}

    def flush_all(self) -> None:
        """Ask rrdcached to write every pending update to disk."""
        self.command("FLUSHALL")
