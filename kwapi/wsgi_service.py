"""Serve a plugin daemon's WSGI application with waitress: bind, serve, shut down.

Every plugin daemon with a web side (kwapi-api, kwapi-rrd) runs the same life
cycle, all in its main thread:

1. :func:`bind` opens the listening socket(s) before anything else starts, so
   that an address it cannot use is one :class:`~kwapi.config.ConfigError`
   naming the option (one line, exit status 2), never a traceback;
2. the daemon starts its receiver and background threads;
3. the daemon tells systemd it is ready; :func:`serve` answers requests
   until *stop* is set, by :func:`kwapi.service.stop_event_on_signals` on
   SIGTERM or SIGINT, its :class:`~kwapi.service.Heartbeat` reopening the log
   files after SIGHUP and feeding systemd's watchdog while the daemon's
   receiver thread lives;
4. :func:`shutdown` stops in this order: stop accepting connections; the
   daemon's *stopping* steps (its receiver first, then its background
   threads); its *saving* steps (final saves, then the "stopped" log line);
   close the server (queued requests are cancelled, running ones get
   :data:`REQUEST_GRACE` seconds).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oslo_config import cfg
from waitress import wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from kwapi.config import ConfigError

if TYPE_CHECKING:
    from kwapi.service import Heartbeat

LOG = logging.getLogger(__name__)

Server = BaseWSGIServer | MultiSocketServer
WSGIApp = Callable[..., Any]
Step = Callable[[], object]

#: Seconds requests still running at shutdown get to finish.
REQUEST_GRACE = 5


@dataclass(frozen=True)
class Listen:
    """Where a daemon's web server listens, and the options that say so."""

    host: str
    port: int
    threads: int
    host_option: str
    port_option: str

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts, prefix: str) -> Listen:
        """The ``<prefix>_host``, ``<prefix>_port`` and ``<prefix>_threads`` options."""
        host, port = f"{prefix}_host", f"{prefix}_port"
        return cls(conf[host], conf[port], conf[f"{prefix}_threads"], host, port)


def bind(app: WSGIApp, listen: Listen, ident: str) -> Server:
    """A waitress server for *app*, bound to *listen*; ConfigError if it cannot be.

    *ident* is the ``Server`` header of every response (the daemon's name).
    """
    try:
        return create_server(
            app,
            host=listen.host,
            port=listen.port,
            threads=listen.threads,
            ident=ident,
            clear_untrusted_proxy_headers=True,
        )
    except ValueError as exc:  # waitress: the host does not resolve
        raise _cannot_listen(listen, listen.host_option, str(exc)) from None
    except OSError as exc:
        key = listen.host_option if isinstance(exc, socket.gaierror) else listen.port_option
        raise _cannot_listen(listen, key, exc.strerror or str(exc)) from None


def _cannot_listen(listen: Listen, key: str, reason: str) -> ConfigError:
    """The one-line error of a failed bind, naming option *key*."""
    message = f"cannot listen on {listen.host}:{listen.port}: {reason}"
    return ConfigError(message, section="DEFAULT", key=key)


def bound_port(server: Server) -> int:
    """The port *server* listens on (the one the system chose for port 0)."""
    if isinstance(server, MultiSocketServer):
        return int(server.effective_listen[0][1])
    return int(server.effective_port)  # type: ignore[attr-defined]  # missing from types-waitress


def serve(
    server: Server,
    stop: threading.Event,
    poll: float = 0.5,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Answer requests in this thread until *stop* is set (looked at every *poll* s).

    The loop runs here rather than in a thread of its own, so that the
    shutdown never closes a socket under a running loop. *heartbeat* (the
    daemon's: log reopening, systemd's watchdog) takes a turn after each pass.
    """
    socket_map = _socket_map(server)
    use_poll = server.adj.asyncore_use_poll
    if heartbeat is not None:
        poll = heartbeat.longest_wait(poll)
    while socket_map and not stop.is_set():
        wasyncore.loop(timeout=poll, use_poll=use_poll, map=socket_map, count=1)
        if heartbeat is not None:
            heartbeat.turn()


def shutdown(server: Server, *, stopping: Sequence[Step] = (), saving: Sequence[Step] = ()) -> None:
    """Stop accepting, run *stopping* then *saving* in order, then close *server*.

    A step that raises is logged and the next one still runs: a receiver that
    fails to stop must not cost the final save.
    """
    listeners = _listeners(server)
    for listener in listeners:
        # The listening socket only: BaseWSGIServer.close would also close
        # the trigger that requests still running pull when they are done.
        wasyncore.dispatcher.close(listener)
    for step in [*stopping, *saving]:
        try:
            step()
        except Exception:
            LOG.exception("shutdown step %s failed; going on", getattr(step, "__qualname__", step))
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=REQUEST_GRACE)
    for listener in listeners:
        listener.close()


def _socket_map(server: Server) -> dict[int, Any]:
    """The asyncore map of *server*'s sockets: listeners, trigger and connections.

    A MultiSocketServer's ``map``, or one listener's ``_map`` (asyncore's
    attribute: waitress offers no other way to it); types-waitress leaves
    the latter out and types the former as sockets, not dispatchers.
    """
    name = "map" if isinstance(server, MultiSocketServer) else "_map"
    socket_map: dict[int, Any] = getattr(server, name)
    return socket_map


def _listeners(server: Server) -> list[BaseWSGIServer]:
    """The listening dispatchers of *server* (several when the host has several addresses)."""
    if isinstance(server, MultiSocketServer):
        return [d for d in _socket_map(server).values() if isinstance(d, BaseWSGIServer)]
    return [server]
