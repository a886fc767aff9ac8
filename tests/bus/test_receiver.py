"""The message validator and the receiver thread, over real ZeroMQ sockets."""

import itertools
import logging
import threading
import time

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.bus.publisher import Publisher
from kwapi.bus.receiver import REJECT_REASONS, MessageValidator, Receiver, Rejected
from kwapi.bus.signing import Signer, Verifier
from tests.harness.clock import Clock
from tests.harness.processes import wait_for

SECRET = "s3cret"
NOW = 1_700_000_000.0


def signed(probe="A", timestamp=NOW, meters=None, secret=SECRET, topic=None):
    measurement = Measurement(probe, timestamp, meters or {"w": 100.0})
    encoded_topic, payload = measurement.encode()
    return [topic if topic is not None else encoded_topic, payload, Signer(secret).sign(payload)]


@pytest.fixture
def validator():
    return MessageValidator(Verifier([SECRET]), window=300, clock=lambda: NOW)


def reason_of(validator, frames):
    with pytest.raises(Rejected) as caught:
        validator.check(frames)
    return caught.value.reason


def test_accepts_a_valid_message(validator):
    measurement = validator.check(signed(meters={"w": 42.5, "fps": 25}))
    assert measurement.probe_id == "A"
    assert measurement.meters == {"w": 42.5, "fps": 25.0}


def test_rejects_each_kind_of_bad_message(validator):
    good = signed()
    assert reason_of(validator, good[:2]) == "unsigned"
    assert reason_of(validator, [*good, b"extra"]) == "bad_frames"
    assert reason_of(validator, []) == "bad_frames"
    assert reason_of(validator, signed(secret="wrong")) == "bad_signature"
    tampered = [good[0], good[1].replace(b"100.0", b"900.0"), good[2]]
    assert reason_of(validator, tampered) == "bad_signature"
    assert reason_of(validator, signed(topic=b"B.")) == "topic_mismatch"
    assert reason_of(validator, signed(topic=b"A")) == "topic_mismatch"
    assert reason_of(validator, signed(timestamp=NOW - 301)) == "out_of_window"
    assert reason_of(validator, signed(timestamp=NOW + 301)) == "out_of_window"
    garbage = b"{not json"
    assert reason_of(validator, [b"A.", garbage, Signer(SECRET).sign(garbage)]) == "bad_json"


def test_signature_is_checked_before_parsing(validator):
    # Unparseable payload with a wrong signature: the signature decides.
    assert reason_of(validator, [b"A.", b"\xff", b"00"]) == "bad_signature"


def test_replays_are_rejected_per_probe(validator):
    first = signed(timestamp=NOW)
    validator.check(first)
    assert reason_of(validator, first) == "replay"
    assert reason_of(validator, signed(timestamp=NOW - 1)) == "replay"
    validator.check(signed(probe="B", timestamp=NOW - 1))  # other probe: own history
    validator.check(signed(timestamp=NOW + 0.001))


def test_rejected_message_does_not_advance_replay_state(validator):
    assert reason_of(validator, signed(timestamp=NOW + 10, secret="forged")) == "bad_signature"
    validator.check(signed(timestamp=NOW + 5))


def test_replay_table_forgets_quiet_probes_without_letting_replays_through():
    clock = Clock(NOW)
    validator = MessageValidator(Verifier([SECRET]), window=300, clock=clock)
    old = [signed(probe=f"p{n}", timestamp=NOW + n * 1e-3) for n in range(1000)]
    for frames in old:
        validator.check(frames)
    assert validator.remembered_probes == 1000
    # A sweep (due: the last was 299 s ago) forgets nothing still within the window.
    clock.now = NOW + 299
    validator.check(signed(probe="steady", timestamp=clock.now))
    assert validator.remembered_probes == 1001
    # Once the old probes are older than the window, the next sweep forgets them.
    clock.now = NOW + 449
    validator.check(signed(probe="steady", timestamp=clock.now))
    assert validator.remembered_probes == 1
    assert reason_of(validator, old[-1]) == "out_of_window"
    # Even with this clock set back, the forgotten probes' messages stay replays...
    clock.now = NOW
    assert [reason_of(validator, frames) for frames in (old[0], old[-1])] == ["replay"] * 2
    # ...while newer messages of those probes, and of new probes, are accepted.
    validator.check(signed(probe="p999", timestamp=NOW + 1.5))
    validator.check(signed(probe="new", timestamp=NOW + 1.5))
    assert reason_of(validator, signed(probe="p999", timestamp=NOW + 1.5)) == "replay"


def test_replay_table_is_swept_at_most_every_half_window():
    clock = Clock(NOW)
    validator = MessageValidator(Verifier([SECRET]), window=300, clock=clock)
    validator.check(signed(probe="quiet", timestamp=NOW - 299))  # first check: a sweep
    clock.now = NOW + 149
    validator.check(signed(probe="other", timestamp=clock.now))
    assert validator.remembered_probes == 2  # "quiet" is out of window, but no sweep is due
    clock.now = NOW + 150
    validator.check(signed(probe="other", timestamp=clock.now))
    assert validator.remembered_probes == 1


def test_without_verifier_unsigned_and_signed_messages_pass():
    validator = MessageValidator(None, clock=lambda: NOW)
    good = signed()
    validator.check(good[:2])
    validator.check(signed(timestamp=NOW + 1, secret="anything"))
    assert reason_of(validator, good[:1]) == "bad_frames"


@pytest.fixture
def endpoint(tmpdir_short):
    return f"ipc://{tmpdir_short}/bus"


def start_receiver(endpoint, handler, probes=(), **options):
    receiver = Receiver(
        [endpoint], handler, MessageValidator(Verifier([SECRET])), probes=probes, **options
    )
    receiver.start()
    assert receiver.wait_ready(5)
    return receiver


def publish_until(publisher, condition, make, timeout=10.0):
    """Publish fresh measurements until *condition* holds (covers the slow-joiner delay)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        publisher.publish(make())
        time.sleep(0.01)


def test_receiver_thread_survives_garbage_and_counts_it(endpoint):
    received = []
    publisher = Publisher(endpoint, Signer(SECRET))
    receiver = start_receiver(endpoint, received.append)
    try:
        publish_until(publisher, lambda: received, lambda: Measurement("A", time.time(), {"w": 1}))
        # Hostile messages, sent raw through the publisher's own socket.
        hostile = [
            [b"A."],
            [b"A.", b"\xff\xfe", b"sig"],
            [b"A.", b"{}", b"00"],
            [b"", b"", b"", b"", b""],
            [b"A.", b"x" * 100_000, b"0" * 64],
        ]
        for frames in hostile:
            with publisher._lock:
                publisher._socket.send_multipart(frames)
        count = len(received)
        publisher.publish(Measurement("A", time.time(), {"w": 2}))
        wait_for(lambda: len(received) > count, 10, "a valid message after garbage")
        assert receiver.is_alive()
        stats = receiver.stats.snapshot()
        rejected = stats["rejected"]
        assert rejected["bad_frames"] == 2
        assert rejected["bad_signature"] == 3
        assert set(rejected) == set(REJECT_REASONS)
        assert stats["accepted"] == len(received)
        # Every accepted measurement was timed, within seconds of its timestamp.
        assert sum(stats["delay"]["counts"]) == len(received)
        assert stats["delay"]["counts"][-1] == 0
        assert 0 <= stats["delay"]["sum"] < 10 * len(received)
    finally:
        receiver.stop()
        receiver.join(5)
        publisher.close()
    assert not receiver.is_alive()


def test_rejections_are_logged_once_per_reason_and_period_then_counted(endpoint, caplog):
    caplog.set_level(logging.WARNING, logger="kwapi.bus.receiver")
    period = 2.0  # the burst below takes milliseconds
    forger = Publisher(endpoint, Signer("not-the-secret"))
    receiver = start_receiver(endpoint, lambda measurement: None, log_period=period)
    rejected = receiver.stats.rejected
    stamps = itertools.count()

    def forged():
        return Measurement("A", time.time() + next(stamps) * 1e-6, {"w": 1})

    def lines(reason):
        return [m for m in caplog.messages if m.startswith(f"rejected message ({reason}:")]

    try:
        publish_until(forger, lambda: rejected["bad_signature"], forged)
        first_logged_before = time.monotonic()
        for _ in range(100):
            forger.publish(forged())
            with forger._lock:  # unsigned: another reason, limited on its own
                forger._socket.send_multipart(forged().encode())
        # The unsigned messages came after the forged ones: once they are all
        # counted, so are the forged ones.
        wait_for(lambda: rejected["unsigned"] == 100, 10, "every message counted")
        forged_count = rejected["bad_signature"]
        assert forged_count > 100
        assert time.monotonic() < first_logged_before + period, "too slow to test"
        assert lines("bad_signature") == [
            "rejected message (bad_signature: signature does not match any secret)"
        ]
        assert lines("unsigned") == ["rejected message (unsigned: message has no signature frame)"]
        # Once the period is over, the next rejection is logged with the count left out.
        wait_for(lambda: time.monotonic() > first_logged_before + period, period + 1)
        forger.publish(forged())
        wait_for(lambda: len(lines("bad_signature")) == 2, 10, "a second line")
        assert lines("bad_signature")[1] == (
            "rejected message (bad_signature: signature does not match any secret) "
            f"({forged_count - 1} more like this since the last report)"
        )
        assert len(lines("unsigned")) == 1
        assert receiver.is_alive()
    finally:
        receiver.stop()
        receiver.join(5)
        forger.close()


def test_handler_errors_are_counted_not_fatal(endpoint):
    calls = []

    def handler(measurement):
        calls.append(measurement)
        raise RuntimeError("plugin bug")

    publisher = Publisher(endpoint, Signer(SECRET))
    receiver = start_receiver(endpoint, handler)
    try:
        publish_until(
            publisher, lambda: len(calls) >= 3, lambda: Measurement("A", time.time(), {"w": 1})
        )
        assert receiver.is_alive()
        assert receiver.stats.handler_errors == len(calls)
    finally:
        receiver.stop()
        receiver.join(5)
        publisher.close()


def test_watch_probe_subscribes_to_exact_probes_only(endpoint):
    received = []
    publisher = Publisher(endpoint, Signer(SECRET))
    receiver = start_receiver(endpoint, received.append, probes=["A"])
    try:
        stamp = iter(range(10**6))

        def make():
            n = next(stamp)
            probe = ("A", "AB", "B")[n % 3]
            return Measurement(probe, time.time() + n * 1e-6, {"w": n})

        publish_until(publisher, lambda: len(received) >= 5, make)
        assert {m.probe_id for m in received} == {"A"}
        # Filtering happened at the socket: nothing else reached the validator.
        assert receiver.stats.accepted == len(received)
    finally:
        receiver.stop()
        receiver.join(5)
        publisher.close()


def test_publisher_is_safe_from_many_threads(endpoint):
    received = []
    publisher = Publisher(endpoint, Signer(SECRET))
    receiver = start_receiver(endpoint, received.append)
    try:
        publish_until(
            publisher, lambda: received, lambda: Measurement("warm", time.time(), {"w": 1})
        )
        base = time.time() + 1

        def worker(index):
            for n in range(200):
                publisher.publish(Measurement(f"t{index}", base + n * 1e-3, {"w": n}))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        wait_for(
            lambda: sum(m.probe_id.startswith("t") for m in received) == 800, 10, "800 messages"
        )
        assert sum(receiver.stats.rejected.values()) == 0
        for index in range(4):
            values = [m.meters["w"] for m in received if m.probe_id == f"t{index}"]
            assert values == [float(n) for n in range(200)]
    finally:
        receiver.stop()
        receiver.join(5)
        publisher.close()
