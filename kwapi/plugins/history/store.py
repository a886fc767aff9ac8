"""One keep-alive HTTP connection to the store's line-protocol endpoint, and what its answers mean.

:meth:`StoreClient.post` sends one gzipped body and sorts the outcome:

* ``written``: 2xx;
* ``retry``: the batch must be kept and sent again later: no connection,
  a timeout, a 5xx, 401 or 403 (credentials may be fixed), 404 (InfluxDB's
  database not created yet, a proxy's route missing), 408 or 429;
* ``rejected``: any other 4xx (400 above all: the store found the batch
  malformed). Sending it again would get the same answer: it is dropped.
"""

from __future__ import annotations

import base64
import http.client
import time
import urllib.parse
from dataclasses import dataclass
from typing import Literal

from kwapi import __version__
from kwapi.plugins.history.lineprotocol import QUERY_PRECISION

Verdict = Literal["written", "retry", "rejected"]

#: 4xx answers after which the same batch may succeed later.
RETRY_STATUSES = frozenset({401, 403, 404, 408, 425, 429})
#: How a kept-alive connection the server closed while idle fails.
STALE_CONNECTION = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    http.client.RemoteDisconnected,
)
#: The longest part of a store's answer kept for the log.
ANSWER_CHARS = 500


@dataclass(frozen=True)
class Outcome:
    """What became of one write: *verdict*, HTTP *status* (0: no answer), *detail*, *seconds*."""

    verdict: Verdict
    status: int
    detail: str
    seconds: float


def verdict_of(status: int) -> Verdict:
    """What an HTTP *status* means for the batch that got it."""
    if 200 <= status < 300:
        return "written"
    if status >= 500 or status in RETRY_STATUSES:
        return "retry"
    return "rejected"


def write_target(url: str, precision: str) -> tuple[urllib.parse.SplitResult, str]:
    """*url* split, and its path and query with ``precision`` set to *precision*."""
    parts = urllib.parse.urlsplit(url)
    query = [
        (key, value)
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if key != "precision"
    ]
    query.append(("precision", QUERY_PRECISION[precision]))
    return parts, f"{parts.path or '/'}?{urllib.parse.urlencode(query)}"


class StoreClient:
    """Posts gzipped line-protocol bodies to *url* over one kept-alive connection.

    Not thread-safe: one writer thread uses it. A connection that failed is
    closed and opened again on the next post.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self._targets = {
            precision: write_target(url, precision)[1] for precision in QUERY_PRECISION
        }
        self._scheme = parts.scheme
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._timeout = timeout
        self._headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Encoding": "gzip",
            "User-Agent": f"kwapi-history/{__version__}",
        }
        if parts.username is not None:
            credentials = f"{urllib.parse.unquote(parts.username)}:"
            credentials += urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(credentials.encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            factory = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            self._connection = factory(self._host, self._port, timeout=self._timeout)
        return self._connection

    def target(self, precision: str) -> str:
        """The path and query a body of timestamps in *precision* is posted to."""
        return self._targets[precision]

    def post(self, body: bytes, precision: str = "ms") -> Outcome:
        """Send one gzipped *body* of timestamps in *precision*; never raises.

        A kept-alive connection the store closed meanwhile (it fails before
        any answer) is replaced by a new one for a second try at once; a body
        the store had taken before it closed is then sent twice, which its
        deduplication absorbs (see doc/history.rst).
        """
        started = time.monotonic()
        reused = self._connection is not None
        try:
            try:
                status, answer = self._exchange(body, precision)
            except STALE_CONNECTION:
                if not reused:
                    raise
                self.close()
                status, answer = self._exchange(body, precision)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            return Outcome("retry", 0, reason or type(exc).__name__, time.monotonic() - started)
        seconds = time.monotonic() - started
        detail = f"HTTP {status} {answer.decode(errors='replace').strip()[:ANSWER_CHARS]}"
        return Outcome(verdict_of(status), status, detail.strip(), seconds)

    def _exchange(self, body: bytes, precision: str) -> tuple[int, bytes]:
        """One request and its answer: (status, the answer's first 64 KiB)."""
        connection = self._connect()
        connection.request("POST", self._targets[precision], body, self._headers)
        response = connection.getresponse()
        answer = response.read(64 * 1024)
        if response.will_close or not response.isclosed():
            self.close()  # an answer not read to its end cannot be followed by another
        return response.status, answer

    def close(self) -> None:
        """Close the connection (the next post opens one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
