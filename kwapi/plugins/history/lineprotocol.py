"""Samples as InfluxDB line protocol: one line per sample, every meter a field.

``kwapi,probe=node-1 w=84.5,temperature=41.0 1795451827869`` is sample
``{"w": 84.5, "temperature": 41.0}`` of probe ``node-1`` at 1795451827.869 s
(precision ``ms``). VictoriaMetrics stores it as the series
``kwapi_w{probe="node-1"}`` and ``kwapi_temperature{probe="node-1"}``
(:func:`series_name`); InfluxDB as fields ``w`` and ``temperature`` of
measurement ``kwapi``, tag ``probe``. Values are written as floats (never the
integer form ``1i``), so that a field keeps one type in InfluxDB.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat

import orjson

from kwapi.bus.protocol import Batch, Message

#: Timestamp units per second, by precision (the ``store_precision`` option).
SCALES: Mapping[str, int] = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: Digits written after the rounded timestamp: a float of seconds since 1970 holds a
#: quarter of a microsecond, so nanoseconds are its microseconds followed by 000.
_SUFFIXES: Mapping[str, tuple[int, str]] = {
    "ms": (1_000, ""),
    "us": (1_000_000, ""),
    "ns": (1_000_000, "000"),
}
#: The ``precision`` query argument of the /write endpoints (InfluxDB 1.x' names).
QUERY_PRECISION: Mapping[str, str] = {"ms": "ms", "us": "u", "ns": "ns"}
#: The tag that carries the probe id.
PROBE_TAG = "probe"

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})
_SPECIAL = frozenset(", =\\\n")
#: Every byte of a JSON list of numbers that orjson writes as :func:`repr` does,
#: once :data:`_NOT_REPR` is not in it: no exponent, NaN or infinity, and no
#: fixed-point number under 1e-4 (orjson writes ``0.00001``, repr ``1e-05``).
_PLAIN_NUMBER_BYTES = b"0123456789.,-"
_NOT_REPR = b"0.0000"


def escape_key(text: str) -> str:
    """*text* as a tag key, tag value or field key (commas, equal signs, spaces escaped)."""
    if _SPECIAL.isdisjoint(text):
        return text
    if "\n" in text:
        raise ValueError(f"a line-protocol name cannot hold a newline: {text!r:.80}")
    return text.translate(_KEY_ESCAPES)


def escape_measurement(text: str) -> str:
    """*text* as a measurement name (commas and spaces escaped)."""
    if "\n" in text:
        raise ValueError(f"a line-protocol name cannot hold a newline: {text!r:.80}")
    return text.translate(_MEASUREMENT_ESCAPES)


def series_name(measurement: str, meter: str) -> str:
    """The name VictoriaMetrics gives field *meter* of *measurement*: ``kwapi_w``."""
    return f"{measurement}_{meter}"


class LineFormat:
    """Formats messages of the bus as lines of *measurement*, timestamps in *precision*."""

    def __init__(self, measurement: str = "kwapi", precision: str = "ms") -> None:
        self.measurement = measurement
        self.precision = precision
        self._scale, self._suffix = _SUFFIXES[precision]
        self._head = f"{escape_measurement(measurement)},{PROBE_TAG}="
        self._fields: dict[tuple[str, ...], list[str]] = {}

    def lines(self, message: Message) -> list[str]:
        """The lines of every sample of *message*, oldest first."""
        head = self._head + escape_key(message.probe_id) + " "
        scale = self._scale
        if isinstance(message, Batch):
            return self._batch_lines(head, message.timestamps, message.meters)
        keys = self._keys(tuple(message.meters))
        fields = ",".join(
            [key + repr(value) for key, value in zip(keys, message.meters.values(), strict=True)]
        )
        return [f"{head}{fields} {round(message.timestamp * scale)}{self._suffix}"]

    def text(self, message: Message) -> bytes:
        """The lines of :meth:`lines`, each ended by a newline, as UTF-8: a body's part.

        A batch's numbers are written by orjson, in C, where it writes them as
        :func:`repr` would (the usual case); the others go through :meth:`lines`.
        """
        if isinstance(message, Batch):
            text = self._batch_text(message)
            if text is not None:
                return text
        lines = self.lines(message)
        return ("\n".join(lines) + "\n").encode() if lines else b""

    def _batch_text(self, batch: Batch) -> bytes | None:
        """:meth:`text` of *batch* through orjson; None where it would differ from repr."""
        timestamps = batch.timestamps
        count = len(timestamps)
        columns = list(batch.meters.values())
        if not count or not columns or any(len(column) != count for column in columns):
            return None
        try:
            stamps = orjson.dumps(
                list(map(round, map(operator.mul, timestamps, repeat(self._scale))))
            )
            values = [orjson.dumps(column) for column in columns]
        except (TypeError, ValueError, OverflowError):  # left to lines(), which says why
            return None
        for dumped in values:
            if dumped.translate(None, _PLAIN_NUMBER_BYTES) != b"[]" or _NOT_REPR in dumped:
                return None
        head = (self._head + escape_key(batch.probe_id) + " ").encode()
        keys = self._keys(tuple(batch.meters))
        end = self._suffix.encode() + b"\n"
        if len(values) == 1:  # the usual case: power only
            prefix = head + keys[0].encode()
            pairs = zip(values[0][1:-1].split(b","), stamps[1:-1].split(b","), strict=True)
            return prefix + (end + prefix).join(map(b" ".join, pairs)) + end
        fields = ",".join([key.replace("%", "%%") + "%s" for key in keys]).encode()
        line = head.replace(b"%", b"%%") + fields + b" %s" + end
        split = [dumped[1:-1].split(b",") for dumped in values]
        stamp_texts = stamps[1:-1].split(b",")
        return b"".join(map(line.__mod__, zip(*split, stamp_texts, strict=True)))

    def _batch_lines(
        self, head: str, timestamps: Sequence[float], meters: Mapping[str, Sequence[float]]
    ) -> list[str]:
        """The lines of a batch: one per timestamp, a field per meter."""
        scale, suffix = self._scale, self._suffix
        keys = self._keys(tuple(meters))
        columns = list(meters.values())
        if len(columns) == 1:  # the usual case: power only
            prefix = head + keys[0]
            return [
                f"{prefix}{value!r} {round(t * scale)}{suffix}"
                for value, t in zip(columns[0], timestamps, strict=True)
            ]
        return [
            f"{head}{_fields(keys, values)} {round(t * scale)}{suffix}"
            for t, *values in zip(timestamps, *columns, strict=True)
        ]

    def _keys(self, names: tuple[str, ...]) -> list[str]:
        """``name=`` of each meter of *names*, escaped (cached per set of meters)."""
        keys = self._fields.get(names)
        if keys is None:
            keys = [escape_key(name) + "=" for name in names]
            if len(self._fields) < 1024:
                self._fields[names] = keys
        return keys


def _fields(keys: Sequence[str], values: Iterable[float]) -> str:
    """``w=1.5,temperature=40.0`` of *keys* and *values*."""
    return ",".join([key + repr(value) for key, value in zip(keys, values, strict=True)])
