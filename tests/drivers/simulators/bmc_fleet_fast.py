"""Many IPMI 2.0 BMCs in one process and one thread, cheap enough for a machine room.

Each simulated BMC owns a UDP port of 127.0.0.1 and speaks RMCP+ as a real
one does (IPMI 2.0 section 13): sessionless Get Channel Authentication
Capabilities, Open Session and RAKP 1-4 with cipher suites 3
(RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) and 17 (RAKP-HMAC-SHA256,
HMAC-SHA256-128, AES-CBC-128), then authenticated and encrypted IPMI
messages: Get Device ID, Set Session Privilege Level, Close Session and
DCMI Get Power Reading.  One ``selectors`` loop serves every port.

Run it as ``python -m tests.drivers.simulators.bmc_fleet_fast``.  It reads
one JSON list on standard input, one object per BMC::

    {"username": "admin", "password": "...", "watts": 187,
     "silent": false, "port": 0, "cipher_suites": [3, 17]}

(every key optional; ``port`` 0 picks a free one; ``cipher_suites`` lists
the suites the BMC accepts) and prints ``ready <port> <port> ...`` in the
same order.  Then each line ``silence <i>`` or ``revive <i>`` (i: index in
the list) makes BMC i stop or start answering and is acknowledged by a line
``silenced <i>`` or ``revived <i>``; a revived BMC has forgotten its
sessions, as a rebooted one would.  ``stats`` answers ``stats <datagrams
received> <answers sent>``.  The process exits when its standard input
closes.  :class:`BmcFleetProcess` runs it from a test or a benchmark.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import resource
import selectors
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.harness.processes import LineProcess, first_line

RMCP_HEADER = b"\x06\x00\xff\x07"  # RMCP version 1.0, reserved, no ACK, class IPMI
AUTH_NONE = 0x00  # IPMI 1.5 session header, no authentication
AUTH_RMCPPLUS = 0x06  # IPMI 2.0 session header

# Payload types (IPMI 2.0 table 13-16) and the bits of the payload type byte.
IPMI_MESSAGE = 0x00
OPEN_SESSION_REQUEST = 0x10
OPEN_SESSION_RESPONSE = 0x11
RAKP1, RAKP2, RAKP3, RAKP4 = 0x12, 0x13, 0x14, 0x15
ENCRYPTED = 0x80
AUTHENTICATED = 0x40
PAYLOAD_TYPE_MASK = 0x3F

# RMCP+ status codes (IPMI 2.0 table 13-15).
INVALID_SESSION_ID = 0x02
UNAUTHORIZED_NAME = 0x0D
INVALID_INTEGRITY_CHECK = 0x0F
NO_CIPHER_SUITE_MATCH = 0x11

# IPMI completion codes.
OK = 0x00
INVALID_SESSION_IN_REQUEST = 0x87
INVALID_COMMAND = 0xC1
INVALID_DATA = 0xCC
PRIVILEGE_ABOVE_LIMIT = 0x81

BMC_ADDRESS = 0x20
ADMINISTRATOR = 4
AES_CBC_128 = 1
NEXT_HEADER = 0x07  # the integrity trailer's "next header" byte (table 13-8)
KEY_CONSTANT_1 = b"\x01" * 20  # K1 = HMAC(SIK, const 1): integrity key
KEY_CONSTANT_2 = b"\x02" * 20  # K2 = HMAC(SIK, const 2): its first 16 bytes are the AES key
IDLE_TIMEOUT = 60.0  # seconds a session may stay silent before the BMC forgets it
DCMI_POWER_READING_REQUEST = bytes([0xDC, 0x01, 0x00, 0x00])
MEASUREMENT_ACTIVE = 0x40


@dataclass(frozen=True)
class CipherSuite:
    """The algorithms of one IPMI 2.0 cipher suite (table 22-20)."""

    auth: int  # RAKP algorithm number
    integrity: int  # integrity algorithm number
    digest: Callable  # hash of the RAKP HMACs, the SIK and the integrity AuthCode
    icv_length: int  # bytes kept of the RAKP 4 check value and of each AuthCode


SUITES = {
    3: CipherSuite(auth=1, integrity=1, digest=hashlib.sha1, icv_length=12),
    17: CipherSuite(auth=3, integrity=4, digest=hashlib.sha256, icv_length=16),
}


def checksum(data: bytes) -> int:
    """The IPMI 8-bit two's complement checksum of *data*."""
    return -sum(data) & 0xFF


def mac(key: bytes, data: bytes, suite: CipherSuite) -> bytes:
    """HMAC of *data* under *key* with the suite's hash, untruncated."""
    return hmac.digest(key, data, suite.digest)


def rmcpplus(ptype: int, session_id: int, sequence: int, payload: bytes) -> bytes:
    """An RMCP packet with an IPMI 2.0 session header (table 13-8), trailer excluded."""
    header = struct.pack("<BBIIH", AUTH_RMCPPLUS, ptype, session_id, sequence, len(payload))
    return RMCP_HEADER + header + payload


@dataclass
class Settings:
    """What one simulated BMC serves."""

    username: str = "admin"
    password: str = "secret"
    watts: int = 187
    silent: bool = False
    port: int = 0
    cipher_suites: tuple[int, ...] = (3, 17)

    @classmethod
    def from_dict(cls, raw: dict) -> Settings:
        settings = cls(**raw)
        settings.cipher_suites = tuple(settings.cipher_suites)
        unknown = set(settings.cipher_suites) - set(SUITES)
        if unknown:
            raise ValueError(f"unsupported cipher suites {sorted(unknown)}")
        return settings


@dataclass
class Session:
    """One RMCP+ session, from Open Session to Close Session."""

    bmc_id: int  # the managed system's session id: what the console sends
    console_id: int  # the remote console's session id: what the BMC sends
    suite: CipherSuite
    last_seen: float
    role: int = 0  # the RAKP 1 role byte as sent (privilege and name-only bit)
    username: bytes = b""
    console_random: bytes = b""  # Rm
    bmc_random: bytes = b""  # Rc
    sik: bytes = b""
    k1: bytes = b""
    aes_key: bytes = b""
    active: bool = False  # RAKP 3 checked
    privilege: int = 2
    out_sequence: int = 0


@dataclass
class Bmc:
    """One simulated BMC: its settings, socket and sessions."""

    settings: Settings
    sock: socket.socket
    guid: bytes
    sessions: dict[int, Session] = field(default_factory=dict)

    # -- packets in, packets out --------------------------------------------------

    def handle(self, packet: bytes, now: float) -> bytes | None:
        """The reply to one UDP datagram, or None to drop it."""
        if self.settings.silent or len(packet) < 16 or packet[:4] != RMCP_HEADER:
            return None
        if packet[4] == AUTH_NONE:
            return self._sessionless(packet)
        if packet[4] != AUTH_RMCPPLUS:
            return None
        ptype = packet[5]
        session_id, _sequence, length = struct.unpack_from("<IIH", packet, 6)
        payload = packet[16 : 16 + length]
        bare = ptype & PAYLOAD_TYPE_MASK
        if bare == OPEN_SESSION_REQUEST and session_id == 0:
            return self._open_session(payload, now)
        if bare == RAKP1 and session_id == 0:
            return self._rakp1(payload, now)
        if bare == RAKP3 and session_id == 0:
            return self._rakp3(payload, now)
        if bare == IPMI_MESSAGE and ptype & ENCRYPTED and ptype & AUTHENTICATED:
            return self._session_message(packet, session_id, length, now)
        return None

    def _sessionless(self, packet: bytes) -> bytes | None:
        """An IPMI 1.5 packet outside a session: Get Channel Authentication Capabilities."""
        session_id = struct.unpack_from("<I", packet, 9)[0]
        message = packet[14 : 14 + packet[13]]
        if session_id != 0 or len(message) < 7:
            return None
        reply = self._ipmi(message, None)
        if reply is None:
            return None
        return RMCP_HEADER + bytes([AUTH_NONE]) + bytes(8) + bytes([len(reply)]) + reply

    # -- session set-up: Open Session, RAKP -----------------------------------------

    def _open_session(self, payload: bytes, now: float) -> bytes | None:
        if len(payload) < 32:
            return None
        tag, console_id = payload[0], payload[4:8]
        auth, integrity, confidentiality = payload[12], payload[20], payload[28]
        suite = next(
            (
                SUITES[number]
                for number in self.settings.cipher_suites
                if (SUITES[number].auth, SUITES[number].integrity) == (auth, integrity)
            ),
            None,
        )
        if suite is None or confidentiality != AES_CBC_128:
            error = bytes([tag, NO_CIPHER_SUITE_MATCH, 0, 0]) + console_id
            return rmcpplus(OPEN_SESSION_RESPONSE, 0, 0, error)
        bmc_id = self._new_session_id()
        console = struct.unpack("<I", console_id)[0]
        self.sessions[bmc_id] = Session(bmc_id, console, suite, now)
        response = (
            bytes([tag, 0, ADMINISTRATOR, 0])
            + console_id
            + struct.pack("<I", bmc_id)
            + bytes([0, 0, 0, 8, auth, 0, 0, 0])
            + bytes([1, 0, 0, 8, integrity, 0, 0, 0])
            + bytes([2, 0, 0, 8, AES_CBC_128, 0, 0, 0])
        )
        return rmcpplus(OPEN_SESSION_RESPONSE, 0, 0, response)

    def _new_session_id(self) -> int:
        while True:
            bmc_id = struct.unpack("<I", os.urandom(4))[0]
            if bmc_id and bmc_id not in self.sessions:
                return bmc_id

    def _rakp1(self, payload: bytes, now: float) -> bytes | None:
        if len(payload) < 28:
            return None
        tag, bmc_id = payload[0], struct.unpack_from("<I", payload, 4)[0]
        session = self.sessions.get(bmc_id)
        if session is None or session.active:
            return rmcpplus(RAKP2, 0, 0, bytes([tag, INVALID_SESSION_ID, 0, 0, 0, 0, 0, 0]))
        console_id = struct.pack("<I", session.console_id)
        username = payload[28 : 28 + payload[27]]
        if username != self.settings.username.encode():
            del self.sessions[bmc_id]
            error = bytes([tag, UNAUTHORIZED_NAME, 0, 0]) + console_id
            return rmcpplus(RAKP2, 0, 0, error)
        session.last_seen = now
        session.console_random, session.bmc_random = payload[8:24], os.urandom(16)
        session.role, session.username = payload[24], username
        session.privilege = min(payload[24] & 0x0F or ADMINISTRATOR, ADMINISTRATOR)
        who = bytes([session.role, len(username)]) + username
        password, suite = self.settings.password.encode(), session.suite
        # The key exchange AuthCode: HMAC(password, SIDm SIDc Rm Rc GUIDc ROLEm ULENm UNAMEm).
        proof = mac(
            password,
            console_id
            + struct.pack("<I", bmc_id)
            + session.console_random
            + session.bmc_random
            + self.guid
            + who,
            suite,
        )
        # The session integrity key, then K1 and K2 (no BMC key Kg: the password stands in).
        session.sik = mac(password, session.console_random + session.bmc_random + who, suite)
        session.k1 = mac(session.sik, KEY_CONSTANT_1, suite)
        session.aes_key = mac(session.sik, KEY_CONSTANT_2, suite)[:16]
        reply = bytes([tag, 0, 0, 0]) + console_id + session.bmc_random + self.guid + proof
        return rmcpplus(RAKP2, 0, 0, reply)

    def _rakp3(self, payload: bytes, now: float) -> bytes | None:
        if len(payload) < 8:
            return None
        tag, status, bmc_id = payload[0], payload[1], struct.unpack_from("<I", payload, 4)[0]
        session = self.sessions.get(bmc_id)
        if session is None or not session.sik:
            return rmcpplus(RAKP4, 0, 0, bytes([tag, INVALID_SESSION_ID, 0, 0, 0, 0, 0, 0]))
        console_id = struct.pack("<I", session.console_id)
        if status != 0:  # the console gave up (it found our RAKP 2 wrong)
            del self.sessions[bmc_id]
            return None
        suite, who = session.suite, bytes([session.role, len(session.username)]) + session.username
        # RAKP 3 AuthCode: HMAC(password, Rc SIDm ROLEm ULENm UNAMEm).
        expected = mac(
            self.settings.password.encode(),
            session.bmc_random + console_id + who,
            suite,
        )
        if not hmac.compare_digest(payload[8:], expected):
            del self.sessions[bmc_id]
            error = bytes([tag, INVALID_INTEGRITY_CHECK, 0, 0]) + console_id
            return rmcpplus(RAKP4, 0, 0, error)
        session.active, session.last_seen = True, now
        # RAKP 4 integrity check value: HMAC(SIK, Rm SIDc GUIDc), truncated.
        check = mac(
            session.sik, session.console_random + struct.pack("<I", bmc_id) + self.guid, suite
        )
        reply = bytes([tag, 0, 0, 0]) + console_id + check[: suite.icv_length]
        return rmcpplus(RAKP4, 0, 0, reply)

    # -- messages inside a session ----------------------------------------------------

    def _session_message(
        self, packet: bytes, session_id: int, length: int, now: float
    ) -> bytes | None:
        session = self.sessions.get(session_id)
        if session is None or not session.active:
            return None
        size = session.suite.icv_length
        auth_code = packet[-size:]
        if not hmac.compare_digest(
            auth_code, mac(session.k1, packet[4:-size], session.suite)[:size]
        ):
            return None
        encrypted = packet[16 : 16 + length]
        if len(encrypted) < 32 or len(encrypted) % 16:
            return None
        decryptor = Cipher(algorithms.AES(session.aes_key), modes.CBC(encrypted[:16])).decryptor()
        plain = decryptor.update(encrypted[16:]) + decryptor.finalize()
        message = plain[: -(plain[-1] + 1)]
        if len(message) < 7:
            return None
        session.last_seen = now
        reply = self._ipmi(message, session)
        if reply is None:
            return None
        packet = self._seal(session, reply)
        if message[1] >> 2 == 0x06 and message[5] == 0x3C and reply[6] == OK:
            self.sessions.pop(struct.unpack_from("<I", message, 6)[0], None)
        return packet

    def _seal(self, session: Session, message: bytes) -> bytes:
        """*message* encrypted (AES-CBC-128, IPMI pad) and authenticated for *session*."""
        pad = -(len(message) + 1) % 16
        plain = message + bytes(range(1, pad + 1)) + bytes([pad])
        iv = os.urandom(16)
        encryptor = Cipher(algorithms.AES(session.aes_key), modes.CBC(iv)).encryptor()
        session.out_sequence = (session.out_sequence + 1) & 0xFFFFFFFF or 1
        packet = rmcpplus(
            IPMI_MESSAGE | ENCRYPTED | AUTHENTICATED,
            session.console_id,
            session.out_sequence,
            iv + encryptor.update(plain) + encryptor.finalize(),
        )
        # Integrity pad: the session header through the next header byte fill 4-byte words.
        integrity_pad = -(len(packet) - 4 + 2) % 4
        packet += b"\xff" * integrity_pad + bytes([integrity_pad, NEXT_HEADER])
        return packet + mac(session.k1, packet[4:], session.suite)[: session.suite.icv_length]

    def _ipmi(self, message: bytes, session: Session | None) -> bytes | None:
        """The IPMI LAN response to request *message* (table 13-4), or None if malformed."""
        if checksum(message[:2]) != message[2] or checksum(message[3:-1]) != message[-1]:
            return None
        netfn, command, data = message[1] >> 2, message[5], message[6:-1]
        code, body = self._command(netfn, command, data, session)
        header = bytes([message[3], ((netfn + 1) << 2) | (message[4] & 0x03)])
        rest = bytes([BMC_ADDRESS, (message[4] & 0xFC) | (message[1] & 0x03), command, code])
        rest += body
        return header + bytes([checksum(header)]) + rest + bytes([checksum(rest)])

    def _command(
        self, netfn: int, command: int, data: bytes, session: Session | None
    ) -> tuple[int, bytes]:
        """(completion code, response data) of one IPMI command."""
        if (netfn, command) == (0x06, 0x38):  # Get Channel Authentication Capabilities
            # Channel 1; IPMI 2.0 extended data; non-null user names; RMCP+ supported.
            return OK, bytes([0x01, 0x80, 0x04, 0x02, 0, 0, 0, 0])
        if session is None:
            return INVALID_COMMAND, b""
        if (netfn, command) == (0x06, 0x01):  # Get Device ID
            return OK, bytes([0x20, 0x01, 0x01, 0x00, 0x02, 0xBF, 0x57, 0x01, 0x00, 0x01, 0x00])
        if (netfn, command) == (0x06, 0x3B):  # Set Session Privilege Level
            wanted = data[0] & 0x0F if data else 0
            if wanted > (session.role & 0x0F or ADMINISTRATOR):
                return PRIVILEGE_ABOVE_LIMIT, b""
            session.privilege = wanted or session.privilege
            return OK, bytes([session.privilege])
        if (netfn, command) == (0x06, 0x3C):  # Close Session
            target = struct.unpack("<I", data[:4])[0] if len(data) >= 4 else -1
            return (OK, b"") if target in self.sessions else (INVALID_SESSION_IN_REQUEST, b"")
        if (netfn, command) == (0x2C, 0x02):  # DCMI Get Power Reading
            if data != DCMI_POWER_READING_REQUEST:
                return INVALID_DATA, b""
            return OK, self.power_reading()
        return INVALID_COMMAND, b""

    def power_reading(self) -> bytes:
        """DCMI Get Power Reading data: current, min, max, average, time, period, state."""
        watts = self.settings.watts
        return struct.pack(
            "<BHHHHIIB",
            0xDC,
            watts,
            max(0, watts - 5),
            watts + 20,
            watts,
            int(time.time()) & 0xFFFFFFFF,
            1000,
            MEASUREMENT_ACTIVE,
        )

    def forget_idle(self, now: float) -> None:
        """Drop the sessions silent for longer than IDLE_TIMEOUT."""
        for bmc_id in [i for i, s in self.sessions.items() if now - s.last_seen > IDLE_TIMEOUT]:
            del self.sessions[bmc_id]


class Fleet:
    """Every BMC's socket and standard input in one selector loop."""

    def __init__(self, settings: list[Settings], pending: bytes = b"") -> None:
        self.selector = selectors.DefaultSelector()
        self.bmcs: list[Bmc] = []
        for index, item in enumerate(settings):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", item.port))
            sock.setblocking(False)
            guid = hashlib.md5(f"bmc-{index}-{sock.getsockname()[1]}".encode()).digest()
            bmc = Bmc(item, sock, guid)
            self.bmcs.append(bmc)
            self.selector.register(sock, selectors.EVENT_READ, bmc)
        os.set_blocking(sys.stdin.fileno(), False)
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
        self._pending = pending  # what standard input held after the settings
        self.running = True
        self.received = self.answered = 0

    @property
    def ports(self) -> list[int]:
        return [bmc.sock.getsockname()[1] for bmc in self.bmcs]

    def serve(self) -> None:
        """Answer until standard input closes."""
        next_sweep = time.monotonic() + IDLE_TIMEOUT / 4
        while self.running:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data is None:
                    self._read_commands()
                else:
                    self._serve_socket(key.data)
            now = time.monotonic()
            if now > next_sweep:
                next_sweep = now + IDLE_TIMEOUT / 4
                for bmc in self.bmcs:
                    bmc.forget_idle(now)

    def _serve_socket(self, bmc: Bmc, batch: int = 32) -> None:
        now = time.monotonic()
        for _ in range(batch):  # a few datagrams, then the next ready socket
            try:
                packet, address = bmc.sock.recvfrom(4096)
            except BlockingIOError:
                return
            self.received += 1
            reply = bmc.handle(packet, now)
            if reply is not None:
                self.answered += 1
                # A full socket buffer drops the reply, as a network would.
                with contextlib.suppress(OSError):
                    bmc.sock.sendto(reply, address)

    def _read_commands(self) -> None:
        try:
            chunk = os.read(sys.stdin.fileno(), 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.running = False
            return
        self._pending += chunk
        self.run_commands()

    def run_commands(self) -> None:
        """Run the complete command lines received so far."""
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            if line.strip():
                self._command(line.decode().split())

    def _command(self, words: list[str]) -> None:
        """Run one control command and print its one-line answer."""
        if words == ["stats"]:
            answer = f"stats {self.received} {self.answered}"
        elif (
            len(words) == 2
            and words[0] in ("silence", "revive")
            and words[1].isdigit()
            and int(words[1]) < len(self.bmcs)
        ):
            bmc = self.bmcs[int(words[1])]
            bmc.settings.silent = words[0] == "silence"
            bmc.sessions.clear()  # a silenced BMC is down; back up, it has rebooted
            answer = f"{'silenced' if bmc.settings.silent else 'revived'} {words[1]}"
        else:
            answer = f"error: unknown command {' '.join(words)!r}"
        print(answer, flush=True)


def raise_file_limit(wanted: int = 65536) -> None:
    """Allow one descriptor per BMC, however many are asked for."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def main() -> None:
    """Serve the BMCs listed on standard input until it closes."""
    raise_file_limit()
    line, rest = first_line(sys.stdin.fileno())
    settings = [Settings.from_dict(raw) for raw in json.loads(line)]
    fleet = Fleet(settings, rest)
    print("ready", *fleet.ports, flush=True)
    fleet.run_commands()
    fleet.serve()


# -- the client side ------------------------------------------------------------


class BmcFleetProcess(LineProcess):
    """This module run as a subprocess serving *settings* (one dict per BMC);
    closing its standard input stops it."""

    def __init__(self, settings: list[dict], timeout: float = 30.0) -> None:
        super().__init__("tests.drivers.simulators.bmc_fleet_fast", "BMC fleet", settings, timeout)


if __name__ == "__main__":
    main()
