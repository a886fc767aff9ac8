"""Raw samples read back from the store's Prometheus-compatible API.

kwapi-history writes measurement ``kwapi``, one field per meter, the probe
id as tag ``probe``; VictoriaMetrics (single node, or a cluster's vmselect)
names the series ``kwapi_<meter>{probe="<id>"}``. :class:`StoreReader`
reads them with ``/api/v1/export`` (one JSON line per series, milliseconds)
and tells which probes the store has any series of with ``/api/v1/series``.

Each probe is one export request, so that its samples arrive whole and are
folded (integrated, written out) and dropped before the next: memory holds
a few probes' samples, never the whole query. A few connections read in
parallel, so that the store prepares one probe while another is folded.
"""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from kwapi import __version__
from kwapi.plugins.history.export_lines import StoreError, count_samples

LOG = logging.getLogger(__name__)

#: Connections reading one query's probes in parallel.
READERS = 3
#: Bytes read from the store at a time.
CHUNK = 1 << 20
#: The longest part of a store's answer quoted in an error.
ANSWER_CHARS = 300
#: The oldest time /api/v1/series is asked about (VictoriaMetrics reads start=0 as "unset").
EPOCH = 1


class StoreUnavailable(Exception):
    """The store cannot be reached, timed out or answered 5xx: the client gets a 503."""


class TooManySamples(Exception):
    """The query would read more than *limit* samples: a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the range holds more than max_samples = {limit} samples")
        self.limit = limit


def label_value(text: str) -> str:
    """*text* quoted as a label value of a series selector."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def store_time(seconds: float, *, up: bool = False) -> str:
    """*seconds* as the store's start/end argument, whole milliseconds (rounded down or *up*)."""
    millis = int(-(-seconds * 1000 // 1)) if up else int(seconds * 1000 // 1)
    return f"{millis // 1000}.{millis % 1000:03d}"


class _Connection:
    """One keep-alive HTTP connection to the store's query root."""

    def __init__(self, reader: StoreReader) -> None:
        self.reader = reader
        self.http: http.client.HTTPConnection | None = None

    def post(self, path: str, form: Sequence[tuple[str, str]]) -> http.client.HTTPResponse:
        """POST *form* to *path*; the response, its status checked (2xx)."""
        reader = self.reader
        body = urllib.parse.urlencode(form).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept-Encoding": "identity",
            "User-Agent": f"kwapi-history/{__version__}",
            **reader.auth_headers,
        }
        for attempt in (1, 2):  # a kept-alive connection the store closed: once more, fresh
            if self.http is None:
                self.http = reader.connect()
            try:
                self.http.request("POST", reader.prefix + path, body, headers)
                response = self.http.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
                continue
            break
        if response.status >= 300:
            answer = response.read(ANSWER_CHARS * 4).decode(errors="replace").strip()
            self.close()
            message = f"{reader.root}{path} answered {response.status}: {answer[:ANSWER_CHARS]}"
            if response.status >= 500:
                raise StoreUnavailable(message)
            raise StoreError(message)
        return response

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None


def _lines(response: http.client.HTTPResponse) -> Iterator[bytes]:
    """The non-empty lines of *response*'s body, read a chunk at a time."""
    pending: list[bytes] = []
    while chunk := response.read(CHUNK):
        begin = 0
        while (newline := chunk.find(b"\n", begin)) >= 0:
            pending.append(chunk[begin:newline])
            line = b"".join(pending)
            pending.clear()
            if line.strip():
                yield line
            begin = newline + 1
        if begin < len(chunk):
            pending.append(chunk[begin:])
    line = b"".join(pending)
    if line.strip():
        yield line


class StoreReader:
    """Reads the series of *measurement* from the query API rooted at *root_url*.

    Every socket operation (connecting, each read) waits at most *timeout*
    seconds; a ``user:password@`` in *root_url* is sent as basic authentication.
    """

    def __init__(self, root_url: str, timeout: float, measurement: str = "kwapi") -> None:
        parts = urllib.parse.urlsplit(root_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{root_url!r} is not an http:// or https:// URL")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.root = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self.root += self.prefix
        self.auth_headers: dict[str, str] = {}
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.auth_headers["Authorization"] = f"Basic {token}"
        self.timeout = timeout
        self.measurement = measurement

    def connect(self) -> http.client.HTTPConnection:
        """A new connection to the store (opened on its first request)."""
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def selector(self, probe: str, meter: str) -> str:
        """The series selector of *meter* of *probe*."""
        name = label_value(f"{self.measurement}_{meter}")
        return f"{{__name__={name},probe={label_value(probe)}}}"

    def read(
        self,
        probes: Iterable[str],
        meter: str,
        start: float,
        end: float,
        limit: int,
        fold: Callable[[str, list[bytes], int], None],
    ) -> None:
        """Hand ``fold(probe, lines, count)`` each probe's export *lines* of *meter* within
        [start, end], holding *count* samples (see :mod:`~kwapi.plugins.history.export_lines`).

        ``fold`` runs in the reading threads, a few at once. A probe without
        samples there is not handed over. Raises
        :class:`TooManySamples` once more than *limit* samples were read,
        :class:`StoreUnavailable` or :class:`StoreError` if the store fails.
        """
        probes = list(probes)
        budget = _Budget(limit)
        local = threading.local()
        connections: list[_Connection] = []
        lock = threading.Lock()

        def connection() -> _Connection:
            found: _Connection | None = getattr(local, "connection", None)
            if found is None:
                found = local.connection = _Connection(self)
                with lock:
                    connections.append(found)
            return found

        def one(probe: str) -> None:
            if budget.exceeded:
                return
            lines, count = self._export(connection(), probe, meter, start, end, budget)
            if lines:
                fold(probe, lines, count)

        try:
            if len(probes) == 1:
                one(probes[0])
                return
            with ThreadPoolExecutor(READERS, thread_name_prefix="store-read") as pool:
                for _ in pool.map(one, probes):
                    pass
        except (OSError, http.client.HTTPException) as exc:
            raise StoreUnavailable(f"cannot read from {self.root}: {_describe(exc)}") from None
        finally:
            for opened in connections:
                opened.close()

    def _export(
        self,
        connection: _Connection,
        probe: str,
        meter: str,
        start: float,
        end: float,
        budget: _Budget,
    ) -> tuple[list[bytes], int]:
        form = [
            ("match[]", self.selector(probe, meter)),
            ("start", store_time(start)),
            ("end", store_time(end, up=True)),
        ]
        response = connection.post("/api/v1/export", form)
        lines, count = [], 0
        try:
            for line in _lines(response):
                samples = count_samples(line)
                budget.spend(samples)
                lines.append(line)
                count += samples
        except BaseException:
            connection.close()
            raise
        return lines, count

    def series(self, probes: Iterable[str]) -> dict[str, set[str]]:
        """The meters the store has any series of, ever, for each of *probes* it knows."""
        name = label_value(f"{self.measurement}_.+")
        form = [("match[]", f"{{__name__=~{name},probe={label_value(p)}}}") for p in probes]
        if not form:
            return {}
        form.append(("start", str(EPOCH)))
        connection = _Connection(self)
        try:
            response = connection.post("/api/v1/series", form)
            answer: Any = orjson.loads(response.read())
        except (OSError, http.client.HTTPException) as exc:
            raise StoreUnavailable(f"cannot read from {self.root}: {_describe(exc)}") from None
        except orjson.JSONDecodeError:
            raise StoreError("the store's /api/v1/series answer is not JSON") from None
        finally:
            connection.close()
        found: dict[str, set[str]] = {}
        head = f"{self.measurement}_"
        for labels in answer.get("data", []) if isinstance(answer, dict) else []:
            name_label, probe = labels.get("__name__", ""), labels.get("probe")
            if isinstance(probe, str) and name_label.startswith(head):
                found.setdefault(probe, set()).add(name_label[len(head) :])
        return found


class _Budget:
    """Samples a query may still read, shared by its reading threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0
        self.exceeded = False
        self._lock = threading.Lock()

    def spend(self, count: int) -> None:
        with self._lock:
            self.spent += count
            if self.spent > self.limit:
                self.exceeded = True
        if self.exceeded:
            raise TooManySamples(self.limit)


def _describe(exc: BaseException) -> str:
    """A short description of a connection failure."""
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
