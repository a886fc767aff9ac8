"""An IPMI 2.0 session with one BMC over UDP (RMCP+), on an asyncio event loop.

Many sessions share one event loop thread: a silent BMC costs a pending
future, never a blocked thread, so it cannot delay the others.  A session
has one request in flight at a time; an unanswered request is sent again
after each of :data:`TRY_TIMEOUTS`, then fails with :class:`NoAnswer`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kwapi.drivers.rmcp_packets import (
    NAME_ONLY_LOOKUP,
    OPEN_SESSION_REQUEST,
    OPEN_SESSION_RESPONSE,
    PAYLOAD_IPMI,
    RAKP_1,
    RAKP_2,
    RAKP_3,
    RAKP_4,
    SUITES,
    UNSUPPORTED_SUITE,
    CipherSuite,
    IpmiResponse,
    Login,
    PacketError,
    SessionKeys,
    ipmi_request,
    open_session_request,
    parse_ipmi_response,
    parse_packet,
    rakp_1,
    rakp_2_auth_code,
    rakp_3,
    rakp_4_check_value,
    secure_packet,
    session_packet,
    status_text,
)

LOG = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds to wait for an answer before each resend, then before giving up.
TRY_TIMEOUTS = (1.0, 1.0, 2.0)
APP_NETFN = 0x06
SET_SESSION_PRIVILEGE = 0x3B
CLOSE_SESSION = 0x3C


class IpmiError(Exception):
    """The BMC refused or did not answer."""


class NoAnswer(IpmiError):
    """No answer from the BMC after every try; *waited* is the time it took, in seconds."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"no answer within {waited:.0f} s")
        self.waited = waited


class LoginRefused(IpmiError):
    """The BMC answered the login with a refusal."""


class _UnsupportedSuite(Exception):
    """The BMC does not speak the cipher suite we proposed."""


class _Endpoint(asyncio.DatagramProtocol):
    """Hands every datagram to the session; ICMP errors just leave the wait to time out."""

    def __init__(self, received: Callable[[bytes], None]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received(data)

    def error_received(self, exc: Exception) -> None:
        LOG.debug("ICMP error from a BMC: %s", exc)


class RmcpSession:
    """An RMCP+ session: :meth:`open` logs in, :meth:`command` sends one request."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        privilege: int,
        tries: tuple[float, ...] = TRY_TIMEOUTS,
    ) -> None:
        self.address = (host, port)
        self._username = username.encode()
        self._password = password.encode()
        self._privilege = privilege
        self._tries = tries
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: tuple[Callable[[bytes], object], asyncio.Future[Any]] | None = None
        self._keys: SessionKeys | None = None
        self._console_id = 0
        self._bmc_id = 0
        self._sequence = 0
        self._request_sequence = 0
        self._tag = 0
        self.last_answer = 0.0

    # -- the session ------------------------------------------------------------

    async def open(self) -> None:
        """Log in with cipher suite 17, else 3, and take the configured privilege."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._received), remote_addr=self.address
        )
        for suite in SUITES:
            try:
                await self._login(suite)
                break
            except _UnsupportedSuite:
                continue
        else:
            raise LoginRefused("the BMC speaks neither cipher suite 17 nor 3")
        response = await self.command(APP_NETFN, SET_SESSION_PRIVILEGE, bytes([self._privilege]))
        if response.code:
            raise LoginRefused(
                f"privilege level {self._privilege} refused (code 0x{response.code:02x})"
            )

    async def command(self, netfn: int, command: int, data: bytes = b"") -> IpmiResponse:
        """Send one IPMI request in the session and return the BMC's response."""
        keys = self._keys
        if keys is None:
            raise IpmiError("no session")
        self._request_sequence = (self._request_sequence + 1) & 0x3F
        sequence = self._request_sequence
        message = ipmi_request(netfn, command, sequence, data)

        def build() -> bytes:
            self._sequence = (self._sequence + 1) & 0xFFFFFFFF or 1
            return secure_packet(keys, self._bmc_id, self._sequence, message)

        def accept(packet_bytes: bytes) -> IpmiResponse | None:
            packet = parse_packet(packet_bytes, keys)
            if packet.payload_type != PAYLOAD_IPMI or packet.session_id != self._console_id:
                return None
            response = parse_ipmi_response(packet.payload)
            if (response.sequence, response.command, response.netfn) != (
                sequence,
                command,
                netfn | 1,
            ):
                return None
            return response

        response = await self._exchange(build, accept)
        self.last_answer = time.monotonic()
        return response

    def close(self) -> None:
        """Close the session without waiting for the BMC, and the socket."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        if self._keys is not None:
            self._request_sequence = (self._request_sequence + 1) & 0x3F
            self._sequence = (self._sequence + 1) & 0xFFFFFFFF or 1
            message = ipmi_request(
                APP_NETFN, CLOSE_SESSION, self._request_sequence, struct.pack("<I", self._bmc_id)
            )
            transport.sendto(secure_packet(self._keys, self._bmc_id, self._sequence, message))
        self._keys = None
        transport.close()

    # -- login (section 13.15-13.21) ------------------------------------------

    async def _login(self, suite: CipherSuite) -> None:
        self._console_id = int.from_bytes(os.urandom(4), "little") | 1
        self._bmc_id = await self._open_session(suite)
        login = Login(
            username=self._username,
            role=self._privilege | NAME_ONLY_LOOKUP,
            console_random=os.urandom(16),
            console_session_id=self._console_id,
        )
        bmc_random, guid = await self._rakp_1_2(suite, login)
        sik = SessionKeys.session_integrity_key(suite, self._password, login, bmc_random)
        await self._rakp_3_4(suite, login, bmc_random, guid, sik)
        self._keys = SessionKeys.derive(suite, self._password, login, bmc_random)
        self._sequence = 0
        self.last_answer = time.monotonic()

    async def _open_session(self, suite: CipherSuite) -> int:
        tag = self._next_tag()
        request = session_packet(
            OPEN_SESSION_REQUEST, 0, 0, open_session_request(tag, self._console_id, suite)
        )

        def accept(data: bytes) -> int | None:
            payload = self._rakp_payload(data, OPEN_SESSION_RESPONSE, tag)
            if payload is None:
                return None
            if payload[1] in UNSUPPORTED_SUITE:
                raise _UnsupportedSuite
            self._refuse_on_status(payload[1], "the session")
            if len(payload) < 12:
                raise PacketError("short Open Session Response")
            bmc_id: int = struct.unpack_from("<I", payload, 8)[0]
            return bmc_id

        return await self._exchange(lambda: request, accept)

    async def _rakp_1_2(self, suite: CipherSuite, login: Login) -> tuple[bytes, bytes]:
        tag = self._next_tag()
        request = session_packet(RAKP_1, 0, 0, rakp_1(tag, self._bmc_id, login))

        def accept(data: bytes) -> tuple[bytes, bytes] | None:
            payload = self._rakp_payload(data, RAKP_2, tag)
            if payload is None:
                return None
            self._refuse_on_status(payload[1], "the login")
            size = suite.digest_size
            if len(payload) < 40 + size:
                raise PacketError("short RAKP 2")
            bmc_random, guid, code = payload[8:24], payload[24:40], payload[40 : 40 + size]
            expected = rakp_2_auth_code(
                suite, self._password, login, self._bmc_id, bmc_random, guid
            )
            if not hmac.compare_digest(code, expected):
                raise LoginRefused("Incorrect password")
            return bmc_random, guid

        return await self._exchange(lambda: request, accept)

    async def _rakp_3_4(
        self, suite: CipherSuite, login: Login, bmc_random: bytes, guid: bytes, sik: bytes
    ) -> None:
        tag = self._next_tag()
        message = rakp_3(tag, suite, self._password, login, self._bmc_id, bmc_random)
        request = session_packet(RAKP_3, 0, 0, message)

        def accept(data: bytes) -> bool | None:
            payload = self._rakp_payload(data, RAKP_4, tag)
            if payload is None:
                return None
            self._refuse_on_status(payload[1], "the login")
            expected = rakp_4_check_value(sik, suite, login, self._bmc_id, guid)
            if not hmac.compare_digest(payload[8 : 8 + len(expected)], expected):
                raise LoginRefused("invalid RAKP 4 integrity check value (a BMC key is set?)")
            return True

        await self._exchange(lambda: request, accept)

    def _rakp_payload(self, data: bytes, payload_type: int, tag: int) -> bytes | None:
        """The payload of *data* if it answers our message *tag* of *payload_type*."""
        packet = parse_packet(data)
        payload = packet.payload
        if packet.payload_type != payload_type or len(payload) < 8 or payload[0] != tag:
            return None
        if payload[1] == 0 and struct.unpack_from("<I", payload, 4)[0] != self._console_id:
            return None
        return payload

    @staticmethod
    def _refuse_on_status(status: int, what: str) -> None:
        if status:
            raise LoginRefused(f"the BMC refused {what}: {status_text(status)}")

    def _next_tag(self) -> int:
        self._tag = (self._tag + 1) & 0xFF
        return self._tag

    # -- one exchange -------------------------------------------------------------

    async def _exchange(self, build: Callable[[], bytes], accept: Callable[[bytes], T | None]) -> T:
        """Send build()'s packet, again at each timeout, until accept() returns an answer.

        accept() returns None for a packet that is not the answer, and raises
        IpmiError for an answer that ends the exchange with a refusal.
        """
        transport = self._transport
        if transport is None:
            raise IpmiError("session closed")
        answer: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending = (accept, answer)
        started = time.monotonic()
        try:
            for timeout in self._tries:
                transport.sendto(build())
                done, _ = await asyncio.wait((answer,), timeout=timeout)
                if done:
                    return answer.result()
            raise NoAnswer(time.monotonic() - started)
        finally:
            self._pending = None
            answer.cancel()

    def _received(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            return
        accept, answer = pending
        if answer.done():
            return
        try:
            result = accept(data)
        except (PacketError, struct.error) as exc:
            LOG.debug("BMC %s:%d: packet ignored: %s", *self.address, exc)
            return
        except (IpmiError, _UnsupportedSuite) as exc:
            answer.set_exception(exc)
            return
        if result is not None:
            answer.set_result(result)
