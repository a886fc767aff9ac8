"""Wattmetre: OmegaWatt-style lab wattmeters that write one CSV line per measurement round.

The format is the one Grid'5000 documents for its Lyon wattmetres, 50
rounds a second::

    <debug>,<debug>,<seconds>.<nanoseconds>,OK,<port 0 watts>,<port 1 watts>,...

two debugging columns (ignored), the round's timestamp, a status that must
read ``OK`` (other rounds are discarded), then one column of watts per
port; an empty column is no sample for that port in that round.  Lines
that do not look like that (a banner, a header, a truncated line) are
discarded as noise, logged once.  The lines come from a command's standard
output (``command``) or from a file being appended to (``path``), followed
across its rotations (see :class:`kwapi.drivers.tail.FollowedFile`).  Each
port is a probe, in order, ``None`` for an unused one; the samples carry
the timestamps of the lines, not the local clock, and leave in batches
(``batch``, 1 s by default).
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from collections.abc import Sequence
from typing import Any

import pydantic

from kwapi.bus.protocol import POWER_METER
from kwapi.drivers.base import (
    MAX_BATCH_SECONDS,
    MIN_INTERVAL,
    Driver,
    DriverParameters,
    Readings,
    Round,
)
from kwapi.drivers.tail import CommandOutput, FollowedFile

TIMESTAMP = re.compile(r"\d{1,12}(\.\d{1,9})?")
OK = "OK"
#: Longest line kept while waiting for its end; a longer one is noise.
MAX_LINE = 65536
# Why a line was discarded, as logged.
NOISE = "not a measurement line"
NOT_OK = "status not OK"


class WattmetreParameters(DriverParameters):
    """Parameters of the Wattmetre driver: where its lines come from."""

    interval: float = pydantic.Field(
        0.02,
        ge=MIN_INTERVAL,
        description="Seconds between two looks for new lines (the meter's own rate is 50 Hz).",
    )
    batch: float = pydantic.Field(
        1.0,
        ge=0,
        le=MAX_BATCH_SECONDS,
        description="Seconds of samples each probe sends as one batched message (0: each at once).",
    )
    command: str | None = pydantic.Field(
        None,
        min_length=1,
        description="Command whose standard output gives the lines (split like a shell would, "
        "run without one).",
    )
    path: str | None = pydantic.Field(
        None,
        min_length=1,
        description="File the lines are appended to; strftime fields (%Y %m %d %H) name a "
        "series of rotated files, the newest followed.",
    )

    @pydantic.field_validator("command")
    @classmethod
    def _splits(cls, command: str | None) -> str | None:
        if command is not None:
            try:
                words = shlex.split(command)
            except ValueError as exc:
                raise ValueError(f"cannot split the command: {exc}") from None
            if not words:
                raise ValueError("the command is empty")
        return command

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> WattmetreParameters:
        if (self.command is None) == (self.path is None):
            raise ValueError("give either 'command' or 'path'")
        return self


def parse_line(line: str) -> tuple[float, list[float | None]] | str:
    """A line's timestamp and watts per port (None: empty), or why it is discarded."""
    fields = line.split(",")
    if len(fields) < 4:
        return NOISE
    stamp = fields[2].strip()
    if TIMESTAMP.fullmatch(stamp) is None:
        return NOISE
    if fields[3].strip() != OK:
        return NOT_OK
    values: list[float | None] = []
    for field in fields[4:]:
        text = field.strip()
        if not text:
            values.append(None)
            continue
        try:
            values.append(float(text))
        except ValueError:
            return NOISE
    return float(stamp), values


class WattmetreDriver(Driver):
    """One OmegaWatt-style wattmeter; its probes are its ports, in order."""

    Parameters = WattmetreParameters
    params: WattmetreParameters

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        if not isinstance(parameters, WattmetreParameters):
            raise TypeError(f"expected WattmetreParameters, got {type(parameters).__name__}")
        if parameters.command is not None:
            program = shlex.split(parameters.command)[0]
            if shutil.which(program) is None:
                raise ValueError(f"command {program!r} not found or not executable")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._source: CommandOutput | FollowedFile | None = None
        self._resume: tuple[str, int, int] | None = None  # where a file source stopped
        self._partial = b""
        self._discarded: dict[str, int] = {}  # lines discarded, by reason, since logged

    def setup(self) -> None:
        self._partial = b""
        if self.params.command is not None:
            self._source = CommandOutput(self.params.command)
        else:
            assert self.params.path is not None
            self._source = FollowedFile(self.params.path, self._resume)
            self._source.opened.clear()  # logged here
        self.log.info("wattmeter %s: reading %s", self.wattmeter, self._source.describe())

    def read_rounds(self) -> list[Round]:
        """Every complete line that arrived since the last call, as rounds."""
        assert self._source is not None
        data = self._source.read()
        self._note_switches()
        if not data:
            return []
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_LINE:
            self._discard(NOISE, self._partial[:80].decode("utf-8", errors="replace"))
            self._partial = b""
        rounds = []
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            parsed = parse_line(line)
            if isinstance(parsed, str):
                self._discard(parsed, line)
                continue
            timestamp, values = parsed
            rounds.append((timestamp, self._readings(values)))
        return rounds

    def teardown(self) -> None:
        source, self._source = self._source, None
        if isinstance(source, FollowedFile):
            self._resume = source.position()
        if source is not None:
            source.close()

    def _readings(self, values: list[float | None]) -> Readings:
        return {
            probe_id: {POWER_METER: value}
            for probe_id, value in zip(self.probe_ids, values, strict=False)
            if probe_id is not None and value is not None
        }

    def _note_switches(self) -> None:
        """Log the files a file source opened; drop a line the old one left unfinished."""
        if not isinstance(self._source, FollowedFile) or not self._source.opened:
            return
        opened, self._source.opened = self._source.opened, []
        if self._partial:
            self._discard(NOISE, self._partial[:80].decode("utf-8", errors="replace"))
            self._partial = b""
        for path in opened:
            self.log.info("wattmeter %s: reading file %s", self.wattmeter, path)

    def _discard(self, reason: str, line: str) -> None:
        """Count a discarded line; log the first of each reason as a warning, then at debug."""
        count = self._discarded.get(reason, 0)
        self._discarded[reason] = count + 1
        self.log.log(
            logging.WARNING if count == 0 else logging.DEBUG,
            "wattmeter %s: discarding a line (%s)%s: %.80r",
            self.wattmeter,
            reason,
            "" if count == 0 else f" ({count + 1} so far)",
            line,
        )
