"""The BMC's Sensor Data Records: finding its sensors in watts and converting their readings.

Full Sensor Records (IPMI v2.0 section 43.1) carry what turns a raw
reading byte into a value: ``y = L((M * x + B * 10**K1) * 10**K2)``
(section 36.3).  Offsets below count from the start of the record, header
included, as the specification's byte numbers minus one.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kwapi.drivers.rmcp_packets import IpmiResponse

STORAGE_NETFN = 0x0A
SENSOR_NETFN = 0x04
GET_SDR_REPOSITORY_INFO = 0x20
RESERVE_SDR_REPOSITORY = 0x22
GET_SDR = 0x23
GET_SENSOR_READING = 0x2D
FULL_SENSOR_RECORD = 0x01
BMC_OWNER = 0x20
WATTS_UNIT = 6
LAST_RECORD = 0xFFFF
HEADER_SIZE = 5
CHUNK = 16  # bytes per Get SDR: every BMC serves partial reads this small
RESERVATION_CANCELLED = 0xC5
READING_UNAVAILABLE = 0x20
SCANNING_ENABLED = 0x40
MAX_RECORDS = 1024

LINEARIZATIONS: dict[int, Callable[[float], float]] = {
    0: lambda y: y,
    1: math.log,
    2: math.log10,
    3: math.log2,
    4: math.exp,
    5: lambda y: 10**y,
    6: lambda y: 2**y,
    7: lambda y: 1 / y,
    8: lambda y: y * y,
    9: lambda y: y**3,
    10: math.sqrt,
    11: lambda y: math.copysign(abs(y) ** (1 / 3), y),
}

Command = Callable[[int, int, bytes], Awaitable[IpmiResponse]]


class SdrError(Exception):
    """The SDR repository could not be read."""


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


@dataclass(frozen=True)
class Sensor:
    """A threshold sensor of a Full Sensor Record, with its conversion factors."""

    name: str
    number: int
    owner: int
    lun: int
    base_unit: int
    modifier: int  # bits 2:1 of units 1: none, divided by, times
    percentage: bool
    analog_format: int  # 0 unsigned, 1 one's complement, 2 two's complement, 3 none
    linearization: int
    m: int
    b: int
    k1: int
    k2: int

    @classmethod
    def from_record(cls, record: bytes) -> Sensor | None:
        """The sensor of a Full Sensor Record; None for any other record."""
        if len(record) < 48 or record[3] != FULL_SENSOR_RECORD:
            return None
        units = record[20]
        id_length = record[47] & 0x1F
        return cls(
            name=record[48 : 48 + id_length].decode("latin-1").rstrip("\0 "),
            number=record[7],
            owner=record[5],
            lun=record[6] & 0x03,
            base_unit=record[21],
            modifier=(units >> 1) & 0x03,
            percentage=bool(units & 0x01),
            analog_format=units >> 6,
            linearization=record[23] & 0x7F,
            m=_signed(record[24] | (record[25] & 0xC0) << 2, 10),
            b=_signed(record[26] | (record[27] & 0xC0) << 2, 10),
            k1=_signed(record[29] & 0x0F, 4),
            k2=_signed(record[29] >> 4, 4),
        )

    @property
    def in_watts(self) -> bool:
        """Whether the sensor reads plain watts on the BMC itself, numerically."""
        return (
            self.base_unit == WATTS_UNIT
            and not self.modifier
            and not self.percentage
            and self.analog_format != 3
            and self.linearization in LINEARIZATIONS
            and self.owner == BMC_OWNER
            and self.lun == 0
        )

    def convert(self, raw: int) -> float:
        """The value of the raw reading byte *raw*."""
        if self.analog_format == 1:
            x = raw - 0xFF if raw & 0x80 else raw
        elif self.analog_format == 2:
            x = _signed(raw, 8)
        else:
            x = raw
        value = (self.m * x + self.b * 10.0**self.k1) * 10.0**self.k2
        return LINEARIZATIONS[self.linearization](value)


async def read_sensors(command: Command) -> list[Sensor]:
    """Every sensor of the BMC's SDR repository that has a Full Sensor Record."""
    reservation = await _reserve(command)
    sensors: list[Sensor] = []
    record_id = 0
    for _ in range(MAX_RECORDS):
        record, following = await _get_record(command, reservation, record_id)
        sensor = Sensor.from_record(record)
        if sensor is not None:
            sensors.append(sensor)
        if following in (LAST_RECORD, record_id):
            return sensors
        record_id = following
    raise SdrError(f"more than {MAX_RECORDS} records in the SDR repository")


async def _reserve(command: Command) -> int:
    response = await command(STORAGE_NETFN, RESERVE_SDR_REPOSITORY, b"")
    if response.code or len(response.data) < 2:
        raise SdrError(f"cannot reserve the SDR repository (code 0x{response.code:02x})")
    reservation: int = struct.unpack_from("<H", response.data)[0]
    return reservation


async def _get_record(command: Command, reservation: int, record_id: int) -> tuple[bytes, int]:
    """The whole record *record_id* and the id of the next one, read in small chunks."""
    record = b""
    following = LAST_RECORD
    size = HEADER_SIZE
    while len(record) < size:
        length = min(CHUNK, size - len(record))
        request = struct.pack("<HHBB", reservation, record_id, len(record), length)
        response = await command(STORAGE_NETFN, GET_SDR, request)
        if response.code == RESERVATION_CANCELLED:
            reservation = await _reserve(command)
            continue
        if response.code or len(response.data) < 3:
            raise SdrError(f"cannot read SDR record {record_id} (code 0x{response.code:02x})")
        following = struct.unpack_from("<H", response.data)[0]
        record += response.data[2:]
        if len(record) >= HEADER_SIZE and size == HEADER_SIZE:
            size = HEADER_SIZE + record[4]
    return record[:size], following


async def read_sensor(command: Command, sensor: Sensor) -> float | None:
    """The current value of *sensor*; None while the BMC says it is unavailable."""
    response = await command(SENSOR_NETFN, GET_SENSOR_READING, bytes([sensor.number]))
    if response.code or len(response.data) < 2:
        raise SdrError(f"cannot read sensor {sensor.name!r} (code 0x{response.code:02x})")
    flags = response.data[1]
    if flags & READING_UNAVAILABLE or not flags & SCANNING_ENABLED:
        return None
    return sensor.convert(response.data[0])
