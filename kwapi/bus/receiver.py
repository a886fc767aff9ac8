"""Receiving measurements: verification, validation and the listener thread.

:class:`MessageValidator` decides on one message, without sockets, so it can
be tested and fuzzed alone; :class:`Receiver` runs a SUB socket in a thread,
feeds every message through a validator and hands accepted measurements to
a handler.  No input stops a receiver: every rejection is counted by reason
and logged at a bounded rate.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import zmq

from kwapi.bus.curve import CurveClient
from kwapi.bus.protocol import Message, ProtocolError, decode_payload, topic_for
from kwapi.bus.signing import Verifier
from kwapi.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

#: Every reason a message can be rejected for, in the order checks run.
REJECT_REASONS = (
    "bad_frames",
    "unsigned",
    "bad_signature",
    "bad_json",
    "bad_probe_id",
    "bad_value",
    "topic_mismatch",
    "out_of_window",
    "replay",
)


class Rejected(Exception):
    """A message the receiver refused; ``reason`` is one of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MessageValidator:
    """Checks messages in order: frames, signature, payload, topic, time.

    The signature is verified in constant time before the payload is parsed.
    A message is a replay when its (first) timestamp is not newer than the
    last one accepted for its probe; it is out of window when any of its
    timestamps lies more than *window* seconds from *clock*.  A batch is
    judged as a whole: accepted or rejected with all its samples.  When
    *verifier* is None, signatures are not checked and unsigned (two-frame)
    messages are accepted.

    The last timestamps are forgotten once they are more than *window*
    seconds older than *clock* (swept at most every *window*/2 seconds), so
    that the table holds only probes heard from recently.  The newest
    timestamp forgotten is kept: a message of a probe the table no longer
    holds must be newer than it, so forgetting lets no replay through, even
    if *clock* later goes back.
    """

    def __init__(
        self,
        verifier: Verifier | None,
        *,
        window: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._window = window
        self._clock = clock
        self._last_timestamp: dict[str, float] = {}
        # The newest timestamp swept out of _last_timestamp, and when to sweep next.
        self._forgotten_up_to = -math.inf
        self._next_sweep = -math.inf

    @property
    def remembered_probes(self) -> int:
        """How many probes' last timestamps the replay check holds."""
        return len(self._last_timestamp)

    def check(self, frames: Sequence[bytes]) -> Message:
        """Return the measurement or batch *frames* carry, or raise :class:`Rejected`."""
        if self._verifier is None:
            if len(frames) not in (2, 3):
                raise Rejected("bad_frames", f"{len(frames)} frames, expected 2 or 3")
        else:
            if len(frames) == 2:
                raise Rejected("unsigned", "message has no signature frame")
            if len(frames) != 3:
                raise Rejected("bad_frames", f"{len(frames)} frames, expected 3")
            if not self._verifier.verify(frames[1], frames[2]):
                raise Rejected("bad_signature", "signature does not match any secret")
        try:
            measurement = decode_payload(frames[1])
        except ProtocolError as exc:
            raise Rejected(exc.reason, exc.detail) from None
        if frames[0] != topic_for(measurement.probe_id):
            raise Rejected(
                "topic_mismatch",
                f"topic {bytes(frames[0][:80])!r} does not match probe {measurement.probe_id!r}",
            )
        now = self._clock()
        # Timestamps increase within a batch: its first and last bound them all.
        first = measurement.first_timestamp
        for skew in (first - now, measurement.timestamp - now):
            if abs(skew) > self._window:
                raise Rejected(
                    "out_of_window",
                    f"probe {measurement.probe_id!r} timestamp is {skew:+.0f} s from this clock",
                )
        last = self._last_timestamp.get(measurement.probe_id)
        if last is not None and first <= last:
            raise Rejected(
                "replay",
                f"probe {measurement.probe_id!r} timestamp {first} is not newer than {last}",
            )
        if last is None and first <= self._forgotten_up_to:
            # The probe may be one whose last timestamp was swept out.
            raise Rejected(
                "replay",
                f"probe {measurement.probe_id!r} timestamp {first} "
                f"is not newer than {self._forgotten_up_to}, the newest one forgotten",
            )
        self._last_timestamp[measurement.probe_id] = measurement.timestamp
        if now >= self._next_sweep:
            self._sweep(now)
        return measurement

    def _sweep(self, now: float) -> None:
        """Forget the probes last heard from more than the window before *now*."""
        cutoff = now - self._window
        table = self._last_timestamp
        stale = [probe_id for probe_id, timestamp in table.items() if timestamp < cutoff]
        for probe_id in stale:
            self._forgotten_up_to = max(self._forgotten_up_to, table.pop(probe_id))
        self._next_sweep = now + self._window / 2


#: Upper bounds (seconds) of the delay histogram's buckets; a last one is unbounded.
DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ReceiverStats:
    """Counts of accepted and rejected messages; read from any thread.

    ``accepted`` counts messages and ``accepted_samples`` the samples they
    carried (a batch carries many, a single-sample message one).

    ``delay_counts`` is a histogram of the delay from a measurement's
    timestamp to its acceptance, over :data:`DELAY_BUCKETS` (the last count
    is for longer delays); it includes the drivers' and this host's clock
    difference.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.accepted_samples = 0
        self.handler_errors = 0
        self.rejected: Counter[str] = Counter({reason: 0 for reason in REJECT_REASONS})
        self.delay_counts = [0] * (len(DELAY_BUCKETS) + 1)
        self.delay_sum = 0.0

    def observe_delay(self, seconds: float) -> None:
        """Count one measurement accepted *seconds* after its timestamp."""
        self.delay_counts[bisect.bisect_left(DELAY_BUCKETS, seconds)] += 1
        self.delay_sum += seconds

    def snapshot(self) -> dict[str, object]:
        """Return a plain copy of the counters."""
        return {
            "accepted": self.accepted,
            "accepted_samples": self.accepted_samples,
            "handler_errors": self.handler_errors,
            "rejected": dict(self.rejected),
            "delay": {
                "buckets": list(DELAY_BUCKETS),
                "counts": list(self.delay_counts),
                "sum": self.delay_sum,
            },
        }


def receive_frames(socket: zmq.Socket[bytes], flags: int = 0) -> list[bytes]:
    """What ``socket.recv_multipart(flags)`` returns, about 0.8 µs sooner a message.

    pyzmq's ``recv_multipart`` reads the RCVMORE option, an enum lookup,
    after every frame; a frame received without copy tells it itself.
    """
    frame = socket.recv(flags, copy=False)
    frames = [frame.bytes]
    while frame.more:  # the rest of a message is there once its first frame is
        frame = socket.recv(flags, copy=False)
        frames.append(frame.bytes)
    return frames


#: Takes every accepted message: a :class:`~kwapi.bus.protocol.Measurement` or a
#: :class:`~kwapi.bus.protocol.Batch` (``measurements()`` walks either sample by sample).
Handler = Callable[[Message], None]


class Receiver(threading.Thread):
    """A thread that subscribes to *endpoints* and hands valid measurements on.

    *probes* limits the subscription to those probe ids (an empty list means
    every probe).  *handler* runs in this thread; an exception it raises is
    logged and counted, never fatal.  *curve* makes the connections
    CURVE-encrypted.  *gather* is how long the thread sleeps once its queue
    is empty, so that a steady trickle of messages is taken in bursts (one
    wake-up per burst, not per message); it adds at most that much delay.
    Rejections and handler errors are logged at most once per kind every
    *log_period* seconds, the next line saying how many were left out.
    """

    POLL_MS = 200
    #: Default of ``gather``, in seconds.
    GATHER_S = 0.005

    def __init__(
        self,
        endpoints: Iterable[str],
        handler: Handler,
        validator: MessageValidator,
        *,
        probes: Iterable[str] = (),
        rcvhwm: int = 100_000,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        name: str = "receiver",
        curve: CurveClient | None = None,
        gather: float = GATHER_S,
        log_period: float = 10.0,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.gather = gather
        self.endpoints = list(endpoints)
        self.probes = list(probes)
        self.stats = ReceiverStats()
        self._handler = handler
        self._validator = validator
        self._rcvhwm = rcvhwm
        self._curve = curve
        self._context = context or zmq.Context.instance()
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self._log = RateLimitedLog(LOG, log_period)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the socket is connected and subscribed."""
        return self._ready.wait(timeout)

    def status(self) -> dict[str, object]:
        """Whether the thread runs, where it listens, and its counters (for /healthz)."""
        return {"alive": self.is_alive(), "endpoints": self.endpoints, **self.stats.snapshot()}

    def stop(self) -> None:
        """Ask the thread to finish its current message and exit."""
        self._stop_event.set()

    def run(self) -> None:
        socket = self._context.socket(zmq.SUB)
        try:
            socket.setsockopt(zmq.RCVHWM, self._rcvhwm)
            socket.setsockopt(zmq.LINGER, 0)
            # A blocking receive that gives up after POLL_MS, so the stop flag
            # is seen while idle: one call per message, no poll() and no
            # zmq.Again exception per message as with poll() + NOBLOCK.
            socket.setsockopt(zmq.RCVTIMEO, self.POLL_MS)
            for probe in self.probes:
                socket.setsockopt(zmq.SUBSCRIBE, topic_for(probe))
            if not self.probes:
                socket.setsockopt(zmq.SUBSCRIBE, b"")
            for index, endpoint in enumerate(self.endpoints):
                if self._curve is not None:
                    self._curve.apply(socket, index)
                socket.connect(endpoint)
            self._ready.set()
            receive = partial(receive_frames, socket)
            process, stopping = self.process, self._stop_event
            gather = self.gather
            while not stopping.is_set():
                try:
                    frames = receive()
                except zmq.Again:  # nothing for POLL_MS
                    continue
                process(frames)
                # Take what else is queued, then let the next ones gather:
                # waking up once per burst rather than once per message
                # is what a steady trickle of measurements costs most.
                while not stopping.is_set():
                    try:
                        frames = receive(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    process(frames)
                if gather:
                    stopping.wait(gather)
        finally:
            socket.close()
            self._ready.set()

    def process(self, frames: Sequence[bytes]) -> Message | None:
        """Validate one message and hand it to the handler if it is valid."""
        try:
            measurement = self._validator.check(frames)
        except Rejected as exc:
            self.stats.rejected[exc.reason] += 1
            self._log.warning(exc.reason, "rejected message (%s)", exc)
            return None
        except Exception:  # a validator bug must not kill the thread either
            self.stats.rejected["bad_frames"] += 1
            LOG.exception("unexpected error while checking a message")
            return None
        self.stats.accepted += 1
        self.stats.accepted_samples += len(measurement)
        self.stats.observe_delay(time.time() - measurement.timestamp)
        try:
            self._handler(measurement)
        except Exception as exc:
            self.stats.handler_errors += 1
            self._log.warning(
                "handler", "handler failed on probe %s: %r", measurement.probe_id, exc
            )
        return measurement
