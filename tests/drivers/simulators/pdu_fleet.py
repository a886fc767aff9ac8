"""Many simulated SNMP PDUs in one process, cheap enough to load-test kwapi-drivers.

Each PDU answers SNMP v1 and v2c (GetRequest, GetNextRequest, GetBulkRequest)
on its own UDP port of 127.0.0.1.  A PDU holds sysDescr.0, sysName.0 and the
per-outlet power column of one MIB model of :data:`kwapi.drivers.snmp.MODELS`,
whose outlet *k* (1-based) of PDU *p* (0-based) reads :func:`watts` (p, k).
A request with another community, another SNMP version or another PDU type
gets no answer, as with a real agent; an unknown OID gets noSuchObject
(v2c) or the error noSuchName (v1).

The BER codec is hand-written and only knows what SNMP v1/v2c messages
need: a GET of 24 outlets costs tens of microseconds, where pysnmp-based
agents (snmpsim) cost milliseconds.  One thread serves every port through
:mod:`selectors`.

Run it as ``python -m tests.drivers.simulators.pdu_fleet``: it reads one JSON
object on standard input, for instance ``{"pdus": 200, "outlets": 24,
"model": "apc", "community": "public"}`` (optional ``"ports"``: one port per
PDU, 0 for any), prints ``ready <port> <port> ...`` (one per PDU) and serves
until killed.  Further lines on standard input control it, each answered by
one line: ``silence <index>`` (the PDU stops answering, as a host that is
down) -> ``silenced <index>``, ``revive <index>`` -> ``revived <index>``,
``stats`` -> ``stats <datagrams received> <answers sent>``.
:class:`FleetProcess` runs it from a test or a benchmark.
"""

from __future__ import annotations

import bisect
import json
import os
import selectors
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from kwapi.drivers.snmp import MODELS
from tests.harness.processes import LineProcess, first_line

# BER tags of SNMP (RFC 1157, RFC 3416).
INTEGER, OCTET_STRING, NULL, OID, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
GET, GET_NEXT, RESPONSE, GET_BULK = 0xA0, 0xA1, 0xA2, 0xA5
NO_SUCH_OBJECT, END_OF_MIB_VIEW = b"\x80\x00", b"\x82\x00"
V1, V2C = 0, 1
NO_SUCH_NAME = 2  # v1 error-status
MAX_BULK_BINDINGS = 1000  # a GetBulk answer carries this many variable bindings at most

SYS_DESCR, SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 1, 0), (1, 3, 6, 1, 2, 1, 1, 5, 0)
# Index parts between a model's column and the outlet number: eaton's daisy
# chain unit 0, Sentry4's unit 1 and input cord 1.
ROW_PREFIXES = {"eaton": (0,), "sentry4": (1, 1)}
SETTINGS = {"pdus", "outlets", "model", "community", "ports"}


def watts(pdu: int, outlet: int) -> int:
    """What outlet *outlet* (1-based) of PDU *pdu* (0-based) reads."""
    return 10 + pdu + outlet


def outlet_oid(model: str, outlet: int) -> str:
    """The OID of *outlet*'s power (1-based) in the column of *model*."""
    return ".".join(map(str, (*column(model), outlet)))


def column(model: str) -> tuple[int, ...]:
    """The OID prefix of *model*'s outlet rows, index parts before the outlet included."""
    base = tuple(int(part) for part in MODELS[model].split("."))
    return base + ROW_PREFIXES.get(model, ())


# -- BER ------------------------------------------------------------------------


def read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """The tag, content start and content end of the TLV starting at *pos*."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4:
            raise ValueError("unsupported BER length")
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > len(data):
        raise ValueError("truncated BER value")
    return tag, pos, pos + length


def expect(data: bytes, pos: int, tag: int) -> tuple[int, int]:
    """The content start and end of the TLV at *pos*, which must carry *tag*."""
    found, start, end = read_tlv(data, pos)
    if found != tag:
        raise ValueError(f"expected tag {tag:#x}, found {found:#x}")
    return start, end


def tlv(tag: int, content: bytes) -> bytes:
    """Encode one TLV (definite length)."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def integer(value: int) -> bytes:
    """Encode an INTEGER in the fewest two's complement octets."""
    size = (value + (value < 0)).bit_length() // 8 + 1
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def encode_oid(oid: Iterable[int]) -> bytes:
    """The content octets of an OBJECT IDENTIFIER."""
    first, second, *rest = oid
    out = bytearray()
    for arc in (40 * first + second, *rest):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def decode_oid(content: bytes) -> tuple[int, ...]:
    """The arcs of an OBJECT IDENTIFIER from its content octets."""
    arcs, arc = [], 0
    for octet in content:
        arc = (arc << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(arc)
            arc = 0
    if not arcs:
        raise ValueError("empty OID")
    head = arcs[0]
    first = min(head // 40, 2)
    return (first, head - 40 * first, *arcs[1:])


def binding(name: bytes, value: bytes) -> bytes:
    """A VarBind of the OID content *name* and the encoded *value*."""
    return tlv(SEQUENCE, tlv(OID, name) + value)


@dataclass
class Request:
    """The parts of an SNMP v1/v2c request message that an answer needs."""

    version: int
    community: bytes
    kind: int  # the PDU's tag
    request_id: bytes  # its request-id TLV, echoed as received
    first: int  # error-status, or non-repeaters of a GetBulk
    second: int  # error-index, or max-repetitions of a GetBulk
    names: list[bytes]  # the variable bindings' OIDs, as content octets


def parse(data: bytes) -> Request:
    """Decode an SNMP v1/v2c message; raise ValueError (or IndexError) if malformed."""
    pos, end = expect(data, 0, SEQUENCE)
    start, pos = expect(data, pos, INTEGER)
    version = int.from_bytes(data[start:pos], "big", signed=True)
    start, pos = expect(data, pos, OCTET_STRING)
    community = data[start:pos]
    kind, pos, _ = read_tlv(data, pos)
    _, request_id_end = expect(data, pos, INTEGER)
    request_id, pos = data[pos:request_id_end], request_id_end
    first, pos = read_integer(data, pos)
    second, pos = read_integer(data, pos)
    pos, end = expect(data, pos, SEQUENCE)
    names = []
    while pos < end:
        start, pos = expect(data, pos, SEQUENCE)
        name_start, name_end = expect(data, start, OID)
        names.append(data[name_start:name_end])
    return Request(version, community, kind, request_id, first, second, names)


def read_integer(data: bytes, pos: int) -> tuple[int, int]:
    """The INTEGER at *pos* and the position after it."""
    start, end = expect(data, pos, INTEGER)
    return int.from_bytes(data[start:end], "big", signed=True), end


def response(request: Request, bindings: list[bytes], status: int = 0, index: int = 0) -> bytes:
    """Encode the Response to *request*."""
    pdu = request.request_id + integer(status) + integer(index) + tlv(SEQUENCE, b"".join(bindings))
    message = integer(request.version) + tlv(OCTET_STRING, request.community)
    return tlv(SEQUENCE, message + tlv(RESPONSE, pdu))


# -- one PDU --------------------------------------------------------------------


class Pdu:
    """One simulated PDU's MIB and its answers to requests."""

    def __init__(self, index: int, model: str, outlets: int, community: str) -> None:
        self.index = index
        self.community = community.encode()
        self.silent = False
        objects = {
            SYS_DESCR: tlv(OCTET_STRING, f"kwapi simulated {model} PDU".encode()),
            SYS_NAME: tlv(OCTET_STRING, f"pdu-{index}".encode()),
        }
        prefix = column(model)
        for outlet in range(1, outlets + 1):
            objects[(*prefix, outlet)] = integer(watts(index, outlet))
        self.order = sorted(objects)
        self.names = [encode_oid(oid) for oid in self.order]
        # OID content octets -> the whole encoded VarBind: a GET only concatenates.
        self.bindings = {
            name: binding(name, objects[oid])
            for name, oid in zip(self.names, self.order, strict=True)
        }

    def answer(self, request: Request) -> bytes | None:
        """The encoded answer to *request*, or None for no answer."""
        if self.silent or request.community != self.community:
            return None
        if request.version not in (V1, V2C):
            return None
        if request.kind == GET:
            return self._get(request)
        if request.kind == GET_NEXT:
            return self._get_next(request)
        if request.kind == GET_BULK and request.version == V2C:
            return self._get_bulk(request)
        return None

    def _get(self, request: Request) -> bytes:
        found = []
        for position, name in enumerate(request.names, 1):
            bound = self.bindings.get(name)
            if bound is None:
                if request.version == V1:
                    return self._error(request, position)
                bound = binding(name, NO_SUCH_OBJECT)
            found.append(bound)
        return response(request, found)

    def _get_next(self, request: Request) -> bytes:
        found = []
        for position, name in enumerate(request.names, 1):
            following = self._next(name)
            if following is None:
                if request.version == V1:
                    return self._error(request, position)
                following = binding(name, END_OF_MIB_VIEW)
            found.append(following)
        return response(request, found)

    def _get_bulk(self, request: Request) -> bytes:
        """Non-repeaters get one successor each, the others up to max-repetitions in turn."""
        non_repeaters = max(0, min(request.first, len(request.names)))
        found = [
            self._next(name) or binding(name, END_OF_MIB_VIEW)
            for name in request.names[:non_repeaters]
        ]
        current = request.names[non_repeaters:]
        for _ in range(max(0, request.second)):
            if not current or len(found) + len(current) > MAX_BULK_BINDINGS:
                break
            ended = 0
            for position, name in enumerate(current):
                after = self._after(name)
                if after == len(self.names):
                    found.append(binding(name, END_OF_MIB_VIEW))
                    ended += 1
                else:
                    current[position] = self.names[after]
                    found.append(self.bindings[current[position]])
            if ended == len(current):
                break
        return response(request, found)

    def _after(self, name: bytes) -> int:
        """The position in :attr:`names` of the first object after *name*."""
        return bisect.bisect_right(self.order, decode_oid(name))

    def _next(self, name: bytes) -> bytes | None:
        """The VarBind of the first object after *name*; None past the end."""
        position = self._after(name)
        if position == len(self.names):
            return None
        return self.bindings[self.names[position]]

    def _error(self, request: Request, position: int) -> bytes:
        """A v1 noSuchName answer at *position*, echoing the bindings with NULL values."""
        echoed = [binding(name, tlv(NULL, b"")) for name in request.names]
        return response(request, echoed, NO_SUCH_NAME, position)


# -- the fleet ------------------------------------------------------------------


@dataclass
class Settings:
    """What the fleet serves; see the module's docstring."""

    pdus: int = 1
    outlets: int = 24
    model: str = "apc"
    community: str = "public"
    ports: list[int] | None = None

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Settings from a JSON object; raise ValueError if wrong."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or set(raw) - SETTINGS:
            raise ValueError(f"expected a JSON object with keys among {sorted(SETTINGS)}")
        settings = cls(**raw)
        if settings.model not in MODELS:
            raise ValueError(f"unknown model {settings.model!r}; known: {sorted(MODELS)}")
        if settings.pdus < 1 or settings.outlets < 1:
            raise ValueError("pdus and outlets must be at least 1")
        if settings.ports is not None and len(settings.ports) != settings.pdus:
            raise ValueError("give one port per PDU")
        return settings


class Fleet:
    """The PDUs of *settings*, each on its UDP socket, served by one selector loop."""

    def __init__(self, settings: Settings) -> None:
        self.selector = selectors.DefaultSelector()
        self.pdus: list[Pdu] = []
        self.ports: list[int] = []
        self.received = self.answered = 0
        self.pending = b""  # standard input not yet split into lines
        ports = settings.ports or [0] * settings.pdus
        for index, port in enumerate(ports):
            pdu = Pdu(index, settings.model, settings.outlets, settings.community)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, pdu)
            self.pdus.append(pdu)
            self.ports.append(sock.getsockname()[1])

    def serve(self, control: int | None = None) -> None:
        """Answer requests, and the commands on file descriptor *control*, forever."""
        if control is not None:
            self.selector.register(control, selectors.EVENT_READ, None)
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    self._control(key.fd)
                else:
                    self._drain(key.fileobj, key.data)

    def _drain(self, sock: socket.socket, pdu: Pdu) -> None:
        """Answer every datagram waiting on *pdu*'s socket."""
        while True:
            try:
                data, client = sock.recvfrom(65535)
            except BlockingIOError:
                return
            self.received += 1
            try:
                answer = pdu.answer(parse(data))
            except (ValueError, IndexError):
                continue  # not an SNMP message: real agents drop it too
            if answer is not None:
                sock.sendto(answer, client)
                self.answered += 1

    def _control(self, fd: int) -> None:
        """Run the complete command lines read from *fd*; stop reading at its end."""
        data = os.read(fd, 4096)
        if not data:
            self.selector.unregister(fd)
            return
        self.take(data)

    def take(self, data: bytes) -> None:
        """Add *data* to the control input; run and answer its complete lines."""
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            if line.strip():
                print(self.command(line.decode(errors="replace")), flush=True)

    def command(self, line: str) -> str:
        """Run one control command; return its one-line answer."""
        words = line.split()
        if words == ["stats"]:
            return f"stats {self.received} {self.answered}"
        if len(words) == 2 and words[0] in ("silence", "revive") and words[1].isdigit():
            index = int(words[1])
            if index < len(self.pdus):
                self.pdus[index].silent = words[0] == "silence"
                return f"{words[0].rstrip('e')}ed {index}"
        return f"error: unknown command {line.strip()!r}"


def main() -> None:
    """Serve the fleet described on standard input until killed."""
    line, rest = first_line(0)
    try:
        fleet = Fleet(Settings.from_json(line.decode()))
    except (ValueError, TypeError) as exc:
        sys.exit(f"pdu_fleet: bad settings: {exc}")
    print("ready", *fleet.ports, flush=True)
    fleet.take(rest)
    fleet.serve(control=0)


# -- the client side ------------------------------------------------------------


class FleetProcess(LineProcess):
    """This module run as a subprocess serving *settings*: start, control, stop
    (it serves until killed)."""

    grace = 0.0

    def __init__(self, timeout: float = 30.0, **settings: object) -> None:
        super().__init__("tests.drivers.simulators.pdu_fleet", "PDU fleet", settings, timeout)

    def stats(self) -> tuple[int, int]:
        """(datagrams received, answers sent) so far."""
        _, received, answered = self.command("stats").split()
        return int(received), int(answered)


if __name__ == "__main__":
    main()
