"""The lines of the store's /api/v1/export: counted, parsed, and a probe's energy from them.

Pure functions on bytes, so that a worker process can run them on the
lines the daemon read (see :mod:`kwapi.plugins.history.energy_workers`).
One line is one series: ``{"metric": {...}, "values": [...],
"timestamps": [...]}``, timestamps in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from kwapi.plugins.history.energy_range import ProbeEnergy, Samples, probe_energy

_TIMESTAMPS = b'"timestamps":['


class StoreError(Exception):
    """The store answered what a read cannot use (a 4xx, a malformed line): a 502."""


def count_samples(line: bytes) -> int:
    """How many samples *line* holds, counted without parsing it (the commas of its timestamps)."""
    begin = line.find(_TIMESTAMPS)
    if begin < 0:
        return len(parse_line(line).timestamps)
    begin += len(_TIMESTAMPS)
    end = line.find(b"]", begin)
    if end < 0:
        raise StoreError(f"the store's export is not JSON series: {line[:80]!r}")
    return 0 if end == begin else line.count(b",", begin, end) + 1


def parse_line(line: bytes) -> Samples:
    """The samples of one export line, checked."""
    try:
        series = orjson.loads(line)
        stamps, values = series["timestamps"], series["values"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise StoreError(f"the store's export is not JSON series: {line[:80]!r}") from None
    if not (isinstance(stamps, list) and isinstance(values, list)) or len(stamps) != len(values):
        raise StoreError("the store's export has series of unequal timestamps and values")
    return Samples(stamps, values)


def parse_lines(lines: Sequence[bytes]) -> Samples:
    """One series from its export lines (a store may split one): sorted by time, stably,
    so that of a timestamp written twice the first value stays first."""
    parts = [parse_line(line) for line in lines]
    if not parts:
        return Samples([], [])
    if len(parts) == 1:
        return parts[0]
    pairs = sorted(
        ((t, v) for part in parts for t, v in zip(*part, strict=True)), key=lambda p: p[0]
    )
    return Samples([t for t, _ in pairs], [v for _, v in pairs])


def energy_of_lines(
    lines: Sequence[bytes], start: float, end: float, max_gap: float
) -> ProbeEnergy:
    """The energy over [start, end] of the probe whose power series *lines* are."""
    return probe_energy(parse_lines(lines), start, end, max_gap)
