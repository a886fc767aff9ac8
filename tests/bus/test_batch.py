"""Protocol v1, batched form: every rule, in the decoder and in the validator,
and batches over a real ZeroMQ bus."""

import json
import math
import time

import pytest

from kwapi.bus.protocol import (
    MAX_BATCH_SAMPLES,
    Batch,
    Measurement,
    ProtocolError,
    decode_payload,
)
from kwapi.bus.publisher import Publisher
from kwapi.bus.receiver import MessageValidator, Receiver, Rejected
from kwapi.bus.signing import Signer, Verifier
from tests.harness.processes import wait_for

SECRET = "s3cret"
NOW = 1_795_000_000.0


def frames_of(body, topic=None, secret=SECRET):
    """Signed frames of the JSON object *body* (written as is, right or wrong)."""
    payload = json.dumps(body).encode()
    probe = body.get("probe_id", "A") if isinstance(body, dict) else "A"
    return [topic or f"{probe}.".encode(), payload, Signer(secret).sign(payload)]


def batch_body(timestamps=(NOW, NOW + 0.02, NOW + 0.04), probe="A", **meters):
    body = {"probe_id": probe, "timestamps": list(timestamps)}
    body.update(meters or {"w": [101.5, 180.2, 99.0][: len(timestamps)]})
    return body


@pytest.fixture
def validator():
    return MessageValidator(Verifier([SECRET]), window=300, clock=lambda: NOW)


def reason_of(validator, frames):
    with pytest.raises(Rejected) as caught:
        validator.check(frames)
    return caught.value.reason, caught.value.detail


def test_the_documented_example_decodes_to_a_batch():
    payload = (
        b'{"probe_id": "node-1", "timestamps": [1795000000.00, 1795000000.02, 1795000000.04],'
        b' "w": [101.5, 180.2, 99.0]}'
    )
    batch = decode_payload(payload)
    assert isinstance(batch, Batch)
    assert batch.probe_id == "node-1"
    assert list(batch.timestamps) == [1795000000.0, 1795000000.02, 1795000000.04]
    assert batch.meters == {"w": [101.5, 180.2, 99.0]}
    assert (batch.first_timestamp, batch.timestamp, len(batch)) == (
        1795000000.0,
        1795000000.04,
        3,
    )


def test_encode_and_decode_round_trip_with_several_meters():
    original = Batch("gpu-0", [NOW, NOW + 1], {"w": [250, 260.5], "energy_j": [1.0, 2.0]})
    topic, payload = original.encode()
    assert topic == b"gpu-0."
    decoded = decode_payload(payload)
    assert decoded == Batch("gpu-0", [NOW, NOW + 1], {"w": [250.0, 260.5], "energy_j": [1.0, 2.0]})
    assert all(isinstance(v, float) for values in decoded.meters.values() for v in values)


def test_a_batch_walks_as_the_single_samples_it_means():
    batch = Batch("A", [NOW, NOW + 0.5], {"w": [1.0, 2.0], "fps": [25.0, 24.0]})
    assert list(batch.measurements()) == [
        Measurement("A", NOW, {"w": 1.0, "fps": 25.0}),
        Measurement("A", NOW + 0.5, {"w": 2.0, "fps": 24.0}),
    ]
    single = Measurement("A", NOW, {"w": 1.0})
    assert list(single.measurements()) == [single]
    assert (single.first_timestamp, len(single)) == (NOW, 1)


def test_the_largest_batch_is_accepted_and_one_more_is_not():
    timestamps = [NOW + i * 0.001 for i in range(MAX_BATCH_SAMPLES)]
    assert len(decode_payload(json.dumps(batch_body(timestamps, w=[1.0] * 4096)).encode())) == 4096
    timestamps.append(NOW + 5)
    with pytest.raises(ProtocolError, match="1 to 4096"):
        decode_payload(json.dumps(batch_body(timestamps, w=[1.0] * 4097)).encode())


INVALID_BATCHES = {
    "empty timestamps": batch_body([], w=[]),
    "timestamps not a list": {"probe_id": "A", "timestamps": NOW, "w": [1.0]},
    "equal timestamps": batch_body([NOW, NOW], w=[1.0, 2.0]),
    "decreasing timestamps": batch_body([NOW, NOW - 1], w=[1.0, 2.0]),
    "string timestamp": batch_body([NOW, "later"], w=[1.0, 2.0]),
    "boolean timestamp": batch_body([True], w=[1.0]),
    "null timestamp": batch_body([None], w=[1.0]),
    "no meter": {"probe_id": "A", "timestamps": [NOW]},
    "meter too short": batch_body([NOW, NOW + 1], w=[1.0]),
    "meter too long": batch_body([NOW], w=[1.0, 2.0]),
    "scalar meter beside timestamps": batch_body([NOW], w=[1.0], fps=25.0),
    "list meter beside timestamp": {"probe_id": "A", "timestamp": NOW, "w": [1.0]},
    "both timestamp and timestamps": {**batch_body([NOW], w=[1.0]), "timestamp": NOW},
    "string value": batch_body([NOW, NOW + 1], w=[1.0, "2"]),
    "boolean value": batch_body([NOW], w=[False]),
    "nested list value": batch_body([NOW], w=[[1.0]]),
    "object value": batch_body([NOW], w=[{"v": 1.0}]),
    "bad meter name": batch_body([NOW], W=[1.0]),
}


@pytest.mark.parametrize("case", sorted(INVALID_BATCHES))
def test_every_invalid_batch_is_rejected_whole_with_its_reason(validator, case):
    reason, detail = reason_of(validator, frames_of(INVALID_BATCHES[case]))
    assert reason == "bad_value", detail
    assert detail
    # Nothing of it was remembered: a valid batch of the same probe still passes.
    assert len(validator.check(frames_of(batch_body()))) == 3


@pytest.mark.parametrize(
    ("bad", "text"),
    [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")],
)
def test_non_finite_numbers_anywhere_in_a_batch_are_rejected(validator, bad, text):
    good = json.dumps(batch_body())
    with_value = good.replace("180.2", text)
    with_timestamp = good.replace(f"{NOW + 0.02}", text)
    for payload in (with_value, with_timestamp):
        frames = [b"A.", payload.encode(), Signer(SECRET).sign(payload.encode())]
        reason, _ = reason_of(validator, frames)
        assert reason in ("bad_value", "bad_json")
    with pytest.raises(ProtocolError):
        Batch("A", [NOW], {"w": [bad]}).encode()


def test_encode_refuses_what_decode_refuses():
    for timestamps, meters in [
        ([], {"w": []}),
        ([NOW, NOW], {"w": [1.0, 1.0]}),
        ([NOW], {}),
        ([NOW], {"w": [1.0, 2.0]}),
        ([NOW], {"Bad": [1.0]}),
    ]:
        with pytest.raises(ProtocolError):
            Batch("A", timestamps, meters).encode()
    with pytest.raises(ProtocolError):
        Batch("a b", [NOW], {"w": [1.0]}).encode()


def test_window_applies_to_every_timestamp_of_a_batch(validator):
    late_end = batch_body([NOW, NOW + 301], w=[1.0, 2.0])
    early_start = batch_body([NOW - 301, NOW], w=[1.0, 2.0])
    assert reason_of(validator, frames_of(late_end))[0] == "out_of_window"
    assert reason_of(validator, frames_of(early_start))[0] == "out_of_window"
    assert len(validator.check(frames_of(batch_body([NOW - 299, NOW + 299], w=[1, 2])))) == 2


def test_replay_rule_spans_both_forms(validator):
    validator.check(frames_of(batch_body([NOW, NOW + 1], w=[1.0, 2.0])))
    # A batch overlapping the last one accepted is a replay, whole.
    reason, detail = reason_of(validator, frames_of(batch_body([NOW + 1, NOW + 2], w=[1, 2])))
    assert reason == "replay" and str(NOW + 1) in detail
    # A single sample must be newer than the batch's last timestamp...
    single = {"probe_id": "A", "timestamp": NOW + 0.5, "w": 3.0}
    assert reason_of(validator, frames_of(single))[0] == "replay"
    validator.check(frames_of({**single, "timestamp": NOW + 3}))
    # ...and a batch newer than that single sample.
    assert reason_of(validator, frames_of(batch_body([NOW + 3], w=[1.0])))[0] == "replay"
    assert len(validator.check(frames_of(batch_body([NOW + 3.02], w=[1.0])))) == 1


def test_topic_must_name_the_batch_probe(validator):
    reason, _ = reason_of(validator, frames_of(batch_body(), topic=b"B."))
    assert reason == "topic_mismatch"


def test_a_batch_of_one_means_what_a_single_sample_means():
    single = decode_payload(Measurement("A", NOW, {"w": 5.0, "up": 1.0}).encode()[1])
    batch = decode_payload(Batch("A", [NOW], {"w": [5.0], "up": [1.0]}).encode()[1])
    assert list(batch.measurements()) == list(single.measurements())


def test_batches_cross_a_real_bus_and_are_counted_by_sample(tmpdir_short):
    endpoint = f"ipc://{tmpdir_short}/bus"
    received = []
    publisher = Publisher(endpoint, Signer(SECRET))
    receiver = Receiver([endpoint], received.append, MessageValidator(Verifier([SECRET])))
    receiver.start()
    assert receiver.wait_ready(5)
    try:
        start = time.time()
        index = 0

        def publish_next():
            nonlocal index
            stamps = [start + (index * 50 + i) * 0.02 for i in range(50)]
            publisher.publish(Batch("lab-1", stamps, {"w": [float(i) for i in range(50)]}))
            index += 1

        # The first messages may leave before the subscription is in place.
        wait_for(lambda: received or publish_next(), 10, "a first batch")
        for _ in range(5):
            publish_next()
        wait_for(lambda: received[-1].timestamp == start + (index * 50 - 1) * 0.02, 10)
        stats = receiver.stats.snapshot()
        assert all(isinstance(message, Batch) for message in received)
        assert stats["accepted"] == len(received)
        assert stats["accepted_samples"] == 50 * len(received)
        assert sum(stats["rejected"].values()) == 0
    finally:
        receiver.stop()
        receiver.join(5)
        publisher.close()
