"""HTTP: requests that return what any status carries, a WSGI app served on a free
port, and a recording server that forwards or answers canned documents."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
import waitress

from tests.harness.processes import free_tcp_port


@dataclass
class HttpResult:
    status: int
    headers: dict
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def request(
    method: str, url: str, headers: dict | None = None, timeout: float = 10.0
) -> HttpResult:
    """One request without following redirects; any status is returned, not raised."""
    parsed = urllib.parse.urlsplit(url)
    connection = HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return HttpResult(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET *url* (following redirects): (status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def get_json(url: str, timeout: float = 10.0) -> dict:
    """GET *url* (following redirects) and decode its JSON body; HTTP errors raise."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """Serve a WSGI *app* with waitress on 127.0.0.1, as kwapi-rrd does; yield its URL."""
    server = waitress.create_server(app, host="127.0.0.1", port=free_tcp_port(), threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        server.task_dispatcher.shutdown(timeout=5)


@dataclass(frozen=True)
class Recorded:
    """One request the recording server received."""

    path: str
    token: str | None


class RecordingServer:
    """An HTTP server on 127.0.0.1 that records every request it gets.

    It forwards GETs to *upstream* (to count what a client sends to a real
    kwapi-api), except paths given a canned answer with :meth:`answer` (to
    play a misbehaving kwapi speaking the same HTTP protocol).
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.requests: list[Recorded] = []
        self.canned: dict[str, tuple[int, str, bytes]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(Recorded(self.path, self.headers.get("X-Auth-Token")))
                status, content_type, body = server._respond(self.path, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, path: str, status: int, body: str | bytes, content_type: str) -> None:
        """Answer GET *path* with *body* instead of forwarding it."""
        data = body.encode() if isinstance(body, str) else body
        self.canned[path] = (status, content_type, data)

    def _respond(self, path: str, headers: dict) -> tuple[int, str, bytes]:
        if path in self.canned:
            return self.canned[path]
        if self.upstream is None:
            return 404, "text/plain", b"nothing here"
        forwarded = {k: v for k, v in headers.items() if k.lower() in ("x-auth-token", "accept")}
        reply = requests.get(self.upstream + path, headers=forwarded, timeout=30)
        return reply.status_code, reply.headers.get("Content-Type", ""), reply.content

    def gets(self, path: str) -> list[Recorded]:
        """The requests received for *path* so far."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
