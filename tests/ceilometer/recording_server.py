"""An HTTP server on 127.0.0.1 that records every request it gets.

It forwards requests to an upstream server (to count what a client sends to
a real kwapi-api), or answers canned documents on chosen paths (to play a
misbehaving kwapi speaking the same HTTP protocol).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    path: str
    token: str | None


class RecordingServer:
    """Forwards GETs to *upstream*, except paths given a canned answer with :meth:`answer`."""

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
