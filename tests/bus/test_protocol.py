"""Bus protocol v1: encoding and decoding of measurements."""

import json
import math

import pytest

from kwapi.bus.protocol import (
    Measurement,
    ProtocolError,
    decode_payload,
    is_valid_meter_name,
    is_valid_probe_id,
    topic_for,
)


@pytest.mark.parametrize(
    "probe_id",
    ["A", "node-1", "rack1.pdu2:outlet@3", "x" * 255, "a_b-c.d:e@f", "0", "..."],
)
def test_valid_probe_ids(probe_id):
    assert is_valid_probe_id(probe_id)


@pytest.mark.parametrize(
    "probe_id",
    ["", "x" * 256, "a b", "a/b", "../etc", "é", "a\n", None, 3, "a*", "a#b", ".", ".."],
)
def test_invalid_probe_ids(probe_id):
    assert not is_valid_probe_id(probe_id)


def test_topic_ends_with_a_dot_so_prefixes_stay_exact():
    assert topic_for("A") == b"A."
    assert not topic_for("AB").startswith(topic_for("A"))


def test_encode_produces_compact_json_with_topic():
    topic, payload = Measurement("node-1", 1700000000.5, {"w": 120.25}).encode()
    assert topic == b"node-1."
    assert payload == b'{"probe_id":"node-1","timestamp":1700000000.5,"w":120.25}'


def test_round_trip_keeps_every_meter_as_float():
    original = Measurement("s1", 1700000000.0, {"up": 1, "bitrate": 2.5e6, "fps": 25.0})
    decoded = decode_payload(original.encode()[1])
    assert decoded.probe_id == "s1"
    assert decoded.timestamp == 1700000000.0
    assert decoded.meters == {"up": 1.0, "bitrate": 2.5e6, "fps": 25.0}
    assert all(isinstance(value, float) for value in decoded.meters.values())


@pytest.mark.parametrize(
    "meters",
    [{}, {"w": math.nan}, {"w": math.inf}, {"w": True}, {"w": "12"}, {"W": 1}, {"timestamp": 1}],
)
def test_encode_refuses_invalid_measurements(meters):
    with pytest.raises(ProtocolError):
        Measurement("A", 1.0, meters).encode()


def test_encode_refuses_non_finite_timestamp_and_bad_probe():
    with pytest.raises(ProtocolError):
        Measurement("A", math.nan, {"w": 1}).encode()
    with pytest.raises(ProtocolError):
        Measurement("a b", 1.0, {"w": 1}).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "bad_json"),
        (b"not json", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'{"probe_id": "A", "timestamp": 1, "w": NaN}', "bad_json"),
        (b'{"probe_id": "A", "timestamp": 1, "w": Infinity}', "bad_json"),
        (b'{"probe_id": "A", "timestamp": 1, "w": 1e400}', "bad_json"),
        (b'{"probe_id": "A", "timestamp": 1, "w": ' + b"9" * 400 + b"}", "bad_json"),
        (b'{"probe_id": "A", "timestamp": 1, "w": ' + b"9" * 5000 + b"}", "bad_json"),
        (b'{"probe_id": "A", "timestamp": "1", "w": 1}', "bad_value"),
        (b'{"probe_id": "A", "w": 1}', "bad_value"),
        (b'{"probe_id": "A", "timestamp": 1}', "bad_value"),
        (b'{"probe_id": "A", "timestamp": 1, "w": true}', "bad_value"),
        (b'{"probe_id": "A", "timestamp": 1, "w": null}', "bad_value"),
        (b'{"probe_id": "A", "timestamp": 1, "w": {"x": 1}}', "bad_value"),
        (b'{"probe_id": "A", "timestamp": 1, "Bad Name": 1}', "bad_value"),
        (b'{"probe_id": "a b", "timestamp": 1, "w": 1}', "bad_probe_id"),
        (b'{"probe_id": 12, "timestamp": 1, "w": 1}', "bad_probe_id"),
        (b'{"timestamp": 1, "w": 1}', "bad_probe_id"),
        (b"[" * 100000 + b"]" * 100000, "bad_json"),
    ],
)
def test_decode_rejects_with_a_reason(payload, reason):
    with pytest.raises(ProtocolError) as caught:
        decode_payload(payload)
    assert caught.value.reason == reason


def test_meter_names():
    assert is_valid_meter_name("w")
    assert is_valid_meter_name("energy_j")
    assert not is_valid_meter_name("probe_id")
    assert not is_valid_meter_name("1w")
    assert not is_valid_meter_name("w-x")


def test_payload_is_plain_json_other_languages_can_read():
    _, payload = Measurement("A", 12.5, {"w": 3}).encode()
    assert json.loads(payload) == {"probe_id": "A", "timestamp": 12.5, "w": 3.0}
