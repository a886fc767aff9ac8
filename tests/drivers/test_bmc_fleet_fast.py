"""The one-thread BMC fleet speaks real IPMI 2.0: pyghmi's client logs in and reads it."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from tests.drivers.simulators.bmc_fleet_fast import (
    INVALID_COMMAND,
    INVALID_DATA,
    NO_CIPHER_SUITE_MATCH,
    RMCP_HEADER,
    BmcFleetProcess,
    checksum,
)
from tests.drivers.simulators.rmcp_console import Console, ConsoleError

ipmi_command = pytest.importorskip("pyghmi.ipmi.command")
from pyghmi.exceptions import IpmiException  # noqa: E402

PASSWORD = "s3cret-Passw0rd"
SILENCE_WAIT = 0.5  # seconds a probe waits for an answer that must not come


@pytest.fixture
def fleet() -> Iterator[BmcFleetProcess]:
    """Five BMCs: 0 both suites, 1 suite 3 only, 2 suite 17 only, 3 silent, 4 both suites."""
    settings = [
        {"username": "admin", "password": PASSWORD, "watts": 150 + index} for index in range(5)
    ]
    settings[1]["cipher_suites"] = [3]
    settings[2]["cipher_suites"] = [17]
    settings[3]["silent"] = True
    with BmcFleetProcess(settings) as process:
        yield process


def pyghmi_reading(port: int, password: str = PASSWORD, username: str = "admin") -> tuple:
    """(DCMI response, hash of the session's cipher suite) through pyghmi's client."""
    command = ipmi_command.Command(
        bmc="127.0.0.1", port=port, userid=username, password=password, privlevel=2
    )
    try:
        response = command.raw_command(netfn=0x2C, command=0x02, data=(0xDC, 1, 0, 0))
        return response, command.ipmi_session.currhashlib().name
    finally:
        command.ipmi_session.logout()


def channel_capabilities_probe(port: int, timeout: float = SILENCE_WAIT) -> bytes | None:
    """Send a session-less Get Channel Authentication Capabilities; the answer or None."""
    header = bytes([0x20, 0x06 << 2])
    body = bytes([0x81, 0x00, 0x38, 0x8E, 0x02])
    message = header + bytes([checksum(header)]) + body + bytes([checksum(body)])
    packet = RMCP_HEADER + bytes(9) + bytes([len(message)]) + message
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, ("127.0.0.1", port))
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None


@pytest.mark.parametrize(("index", "suite_hash"), [(0, "sha256"), (1, "sha1"), (2, "sha256")])
def test_pyghmi_reads_the_dcmi_power_reading(fleet, index, suite_hash):
    """Suite 17 where offered; a BMC refusing it (status 0x11) makes pyghmi fall back to 3."""
    response, used = pyghmi_reading(fleet.ports[index])
    assert response["code"] == 0, response
    data = bytes(response["data"])
    assert len(data) == 18 and data[0] == 0xDC
    watts, low, high, average = struct.unpack_from("<HHHH", data, 1)
    assert (watts, low, high, average) == (150 + index, 145 + index, 170 + index, 150 + index)
    assert struct.unpack_from("<I", data, 13)[0] == 1000  # period, ms
    assert data[17] & 0x40  # measurement active
    assert used == suite_hash


def test_pyghmi_reports_a_wrong_password_and_an_unknown_user(fleet):
    with pytest.raises(IpmiException, match=r"(?i)password"):
        pyghmi_reading(fleet.ports[4], password="not-the-Passw0rd")
    with pytest.raises(IpmiException, match="Unauthorized name"):
        pyghmi_reading(fleet.ports[4], username="nobody")


def test_a_silent_bmc_never_answers(fleet):
    answer = channel_capabilities_probe(fleet.ports[0], timeout=5)
    assert answer is not None
    data = answer[14 + 7 : -1]  # past the session header and the response's header
    assert answer[14 + 6] == 0 and data[1] & 0x80 and data[3] & 0x02  # IPMI 2.0, RMCP+
    assert channel_capabilities_probe(fleet.ports[3]) is None


def test_silenced_then_revived_a_bmc_has_forgotten_its_sessions(fleet):
    with Console(fleet.ports[4], "admin", PASSWORD, timeout=SILENCE_WAIT) as console:
        console.login()
        assert console.power() == 154
        assert fleet.command("silence 4") == "silenced 4"
        with pytest.raises(ConsoleError, match="no answer"):
            console.power()
        assert channel_capabilities_probe(fleet.ports[4]) is None
        assert fleet.command("revive 4") == "revived 4"
        with pytest.raises(ConsoleError, match="no answer"):  # the old session is gone
            console.power()
    response, _ = pyghmi_reading(fleet.ports[4])
    assert struct.unpack_from("<H", bytes(response["data"]), 1)[0] == 154


@pytest.mark.parametrize("suite", [3, 17])
def test_each_suite_on_the_wire(fleet, suite):
    """Both suites' keys, AES and AuthCodes; commands and errors; Close Session."""
    refused = 2 if suite == 3 else 1  # BMC 1 speaks only suite 3, BMC 2 only 17
    with (
        Console(fleet.ports[refused], "admin", PASSWORD, suite) as refusing,
        pytest.raises(ConsoleError) as raised,
    ):
        refusing.login()
    assert raised.value.status == NO_CIPHER_SUITE_MATCH
    with (
        Console(fleet.ports[0], "admin", "another-Passw0rd", suite) as wrong,
        pytest.raises(ConsoleError, match="RAKP 2 does not match"),
    ):
        wrong.login()
    with Console(fleet.ports[0], "admin", PASSWORD, suite, timeout=SILENCE_WAIT) as console:
        console.login()
        assert console.power() == 150
        code, device = console.request(0x06, 0x01)  # Get Device ID
        assert code == 0 and len(device) >= 11
        assert console.request(0x2C, 0x02, bytes([0xDC, 0x02, 0, 0]))[0] == INVALID_DATA
        assert console.request(0x30, 0x01)[0] == INVALID_COMMAND
        code, _ = console.request(0x06, 0x3C, struct.pack("<I", console.session_id))
        assert code == 0
        with pytest.raises(ConsoleError, match="no answer"):
            console.power()


def test_two_hundred_bmcs_each_read_twice():
    settings = [{"password": PASSWORD, "watts": 100 + index} for index in range(200)]
    with BmcFleetProcess(settings) as fleet:
        consoles = [Console(port, "admin", PASSWORD) for port in fleet.ports]
        try:
            for console in consoles:
                console.login()
            for _ in range(2):
                assert [c.power() for c in consoles] == [100 + i for i in range(200)]
            received, answered = map(int, fleet.command("stats").split()[1:])
            assert received == answered == 200 * (4 + 2)  # login: 4 exchanges each
        finally:
            for console in consoles:
                console.close()
