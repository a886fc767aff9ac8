"""Batching: each probe's readings buffered and sent as bus :class:`Batch` messages.

With a driver's ``batch`` parameter above 0, :class:`Batcher` holds the
samples of every probe of one wattmeter for ``batch`` seconds, then hands
them back as one :class:`~kwapi.bus.protocol.Batch` per probe.  The batching
windows lie on a grid of the monotonic clock offset by half a reading
interval from the driver's own reading grid, so that a window of ``batch``
seconds always holds the same number of readings.  A batch needs every
meter for every timestamp: a sample whose meters differ from the buffered
ones closes the probe's batch first.  A batch carries at most
:data:`~kwapi.bus.protocol.MAX_BATCH_SAMPLES` samples: a full one leaves at
once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from kwapi.bus.protocol import MAX_BATCH_SAMPLES, Batch


class ProbeBuffer:
    """One probe's buffered samples: one timestamp list and a column per meter."""

    __slots__ = ("columns", "names", "timestamps")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.timestamps: list[float] = []
        self.columns: tuple[list[float], ...] = tuple([] for _ in names)

    def add(self, timestamp: float, meters: Mapping[str, float]) -> None:
        """Append one sample; its meters are :attr:`names`."""
        self.timestamps.append(timestamp)
        for name, column in zip(self.names, self.columns, strict=True):
            column.append(float(meters[name]))

    def batch(self, probe_id: str) -> Batch:
        """The buffered samples as one message."""
        return Batch(probe_id, self.timestamps, dict(zip(self.names, self.columns, strict=True)))

    def __len__(self) -> int:
        return len(self.timestamps)


class Batcher:
    """The samples of one wattmeter's probes, held until their window of *seconds* ends.

    Not thread-safe: the driver serialises calls.  *phase* (seconds) places
    the grid of window ends on the monotonic clock.
    """

    def __init__(self, seconds: float, phase: float = 0.0) -> None:
        self.seconds = seconds
        self.phase = phase % seconds
        self._buffers: dict[str, ProbeBuffer] = {}
        self._last: dict[str, float] = {}  # each probe's newest timestamp taken
        self._due: float | None = None  # when the current window ends, None if empty

    @property
    def due(self) -> float | None:
        """The monotonic time the buffered samples must leave, None when none are buffered."""
        return self._due

    def is_newer(self, probe_id: str, timestamp: float) -> bool:
        """Whether *timestamp* comes after the last one taken for *probe_id*."""
        last = self._last.get(probe_id)
        return last is None or timestamp > last

    def add(self, probe_id: str, timestamp: float, meters: Mapping[str, float]) -> list[Batch]:
        """Take one sample; return the batches that must leave now.

        Those are every probe's batch when the window ended without a flush,
        this probe's when its meters change, and this probe's when it is full.
        The caller checks :meth:`is_newer` first: timestamps must increase.
        """
        now = time.monotonic()
        out = self.flush() if self._due is not None and now >= self._due else []
        names = tuple(meters)
        buffer = self._buffers.get(probe_id)
        if buffer is not None and buffer.names != names:
            out.append(self._buffers.pop(probe_id).batch(probe_id))
            buffer = None
        if buffer is None:
            buffer = self._buffers[probe_id] = ProbeBuffer(names)
        buffer.add(timestamp, meters)
        self._last[probe_id] = timestamp
        if len(buffer) >= MAX_BATCH_SAMPLES:
            out.append(self._buffers.pop(probe_id).batch(probe_id))
        if self._buffers and self._due is None:
            self._due = self._window_end(now)
        elif not self._buffers:
            self._due = None
        return out

    def flush(self) -> list[Batch]:
        """Every buffered probe's batch; the buffers are empty afterwards."""
        out = [buffer.batch(probe_id) for probe_id, buffer in self._buffers.items()]
        self._buffers = {}
        self._due = None
        return out

    def _window_end(self, now: float) -> float:
        """The first point of the grid of window ends after *now*."""
        end = now + (self.phase - now) % self.seconds
        return end if end > now else end + self.seconds

    def __len__(self) -> int:
        """Samples buffered, all probes together."""
        return sum(len(buffer) for buffer in self._buffers.values())
