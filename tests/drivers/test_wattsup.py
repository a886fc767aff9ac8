"""Wattsup driver against a simulated Watts up? PRO meter on a pseudo-terminal."""

from __future__ import annotations

import logging
import termios

import pytest

from kwapi.drivers.wattsup import RecordParser, WattsupDriver, parse_record
from tests.drivers.simulators.wattsup_meter import WattsupMeter
from tests.harness.daemons import expect_config_error
from tests.harness.drivers import RunningDriver, warnings_about
from tests.harness.processes import wait_for

RECORD = b"#d,-,18,1234,1198,1030,0,0,0,0,0,0,0,0,0,0,0,98,0,0,600;"


@pytest.fixture
def meter(tmp_path):
    simulator = WattsupMeter(tmp_path / "ttyWATTSUP", watts=123.4).start()
    yield simulator
    simulator.stop()


class TestParser:
    def test_record_fourth_field_is_tenths_of_watts(self):
        assert parse_record(RECORD) == 123.4

    @pytest.mark.parametrize(
        "record",
        [
            b"#d,-,18,1234;",  # fewer fields than announced
            b"#d,-,18,12x4,1198,1030,0,0,0,0,0,0,0,0,0,0,0,98,0,0,600;",
            b"#d,-,18,-5,1198,1030,0,0,0,0,0,0,0,0,0,0,0,98,0,0,600;",
            b"#s,-,2,1,2;",  # a reply, not a record
            b"#d,-,18,\xff\xfe,1198,1030,0,0,0,0,0,0,0,0,0,0,0,98,0,0,600;",
        ],
    )
    def test_bad_records_are_refused(self, record):
        assert parse_record(record) is None

    def test_resynchronises_on_noise_and_cut_records(self):
        parser = RecordParser()
        stream = b"\x00\xffnoise" + RECORD[:20] + b"#d,-,18,99" + RECORD + b"junk;" + RECORD[:30]
        assert parser.feed(stream) == [123.4]
        assert parser.dropped >= 3
        # the cut record at the end is completed by the next chunk
        assert parser.feed(RECORD[30:]) == [123.4]

    def test_endless_garbage_does_not_grow_the_buffer(self):
        parser = RecordParser()
        assert parser.feed(b"#" + b"x" * 10_000) == []
        assert parser.feed(RECORD) == [123.4]


def test_readings_published_after_the_meter_is_told_to_log(meter):
    with RunningDriver(WattsupDriver, ["outlet-1"], device=str(meter.link), interval=1) as run:
        first = run.wait_count(2)
        assert {m.probe_id for m in first} == {"outlet-1"}
        assert all(m.meters == {"w": 123.4} for m in first)
        meter.watts = 87.6
        wait_for(
            lambda: run.measurements[-1].meters["w"] == 87.6, 10, "the new watts to be published"
        )
    assert b"#R,W,0;" in meter.commands
    assert b"#L,W,3,E,1,1;" in meter.commands
    assert meter.commands.index(b"#R,W,0;") < meter.commands.index(b"#L,W,3,E,1,1;")


def test_port_is_set_to_115200_8n1(meter):
    """Speed and stop bits as the pty holds them; data bits and parity as the
    driver asked pyserial, since Linux forces 8 bits and no parity on a pty."""
    # Each pty of the simulator starts at 9600 baud, two stop bits.
    ispeed, _, cflag = meter.line_settings()
    assert ispeed == termios.B9600 and cflag & termios.CSTOPB
    with RunningDriver(WattsupDriver, ["outlet-1"], device=str(meter.link), interval=1) as run:
        run.wait_count(1)
        ispeed, ospeed, cflag = meter.line_settings()
        port = run.driver._port
        assert (port.baudrate, port.bytesize, port.parity, port.stopbits) == (115200, 8, "N", 1)
    assert ispeed == ospeed == termios.B115200
    assert cflag & termios.CSIZE == termios.CS8
    assert not cflag & termios.PARENB, "parity enabled"
    assert not cflag & termios.CSTOPB, "two stop bits"


def test_garbage_and_partial_records_are_skipped(meter):
    with RunningDriver(WattsupDriver, ["outlet-1"], device=str(meter.link), interval=1) as run:
        run.wait_count(1)
        meter.inject(b"\x00\xff\x13line noise\r\n#d,-,18,99")  # noise, then a record cut short
        meter.inject(b"#d,-,18,5555,1;")  # a record with fields missing
        meter.inject(b"#d,-,18,77")  # the start of a record that never ends...
        meter.watts = 50.0  # ...before the meter's next record
        wait_for(lambda: run.measurements[-1].meters["w"] == 50.0, 10, "readings after noise")
        run.wait_more(1)
    published = {m.meters["w"] for m in run.measurements}
    assert published <= {123.4, 50.0}, f"false readings published: {published}"


def test_silent_meter_is_set_up_again(meter, caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers")
    with RunningDriver(
        WattsupDriver, ["outlet-1"], device=str(meter.link), interval=1, timeout=2
    ) as run:
        run.wait_count(1)
        meter.silent = True
        logging_commands = meter.commands.count(b"#L,W,3,E,1,1;")
        wait_for(
            lambda: meter.commands.count(b"#L,W,3,E,1,1;") > logging_commands,
            15,
            "the driver to reopen the port and ask again for records",
        )
        meter.watts = 42.0
        meter.silent = False
        wait_for(lambda: run.measurements[-1].meters["w"] == 42.0, 10, "readings to resume")
    assert len(warnings_about(caplog, "no record from the meter for 2 s")) == 1
    assert warnings_about(caplog, "device is back")


def test_unplugged_meter_is_read_again_when_plugged_back(meter, caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi.drivers")
    with RunningDriver(
        WattsupDriver, ["outlet-1"], device=str(meter.link), interval=1, max_backoff=1.5
    ) as run:
        run.wait_count(1)
        meter.unplug()
        wait_for(lambda: warnings_about(caplog, "unavailable"), 10, "the outage to be logged")
        # the driver keeps trying to reopen the vanished port, at least twice
        wait_for(
            lambda: sum("no such device" in r.getMessage() for r in caplog.records) >= 2,
            15,
            "retries while unplugged",
        )
        published_while_away = len(run.measurements)
        meter.watts = 99.9
        meter.plug()
        wait_for(lambda: run.measurements[-1].meters["w"] == 99.9, 15, "readings to resume")
    assert meter.plugs == 2
    assert b"#L,W,3,E,1,1;" in meter.commands[-2:]  # the new meter was told to log
    assert len(warnings_about(caplog, "unavailable")) == 1  # one line for the whole outage
    assert warnings_about(caplog, "device is back")
    assert all(m.meters["w"] in (123.4, 99.9) for m in run.measurements)
    assert published_while_away >= 1


def test_kwapi_drivers_publishes_meter_readings(meter, kwapi_drivers):
    process, client = kwapi_drivers(
        f"""
        [Bench outlet]
        driver = Wattsup
        probes = ['bench-1']
        parameters = {{'device': '{meter.link}', 'interval': 1}}
        """
    )
    measurement = client.receive(timeout=20)
    assert measurement.probe_id == "bench-1"
    assert measurement.meters == {"w": 123.4}
    assert process.stop() == 0


@pytest.mark.parametrize(
    ("probes", "parameters", "expected"),
    [
        ("['a']", "{'device': '/dev/ttyUSB0', 'interval': 1.5}", "parameters['interval']"),
        ("['a']", "{'device': '/dev/ttyUSB0', 'baud': 9600}", "parameters['baud']"),
        ("['a']", "{'interval': 5, 'timeout': 3}", "parameters['timeout']"),
        ("['a', 'b']", "{'device': '/dev/ttyUSB0'}", "exactly one probe"),
    ],
)
def test_bad_section_stops_kwapi_drivers_at_start(tmp_path, probes, parameters, expected):
    line = expect_config_error(tmp_path, "Bench outlet", "Wattsup", probes, parameters)
    assert expected in line
