"""Ipmi: a server's power as its BMC reports it, over IPMI 2.0 on the LAN.

The driver asks the BMC for the DCMI power reading and, where the BMC has
no DCMI, reads the SDR sensor whose unit is watts.  It speaks RMCP+ itself
(:mod:`kwapi.drivers.rmcp_session`): no ipmitool, no shell, so the password
never shows in a process list, and it is kept as a secret that logs print
as stars.  Every Ipmi wattmeter of a kwapi-drivers is a task of one shared
event loop (:mod:`kwapi.drivers.aio`), so a thousand BMCs need no thousand
threads and a silent one never delays the others.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Literal

import pydantic

from kwapi.bus.protocol import POWER_METER
from kwapi.drivers.aio import AsyncDriver
from kwapi.drivers.base import (
    AUTHENTICATION,
    OTHER,
    PARSE,
    TIMEOUT,
    DeviceError,
    DriverParameters,
    Readings,
    SectionError,
)

try:
    from kwapi.drivers import ipmi_sdr
    from kwapi.drivers.rmcp_packets import IpmiResponse
    from kwapi.drivers.rmcp_session import IpmiError, LoginRefused, NoAnswer, RmcpSession
except ImportError:  # the optional extra 'ipmi' (cryptography) is not installed
    ipmi_sdr = None  # type: ignore[assignment]

DCMI_NETFN = 0x2C
DCMI_GET_POWER_READING = 0x02
DCMI_GROUP = 0xDC
# Group id, mode 1 (system power statistics), two reserved bytes.
DCMI_REQUEST = bytes((DCMI_GROUP, 0x01, 0x00, 0x00))
DCMI_MEASUREMENT_ACTIVE = 0x40
DCMI_STATE_OFFSET = 17
# IPMI privilege levels (IPMI 2.0 table 22-28): User suffices for power and sensor readings.
PRIVILEGES = {"user": 2, "operator": 3, "administrator": 4}
# BMCs close a session left idle for about a minute: log in afresh past this.
SESSION_IDLE_LIMIT = 30.0


class IpmiParameters(DriverParameters):
    """Parameters of the Ipmi driver."""

    host: str = pydantic.Field(min_length=1, description="BMC host name or address.")
    port: int = pydantic.Field(623, ge=1, le=65535, description="BMC UDP port.")
    username: str = pydantic.Field(min_length=1, max_length=16, description="BMC user.")
    password: pydantic.SecretStr = pydantic.Field(description="Password of the BMC user.")
    privilege: Literal["user", "operator", "administrator"] = pydantic.Field(
        "user", description="Privilege level to ask the BMC for."
    )
    sensor: str | None = pydantic.Field(
        None,
        min_length=1,
        description="SDR sensor to read where the BMC has no DCMI power reading; "
        "by default the only sensor in watts.",
    )


class IpmiDriver(AsyncDriver):
    """One server's power through its BMC: DCMI first, else an SDR sensor in watts."""

    Parameters = IpmiParameters
    params: IpmiParameters
    # The error text of the BMC's current silence, kept across setups (see _error).
    _silence: str | None = None
    _session: RmcpSession | None = None

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        if len(probe_ids) != 1:
            raise SectionError("probes", "a BMC measures one server: list exactly one probe")
        if ipmi_sdr is None:
            raise ValueError("the Ipmi driver needs cryptography: pip install 'kwapi[ipmi]'")

    async def setup(self) -> None:
        self._probe = self.probe_ids[0]
        self._inactive_logged = False
        await self._log_in()
        response = await self._command(DCMI_NETFN, DCMI_GET_POWER_READING, DCMI_REQUEST)
        if response.code == 0:
            self._sensor = None
            self.log.info("wattmeter %s: reading the DCMI power reading", self.wattmeter)
            return
        self._sensor = await self._find_sensor()
        self.log.info(
            "wattmeter %s: no DCMI power reading (code 0x%02x); reading SDR sensor %r",
            self.wattmeter,
            response.code,
            self._sensor.name,
        )

    async def read(self) -> Readings:
        session = self._session
        if session is not None and time.monotonic() - session.last_answer > SESSION_IDLE_LIMIT:
            await self._log_in()
        watts = await self._read_sensor() if self._sensor else await self._read_dcmi()
        if watts is None:
            return {}
        return {self._probe: {POWER_METER: watts}}

    async def teardown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    # -- helpers ------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.params.host}:{self.params.port}"

    async def _log_in(self) -> None:
        await self.teardown()
        params = self.params
        self._session = RmcpSession(
            params.host,
            params.port,
            params.username,
            params.password.get_secret_value(),
            PRIVILEGES[params.privilege],
        )
        started = time.monotonic()
        try:
            await self._session.open()
        except IpmiError as exc:
            raise self._error(f"cannot log in to BMC {self._where}", exc, started) from None
        self._silence = None  # the BMC answered the login

    def _error(self, context: str, exc: IpmiError, started: float) -> DeviceError:
        """The DeviceError for *exc* in a call begun at *started*.

        A BMC that stopped answering gives one text for the whole outage: the
        first call to notice it says how long it waited, and every later call
        that finds it still silent (the read that timed out, then each login
        that times out) raises that same text, so the base class logs it once.
        """
        if not isinstance(exc, NoAnswer):
            reason = AUTHENTICATION if isinstance(exc, LoginRefused) else OTHER
            return DeviceError(f"{context}: {exc}", reason)
        if self._silence is None:
            self._silence = f"{context}: no answer within {time.monotonic() - started:.0f} s"
        return DeviceError(self._silence, TIMEOUT)

    async def _command(self, netfn: int, command: int, data: bytes) -> IpmiResponse:
        assert self._session is not None
        started = time.monotonic()
        try:
            return await self._session.command(netfn, command, data)
        except IpmiError as exc:
            raise self._error(f"BMC {self._where}", exc, started) from None

    async def _read_dcmi(self) -> float | None:
        response = await self._command(DCMI_NETFN, DCMI_GET_POWER_READING, DCMI_REQUEST)
        if response.code != 0:
            raise DeviceError(f"DCMI power reading failed: completion code 0x{response.code:02x}")
        data = response.data
        if len(data) <= DCMI_STATE_OFFSET or data[0] != DCMI_GROUP:
            raise DeviceError(f"malformed DCMI power reading: {data.hex()}", PARSE)
        if not data[DCMI_STATE_OFFSET] & DCMI_MEASUREMENT_ACTIVE:
            if not self._inactive_logged:
                self.log.warning(
                    "wattmeter %s: the BMC's power measurement is not active; "
                    "publishing nothing until it is",
                    self.wattmeter,
                )
                self._inactive_logged = True
            return None
        if self._inactive_logged:
            self.log.warning("wattmeter %s: the BMC's power measurement is active", self.wattmeter)
            self._inactive_logged = False
        return float(struct.unpack_from("<H", data, 1)[0])

    async def _find_sensor(self) -> ipmi_sdr.Sensor:
        try:
            sensors = await ipmi_sdr.read_sensors(self._command)
        except ipmi_sdr.SdrError as exc:
            raise DeviceError(f"cannot read the BMC's sensor records: {exc}") from None
        watts = [sensor for sensor in sensors if sensor.in_watts]
        names = ", ".join(sensor.name for sensor in watts) or "none"
        wanted = self.params.sensor
        if wanted is not None:
            for sensor in watts:
                if sensor.name == wanted:
                    return sensor
            raise DeviceError(
                f"no sensor {wanted!r} in watts on this BMC (sensors in watts: {names})"
            )
        if len(watts) == 1:
            return watts[0]
        if not watts:
            raise DeviceError("the BMC has neither a DCMI power reading nor a sensor in watts")
        raise DeviceError(
            f"the BMC has several sensors in watts ({names}): name one with the parameter 'sensor'"
        )

    async def _read_sensor(self) -> float | None:
        assert self._sensor is not None
        try:
            return await ipmi_sdr.read_sensor(self._command, self._sensor)
        except ipmi_sdr.SdrError as exc:
            raise DeviceError(str(exc)) from None
