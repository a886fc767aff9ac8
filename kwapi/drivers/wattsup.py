"""Wattsup: a Watts up? PRO meter on a USB serial port (pyserial).

The meter is told to forget its stored records (``#R,W,0;``) and to send a
record every *interval* seconds on the serial link (``#L,W,3,E,1,<n>;``).
Each record looks like ``#d,-,18,<W>,<V>,<A>,...;`` where the fourth field
is the active power in tenths of a watt.  Bytes that do not form a complete,
well-formed record are dropped; a meter silent for too long, or a port that
vanishes, is reopened and told again to log.
"""

from __future__ import annotations

import contextlib
import errno
import re
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import pydantic

from kwapi.bus.protocol import POWER_METER
from kwapi.drivers.base import (
    DEVICE_GONE,
    TIMEOUT,
    DeviceError,
    Driver,
    DriverParameters,
    Readings,
    SectionError,
)

BAUD_RATE = 115200
# Longest record kept while waiting for its terminating ';' (real ones are ~100 bytes).
MAX_RECORD = 512
# Other well-formed messages of the meter (settings, acknowledgements): ignored.
REPLY = re.compile(rb"#[A-Za-z],[^#;]*;")
READ_STEP = 0.2  # seconds one serial read may block, so a stop request is seen quickly


class WattsupParameters(DriverParameters):
    """Parameters of the Wattsup driver."""

    device: str = pydantic.Field(
        "/dev/ttyUSB0",
        min_length=1,
        description="Serial device of the meter; prefer a stable /dev/serial/by-id/ link.",
    )
    interval: int = pydantic.Field(
        1, ge=1, le=3600, description="Seconds between the meter's records (whole seconds)."
    )
    timeout: float | None = pydantic.Field(
        None,
        gt=0,
        description="Seconds without a record before the port is reopened "
        "(default: three intervals, at least 5 s).",
    )

    @pydantic.field_validator("timeout")
    @classmethod
    def _longer_than_interval(
        cls, timeout: float | None, info: pydantic.ValidationInfo
    ) -> float | None:
        interval = info.data.get("interval")
        if timeout is not None and interval is not None and timeout <= interval:
            raise ValueError(f"must be longer than the interval ({interval} s)")
        return timeout

    @property
    def silence_limit(self) -> float:
        """Seconds of silence tolerated before the meter is set up again."""
        return self.timeout if self.timeout is not None else max(5.0, 3.0 * self.interval)


class RecordParser:
    """Cuts a byte stream into Watts up? ``#d`` records and extracts watts.

    Garbage between records, records cut short by a newer ``#`` and records
    whose field count or power field is wrong are dropped and counted.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> list[float]:
        """Add *data*; return the watts of every complete valid record found."""
        self._buffer += data
        watts: list[float] = []
        while True:
            start = self._buffer.find(b"#")
            if start < 0:
                if self._buffer.strip():
                    self.dropped += 1
                self._buffer.clear()
                return watts
            if start > 0:
                if self._buffer[:start].strip():
                    self.dropped += 1
                del self._buffer[:start]
            end = self._buffer.find(b";")
            if end < 0:
                if len(self._buffer) > MAX_RECORD:  # no end in sight: resynchronise
                    self.dropped += 1
                    del self._buffer[:1]
                    continue
                return watts
            record = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            restart = record.rfind(b"#")
            if restart > 0:  # a partial record followed by a new one
                self.dropped += 1
                record = record[restart:]
            value = parse_record(record)
            if value is not None:
                watts.append(value)
            elif record.startswith(b"#d,") or not REPLY.fullmatch(record):
                self.dropped += 1  # a damaged record, or noise that looked like one


def parse_record(record: bytes) -> float | None:
    """Return the watts of one ``#d,...;`` record, or None if it is not a valid one."""
    try:
        text = record.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not (text.startswith("#d,") and text.endswith(";")):
        return None
    fields = text[:-1].split(",")
    if len(fields) < 4:
        return None
    try:
        declared = int(fields[2])
        tenths = int(fields[3])
    except ValueError:
        return None
    if declared != len(fields) - 3 or tenths < 0:
        return None
    return tenths / 10.0


class WattsupDriver(Driver):
    """One Watts up? PRO meter; its single probe gets the meter's watts."""

    Parameters = WattsupParameters
    params: WattsupParameters
    _port: Any = None  # the open serial.Serial
    _outage: str | None = None

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        if len(probe_ids) != 1 or probe_ids[0] is None:
            raise SectionError(
                "probes", "a Watts up? meter measures one outlet: give exactly one probe"
            )
        try:
            import serial  # noqa: F401
        except ImportError:
            raise ValueError(
                "the Wattsup driver needs pyserial: pip install 'kwapi[serial]'"
            ) from None

    def setup(self) -> None:
        import serial

        self._parser = RecordParser()
        self._port = None
        try:
            self._port = serial.Serial(
                self.params.device,
                BAUD_RATE,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=READ_STEP,
                write_timeout=5.0,
                exclusive=True,
            )
            self._port.reset_input_buffer()
            self._port.write(b"#R,W,0;")  # forget the records stored in the meter
            self._port.write(f"#L,W,3,E,1,{self.params.interval};".encode("ascii"))
            self._port.flush()
        except serial.SerialException as exc:
            self._fail(_reason(exc))
        self._last_record = time.monotonic()

    def read(self) -> Readings:
        """Wait for the next record (up to one interval and a second); return its watts."""
        import serial

        deadline = time.monotonic() + self.params.interval + 1.0
        watts: list[float] = []
        port = self._port
        try:
            while not watts and not self.stop_event.is_set():
                data = port.read(max(1, port.in_waiting))
                if data:
                    watts.extend(self._parser.feed(data))
                now = time.monotonic()
                if not watts and now - self._last_record > self.params.silence_limit:
                    self._fail(
                        f"no record from the meter for {self.params.silence_limit:g} s; "
                        "reopening the port",
                        TIMEOUT,
                    )
                if now > deadline:
                    break
        except serial.SerialException as exc:
            self._fail(_reason(exc))
        if self._parser.dropped:
            self.log.debug(
                "wattmeter %s: dropped %d malformed piece(s) of data",
                self.wattmeter,
                self._parser.dropped,
            )
            self._parser.dropped = 0
        if not watts:
            return {}
        self._last_record = time.monotonic()
        self._outage = None
        return {self.probe_ids[0]: {POWER_METER: watts[-1]}}

    def _fail(self, reason: str, kind: str = DEVICE_GONE) -> NoReturn:
        """Raise the DeviceError of the current outage.

        The first failure names the outage; later ones (the port cannot be
        reopened while the meter is away) repeat it, so the base class logs
        one line per outage.  Each reason still goes to the debug log.
        """
        self.log.debug("wattmeter %s: %s: %s", self.wattmeter, self.params.device, reason)
        if self._outage is None:
            self._outage = f"meter on {self.params.device} unavailable: {reason}"
        raise DeviceError(self._outage, kind)

    def teardown(self) -> None:
        port = getattr(self, "_port", None)
        self._port = None
        if port is not None:
            with contextlib.suppress(OSError, ValueError):
                port.close()


def _reason(exc: Exception) -> str:
    """A short one-line reason from a pyserial error."""
    code = getattr(exc, "errno", None)
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    if code == errno.ENOENT:
        return "no such device (unplugged?)"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (add the user to the dialout group)"
    if "returned no data" in text or f"[Errno {errno.EIO}]" in text or code == errno.EIO:
        return "disconnected"
    if "exclusively lock" in text:
        return "in use by another program"
    return text
