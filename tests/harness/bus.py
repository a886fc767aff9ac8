"""The bus: a real signed publisher, a feed of fresh measurements, a verifying subscriber."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

import zmq

from kwapi.bus.protocol import Measurement
from kwapi.bus.publisher import Publisher
from kwapi.bus.receiver import MessageValidator, Rejected
from kwapi.bus.signing import Signer, Verifier
from tests.harness.processes import wait_for

#: The signing secret of every daemon and bus client of the tests.
SECRET = "test-secret"


def bus_publisher(endpoint: str, secret: str | None = SECRET) -> Publisher:
    """A real kwapi Publisher bound on *endpoint* (signed with *secret*)."""
    return Publisher(endpoint, Signer(secret) if secret else None, linger_ms=0)


class BusClient:
    """A SUB socket that collects verified measurements from an endpoint."""

    def __init__(self, endpoint: str, secret: str | None = SECRET, probes: tuple = ()) -> None:
        self.validator = MessageValidator(Verifier([secret]) if secret else None)
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for probe in probes:
            self.socket.setsockopt(zmq.SUBSCRIBE, probe.encode() + b".")
        if not probes:
            self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(endpoint)
        self.rejected: list[Rejected] = []

    def receive(self, timeout: float = 10.0) -> Measurement:
        """Return the next valid measurement; fail after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(int(left * 1000) + 1):
                raise AssertionError(f"no measurement within {timeout} s")
            frames = self.socket.recv_multipart()
            try:
                return self.validator.check(frames)
            except Rejected as exc:
                self.rejected.append(exc)

    def collect(self, count: int, timeout: float = 10.0) -> list[Measurement]:
        """Return the next *count* valid measurements."""
        deadline = time.monotonic() + timeout
        return [self.receive(max(0.01, deadline - time.monotonic())) for _ in range(count)]

    def close(self) -> None:
        self.socket.close()


def pending(sock: zmq.Socket, limit: int = 1000) -> Iterator[list[bytes]]:
    """The messages already queued on *sock*, *limit* at the most, without waiting."""
    for _ in range(limit):
        try:
            yield sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return


class Feed:
    """A signed publisher standing in for kwapi-drivers: each :meth:`send` publishes
    one fresh measurement per probe.

    *probes* maps each probe to its watts; a plain sequence of probes sends
    the number of the round as watts (1, 2, ...).
    """

    def __init__(self, endpoint: str, probes: Mapping[str, float] | Sequence[str] = ("A",)) -> None:
        self.publisher = bus_publisher(endpoint)
        self.probes = probes
        self.count = 0
        self.last = 0.0

    def send(self) -> float:
        """Publish one round; return its timestamp."""
        self.count += 1
        # Strictly increasing timestamps, whatever the wall clock's resolution.
        self.last = max(time.time(), self.last + 0.001)
        for probe in self.probes:
            watts = self.probes[probe] if isinstance(self.probes, Mapping) else self.count
            self.publisher.publish(Measurement(probe, self.last, {"w": float(watts)}))
        return self.last

    def until(self, condition: Callable[[], object], timeout: float = 15.0) -> None:
        """Send rounds until *condition* holds; fail after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not reached"
            self.send()
            time.sleep(0.02)

    def close(self) -> None:
        self.publisher.close()


class Accepting(Protocol):
    """A daemon that counts the measurements it accepted (-1 while it cannot tell)."""

    def accepted(self) -> int: ...


def publish_first(daemon: Accepting, publisher: Publisher, measurement: Measurement) -> None:
    """Publish *measurement* until *daemon* has it (ZeroMQ drops what is sent before
    the subscription arrives); later copies are rejected as replays, harmlessly."""
    before = daemon.accepted()

    def arrived() -> bool:
        publisher.publish(measurement)
        return daemon.accepted() > before

    wait_for(arrived, 20, f"kwapi-api to receive {measurement.probe_id}")


def publish_all(
    daemon: Accepting, publisher: Publisher, measurements: Sequence[Measurement]
) -> None:
    """Publish each of *measurements* once to *daemon*, which already receives this
    publisher (see :func:`publish_first`); wait until it accepted them all."""
    before = daemon.accepted()
    for measurement in measurements:
        publisher.publish(measurement)
    wait_for(
        lambda: daemon.accepted() == before + len(measurements), 20, "the series to be accepted"
    )
