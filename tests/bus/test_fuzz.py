"""The validator fuzzed with hypothesis: it never raises anything but Rejected,
accepts nothing invalid, and accepted + rejected always add up."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from kwapi.bus.protocol import Measurement, is_valid_meter_name, is_valid_probe_id
from kwapi.bus.receiver import MessageValidator, Receiver, Rejected
from kwapi.bus.signing import Signer, Verifier

SECRET = "fuzz"
NOW = 1_700_000_000.0
signer = Signer(SECRET)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def payloads(draw):
    kind = draw(st.sampled_from(["bytes", "json", "object"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    body = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
    if draw(st.booleans()):
        body["probe_id"] = draw(st.sampled_from(["A", "a b", "", "x" * 300, "ok:1"]))
    if draw(st.booleans()):
        body["timestamp"] = draw(
            st.sampled_from([NOW, NOW + 1e6, math.nan, "now", 10**400, True])
            | st.floats(NOW - 400, NOW + 400)
        )
    if draw(st.booleans()):
        body["w"] = draw(st.sampled_from([1.5, math.inf, -math.inf, math.nan, 10**500, "1"]))
    return json.dumps(body, allow_nan=True).encode()


@st.composite
def messages(draw):
    payload = draw(payloads())
    topic = draw(st.sampled_from([b"A.", b"ok:1.", b"", b"A"]) | st.binary(max_size=10))
    signature = draw(st.sampled_from(["good", "forged", "none", "junk"]))
    frames = [topic, payload]
    if signature == "good":
        frames.append(signer.sign(payload))
    elif signature == "forged":
        frames.append(Signer("other").sign(payload))
    elif signature == "junk":
        frames.append(draw(st.binary(max_size=70)))
    extra = draw(st.lists(st.binary(max_size=5), max_size=2))
    return frames + extra


def is_acceptable(measurement: Measurement) -> bool:
    return (
        is_valid_probe_id(measurement.probe_id)
        and abs(measurement.timestamp - NOW) <= 300
        and bool(measurement.meters)
        and all(
            is_valid_meter_name(name) and math.isfinite(value)
            for name, value in measurement.meters.items()
        )
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(messages(), max_size=20))
def test_validator_accepts_nothing_invalid_and_never_crashes(batch):
    validator = MessageValidator(Verifier([SECRET]), clock=lambda: NOW)
    last: dict[str, float] = {}
    for frames in batch:
        try:
            measurement = validator.check(frames)
        except Rejected:
            continue
        assert len(frames) == 3 and signer.sign(frames[1]) == frames[2]
        assert frames[0] == measurement.probe_id.encode() + b"."
        assert is_acceptable(measurement)
        assert measurement.timestamp > last.get(measurement.probe_id, -math.inf)
        last[measurement.probe_id] = measurement.timestamp


@settings(max_examples=200, deadline=None)
@given(st.lists(messages(), max_size=30))
def test_receiver_counters_add_up(batch):
    handled = []
    receiver = Receiver([], handled.append, MessageValidator(Verifier([SECRET]), clock=lambda: NOW))
    for frames in batch:
        receiver.process(frames)
    stats = receiver.stats
    assert stats.accepted == len(handled)
    assert stats.accepted + sum(stats.rejected.values()) == len(batch)
