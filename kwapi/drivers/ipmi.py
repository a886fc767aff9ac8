"""Ipmi: a server's power as its BMC reports it, over IPMI 2.0 on the LAN.

The driver asks the BMC for the DCMI power reading and, where the BMC has
no DCMI, reads the SDR sensor whose unit is watts.  It talks RMCP+ through
pyghmi in this process: no ipmitool, no shell, so the password never shows
in a process list, and it is kept as a secret that logs print as stars.
"""

from __future__ import annotations

import struct
import time
from typing import Literal

import pydantic

from kwapi.drivers.base import DeviceError, Driver, DriverParameters, Readings, SectionError

try:
    from pyghmi.exceptions import IpmiException
    from pyghmi.ipmi import command as ipmi_command
    from pyghmi.ipmi.private import session as ipmi_session
except ImportError:  # the optional extra 'ipmi' is not installed
    ipmi_command = ipmi_session = None
    IpmiException = Exception

DCMI_NETFN = 0x2C
DCMI_GET_POWER_READING = 0x02
DCMI_GROUP = 0xDC
# Group id, mode 1 (system power statistics), two reserved bytes.
DCMI_REQUEST = (DCMI_GROUP, 0x01, 0x00, 0x00)
DCMI_MEASUREMENT_ACTIVE = 0x40
DCMI_STATE_OFFSET = 17
WATTS = "W"
# IPMI privilege levels (IPMI 2.0 table 22-28): User suffices for power and sensor readings.
PRIVILEGES = {"user": 2, "operator": 3, "administrator": 4}
# What pyghmi says when the BMC stops answering: a login that timed out
# raises an exception whose text is None; a request, one of these.
SILENT_BMC_TEXTS = frozenset({"", "None", "Session no longer connected", "timeout"})


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


class IpmiDriver(Driver):
    """One server's power through its BMC: DCMI first, else an SDR sensor in watts."""

    Parameters = IpmiParameters
    params: IpmiParameters
    # The error text of the BMC's current silence, kept across setups (see _error).
    _silence: str | None = None

    @classmethod
    def validate(cls, probe_ids, parameters) -> None:
        if len(probe_ids) != 1:
            raise SectionError("probes", "a BMC measures one server: list exactly one probe")
        if ipmi_command is None:
            raise ValueError("pyghmi is not installed (pip install 'kwapi[ipmi]')")

    def setup(self) -> None:
        self._probe = self.probe_ids[0]
        self._inactive_logged = False
        params = self.params
        password = params.password.get_secret_value()
        # pyghmi hands out a cached session for the same credentials, even a
        # dead one: forget it so that every setup logs in afresh.
        ipmi_session.Session.initting_sessions.pop(
            (params.host, params.username, password, params.port, None), None
        )
        started = time.monotonic()
        try:
            self._command = ipmi_command.Command(
                bmc=params.host,
                userid=params.username,
                password=password,
                port=params.port,
                privlevel=PRIVILEGES[params.privilege],
            )
        except IpmiException as exc:
            self._command = None
            raise self._error(f"cannot log in to BMC {self._where}", exc, started) from None
        except OSError as exc:
            self._command = None
            raise DeviceError(f"cannot reach BMC {self._where}: {exc}") from None
        self._silence = None  # the BMC answered the login
        # Once logged in, pyghmi answers a silent BMC by logging in again
        # behind our back, which takes it some 20 s to give up.  With no
        # login retry left, a request fails after pyghmi's four tries, each
        # waiting a second longer than the last (about 9 s in all), and the
        # base class reconnects with its capped backoff.
        self._command.ipmi_session.logontries = 0
        response = self._raw(DCMI_NETFN, DCMI_GET_POWER_READING, DCMI_REQUEST)
        if response.get("code", 0) == 0:
            self._sensor = None
            self.log.info("wattmeter %s: reading the DCMI power reading", self.wattmeter)
            return
        self._sensor = self._find_sensor()
        self.log.info(
            "wattmeter %s: no DCMI power reading (%s); reading SDR sensor %r",
            self.wattmeter,
            response.get("error", "unsupported"),
            self._sensor,
        )

    def read(self) -> Readings:
        watts = self._read_sensor() if self._sensor else self._read_dcmi()
        if watts is None:
            return {}
        return {self._probe: {"w": watts}}

    def teardown(self) -> None:
        command = getattr(self, "_command", None)
        self._command = None
        if command is None:
            return
        try:
            command.ipmi_session.logout()
        except Exception as exc:  # the BMC may be gone already
            self.log.debug("wattmeter %s: logout failed: %r", self.wattmeter, exc)

    # -- helpers ------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.params.host}:{self.params.port}"

    def _error(self, context: str, exc: BaseException | None, started: float) -> DeviceError:
        """The DeviceError for pyghmi's *exc* (None: no answer) in a call begun at *started*.

        A BMC that stopped answering gives one text for the whole outage: the
        first call to notice it says how long it waited, and every later call
        that finds it still silent (the read that timed out, then each login
        that times out) raises that same text, so the base class logs it once.
        """
        if exc is not None and str(exc) not in SILENT_BMC_TEXTS:
            return DeviceError(f"{context}: {exc}")
        if self._silence is None:
            waited = time.monotonic() - started
            if waited < 0.5:  # pyghmi had given the session up before this call
                self._silence = f"{context}: no answer, session lost"
            else:
                self._silence = f"{context}: no answer within {waited:.0f} s"
        return DeviceError(self._silence)

    def _raw(self, netfn: int, cmd: int, data: tuple[int, ...]) -> dict:
        started = time.monotonic()
        try:
            response = self._command.raw_command(netfn=netfn, command=cmd, data=data)
        except IpmiException as exc:
            raise self._error(f"BMC {self._where}", exc, started) from None
        if response is None or response.get("code") == 0xFFFF:
            raise self._error(f"BMC {self._where}", None, started)
        return response

    def _read_dcmi(self) -> float | None:
        response = self._raw(DCMI_NETFN, DCMI_GET_POWER_READING, DCMI_REQUEST)
        if response.get("code", 0) != 0:
            raise DeviceError(f"DCMI power reading failed: {response.get('error')}")
        data = bytes(response.get("data", b""))
        if len(data) <= DCMI_STATE_OFFSET or data[0] != DCMI_GROUP:
            raise DeviceError(f"malformed DCMI power reading: {data.hex()}")
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

    def _find_sensor(self) -> str:
        started = time.monotonic()
        try:
            sensors = self._command.init_sdr().sensors.values()
        except IpmiException as exc:
            raise self._error("cannot read the BMC's sensor records", exc, started) from None
        watts = [
            sensor.name
            for sensor in sensors
            if sensor.readable
            and getattr(sensor, "baseunit", None) == WATTS
            and not getattr(sensor, "unit_mod", "")
            and not getattr(sensor, "percent", "")
        ]
        wanted = self.params.sensor
        if wanted is not None:
            if wanted not in watts:
                raise DeviceError(
                    f"no sensor {wanted!r} in watts on this BMC "
                    f"(sensors in watts: {', '.join(watts) or 'none'})"
                )
            return wanted
        if len(watts) == 1:
            return watts[0]
        if not watts:
            raise DeviceError("the BMC has neither a DCMI power reading nor a sensor in watts")
        raise DeviceError(
            f"the BMC has several sensors in watts ({', '.join(watts)}): "
            "name one with the parameter 'sensor'"
        )

    def _read_sensor(self) -> float | None:
        started = time.monotonic()
        try:
            reading = self._command.get_sensor_reading(self._sensor)
        except IpmiException as exc:
            raise self._error(f"cannot read sensor {self._sensor!r}", exc, started) from None
        if reading.unavailable or reading.value is None:
            return None
        return float(reading.value)
