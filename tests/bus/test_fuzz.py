"""The validator fuzzed with hypothesis: it never raises anything but Rejected,
accepts nothing invalid, never accepts a replay, counts each rejection under
its reason, and accepted + rejected always add up."""

import itertools
import json
import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from kwapi.bus.protocol import (
    Batch,
    Measurement,
    Message,
    is_valid_meter_name,
    is_valid_probe_id,
    topic_for,
)
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
    if draw(st.booleans()):
        # The batched form: timestamps and lists, right or wrong.
        length = draw(st.integers(0, 4))
        body["timestamps"] = draw(
            st.lists(st.floats(NOW - 400, NOW + 400) | st.sampled_from(samples), max_size=length)
            | st.just(sorted(draw(st.lists(st.floats(NOW - 200, NOW + 200), max_size=length))))
        )
        body["w"] = draw(st.lists(st.floats(-1e3, 1e3) | st.sampled_from(samples), max_size=4))
    return json.dumps(body, allow_nan=True).encode()


#: Values that are not finite numbers, or not numbers at all.
samples = [math.nan, math.inf, "1", True, None, [1.0], 10**500]


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


#: Any number of arbitrary frames, none and one included.
frame_lists = st.lists(st.binary(max_size=40), max_size=6)

#: Messages shaped like kwapi's, or arbitrary frames.
any_message = messages() | frame_lists


def expected_reason_of_frames(frames: list[bytes]) -> str:
    """Why a signed receiver refuses arbitrary *frames* (no random bytes carry a
    valid 32-byte HMAC)."""
    if len(frames) == 2:
        return "unsigned"
    return "bad_signature" if len(frames) == 3 else "bad_frames"


PROBES = ("node-a", "node-b", "node-c")
WINDOW = 300.0


def signed(probe_id: str, timestamp: float, watts: float) -> list[bytes]:
    """The frames a publisher with *SECRET* sends (Publisher.frames)."""
    topic, payload = Measurement(probe_id, timestamp, {"w": watts}).encode()
    return [topic, payload, signer.sign(payload)]


@st.composite
def replay_sessions(draw) -> list[tuple[list[bytes], str | None]]:
    """Good messages interleaved with exact replays of earlier ones, validly
    signed messages no newer than their probe's last accepted one (some of
    them out of the window too), and arbitrary frames; each paired with what
    the receiver must do: None (accept) or the reason it must reject for."""
    last: dict[str, float] = {}  # newest accepted timestamp of each probe
    # Every validly signed message so far, and why it is refused when re-sent.
    sent: list[tuple[list[bytes], str]] = []
    session: list[tuple[list[bytes], str | None]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["good", "good", "replay", "older", "junk"]))
        probe_id = draw(st.sampled_from(PROBES))
        watts = draw(st.floats(0, 1e4))
        if kind == "replay" and sent:
            # Re-sent as is: an accepted message, or one already refused.
            frames, reason = draw(st.sampled_from(sent))
            session.append((list(frames), reason))
        elif kind == "older" and probe_id in last:
            timestamp = last[probe_id] - draw(st.floats(0, 2 * WINDOW) | st.just(0.0))
            frames = signed(probe_id, timestamp, watts)
            reason = "out_of_window" if abs(timestamp - NOW) > WINDOW else "replay"
            session.append((frames, reason))
            sent.append((frames, reason))
        elif kind == "junk":
            frames = draw(frame_lists)
            session.append((frames, expected_reason_of_frames(frames)))
        else:
            # Newer than the probe's last, whatever the other probes sent.
            start = last.get(probe_id, draw(st.floats(NOW - 250, NOW - 50)))
            timestamp = start + draw(st.floats(1e-3, 5))
            frames = signed(probe_id, timestamp, watts)
            session.append((frames, None))
            sent.append((frames, "replay"))
            last[probe_id] = timestamp
    return session


def is_acceptable(message: Message) -> bool:
    """The rules of doc/protocol.rst, either form, written from the document."""
    if isinstance(message, Batch):
        times = list(message.timestamps)
        return (
            is_valid_probe_id(message.probe_id)
            and 1 <= len(times) <= 4096
            and all(abs(t - NOW) <= 300 for t in times)
            and all(a < b for a, b in itertools.pairwise(times))
            and bool(message.meters)
            and all(
                is_valid_meter_name(name)
                and len(values) == len(times)
                and all(isinstance(v, float) and math.isfinite(v) for v in values)
                for name, values in message.meters.items()
            )
        )
    return (
        is_valid_probe_id(message.probe_id)
        and abs(message.timestamp - NOW) <= 300
        and bool(message.meters)
        and all(
            is_valid_meter_name(name) and math.isfinite(value)
            for name, value in message.meters.items()
        )
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(any_message, max_size=20))
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
        assert measurement.first_timestamp > last.get(measurement.probe_id, -math.inf)
        last[measurement.probe_id] = measurement.timestamp


@settings(max_examples=200, deadline=None)
@given(st.lists(any_message, max_size=30))
def test_receiver_counters_add_up(batch):
    handled = []
    receiver = Receiver([], handled.append, MessageValidator(Verifier([SECRET]), clock=lambda: NOW))
    for frames in batch:
        receiver.process(frames)
    stats = receiver.stats
    assert stats.accepted == len(handled)
    assert stats.accepted + sum(stats.rejected.values()) == len(batch)


@settings(max_examples=50, deadline=None)
@given(st.lists(frame_lists, max_size=10))
def test_arbitrary_frames_are_refused_by_frame_count(batch):
    receiver = Receiver([], [].append, MessageValidator(Verifier([SECRET]), clock=lambda: NOW))
    for frames in batch:
        assert receiver.process(frames) is None
    expected = Counter(expected_reason_of_frames(frames) for frames in batch)
    assert +receiver.stats.rejected == expected


@settings(max_examples=300, deadline=None)
@given(replay_sessions())
def test_replays_and_older_messages_are_refused_under_their_reason(session):
    handled: list[Measurement] = []
    validator = MessageValidator(Verifier([SECRET]), window=WINDOW, clock=lambda: NOW)
    receiver = Receiver([], handled.append, validator)
    stats = receiver.stats
    for frames, reason in session:
        before = Counter(stats.rejected)
        measurement = receiver.process(frames)
        counted = +(Counter(stats.rejected) - before)
        if reason is None:
            assert measurement is not None
            assert frames[0] == topic_for(measurement.probe_id)
            assert counted == Counter()
        else:
            assert measurement is None, f"accepted what must be refused as {reason}"
            assert counted == Counter({reason: 1})
    expected = Counter(reason for _, reason in session if reason is not None)
    assert +stats.rejected == expected
    assert stats.accepted == len(handled) == sum(reason is None for _, reason in session)
    assert stats.accepted + sum(stats.rejected.values()) == len(session)
    # What was accepted is each probe's messages in strictly increasing time.
    for probe_id in PROBES:
        times = [m.timestamp for m in handled if m.probe_id == probe_id]
        assert times == sorted(set(times))
