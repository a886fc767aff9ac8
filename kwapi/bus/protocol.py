"""Bus protocol v1: how one measurement travels as ZeroMQ frames.

A message has three frames: the topic (probe id followed by ``.``), the
payload (a compact UTF-8 JSON object) and the signature (see
:mod:`kwapi.bus.signing`); the third frame is absent when signing is off.
See doc/protocol.rst for the full contract.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import orjson

PROTOCOL_VERSION = 1

#: The meter that carries power, in watts; every other meter is free-form.
POWER_METER: Final = "w"

PROBE_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@-]{1,255}")
METER_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
RESERVED_KEYS = frozenset({"probe_id", "timestamp"})


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


def finite_number(value: object) -> float | None:
    """Return *value* as a float if it is a finite JSON number, else None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def checked_meters(meters: Mapping[str, object]) -> dict[str, float]:
    """Every meter of *meters* as a finite float; ProtocolError for a bad name or value."""
    checked: dict[str, float] = {}
    for name, value in meters.items():
        if not is_valid_meter_name(name):
            raise ProtocolError("bad_value", f"invalid meter name {name!r:.80}")
        number = finite_number(value)
        if number is None:
            raise ProtocolError("bad_value", f"meter {name!r} is not a finite number")
        checked[name] = number
    return checked


def decode_payload(payload: bytes) -> Measurement:
    """Parse and check a payload frame; raise :class:`ProtocolError` if invalid."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"payload is not UTF-8 JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_json", "payload is not a JSON object")
    probe_id = body.pop("probe_id", None)
    if not is_valid_probe_id(probe_id):
        raise ProtocolError("bad_probe_id", f"invalid probe id {probe_id!r:.80}")
    timestamp = finite_number(body.pop("timestamp", None))
    if timestamp is None:
        raise ProtocolError("bad_value", "timestamp is not a finite number")
    if not body:
        raise ProtocolError("bad_value", "no meter in payload")
    return Measurement(probe_id, timestamp, checked_meters(body))
