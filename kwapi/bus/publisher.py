"""Publishing measurements on a ZeroMQ PUB socket."""

from __future__ import annotations

import threading

import zmq

from kwapi.bus.curve import CurveClient, CurveServer
from kwapi.bus.protocol import Message
from kwapi.bus.signing import Signer


class Publisher:
    """A PUB socket shared by many threads; each send is serialised by a lock.

    *signer* is None when signing is disabled: messages then carry two frames.
    *curve* encrypts the socket: a :class:`CurveServer` when binding, a
    :class:`CurveClient` when connecting.
    """

    def __init__(
        self,
        endpoint: str,
        signer: Signer | None,
        *,
        bind: bool = True,
        sndhwm: int = 100_000,
        linger_ms: int = 2000,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: CurveServer | CurveClient | None = None,
    ) -> None:
        self._signer = signer
        self._lock = threading.Lock()
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, sndhwm)
        self._socket.setsockopt(zmq.LINGER, linger_ms)
        if curve is not None:
            curve.apply(self._socket)
        try:
            if bind:
                self._socket.bind(endpoint)
            else:
                self._socket.connect(endpoint)
        except zmq.ZMQError:
            self._socket.close(linger=0)
            raise
        self.endpoint = endpoint
        self.sent = 0

    def frames(self, measurement: Message) -> list[bytes]:
        """Return the frames that carry *measurement* or a batch (topic, payload, signature)."""
        topic, payload = measurement.encode()
        if self._signer is None:
            return [topic, payload]
        return [topic, payload, self._signer.sign(payload)]

    def publish(self, measurement: Message) -> None:
        """Encode, sign and send *measurement* or a batch; safe to call from any thread."""
        frames = self.frames(measurement)
        with self._lock:
            self._socket.send_multipart(frames)
            self.sent += 1

    def close(self) -> None:
        """Close the socket, flushing queued messages for up to the linger time."""
        with self._lock:
            self._socket.close()
