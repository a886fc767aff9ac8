"""IPMI 2.0 LAN packets (RMCP+): framing, cipher suites and session keys.

Pure functions, no I/O: :mod:`kwapi.drivers.rmcp_session` sends what they
build and parses what it receives with them.  Section and table numbers
refer to the IPMI v2.0 specification (revision 1.1).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

RMCP_HEADER = b"\x06\x00\xff\x07"  # version 6, reserved, no ACK, class IPMI (13-1)
AUTH_RMCP_PLUS = 0x06
ENCRYPTED = 0x80
AUTHENTICATED = 0x40
PAYLOAD_IPMI = 0x00
OPEN_SESSION_REQUEST = 0x10
OPEN_SESSION_RESPONSE = 0x11
RAKP_1, RAKP_2, RAKP_3, RAKP_4 = 0x12, 0x13, 0x14, 0x15
NEXT_HEADER = 0x07
BMC_ADDRESS = 0x20
CONSOLE_ADDRESS = 0x81
NAME_ONLY_LOOKUP = 0x10
AES_BLOCK = 16
# K1 and K2 are HMACs of these 20-byte constants (section 13.32), whatever
# the suite's hash: BMCs use 20 bytes for HMAC-SHA256 suites too.
KEY_CONSTANT_1 = b"\x01" * 20
KEY_CONSTANT_2 = b"\x02" * 20

# RMCP+ and RAKP status codes (table 13-15).
STATUS_TEXTS = {
    0x01: "Insufficient resources to create a session",
    0x02: "Invalid session ID",
    0x04: "Invalid role",
    0x09: "Invalid role",
    0x0D: "Unauthorized name",
    0x0E: "Unauthorized GUID",
    0x0F: "Invalid integrity check value",
    0x11: "No cipher suite match with proposed security algorithms",
    0x12: "Invalid integrity algorithm",
    0x13: "No matching integrity payload",
}
# Statuses with which a BMC refuses the algorithms we proposed.
UNSUPPORTED_SUITE = frozenset({0x03, 0x10, 0x11, 0x12, 0x13})


class PacketError(ValueError):
    """A packet that is not the well-formed, authentic answer we wait for."""


@dataclass(frozen=True)
class CipherSuite:
    """An RMCP+ cipher suite (table 22-20): RAKP and integrity hashes, AES-CBC-128."""

    number: int
    rakp_algorithm: int
    integrity_algorithm: int
    digest: str
    icv_length: int  # RAKP 4's integrity check value and each packet's AuthCode

    def mac(self, key: bytes, data: bytes) -> bytes:
        """The full HMAC of *data* under *key* with this suite's hash."""
        return hmac.new(key, data, self.digest).digest()

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.digest).digest_size


SUITE_17 = CipherSuite(17, rakp_algorithm=3, integrity_algorithm=4, digest="sha256", icv_length=16)
SUITE_3 = CipherSuite(3, rakp_algorithm=1, integrity_algorithm=1, digest="sha1", icv_length=12)
SUITES = (SUITE_17, SUITE_3)  # in the order we propose them


@dataclass(frozen=True)
class Login:
    """What both RAKP sides hash: the user, the role asked for, the random numbers."""

    username: bytes
    role: int  # privilege level with the name-only lookup bit
    console_random: bytes
    console_session_id: int

    def role_and_name(self) -> bytes:
        return bytes([self.role, len(self.username)]) + self.username


@dataclass(frozen=True)
class SessionKeys:
    """An established session's keys (section 13.31-13.32)."""

    suite: CipherSuite
    k1: bytes  # integrity key
    aes_key: bytes  # first 16 bytes of K2

    @classmethod
    def derive(
        cls, suite: CipherSuite, password: bytes, login: Login, bmc_random: bytes
    ) -> SessionKeys:
        """Derive SIK, K1 and K2 from the RAKP exchange (no BMC key: Kg is the password)."""
        sik = cls.session_integrity_key(suite, password, login, bmc_random)
        return cls(
            suite,
            k1=suite.mac(sik, KEY_CONSTANT_1),
            aes_key=suite.mac(sik, KEY_CONSTANT_2)[:AES_BLOCK],
        )

    @staticmethod
    def session_integrity_key(
        suite: CipherSuite, password: bytes, login: Login, bmc_random: bytes
    ) -> bytes:
        """SIK = HMAC_Kg(Rm | Rc | role | name length | name)."""
        return suite.mac(password, login.console_random + bmc_random + login.role_and_name())


def checksum(data: bytes) -> int:
    """The two's complement checksum of IPMI messages."""
    return -sum(data) & 0xFF


def ipmi_request(netfn: int, command: int, sequence: int, data: bytes) -> bytes:
    """An IPMI LAN request message to the BMC, LUN 0 (section 13.8)."""
    header = bytes([BMC_ADDRESS, netfn << 2])
    body = bytes([CONSOLE_ADDRESS, (sequence & 0x3F) << 2, command]) + data
    return header + bytes([checksum(header)]) + body + bytes([checksum(body)])


@dataclass(frozen=True)
class IpmiResponse:
    """A parsed IPMI response message."""

    netfn: int
    command: int
    sequence: int
    code: int
    data: bytes


def parse_ipmi_response(message: bytes) -> IpmiResponse:
    """Parse and check an IPMI LAN response message."""
    if len(message) < 8:
        raise PacketError("IPMI message too short")
    if checksum(message[:2]) != message[2] or checksum(message[3:-1]) != message[-1]:
        raise PacketError("IPMI message checksum mismatch")
    return IpmiResponse(
        netfn=message[1] >> 2,
        command=message[5],
        sequence=message[4] >> 2,
        code=message[6],
        data=message[7:-1],
    )


def session_packet(payload_type: int, session_id: int, sequence: int, payload: bytes) -> bytes:
    """An RMCP+ packet outside a session's encryption (pre-session messages)."""
    header = struct.pack("<BBIIH", AUTH_RMCP_PLUS, payload_type, session_id, sequence, len(payload))
    return RMCP_HEADER + header + payload


def secure_packet(keys: SessionKeys, session_id: int, sequence: int, message: bytes) -> bytes:
    """An encrypted and authenticated IPMI payload of an established session."""
    pad_length = (AES_BLOCK - (len(message) + 1) % AES_BLOCK) % AES_BLOCK
    plain = message + bytes(range(1, pad_length + 1)) + bytes([pad_length])
    iv = os.urandom(AES_BLOCK)
    encryptor = Cipher(algorithms.AES(keys.aes_key), modes.CBC(iv)).encryptor()
    payload = iv + encryptor.update(plain) + encryptor.finalize()
    packet = session_packet(PAYLOAD_IPMI | ENCRYPTED | AUTHENTICATED, session_id, sequence, payload)
    trailer_pad = (4 - (len(packet) - len(RMCP_HEADER) + 2) % 4) % 4
    packet += b"\xff" * trailer_pad + bytes([trailer_pad, NEXT_HEADER])
    return packet + keys.suite.mac(keys.k1, packet[len(RMCP_HEADER) :])[: keys.suite.icv_length]


@dataclass(frozen=True)
class Packet:
    """A received RMCP+ packet: its payload type, session id and (clear) payload."""

    payload_type: int
    session_id: int
    payload: bytes


def parse_packet(data: bytes, keys: SessionKeys | None = None) -> Packet:
    """Parse an RMCP+ packet; check and decrypt it with *keys* when it is protected."""
    if len(data) < 16 or data[:4] != RMCP_HEADER or data[4] != AUTH_RMCP_PLUS:
        raise PacketError("not an RMCP+ packet")
    payload_type, session_id, _sequence, length = struct.unpack_from("<BIIH", data, 5)
    payload = data[16 : 16 + length]
    if len(payload) != length:
        raise PacketError("truncated RMCP+ payload")
    if payload_type & AUTHENTICATED:
        if keys is None:
            raise PacketError("authenticated packet outside a session")
        icv = keys.suite.icv_length
        expected = keys.suite.mac(keys.k1, data[4:-icv])[:icv]
        if not hmac.compare_digest(expected, data[-icv:]):
            raise PacketError("bad AuthCode")
    if payload_type & ENCRYPTED:
        if keys is None:
            raise PacketError("encrypted packet outside a session")
        payload = _decrypt(keys, payload)
    return Packet(payload_type & 0x3F, session_id, payload)


def _decrypt(keys: SessionKeys, payload: bytes) -> bytes:
    if len(payload) < 2 * AES_BLOCK or len(payload) % AES_BLOCK:
        raise PacketError("bad encrypted payload length")
    decryptor = Cipher(algorithms.AES(keys.aes_key), modes.CBC(payload[:AES_BLOCK])).decryptor()
    plain = decryptor.update(payload[AES_BLOCK:]) + decryptor.finalize()
    pad_length = plain[-1]
    if pad_length >= AES_BLOCK:
        raise PacketError("bad confidentiality pad")
    return plain[: -1 - pad_length]


def open_session_request(tag: int, console_session_id: int, suite: CipherSuite) -> bytes:
    """The Open Session Request payload (table 13-16), asking for the highest privilege."""
    return (
        bytes([tag, 0, 0, 0])
        + struct.pack("<I", console_session_id)
        + bytes([0x00, 0, 0, 8, suite.rakp_algorithm, 0, 0, 0])
        + bytes([0x01, 0, 0, 8, suite.integrity_algorithm, 0, 0, 0])
        + bytes([0x02, 0, 0, 8, 0x01, 0, 0, 0])  # AES-CBC-128
    )


def rakp_1(tag: int, bmc_session_id: int, login: Login) -> bytes:
    """RAKP Message 1 (table 13-18)."""
    return (
        bytes([tag, 0, 0, 0])
        + struct.pack("<I", bmc_session_id)
        + login.console_random
        + bytes([login.role, 0, 0, len(login.username)])
        + login.username
    )


def rakp_2_auth_code(
    suite: CipherSuite,
    password: bytes,
    login: Login,
    bmc_session_id: int,
    bmc_random: bytes,
    bmc_guid: bytes,
) -> bytes:
    """The key exchange authentication code a BMC that knows the password sends in RAKP 2."""
    data = (
        struct.pack("<II", login.console_session_id, bmc_session_id)
        + login.console_random
        + bmc_random
        + bmc_guid
        + login.role_and_name()
    )
    return suite.mac(password, data)


def rakp_3(
    tag: int,
    suite: CipherSuite,
    password: bytes,
    login: Login,
    bmc_session_id: int,
    bmc_random: bytes,
) -> bytes:
    """RAKP Message 3 (table 13-20): proves that we know the password."""
    code = suite.mac(
        password, bmc_random + struct.pack("<I", login.console_session_id) + login.role_and_name()
    )
    return bytes([tag, 0, 0, 0]) + struct.pack("<I", bmc_session_id) + code


def rakp_4_check_value(
    keys_sik: bytes, suite: CipherSuite, login: Login, bmc_session_id: int, bmc_guid: bytes
) -> bytes:
    """The integrity check value a BMC sends in RAKP 4 (table 13-21)."""
    data = login.console_random + struct.pack("<I", bmc_session_id) + bmc_guid
    return suite.mac(keys_sik, data)[: suite.icv_length]


def status_text(status: int) -> str:
    """The RMCP+ status *status* in words."""
    return STATUS_TEXTS.get(status, f"RMCP+ status 0x{status:02x}")
