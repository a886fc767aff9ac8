"""A minimal IPMI 2.0 remote console (client side of RMCP+), for checking the simulators.

It logs in with cipher suite 3 or 17, sends IPMI requests in the session
and checks what comes back (AuthCode, AES-CBC, checksums, rqSeq), all
synchronously on one blocking UDP socket.  Tests use it where pyghmi's
client hides the wire (which suite, which session id), and
``python -m tests.drivers.simulators.rmcp_console --bmcs 1000 --seconds 10``
measures what :mod:`tests.drivers.simulators.bmc_fleet_fast` costs while
every BMC is read once a second.
"""

from __future__ import annotations

import argparse
import hmac
import os
import socket
import struct
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.drivers.simulators.bmc_fleet_fast import (
    AES_CBC_128,
    AUTH_NONE,
    AUTHENTICATED,
    ENCRYPTED,
    KEY_CONSTANT_1,
    KEY_CONSTANT_2,
    NEXT_HEADER,
    OPEN_SESSION_REQUEST,
    RAKP1,
    RAKP3,
    SUITES,
    BmcFleetProcess,
    checksum,
    mac,
    rmcpplus,
)

CONSOLE_ADDRESS = 0x81
DCMI_POWER_READING = (0x2C, 0x02, bytes([0xDC, 0x01, 0x00, 0x00]))


class ConsoleError(Exception):
    """The BMC refused (an RMCP+ status code) or did not answer (status None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Console:
    """One RMCP+ session with the BMC at 127.0.0.1:*port*."""

    def __init__(
        self, port: int, username: str, password: str, suite: int = 17, timeout: float = 1.0
    ) -> None:
        self.address = ("127.0.0.1", port)
        self.username, self.password = username.encode(), password.encode()
        self.suite = SUITES[suite]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.console_id = struct.unpack("<I", os.urandom(4))[0] | 1
        self.session_id = 0  # the BMC's
        self.sequence = 0
        self.rq_seq = 0
        self.k1 = self.aes_key = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- login ------------------------------------------------------------------

    def login(self, privilege: int = 2) -> None:
        """Open Session, RAKP 1-4, Set Session Privilege Level; raise ConsoleError."""
        suite = self.suite
        proposal = (
            bytes([1, 0, 0, 0])
            + struct.pack("<I", self.console_id)
            + bytes([0, 0, 0, 8, suite.auth, 0, 0, 0])
            + bytes([1, 0, 0, 8, suite.integrity, 0, 0, 0])
            + bytes([2, 0, 0, 8, AES_CBC_128, 0, 0, 0])
        )
        answer = self._exchange(OPEN_SESSION_REQUEST, proposal, "open session")
        self.session_id = struct.unpack_from("<I", answer, 8)[0]
        console_random, role = os.urandom(16), 0x10 | privilege
        who = bytes([role, len(self.username)]) + self.username
        rakp1 = bytes([2, 0, 0, 0]) + struct.pack("<I", self.session_id) + console_random
        answer = self._exchange(RAKP1, rakp1 + bytes([role, 0, 0]) + who[1:], "RAKP 2")
        bmc_random, guid = answer[8:24], answer[24:40]
        ids = struct.pack("<II", self.console_id, self.session_id)
        proof = mac(self.password, ids + console_random + bmc_random + guid + who, suite)
        if not hmac.compare_digest(answer[40:], proof):
            raise ConsoleError("RAKP 2 does not match our password")
        sik = mac(self.password, console_random + bmc_random + who, suite)
        self.k1 = mac(sik, KEY_CONSTANT_1, suite)
        self.aes_key = mac(sik, KEY_CONSTANT_2, suite)[:16]
        rakp3 = mac(self.password, bmc_random + struct.pack("<I", self.console_id) + who, suite)
        answer = self._exchange(
            RAKP3, bytes([3, 0, 0, 0]) + struct.pack("<I", self.session_id) + rakp3, "RAKP 4"
        )
        check = mac(sik, console_random + struct.pack("<I", self.session_id) + guid, suite)
        if answer[8:] != check[: suite.icv_length]:
            raise ConsoleError("RAKP 4 check value is wrong")
        code, _ = self.request(0x06, 0x3B, bytes([privilege]))
        if code:
            raise ConsoleError(f"Set Session Privilege Level: completion code {code:#x}")

    def _exchange(self, ptype: int, payload: bytes, what: str) -> bytes:
        """Send a session-less RMCP+ payload; return the answer's payload (status checked)."""
        self.sock.sendto(rmcpplus(ptype, 0, 0, payload), self.address)
        packet = self._receive(what)
        answer = packet[16 : 16 + struct.unpack_from("<H", packet, 14)[0]]
        if answer[1] != 0:
            raise ConsoleError(f"{what}: status {answer[1]:#x}", answer[1])
        return answer

    def _receive(self, what: str) -> bytes:
        try:
            return self.sock.recv(4096)
        except TimeoutError:
            raise ConsoleError(f"no answer to {what}") from None

    # -- requests in the session ------------------------------------------------

    def request(self, netfn: int, command: int, data: bytes = b"") -> tuple[int, bytes]:
        """Send one IPMI request in the session; return (completion code, data)."""
        self.sock.sendto(self.seal(netfn, command, data), self.address)
        return self.open(self._receive(f"netfn {netfn:#x} command {command:#x}"))

    def seal(self, netfn: int, command: int, data: bytes) -> bytes:
        """The session packet of one request (AES-CBC-128 and AuthCode)."""
        self.rq_seq = (self.rq_seq + 1) & 0x3F
        self.sequence += 1
        header = bytes([0x20, netfn << 2])
        body = bytes([CONSOLE_ADDRESS, self.rq_seq << 2, command]) + data
        message = header + bytes([checksum(header)]) + body + bytes([checksum(body)])
        pad = -(len(message) + 1) % 16
        iv = os.urandom(16)
        encryptor = Cipher(algorithms.AES(self.aes_key), modes.CBC(iv)).encryptor()
        secret = encryptor.update(message + bytes(range(1, pad + 1)) + bytes([pad]))
        packet = rmcpplus(
            ENCRYPTED | AUTHENTICATED,
            self.session_id,
            self.sequence,
            iv + secret + encryptor.finalize(),
        )
        integrity_pad = -(len(packet) - 2) % 4
        packet += b"\xff" * integrity_pad + bytes([integrity_pad, NEXT_HEADER])
        return packet + mac(self.k1, packet[4:], self.suite)[: self.suite.icv_length]

    def open(self, packet: bytes) -> tuple[int, bytes]:
        """(completion code, data) of a response packet, every layer checked."""
        size = self.suite.icv_length
        if packet[4] == AUTH_NONE or packet[5] != ENCRYPTED | AUTHENTICATED:
            raise ConsoleError(f"not a session packet: {packet.hex()}")
        if packet[-size:] != mac(self.k1, packet[4:-size], self.suite)[:size]:
            raise ConsoleError("wrong AuthCode")
        if struct.unpack_from("<I", packet, 6)[0] != self.console_id:
            raise ConsoleError("wrong session id")
        encrypted = packet[16 : 16 + struct.unpack_from("<H", packet, 14)[0]]
        decryptor = Cipher(algorithms.AES(self.aes_key), modes.CBC(encrypted[:16])).decryptor()
        plain = decryptor.update(encrypted[16:]) + decryptor.finalize()
        message = plain[: -(plain[-1] + 1)]
        if checksum(message[:2]) != message[2] or checksum(message[3:-1]) != message[-1]:
            raise ConsoleError("wrong IPMI checksum")
        if message[4] >> 2 != self.rq_seq:
            raise ConsoleError("rqSeq not echoed")
        return message[6], bytes(message[7:-1])

    def power(self) -> int:
        """The current watts of the DCMI power reading."""
        code, data = self.request(*DCMI_POWER_READING)
        if code:
            raise ConsoleError(f"DCMI power reading: completion code {code:#x}")
        return struct.unpack_from("<H", data, 1)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of *pid*."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Read every BMC of a fresh fleet once a second; print the fleet's CPU."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bmcs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--suite", type=int, default=17, choices=sorted(SUITES))
    args = parser.parse_args()
    settings = [{"password": "pw", "watts": 100 + i % 300} for i in range(args.bmcs)]
    with BmcFleetProcess(settings) as fleet:
        consoles = [Console(port, "admin", "pw", args.suite) for port in fleet.ports]
        began = time.monotonic()
        for console in consoles:
            console.login()
        print(f"{args.bmcs} logins in {time.monotonic() - began:.2f} s")
        cpu, began, readings = cpu_seconds(fleet.pid), time.monotonic(), 0
        while time.monotonic() - began < args.seconds:
            start = time.monotonic()
            for index, console in enumerate(consoles):  # paced evenly over the second
                time.sleep(max(0.0, start + index / len(consoles) - time.monotonic()))
                assert console.power() == 100 + index % 300
                readings += 1
            time.sleep(max(0.0, start + 1 - time.monotonic()))
        wall = time.monotonic() - began
        used = cpu_seconds(fleet.pid) - cpu
        print(
            f"{readings / wall:.0f} readings/s for {wall:.1f} s: the fleet used "
            f"{used / wall:.3f} core ({used * 1e6 / readings:.0f} us per reading)"
        )
        for console in consoles:
            console.close()


if __name__ == "__main__":
    main()
