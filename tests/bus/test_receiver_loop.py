"""The receiver's loop: bursts taken whole, gathering between them, prompt stops."""

from __future__ import annotations

import time

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.bus.publisher import Publisher
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.bus.signing import Signer, Verifier
from tests.harness.processes import wait_for

SECRET = "loop-secret"


@pytest.fixture
def endpoint(tmpdir_short):
    return f"ipc://{tmpdir_short}/bus"


def run(endpoint, gather):
    received = []
    publisher = Publisher(endpoint, Signer(SECRET))
    receiver = Receiver(
        [endpoint], received.append, MessageValidator(Verifier([SECRET])), gather=gather
    )
    receiver.start()
    assert receiver.wait_ready(5)
    return publisher, receiver, received


@pytest.mark.parametrize("gather", [0.0, 0.05])
def test_every_message_of_bursts_is_taken_in_order(endpoint, gather):
    publisher, receiver, received = run(endpoint, gather)
    try:
        # Slow joiner: publish until the subscription is through.
        deadline = time.monotonic() + 10
        while not received:
            assert time.monotonic() < deadline, "the receiver never subscribed"
            publisher.publish(Measurement("warm", time.time(), {"w": 0.0}))
            time.sleep(0.01)
        start = len(received)
        base = time.time()
        for burst in range(5):
            for index in range(500):
                stamp = base + burst + index * 1e-4
                publisher.publish(Measurement(f"p{index}", stamp, {"w": float(burst)}))
        wait_for(lambda: len(received) - start >= 2500, 20, "every burst")
        taken = [m for m in received[start:] if m.probe_id != "warm"]
        assert len(taken) == 2500
        assert [m.meters["w"] for m in taken] == [float(b) for b in range(5) for _ in range(500)]
        assert receiver.stats.accepted == len(received)
    finally:
        receiver.stop()
        receiver.join(5)
        publisher.close()
    assert not receiver.is_alive()


def test_a_gathering_receiver_stops_without_waiting_out_its_gathering(endpoint):
    publisher, receiver, received = run(endpoint, 60.0)
    try:
        deadline = time.monotonic() + 10
        while not received:  # once one is taken, the thread sleeps for 60 s to gather
            assert time.monotonic() < deadline, "the receiver never subscribed"
            publisher.publish(Measurement("warm", time.time(), {"w": 0.0}))
            time.sleep(0.01)
        receiver.stop()
        receiver.join(10)
        assert not receiver.is_alive()
    finally:
        publisher.close()
