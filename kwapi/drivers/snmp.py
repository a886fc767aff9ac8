"""Snmp: the outlets of a switched or metered PDU, read over SNMP v1, v2c or v3.

One wattmeter is one PDU; its probes are the PDU's outlets in the order of
the power column's rows (``None`` skips an outlet).  At setup the driver
walks the column once to learn the rows; every reading is then a single
GET carrying the OIDs of all the watched outlets.  pysnmp's asyncio API
runs on the event loop that every Snmp and Ipmi wattmeter of the process
shares (:mod:`kwapi.drivers.aio`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Literal, TypeVar

import pydantic

from kwapi.bus.protocol import POWER_METER
from kwapi.drivers.aio import AsyncDriver
from kwapi.drivers.base import (
    AUTHENTICATION,
    DEVICE_GONE,
    PARSE,
    TIMEOUT,
    DeviceError,
    DriverParameters,
    Readings,
)

try:
    from pysnmp.hlapi.v3arch import asyncio as hlapi
    from pysnmp.proto import rfc1902, rfc1905
except ImportError:  # the optional extra 'snmp' is not installed
    hlapi = rfc1902 = rfc1905 = None

# Per-outlet active power columns (watts) of the PDU MIBs the driver knows.
MODELS = {
    "eaton": "1.3.6.1.4.1.534.6.6.7.6.5.1.3",  # EATON-EPDU-MIB outletWatts.<unit>.<outlet>
    "apc": "1.3.6.1.4.1.318.1.1.26.9.4.3.1.7",  # PowerNet rPDU2OutletMeteredStatusPower
    "raritan": "1.3.6.1.4.1.13742.4.1.2.2.1.7",  # PDU-MIB (PX) outletActivePower
    "sentry4": "1.3.6.1.4.1.1718.4.1.8.3.1.7",  # Sentry4-MIB st4OutletActivePower
}
PROTOCOLS = {"1": "1", "v1": "1", "2c": "2c", "v2c": "2c", "2": "2c", "3": "3", "v3": "3"}
AUTH_PROTOCOLS = {
    "md5": "USM_AUTH_HMAC96_MD5",
    "sha": "USM_AUTH_HMAC96_SHA",
    "sha224": "USM_AUTH_HMAC128_SHA224",
    "sha256": "USM_AUTH_HMAC192_SHA256",
    "sha384": "USM_AUTH_HMAC256_SHA384",
    "sha512": "USM_AUTH_HMAC384_SHA512",
}
PRIV_PROTOCOLS = {
    "des": "USM_PRIV_CBC56_DES",
    "3des": "USM_PRIV_CBC168_3DES",
    "aes": "USM_PRIV_CFB128_AES",
    "aes128": "USM_PRIV_CFB128_AES",
    "aes192": "USM_PRIV_CFB192_AES",
    "aes256": "USM_PRIV_CFB256_AES",
}


def _oid(text: str) -> str:
    parts = text.strip().strip(".").split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        raise ValueError("must be a numeric OID such as 1.3.6.1.4.1.318.1.1.26.9.4.3.1.7")
    return ".".join(str(int(part)) for part in parts)


class SnmpParameters(DriverParameters):
    """Parameters of the Snmp driver."""

    host: str = pydantic.Field(min_length=1, description="PDU host name or address.")
    port: int = pydantic.Field(161, ge=1, le=65535, description="PDU SNMP UDP port.")
    protocol: str = pydantic.Field("2c", description="SNMP version: 1, 2c or 3 (v1, v2c, v3).")
    community: pydantic.SecretStr = pydantic.Field(
        pydantic.SecretStr("public"), description="Community of SNMP v1 and v2c."
    )
    user: str | None = pydantic.Field(None, min_length=1, description="SNMPv3 user.")
    auth_key: pydantic.SecretStr | None = pydantic.Field(
        None, min_length=8, description="SNMPv3 authentication passphrase."
    )
    auth_protocol: Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"] = "sha"
    priv_key: pydantic.SecretStr | None = pydantic.Field(
        None, min_length=8, description="SNMPv3 privacy (encryption) passphrase."
    )
    priv_protocol: Literal["des", "3des", "aes", "aes128", "aes192", "aes256"] = "aes"
    context: str = pydantic.Field("", description="SNMPv3 context name.")
    oid: str | None = pydantic.Field(None, description="Per-outlet power column to walk.")
    model: Literal["eaton", "apc", "raritan", "sentry4"] | None = pydantic.Field(
        None, description="A known PDU MIB, instead of oid."
    )
    unit: int = pydantic.Field(0, ge=0, description="Daisy-chain unit (model eaton).")
    scale: float = pydantic.Field(1.0, gt=0, description="Watts per unit of the column.")
    timeout: float = pydantic.Field(1.0, gt=0, description="Seconds to wait for an answer.")
    retries: int = pydantic.Field(1, ge=0, le=10, description="Retransmissions of a request.")

    @pydantic.field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: object) -> str:
        key = str(value).strip().lower()
        if key not in PROTOCOLS:
            raise ValueError("must be one of 1, 2c, 3 (or v1, v2c, v3)")
        return PROTOCOLS[key]

    @pydantic.field_validator("oid")
    @classmethod
    def _check_oid(cls, value: str | None) -> str | None:
        return None if value is None else _oid(value)

    @property
    def column(self) -> str:
        """The OID prefix whose rows are the outlets."""
        if self.model is None:
            assert self.oid is not None  # validate() asks for exactly one of oid and model
            return self.oid
        if self.model == "eaton":
            return f"{MODELS['eaton']}.{self.unit}"
        return MODELS[self.model]


# One pysnmp engine per set of credentials, shared by every PDU that uses
# them: an engine costs megabytes and a quarter of a second of CPU to build,
# and one engine's socket serves all its PDUs.  Engines live as long as the
# process (closing one under answers in flight makes pysnmp complain), on the
# shared event loop's thread, which is the only one that touches them.
T = TypeVar("T")
Credentials = tuple[str | None, ...]
_ENGINES: dict[Credentials, Any] = {}


def shared_engine(credentials: Credentials) -> Any:
    """The engine of the PDUs read with *credentials*, built on first use."""
    engine = _ENGINES.get(credentials)
    if engine is None:
        engine = _ENGINES[credentials] = hlapi.SnmpEngine()
    return engine


# pysnmp's error indications of a request refused for its credentials (SNMPv3 USM).
AUTHENTICATION_ERRORS = (
    "wrongDigest",
    "unknownUserName",
    "unknownSecurityName",
    "decryptionError",
    "unsupportedSecLevel",
    "authenticationFailure",
)


def _reason(error_indication: object) -> str:
    """The health metrics' reason for one of pysnmp's error indications."""
    text = str(error_indication)
    if "timeout" in text.lower():
        return TIMEOUT
    if any(name.lower() in text.lower().replace(" ", "") for name in AUTHENTICATION_ERRORS):
        return AUTHENTICATION
    return DEVICE_GONE


class SnmpDriver(AsyncDriver):
    """One PDU: each probe is an outlet, read together in one SNMP request."""

    Parameters = SnmpParameters
    params: SnmpParameters

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        assert isinstance(parameters, SnmpParameters)
        if hlapi is None:
            raise ValueError("the Snmp driver needs pysnmp: pip install 'kwapi[snmp]'")
        if (parameters.oid is None) == (parameters.model is None):
            raise ValueError("set exactly one of the parameters 'oid' and 'model'")
        if parameters.unit and parameters.model != "eaton":
            raise ValueError("the parameter 'unit' applies to model 'eaton' only")
        if parameters.protocol == "3":
            if parameters.user is None:
                raise ValueError("the parameter 'user' is required with protocol 3")
            if parameters.priv_key is not None and parameters.auth_key is None:
                raise ValueError("the parameter 'priv_key' needs 'auth_key' too")

    # -- lifecycle --------------------------------------------------------------

    async def setup(self) -> None:
        self._oids: list[tuple[str, str]] = []
        await self._snmp(self._setup())

    async def read(self) -> Readings:
        values = await self._snmp(self._get())
        readings: dict[str | None, dict[str, float]] = {}
        for probe_id, value in values:
            watts = self._watts(value)
            if watts is not None:
                readings[probe_id] = {POWER_METER: watts}
        return readings

    async def teardown(self) -> None:
        """Nothing to release: the engine is shared, the target holds no socket."""

    # -- SNMP -------------------------------------------------------------------

    async def _snmp(self, coroutine: Awaitable[T]) -> T:
        """Await *coroutine*; pysnmp's own errors become DeviceErrors."""
        try:
            return await coroutine
        except (DeviceError, OSError):
            raise
        except Exception as exc:
            if type(exc).__module__.startswith("pysnmp"):
                raise DeviceError(f"SNMP error with {self._where()}: {exc}") from None
            raise

    async def _setup(self) -> None:
        params = self.params
        self._auth = self._credentials()
        self._engine = shared_engine(self._credentials_key())
        self._context = hlapi.ContextData(contextName=params.context)
        self._target = await hlapi.UdpTransportTarget.create(
            (params.host, params.port), timeout=params.timeout, retries=params.retries
        )
        rows = await self._walk(params.column, len(self.probe_ids))
        if not rows:
            raise DeviceError(f"{self._where()} has no row under {params.column}")
        self._oids = [
            (probe_id, oid)
            for probe_id, oid in zip(self.probe_ids, rows, strict=False)
            if probe_id is not None
        ]
        # Built once: pysnmp resolves a new ObjectIdentity at every request.
        self._requests = [hlapi.ObjectType(hlapi.ObjectIdentity(oid)) for _, oid in self._oids]
        if len(rows) < len(self.probe_ids):
            missing = [p for p in self.probe_ids[len(rows) :] if p is not None]
            if missing:
                self.log.warning(
                    "wattmeter %s: the PDU has %d outlet(s) under %s; nothing for %s",
                    self.wattmeter,
                    len(rows),
                    params.column,
                    ", ".join(missing),
                )
        self.log.info(
            "wattmeter %s: reading %d outlet(s) of %s under %s",
            self.wattmeter,
            len(self._oids),
            self._where(),
            params.column,
        )

    def _credentials_key(self) -> Credentials:
        """What an engine shared with other PDUs must agree on: protocol and secrets."""
        params = self.params
        secrets = (params.community, params.auth_key, params.priv_key)
        values = tuple(None if value is None else value.get_secret_value() for value in secrets)
        return (params.protocol, params.user, params.auth_protocol, params.priv_protocol, *values)

    def _credentials(self) -> Any:
        params = self.params
        if params.protocol != "3":
            model = 0 if params.protocol == "1" else 1
            return hlapi.CommunityData(params.community.get_secret_value(), mpModel=model)
        auth_key = params.auth_key.get_secret_value() if params.auth_key else None
        priv_key = params.priv_key.get_secret_value() if params.priv_key else None
        return hlapi.UsmUserData(
            params.user,
            authKey=auth_key,
            privKey=priv_key,
            authProtocol=getattr(hlapi, AUTH_PROTOCOLS[params.auth_protocol])
            if auth_key
            else hlapi.USM_AUTH_NONE,
            privProtocol=getattr(hlapi, PRIV_PROTOCOLS[params.priv_protocol])
            if priv_key
            else hlapi.USM_PRIV_NONE,
        )

    async def _walk(self, column: str, wanted: int) -> list[str]:
        """Return the OIDs of the first *wanted* rows under *column*, in order."""
        prefix = tuple(int(part) for part in column.split("."))
        rows: list[str] = []
        current = column
        while len(rows) < wanted:
            request = hlapi.ObjectType(hlapi.ObjectIdentity(current))
            if self.params.protocol == "1":
                answer = await hlapi.next_cmd(
                    self._engine, self._auth, self._target, self._context, request, lookupMib=False
                )
            else:
                answer = await hlapi.bulk_cmd(
                    self._engine,
                    self._auth,
                    self._target,
                    self._context,
                    0,
                    wanted - len(rows),
                    request,
                    lookupMib=False,
                )
            error_indication, error_status, _, var_binds = answer
            if error_indication:
                raise DeviceError(f"{self._where()}: {error_indication}", _reason(error_indication))
            if error_status:
                if self.params.protocol == "1" and str(error_status) == "noSuchName":
                    break  # v1 says end of MIB this way
                raise DeviceError(f"{self._where()}: {error_status.prettyPrint()}")
            if not var_binds:
                break
            for name, value in var_binds:
                oid = tuple(name)
                if oid[: len(prefix)] != prefix or isinstance(value, rfc1905.EndOfMibView):
                    return rows
                rows.append(str(name))
                current = str(name)
                if len(rows) == wanted:
                    break
        return rows

    async def _get(self) -> list[tuple[str, object]]:
        error_indication, error_status, error_index, var_binds = await hlapi.get_cmd(
            self._engine, self._auth, self._target, self._context, *self._requests, lookupMib=False
        )
        if error_indication:
            raise DeviceError(f"{self._where()}: {error_indication}", _reason(error_indication))
        if error_status:
            raise DeviceError(f"{self._where()}: {error_status.prettyPrint()} at {error_index}")
        if len(var_binds) != len(self._oids):
            raise DeviceError(
                f"{self._where()} answered {len(var_binds)} of {len(self._oids)}", PARSE
            )
        values = []
        for (probe_id, oid), (name, value) in zip(self._oids, var_binds, strict=True):
            if str(name) != oid:
                raise DeviceError(f"{self._where()} answered {name} for {oid}", PARSE)
            if isinstance(value, rfc1905.NoSuchInstance | rfc1905.NoSuchObject):
                raise DeviceError(f"{self._where()} no longer has {oid}: outlets changed?")
            values.append((probe_id, value))
        return values

    def _watts(self, value: object) -> float | None:
        """Watts from one outlet's value; None where the PDU has no reading (negative)."""
        try:
            if isinstance(value, rfc1902.OctetString):
                number = float(value.asOctets().decode("ascii").strip())
            else:
                number = float(int(value))  # type: ignore[call-overload]  # pysnmp Integer
        except (TypeError, ValueError, UnicodeDecodeError):
            raise DeviceError(f"{self._where()}: {value!r} is not a number", PARSE) from None
        if number < 0:
            return None
        return round(number * self.params.scale, 6)

    def _where(self) -> str:
        return f"PDU {self.params.host}:{self.params.port}"
