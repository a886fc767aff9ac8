"""A simulated BMC speaking IPMI 2.0 over LAN (RMCP+), built on pyghmi's server classes.

It answers what kwapi's Ipmi driver asks: DCMI Get Power Reading, the SDR
repository commands (info, reserve, get) and Get Sensor Reading.  pyghmi's
server only speaks the SHA-1 cipher suite (3) yet accepts the client's
SHA-256 proposal; this BMC refuses that proposal, as a real BMC without
SHA-256 would, so that the client falls back to SHA-1.

Run it as a subprocess with ``python -m tests.drivers.simulators.bmc``: it
reads its settings as one JSON object on standard input, binds UDP on
127.0.0.1 and prints ``ready <port>`` once it serves.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from dataclasses import dataclass, field

from pyghmi.ipmi import bmc
from pyghmi.ipmi.private import constants, serversession, session

# RMCP+ status codes (IPMI 2.0 table 13-15).
INVALID_AUTH_ALGORITHM = 0x11
INVALID_INTEGRITY_ALGORITHM = 0x12
UNAUTHORIZED_ROLE = 0x09
RAKP_HMAC_SHA1 = 1
HMAC_SHA1_96 = 1

# IPMI completion codes.
INVALID_COMMAND = 0xC1
INVALID_DATA = 0xCC
NOT_PRESENT = 0xCB

# DCMI Get Power Reading's only request served: group id, mode 1 (system
# power statistics), two reserved bytes; any other is refused with INVALID_DATA.
DCMI_POWER_READING_REQUEST = bytes([0xDC, 0x01, 0x00, 0x00])

UNIT_CODES = {"W": 6, "degrees C": 1, "V": 4, "A": 5, "RPM": 18}


@dataclass
class Sensor:
    """A threshold sensor of the SDR: reading = raw * m in *unit*."""

    name: str
    unit: str
    value: float
    m: int = 1
    available: bool = True
    number: int = 0

    def record(self, record_id: int) -> bytes:
        """Encode the Full Sensor Record (IPMI 2.0 table 43-1)."""
        name = self.name.encode()
        body = bytearray(43)
        body[0] = 0x20  # owner: the BMC
        body[1] = 0  # owner LUN
        body[2] = self.number
        body[3] = 0x07  # entity: system board
        body[4] = 1  # entity instance
        body[5] = 0x7F  # sensor initialisation: scanning, events enabled
        body[6] = 0x48  # capabilities: readable thresholds
        body[7] = 0x0B if self.unit == "W" else 0x01  # sensor type
        body[8] = 0x01  # event/reading type: threshold
        body[15] = 0x00  # analog format unsigned, no rate, no modifier unit
        body[16] = UNIT_CODES[self.unit]
        body[17] = 0
        body[18] = 0  # linear
        body[19] = self.m & 0xFF
        body[20] = (self.m >> 2) & 0xC0  # M high bits, tolerance 0
        body[42] = 0xC0 | len(name)  # 8-bit ASCII + Latin 1 id string
        body += name
        header = struct.pack("<HBBB", record_id, 0x51, 0x01, len(body))
        return header + bytes(body)

    def raw(self) -> int:
        return max(0, min(255, round(self.value / self.m)))


@dataclass
class Settings:
    """What the simulated BMC serves."""

    username: str = "admin"
    password: str = "secret"
    port: int = 0
    dcmi: bool = True
    watts: int = 187
    active: bool = True
    max_privilege: int = 4  # the user's limit: 2 user, 3 operator, 4 administrator
    sensors: list[Sensor] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw = json.loads(text)
        sensors = [Sensor(**item) for item in raw.pop("sensors", [])]
        for number, sensor in enumerate(sensors, start=1):
            sensor.number = number
        return cls(sensors=sensors, **raw)


class Sha1OnlySession(serversession.ServerSession):
    """pyghmi's server session, refusing cipher suites it cannot speak."""

    def create_open_session_response(self, request):
        auth, integrity = request[12], request[20]
        if auth != RAKP_HMAC_SHA1 or integrity != HMAC_SHA1_96:
            status = (
                INVALID_AUTH_ALGORITHM if auth != RAKP_HMAC_SHA1 else (INVALID_INTEGRITY_ALGORITHM)
            )
            self.clientsessionid = request[4:8]
            return bytearray([request[0], status, 0, 0]) + self.clientsessionid
        return super().create_open_session_response(request)

    def _got_rakp1(self, data):
        requested = data[24] & 0x0F
        if requested > self.bmc.settings.max_privilege:
            message = bytearray([data[0], UNAUTHORIZED_ROLE, 0, 0]) + self.clientsessionid
            self.send_payload(message, constants.payload_types["rakp2"], retry=False)
            return
        super()._got_rakp1(data)


class SimulatedBmc(bmc.Bmc):
    """A BMC with a DCMI power reading and an SDR of threshold sensors."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            {settings.username: settings.password}, port=settings.port, address="127.0.0.1"
        )
        self.settings = settings
        self.port = self.serversocket.getsockname()[1]
        self.records = [
            sensor.record(record_id) for record_id, sensor in enumerate(settings.sensors, start=1)
        ]
        # The SDR's "last addition" stamp: clients cache SDRs by it.
        digest = hashlib.sha256(b"".join(self.records)).digest()
        self.sdr_stamp = struct.unpack("<I", digest[:4])[0]

    def sessionless_data(self, data, sockaddr):
        data = bytearray(data)
        if len(data) > 22 and data[4] == 6 and data[5] == 0x10:  # RMCP+ open session
            Sha1OnlySession(
                self.authdata, self.kg, sockaddr, self.serversocket, data[16:], self.uuid, bmc=self
            )
            return
        super().sessionless_data(data, sockaddr)

    def handle_raw_request(self, request, session):
        netfn, command, data = request["netfn"], request["command"], bytes(request["data"])
        if netfn == 0x2C and command == 0x02:
            return self.dcmi_power_reading(data, session)
        if netfn == 0x0A and command == 0x20:
            return self.sdr_repository_info(session)
        if netfn == 0x0A and command == 0x22:
            return session.send_ipmi_response(data=[0x01, 0x00])
        if netfn == 0x0A and command == 0x23:
            return self.get_sdr(data, session)
        if netfn == 0x04 and command == 0x2D:
            return self.sensor_reading(data, session)
        return super().handle_raw_request(request, session)

    def dcmi_power_reading(self, data, session):
        if not self.settings.dcmi:
            return session.send_ipmi_response(code=INVALID_COMMAND)
        if data != DCMI_POWER_READING_REQUEST:
            return session.send_ipmi_response(code=INVALID_DATA)
        watts = self.settings.watts
        state = 0x40 if self.settings.active else 0x00
        response = struct.pack(
            "<BHHHHIIB", 0xDC, watts, watts - 5, watts + 20, watts, 0, 1000, state
        )
        return session.send_ipmi_response(data=list(response))

    def sdr_repository_info(self, session):
        response = struct.pack("<BHHII B", 0x51, len(self.records), 0x1000, self.sdr_stamp, 0, 0x02)
        return session.send_ipmi_response(data=list(response))

    def get_sdr(self, data, session):
        if len(data) < 6:
            return session.send_ipmi_response(code=INVALID_DATA)
        record_id, offset, size = struct.unpack("<H", data[2:4])[0], data[4], data[5]
        index = 0 if record_id == 0 else record_id - 1
        if index >= len(self.records):
            return session.send_ipmi_response(code=NOT_PRESENT)
        following = index + 2 if index + 1 < len(self.records) else 0xFFFF
        chunk = self.records[index][offset : offset + size]
        return session.send_ipmi_response(data=list(struct.pack("<H", following) + chunk))

    def sensor_reading(self, data, session):
        number = data[0] if data else 0
        for sensor in self.settings.sensors:
            if sensor.number == number:
                flags = 0x40 if sensor.available else 0x20
                return session.send_ipmi_response(data=[sensor.raw(), flags, 0x00])
        return session.send_ipmi_response(code=NOT_PRESENT)


def main() -> None:
    """Serve the BMC described on standard input until killed."""
    settings = Settings.from_json(sys.stdin.readline())
    server = SimulatedBmc(settings)
    print(f"ready {server.port}", flush=True)
    while True:
        session.Session.wait_for_rsp(30)


if __name__ == "__main__":
    main()
