"""The PDU fleet simulator speaks real SNMP: pysnmp's client and kwapi's Snmp driver read it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys

import pytest

from kwapi.drivers.snmp import SnmpDriver
from tests.drivers.simulators import pdu_fleet
from tests.drivers.simulators.pdu_fleet import FleetProcess, outlet_oid, watts
from tests.harness.drivers import RunningDriver
from tests.harness.processes import free_udp_port, wait_for

hlapi = pytest.importorskip("pysnmp.hlapi.v3arch.asyncio")
rfc1905 = pytest.importorskip("pysnmp.proto.rfc1905")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pysnmp.smi.compiler")

SYS_DESCR, SYS_NAME = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0"
APC_COLUMN = "1.3.6.1.4.1.318.1.1.26.9.4.3.1.7"
MP_MODELS = {"1": 0, "2c": 1}
NO_ANSWER = (0.3, 0)  # pysnmp (timeout, retries) where no answer is expected


@pytest.fixture(scope="module")
def fleet():
    """Ten APC PDUs of 24 outlets, community public."""
    with FleetProcess(pdus=10, outlets=24, model="apc", community="public") as process:
        yield process


async def request(
    engine, port: int, command: str, *arguments, version: str, community: str, wait: tuple
):
    """Send one pysnmp *command* (get_cmd, next_cmd, bulk_cmd) through *engine*.

    *wait* is pysnmp's (timeout, retries).  Return (error indication, error
    status, error index, [(oid, value)]).
    """
    timeout, retries = wait
    target = await hlapi.UdpTransportTarget.create(
        ("127.0.0.1", port), timeout=timeout, retries=retries
    )
    objects = [
        hlapi.ObjectType(hlapi.ObjectIdentity(item)) if isinstance(item, str) else item
        for item in arguments
    ]
    indication, status, index, bindings = await getattr(hlapi, command)(
        engine,
        hlapi.CommunityData(community, mpModel=MP_MODELS[version]),
        target,
        hlapi.ContextData(),
        *objects,
        lookupMib=False,
    )
    return indication, int(status), int(index), [(str(n), v) for n, v in bindings]


def snmp(
    port: int,
    command: str,
    *arguments,
    version: str = "2c",
    community: str = "public",
    wait: tuple = (1.0, 1),
):
    """:func:`request` through an engine of its own, bounded by 5 s."""

    async def once():
        engine = hlapi.SnmpEngine()
        try:
            return await request(
                engine, port, command, *arguments, version=version, community=community, wait=wait
            )
        finally:
            engine.close_dispatcher()

    return asyncio.run(asyncio.wait_for(once(), 5))


def walk(port: int, column: str, version: str) -> list[tuple[str, object]]:
    """The rows under *column*, one GETNEXT at a time, bounded by 10 s."""

    async def rows():
        engine = hlapi.SnmpEngine()
        found, current = [], column
        try:
            for _ in range(100):
                indication, status, _, bindings = await request(
                    engine,
                    port,
                    "next_cmd",
                    current,
                    version=version,
                    community="public",
                    wait=(1.0, 1),
                )
                assert indication is None
                if status:
                    assert version == "1" and status == 2  # noSuchName: v1's end of the MIB
                    break
                [(name, value)] = bindings
                if not name.startswith(column + ".") or isinstance(value, rfc1905.EndOfMibView):
                    break
                found.append((name, value))
                current = name
            return found
        finally:
            engine.close_dispatcher()

    return asyncio.run(asyncio.wait_for(rows(), 10))


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, -1, -128, -129, 2**31 - 1, -(2**31)])
def test_integers_decode_with_pyasn1(value):
    from pyasn1.codec.ber import decoder

    encoded = pdu_fleet.integer(value)
    decoded, rest = decoder.decode(encoded)
    assert (int(decoded), rest) == (value, b"")
    # X.690 8.3.2: the fewest octets, so no shorter two's complement holds the value.
    size = len(encoded) - 2
    assert size == 1 or not -(2 ** (8 * size - 9)) <= value < 2 ** (8 * size - 9)


@pytest.mark.parametrize(
    "oid", [(1, 3, 6, 1), (1, 3, 127, 128, 16383, 16384, 2**32 - 1), (2, 999, 3)]
)
def test_oids_encode_as_pyasn1_does_and_decode_back(oid):
    from pyasn1.codec.ber import encoder
    from pyasn1.type import univ

    content = pdu_fleet.encode_oid(oid)
    assert pdu_fleet.tlv(pdu_fleet.OID, content) == encoder.encode(univ.ObjectIdentifier(oid))
    assert pdu_fleet.decode_oid(content) == oid


@pytest.mark.parametrize("version", ["1", "2c"])
def test_get_reads_each_pdus_outlets(fleet, version):
    for pdu in (0, 3, 9):
        outlets = [1, 2, 24]
        indication, status, _, bindings = snmp(
            fleet.ports[pdu], "get_cmd", *[outlet_oid("apc", k) for k in outlets], version=version
        )
        assert (indication, status) == (None, 0)
        assert bindings == [(outlet_oid("apc", k), watts(pdu, k)) for k in outlets]


@pytest.mark.parametrize("version", ["1", "2c"])
def test_walk_with_get_next(fleet, version):
    rows = walk(fleet.ports[4], APC_COLUMN, version)
    assert rows == [(outlet_oid("apc", k), watts(4, k)) for k in range(1, 25)]
    # sysDescr.0 is followed by sysName.0, a string.
    _, _, _, [(name, value)] = snmp(fleet.ports[4], "next_cmd", SYS_DESCR, version=version)
    assert (name, value.asOctets()) == (SYS_NAME, b"pdu-4")


def test_get_bulk_with_a_non_repeater(fleet):
    indication, status, _, bindings = snmp(fleet.ports[2], "bulk_cmd", 1, 3, SYS_DESCR, APC_COLUMN)
    assert (indication, status) == (None, 0)
    assert [name for name, _ in bindings] == [SYS_NAME, *[outlet_oid("apc", k) for k in (1, 2, 3)]]
    assert [int(value) for _, value in bindings[1:]] == [watts(2, k) for k in (1, 2, 3)]


def test_get_bulk_stops_at_the_end_of_the_mib(fleet):
    _, status, _, bindings = snmp(fleet.ports[2], "bulk_cmd", 0, 50, outlet_oid("apc", 22))
    assert status == 0
    assert [name for name, _ in bindings] == [
        outlet_oid("apc", 23),
        outlet_oid("apc", 24),
        outlet_oid("apc", 24),
    ]
    assert isinstance(bindings[-1][1], rfc1905.EndOfMibView)


def test_unknown_oid_v2c_is_no_such_object(fleet):
    _, status, _, bindings = snmp(fleet.ports[1], "get_cmd", outlet_oid("apc", 1), "1.3.6.1.9.9")
    assert status == 0
    assert bindings[0] == (outlet_oid("apc", 1), watts(1, 1))
    assert bindings[1][0] == "1.3.6.1.9.9"
    assert isinstance(bindings[1][1], rfc1905.NoSuchObject)


def test_unknown_oid_v1_is_no_such_name_at_its_index(fleet):
    _, status, index, _ = snmp(
        fleet.ports[1], "get_cmd", outlet_oid("apc", 1), outlet_oid("apc", 25), version="1"
    )
    assert (status, index) == (2, 2)  # noSuchName, the second binding


@pytest.mark.parametrize("version", ["1", "2c"])
def test_wrong_community_gets_no_answer(fleet, version):
    indication, *_ = snmp(
        fleet.ports[0], "get_cmd", SYS_NAME, version=version, community="private", wait=NO_ANSWER
    )
    assert "No SNMP response" in str(indication)


def test_silence_and_revive(fleet):
    try:
        assert fleet.command("silence 6") == "silenced 6"
        indication, *_ = snmp(fleet.ports[6], "get_cmd", SYS_NAME, wait=NO_ANSWER)
        assert "No SNMP response" in str(indication)
        assert snmp(fleet.ports[7], "get_cmd", SYS_NAME)[0] is None
    finally:
        assert fleet.command("revive 6") == "revived 6"
    assert snmp(fleet.ports[6], "get_cmd", SYS_NAME)[0] is None
    assert fleet.command("silence 10").startswith("error")


def test_garbage_is_dropped_and_counted(fleet):
    received, answered = fleet.stats()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x30\x82\xff\xffnot SNMP", ("127.0.0.1", fleet.ports[5]))
    assert snmp(fleet.ports[5], "get_cmd", SYS_NAME, wait=(3.0, 0))[0] is None  # no retry
    assert fleet.stats() == (received + 2, answered + 1)


def test_explicit_ports_and_other_models():
    ports = [free_udp_port(), free_udp_port()]
    with FleetProcess(pdus=2, outlets=3, model="sentry4", ports=ports) as process:
        assert process.ports == ports
        _, _, _, bindings = snmp(ports[1], "get_cmd", outlet_oid("sentry4", 3))
        assert bindings == [("1.3.6.1.4.1.1718.4.1.8.3.1.7.1.1.3", watts(1, 3))]


def test_bad_settings_stop_it_with_a_message():
    result = subprocess.run(
        [sys.executable, "-m", "tests.drivers.simulators.pdu_fleet"],
        input='{"pdus": 2, "model": "nope"}\n',
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "unknown model 'nope'" in result.stderr


@pytest.mark.parametrize("version", ["1", "2c"])
def test_snmp_driver_reads_every_outlet_of_ten_pdus(fleet, version):
    """Ten real SnmpDriver threads, 24 outlets each, every 0.2 s."""
    with contextlib.ExitStack() as stack:
        drivers = [
            stack.enter_context(
                RunningDriver(
                    SnmpDriver,
                    [f"pdu{pdu}-{k}" for k in range(1, 25)],
                    host="127.0.0.1",
                    port=port,
                    protocol=version,
                    model="apc",
                    interval=0.2,
                )
            )
            for pdu, port in enumerate(fleet.ports)
        ]
        for driver in drivers:
            driver.wait_count(48, timeout=20)  # two readings
    seen = {}
    for driver in drivers:
        for measurement in driver.measurements:
            seen[measurement.probe_id] = measurement.meters
    assert seen == {
        f"pdu{pdu}-{k}": {"w": watts(pdu, k)} for pdu in range(10) for k in range(1, 25)
    }


@pytest.mark.parametrize("model", ["eaton", "raritan", "sentry4"])
def test_snmp_driver_reads_each_model(model):
    with (
        FleetProcess(pdus=2, outlets=5, model=model, community="c") as process,
        RunningDriver(
            SnmpDriver,
            ["o1", None, "o3", "o4", "o5"],
            host="127.0.0.1",
            port=process.ports[1],
            community="c",
            model=model,
            interval=0.2,
        ) as driver,
    ):
        driver.wait_count(4, timeout=20)
    assert {m.probe_id: m.meters["w"] for m in driver.measurements} == {
        f"o{k}": watts(1, k) for k in (1, 3, 4, 5)
    }


def test_silenced_pdu_is_noticed_by_the_driver(fleet, caplog):
    with RunningDriver(
        SnmpDriver,
        ["a1"],
        host="127.0.0.1",
        port=fleet.ports[8],
        model="apc",
        interval=0.2,
        timeout=0.5,
        retries=0,
        max_backoff=0.5,
    ) as driver:
        driver.wait_count(1)
        try:
            fleet.command("silence 8")
            wait_for(lambda: "No SNMP response" in caplog.text, 10, "the outage logged")
        finally:
            fleet.command("revive 8")
        wait_for(lambda: "device is back" in caplog.text, 10, "the recovery logged")
        driver.wait_more(1)
