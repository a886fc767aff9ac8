"""Bus protocol v1: how measurements travel as ZeroMQ frames.

A message has three frames: the topic (probe id followed by ``.``), the
payload (a compact UTF-8 JSON object) and the signature (see
:mod:`kwapi.bus.signing`); the third frame is absent when signing is off.
A payload is either one sample (:class:`Measurement`, a ``timestamp`` and
one number per meter) or a batch of samples of one probe (:class:`Batch`,
``timestamps`` and one list per meter).  See doc/protocol.rst for the full
contract.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

import orjson

PROTOCOL_VERSION = 1

#: The meter that carries power, in watts; every other meter is free-form.
POWER_METER: Final = "w"

PROBE_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@-]{1,255}")
METER_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
RESERVED_KEYS = frozenset({"probe_id", "timestamp", "timestamps"})
#: The most samples one batched message may carry.
MAX_BATCH_SAMPLES: Final = 4096


class ProtocolError(ValueError):
    """A message that does not follow bus protocol v1."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


#: Path segments that URLs resolve away: no page or API route could name them.
UNREACHABLE_PROBE_IDS = frozenset({".", ".."})


def is_valid_probe_id(probe_id: object) -> bool:
    """Tell whether *probe_id* is 1-255 characters of ``A-Za-z0-9._:@-``, not ``.`` or ``..``."""
    return (
        isinstance(probe_id, str)
        and PROBE_ID_PATTERN.fullmatch(probe_id) is not None
        and probe_id not in UNREACHABLE_PROBE_IDS
    )


def is_valid_meter_name(name: object) -> bool:
    """Tell whether *name* may name a meter (lowercase, digits, underscores)."""
    return (
        isinstance(name, str)
        and name not in RESERVED_KEYS
        and METER_NAME_PATTERN.fullmatch(name) is not None
    )


def topic_for(probe_id: str) -> bytes:
    """Return the topic frame for *probe_id*; the dot keeps prefixes exact."""
    return probe_id.encode("ascii") + b"."


@dataclass(frozen=True, slots=True)
class Measurement:
    """Readings of one probe at one instant: ``meters`` maps names to values."""

    probe_id: str
    timestamp: float
    meters: Mapping[str, float] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, bytes]:
        """Return the topic and payload frames, validating on the way."""
        if not is_valid_probe_id(self.probe_id):
            raise ProtocolError("bad_probe_id", f"invalid probe id {self.probe_id!r}")
        if not self.meters:
            raise ProtocolError("bad_value", "a measurement needs at least one meter")
        body: dict[str, object] = {"probe_id": self.probe_id, "timestamp": float(self.timestamp)}
        body.update(checked_meters(self.meters))
        if finite_number(self.timestamp) is None:
            raise ProtocolError("bad_value", "timestamp is not a finite number")
        payload = orjson.dumps(body)
        return topic_for(self.probe_id), payload

    @property
    def first_timestamp(self) -> float:
        """The timestamp of the message's first sample: for one sample, its own."""
        return self.timestamp

    def __len__(self) -> int:
        return 1

    def measurements(self) -> Iterator[Measurement]:
        """The samples of this message, one :class:`Measurement` each: itself."""
        yield self


@dataclass(frozen=True, slots=True)
class Batch:
    """Samples of one probe: ``timestamps`` strictly increasing, each meter a list as long.

    A batch of one sample means exactly what a :class:`Measurement` with
    the same timestamp and values means.
    """

    probe_id: str
    timestamps: Sequence[float]
    meters: Mapping[str, Sequence[float]]

    @property
    def first_timestamp(self) -> float:
        """The timestamp of the first sample."""
        return self.timestamps[0]

    @property
    def timestamp(self) -> float:
        """The timestamp of the last sample, the newest."""
        return self.timestamps[-1]

    def __len__(self) -> int:
        return len(self.timestamps)

    def measurements(self) -> Iterator[Measurement]:
        """The samples one by one, oldest first."""
        names = list(self.meters)
        columns = [self.meters[name] for name in names]
        for index, timestamp in enumerate(self.timestamps):
            yield Measurement(
                self.probe_id, timestamp, {n: c[index] for n, c in zip(names, columns, strict=True)}
            )

    def encode(self) -> tuple[bytes, bytes]:
        """Return the topic and payload frames, validating on the way."""
        if not is_valid_probe_id(self.probe_id):
            raise ProtocolError("bad_probe_id", f"invalid probe id {self.probe_id!r}")
        timestamps = checked_timestamps(list(self.timestamps))
        body: dict[str, object] = {"probe_id": self.probe_id, "timestamps": timestamps}
        body.update(checked_series(self.meters, len(timestamps)))
        return topic_for(self.probe_id), orjson.dumps(body)


#: What one message carries: one sample, or a batch of one probe's samples.
Message: TypeAlias = Measurement | Batch


def finite_number(value: object) -> float | None:
    """Return *value* as a float if it is a finite JSON number, else None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


#: Meter names already found valid, so that each message does not match them again.
_VALID_METER_NAMES: set[object] = set()
#: The most names :data:`_VALID_METER_NAMES` holds; it starts again empty when full.
_MAX_REMEMBERED_NAMES = 4096


def _check_meter_name(name: object) -> None:
    """Raise ProtocolError unless *name* may name a meter (a cache in front of the rule)."""
    if name in _VALID_METER_NAMES:
        return
    if not is_valid_meter_name(name):
        raise ProtocolError("bad_value", f"invalid meter name {name!r:.80}")
    if len(_VALID_METER_NAMES) >= _MAX_REMEMBERED_NAMES:
        _VALID_METER_NAMES.clear()
    _VALID_METER_NAMES.add(name)


def checked_meters(meters: Mapping[str, object]) -> dict[str, float]:
    """Every meter of *meters* as a finite float; ProtocolError for a bad name or value."""
    checked: dict[str, float] = {}
    isfinite = math.isfinite
    for name, value in meters.items():
        _check_meter_name(name)
        if type(value) is float and isfinite(value):  # the usual case, decided at once
            checked[name] = value
            continue
        number = finite_number(value)
        if number is None:
            raise ProtocolError("bad_value", f"meter {name!r} is not a finite number")
        checked[name] = number
    return checked


_FLOAT_ONLY: Final = frozenset({float})
_NUMBER_TYPES: Final = frozenset({float, int})


def finite_numbers(values: object) -> list[float] | None:
    """Return *values* as floats if it is a list of finite JSON numbers, else None."""
    if not isinstance(values, list):
        return None
    kinds = set(map(type, values))
    if kinds == _FLOAT_ONLY:  # the usual case: kept as it is, no copy
        if math.isfinite(sum(values)):  # one NaN or infinity makes the sum so
            return values
    elif kinds <= _NUMBER_TYPES:
        try:
            if math.isfinite(sum(values)):
                return [float(v) for v in values]
        except OverflowError:  # an integer too large for a float
            return None
    numbers = [finite_number(v) for v in values]
    if any(n is None for n in numbers):
        return None
    return numbers  # type: ignore[return-value]


def checked_timestamps(values: object) -> list[float]:
    """*values* as the timestamps of a batch; ProtocolError unless 1-4096, finite, increasing."""
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_BATCH_SAMPLES:
        raise ProtocolError(
            "bad_value", f"timestamps must be a list of 1 to {MAX_BATCH_SAMPLES} numbers"
        )
    timestamps = finite_numbers(values)
    if timestamps is None:
        raise ProtocolError("bad_value", "timestamps are not all finite numbers")
    if not all(map(operator.lt, timestamps, itertools.islice(timestamps, 1, None))):
        raise ProtocolError("bad_value", "timestamps are not strictly increasing")
    return timestamps


def checked_series(meters: Mapping[str, object], length: int) -> dict[str, list[float]]:
    """Every meter of a batch as a list of *length* finite floats; ProtocolError otherwise."""
    if not meters:
        raise ProtocolError("bad_value", "no meter in payload")
    checked: dict[str, list[float]] = {}
    for name, values in meters.items():
        _check_meter_name(name)
        if not isinstance(values, list):
            raise ProtocolError(
                "bad_value", f"meter {name!r} is not a list in a payload with timestamps"
            )
        if len(values) != length:
            raise ProtocolError(
                "bad_value", f"meter {name!r} has {len(values)} values for {length} timestamps"
            )
        numbers = finite_numbers(values)
        if numbers is None:
            raise ProtocolError("bad_value", f"meter {name!r} has a value that is not finite")
        checked[name] = numbers
    return checked


def decode_payload(payload: bytes) -> Message:
    """Parse and check a payload frame, either form; raise :class:`ProtocolError` if invalid."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"payload is not UTF-8 JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_json", "payload is not a JSON object")
    probe_id = body.pop("probe_id", None)
    if not is_valid_probe_id(probe_id):
        raise ProtocolError("bad_probe_id", f"invalid probe id {probe_id!r:.80}")
    if "timestamps" in body:
        if "timestamp" in body:
            raise ProtocolError("bad_value", "a payload has timestamp or timestamps, not both")
        timestamps = checked_timestamps(body.pop("timestamps"))
        return Batch(probe_id, timestamps, checked_series(body, len(timestamps)))
    timestamp = finite_number(body.pop("timestamp", None))
    if timestamp is None:
        raise ProtocolError("bad_value", "timestamp is not a finite number")
    if not body:
        raise ProtocolError("bad_value", "no meter in payload")
    return Measurement(probe_id, timestamp, checked_meters(body))
