"""The state file: every probe's energy counter, kept across restarts.

Saves are atomic (temporary file in the same directory, fsync, rename,
fsync of the directory), so a crash leaves either the previous state or the
new one.  A state file that cannot be read or parsed is reported, moved
aside and replaced by an empty state: it never stops the daemon.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from kwapi.bus.protocol import is_valid_meter_name, is_valid_probe_id
from kwapi.plugins.api.collector import ProbeRecord

LOG = logging.getLogger(__name__)

STATE_VERSION = 1

#: The energy per stream as saved: a JSON object of :class:`_StreamsState`'s shape, made by
#: :meth:`kwapi.plugins.api.stream_energy.StreamEnergy.export` and read back by its *state*.
StreamsState = dict[str, Any]


def _probe_id(text: str) -> str:
    """*text* if it is a valid probe id; ValueError if not."""
    if not is_valid_probe_id(text):
        raise ValueError(f"invalid probe id {text!r:.80}")
    return text


def _meter_name(text: str) -> str:
    """*text* if it is a valid meter name; ValueError if not."""
    if not is_valid_meter_name(text):
        raise ValueError(f"invalid meter name {text!r}")
    return text


_ProbeId = Annotated[str, AfterValidator(_probe_id)]
_MeterName = Annotated[str, AfterValidator(_meter_name)]


class _ProbeState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timestamp: FiniteFloat
    kwh: FiniteFloat
    meters: dict[_MeterName, FiniteFloat] = Field(default_factory=dict)
    power_timestamp: FiniteFloat | None = None
    gaps: int = Field(default=0, ge=0)


class _HostStreamsState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    power_timestamp: FiniteFloat | None = None
    w: FiniteFloat | None = None
    streaming_w: FiniteFloat = 0.0
    kwh: FiniteFloat = 0.0
    gaps: int = Field(default=0, ge=0)
    stream_w: dict[str, FiniteFloat] = Field(default_factory=dict)
    history: list[tuple[FiniteFloat, FiniteFloat]] = Field(default_factory=list)


class _StreamsState(BaseModel):
    """Energy per stream (see :class:`kwapi.plugins.api.stream_energy.StreamEnergy`)."""

    model_config = ConfigDict(extra="forbid")

    hosts: dict[_ProbeId, _HostStreamsState] = Field(default_factory=dict)
    streams: dict[_ProbeId, FiniteFloat] = Field(default_factory=dict)


class _StateFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    saved_at: FiniteFloat
    probes: dict[_ProbeId, _ProbeState]
    streams: _StreamsState | None = None


class StateStore:
    """Reads and writes the state file at *path*."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        #: The energy per stream found by the last :meth:`load` (None if none).
        self.streams: StreamsState | None = None

    def load(self) -> list[ProbeRecord]:
        """Return the saved records; [] when there is no usable state file.

        The saved energy per stream, if any, is left in :attr:`streams`.
        """
        self.streams = None
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            LOG.info("no state file at %s; every probe starts from zero", self.path)
            return []
        except OSError as exc:
            self._set_aside(f"cannot be read ({exc.strerror or exc})")
            return []
        try:
            state = _StateFile.model_validate_json(data)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "document"
            self._set_aside(f"is corrupt ({where}: {problem['msg']})")
            return []
        records = [
            ProbeRecord(
                probe_id,
                probe.timestamp,
                probe.kwh,
                dict(probe.meters),
                probe.power_timestamp,
                probe.gaps,
            )
            for probe_id, probe in state.probes.items()
        ]
        if state.streams is not None:
            self.streams = state.streams.model_dump()
        LOG.info("loaded the state of %d probe(s) from %s", len(records), self.path)
        return records

    def _set_aside(self, problem: str) -> None:
        aside = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            LOG.error(
                "state file %s %s and cannot be moved aside (%s); starting from zero",
                self.path,
                problem,
                exc.strerror or exc,
            )
            return
        LOG.error(
            "state file %s %s; moved to %s, every probe starts from zero",
            self.path,
            problem,
            aside,
        )

    def save(self, records: Iterable[ProbeRecord], streams: StreamsState | None = None) -> int:
        """Write *records* (and *streams*, the energy per stream) atomically.

        Return how many records; raise OSError on failure.
        """
        probes = {
            r.probe_id: {
                "timestamp": r.timestamp,
                "kwh": r.kwh,
                "meters": dict(r.meters),
                "power_timestamp": r.power_timestamp,
                "gaps": r.gaps,
            }
            for r in records
        }
        body = {"version": STATE_VERSION, "saved_at": time.time(), "probes": probes}
        if streams is not None:
            body["streams"] = streams
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".kwapi-state-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                json.dump(body, handle, separators=(",", ":"), allow_nan=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return len(probes)


class PeriodicSaver(threading.Thread):
    """Saves what *source* returns every *interval* seconds until stopped.

    A failed save is logged (once until a save succeeds again) and retried
    at the next interval; it never ends the thread.
    """

    def __init__(
        self,
        store: StateStore,
        source: Callable[[], Iterable[ProbeRecord]],
        interval: float,
        streams_source: Callable[[], StreamsState] | None = None,
    ) -> None:
        super().__init__(name="state-saver", daemon=True)
        self._store = store
        self._source = source
        self._streams_source = streams_source
        self._interval = interval
        self._stop_event = threading.Event()
        self._failing = False
        self.saves = 0

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            self.save_now()

    def save_now(self) -> bool:
        """Save once; return whether it worked."""
        try:
            streams = self._streams_source() if self._streams_source else None
            self._store.save(self._source(), streams)
        except (OSError, ValueError) as exc:
            if not self._failing:
                LOG.error(
                    "cannot save state to %s: %s; still serving, retrying every %g s "
                    "(the file keeps the last state saved; until a save works, a crash "
                    "loses the energy counted since then)",
                    self._store.path,
                    exc,
                    self._interval,
                )
            self._failing = True
            return False
        if self._failing:
            LOG.info("state saved to %s again", self._store.path)
        self._failing = False
        self.saves += 1
        return True

    def stop(self) -> None:
        """Stop the periodic saves (the caller does the final save)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(10)
