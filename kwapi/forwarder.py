"""The forwarder: relays the bus across networks and fans it out to plugins.

An XSUB socket connects to every upstream endpoint (drivers or another
forwarder) and an XPUB socket binds for the plugins; subscriptions travel
upstream, so only watched probes cross the network.  ZeroMQ reconnects on
both sides, so a restarted forwarder is picked up again by running drivers
and plugins.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import zmq

from kwapi.bus.curve import CurveClient, CurveServer


class UpstreamError(ValueError):
    """An upstream endpoint the forwarder cannot connect to."""


class Forwarder:
    """An XSUB-to-XPUB proxy in a thread, stoppable from another thread."""

    def __init__(
        self,
        upstream: Sequence[str],
        bind: str,
        *,
        rcvhwm: int = 100_000,
        sndhwm: int = 100_000,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve_server: CurveServer | None = None,
        curve_client: CurveClient | None = None,
    ) -> None:
        self._context = context or zmq.Context.instance()
        self._control_endpoint = f"inproc://kwapi-forwarder-control-{id(self)}"
        self._frontend = self._context.socket(zmq.XSUB)
        self._backend = self._context.socket(zmq.XPUB)
        self._control = self._context.socket(zmq.PAIR)
        self._frontend.setsockopt(zmq.RCVHWM, rcvhwm)
        self._backend.setsockopt(zmq.SNDHWM, sndhwm)
        for socket in (self._frontend, self._backend, self._control):
            socket.setsockopt(zmq.LINGER, 0)
        if curve_server is not None:
            curve_server.apply(self._backend)
        try:
            self._backend.bind(bind)
            self._control.bind(self._control_endpoint)
            for index, endpoint in enumerate(upstream):
                if curve_client is not None:
                    curve_client.apply(self._frontend, index)
                try:
                    self._frontend.connect(endpoint)
                except zmq.ZMQError as exc:
                    raise UpstreamError(f"cannot connect to {endpoint}: {exc}") from None
        except (zmq.ZMQError, UpstreamError):
            self._close()
            raise
        self._thread = threading.Thread(target=self._proxy, name="forwarder", daemon=True)

    def _proxy(self) -> None:
        with contextlib.suppress(zmq.ContextTerminated):
            zmq.proxy_steerable(self._frontend, self._backend, None, self._control)

    def start(self) -> None:
        """Start relaying in a background thread."""
        self._thread.start()

    def is_alive(self) -> bool:
        """Whether the relaying thread runs (it ends only when stopped, or on a ZeroMQ error)."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop relaying and close the sockets."""
        if self._thread.is_alive():
            commander = self._context.socket(zmq.PAIR)
            commander.setsockopt(zmq.LINGER, 0)
            commander.connect(self._control_endpoint)
            commander.send(b"TERMINATE")
            self._thread.join(timeout)
            commander.close()
        self._close()

    def _close(self) -> None:
        for socket in (self._frontend, self._backend, self._control):
            socket.close()
