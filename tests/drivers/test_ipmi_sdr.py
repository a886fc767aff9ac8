"""Sensor Data Records: which sensors read watts, and how raw readings convert."""

from __future__ import annotations

import struct

import pytest

from kwapi.drivers.ipmi_sdr import Sensor
from tests.drivers.simulators import bmc as simulated


def full_record(
    name: bytes = b"PSU Power",
    unit: int = 6,
    units1: int = 0x00,
    m: int = 1,
    b: int = 0,
    k1: int = 0,
    k2: int = 0,
    linearization: int = 0,
    owner: int = 0x20,
) -> bytes:
    """A Full Sensor Record laid out by hand from IPMI 2.0 table 43-1."""
    body = bytearray(43)
    body[0] = owner
    body[2] = 9  # sensor number
    body[15] = units1
    body[16] = unit
    body[18] = linearization
    body[19] = m & 0xFF
    body[20] = (m >> 2) & 0xC0
    body[21] = b & 0xFF
    body[22] = (b >> 2) & 0xC0
    body[24] = ((k2 & 0x0F) << 4) | (k1 & 0x0F)
    body[42] = 0xC0 | len(name)
    body += name
    return struct.pack("<HBBB", 1, 0x51, 0x01, len(body)) + bytes(body)


def test_the_simulators_records_parse_as_its_sensors():
    sensor = simulated.Sensor(name="Sys Power", unit="W", value=412, m=2, number=3)
    parsed = Sensor.from_record(sensor.record(1))
    assert parsed is not None
    assert (parsed.name, parsed.number, parsed.in_watts) == ("Sys Power", 3, True)
    assert parsed.convert(sensor.raw()) == 412.0
    temperature = simulated.Sensor(name="CPU Temp", unit="degrees C", value=45)
    parsed = Sensor.from_record(temperature.record(2))
    assert parsed is not None and not parsed.in_watts


@pytest.mark.parametrize(
    ("fields", "raw", "watts"),
    [
        ({"m": 5, "b": 0}, 100, 500.0),  # M only
        ({"m": 1, "b": 3, "k1": 1}, 10, 40.0),  # B x 10^K1
        ({"m": 25, "k2": -1}, 12, 30.0),  # a result exponent below zero
        ({"m": -2, "b": 500}, 50, 400.0),  # a negative M (10-bit two's complement)
        ({"m": 1, "units1": 0x80}, 0xF6, -10.0),  # two's complement readings
        ({"m": 1, "units1": 0x40}, 0xF6, -9.0),  # one's complement readings
        ({"m": 3, "linearization": 8}, 4, 144.0),  # sqr: (3 * 4) ** 2
    ],
)
def test_conversion_follows_the_specification(fields, raw, watts):
    sensor = Sensor.from_record(full_record(**fields))
    assert sensor is not None
    assert sensor.convert(raw) == pytest.approx(watts)


@pytest.mark.parametrize(
    "fields",
    [
        {"unit": 4},  # volts
        {"units1": 0x02},  # watts per something: a modifier unit
        {"units1": 0x01},  # a percentage
        {"units1": 0xC0},  # no analog reading
        {"owner": 0x2C},  # a sensor of another controller
        {"linearization": 0x70},  # an OEM non-linear conversion
    ],
)
def test_sensors_that_do_not_read_plain_watts_are_not_in_watts(fields):
    sensor = Sensor.from_record(full_record(**fields))
    assert sensor is not None and not sensor.in_watts


def test_records_other_than_full_sensor_records_are_skipped():
    record = bytearray(full_record())
    record[3] = 0x02  # a compact sensor record
    assert Sensor.from_record(bytes(record)) is None
    assert Sensor.from_record(full_record()[:30]) is None
