"""The ``energy`` and ``power`` pollsters of Ceilometer's central agent.

Each polling cycle, the first of the two pollsters to run fetches
``GET <endpoint>/probes/`` from every kwapi endpoint (found in the Keystone
catalog under the ``energy`` service type by default), with the agent's
Keystone token in ``X-Auth-Token``; the answer is kept in the cycle's cache
so that the other pollster reuses it. Each probe then gives one sample per
pollster:

========  ==========  =====  ===============
meter     type        unit   volume
========  ==========  =====  ===============
energy    cumulative  kWh    the probe's kwh
power     gauge       W      the probe's w
========  ==========  =====  ===============

The resource id is the probe id, the timestamp kwapi's (ISO 8601, UTC; also
kept in the ``measured_at`` metadata, since the agent may restamp samples
with its polling time). A probe whose fields are missing or not numbers is
skipped with a warning, except a probe without ``w`` (one that never sent
power, such as a stream), which simply gives no power sample; an endpoint
that cannot be read gives no samples and an error line, never an exception
out of the poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ceilometer import sample
from ceilometer.polling import plugin_base
from keystoneauth1 import exceptions as ksa_exceptions

from kwapi.bus.protocol import POWER_METER, finite_number
from kwapi.ceilometer import options

if TYPE_CHECKING:
    from keystoneauth1.session import Session

LOG = logging.getLogger(__name__)

CACHE_KEY = "kwapi.probes"

#: A probe of ``GET /probes/``: its id and its fields, as JSON (checked when sampled).
Probe = tuple[str, object]


class _Keystone(Protocol):
    """What the pollsters use of the polling manager's Keystone client."""

    @property
    def session(self) -> Session: ...


class PollingManager(Protocol):
    """What the pollsters use of Ceilometer's polling manager."""

    @property
    def keystone(self) -> _Keystone: ...


def probes_url(endpoint: str) -> str:
    """The URL listing every probe of the kwapi API at *endpoint* (``.../v1``)."""
    return endpoint.rstrip("/") + "/probes/"


def iso_timestamp(value: object) -> str | None:
    """kwapi's timestamp (seconds since the epoch) as ISO 8601 in UTC, or None if invalid."""
    seconds = finite_number(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def fetch_probes(session: Session, endpoint: str, timeout: float) -> list[Probe]:
    """Return ``(probe id, fields)`` of every probe at *endpoint*; [] if it cannot be read.

    *session* is a keystoneauth1 session: it adds the token and the TLS
    settings of ``[service_credentials]``.
    """
    url = probes_url(endpoint)
    try:
        response = session.get(
            url, headers={"Accept": "application/json"}, timeout=timeout, raise_exc=False
        )
    except ksa_exceptions.ClientException as exc:
        LOG.error("kwapi: cannot read %s: %s", url, exc)
        return []
    if response.status_code != 200:
        LOG.error("kwapi: %s answered %s: %s", url, response.status_code, response.text[:300])
        return []
    try:
        probes = response.json()["probes"]
    except (ValueError, KeyError, TypeError):
        LOG.error("kwapi: %s did not answer a JSON document with 'probes'", url)
        return []
    if not isinstance(probes, dict):
        LOG.error("kwapi: 'probes' of %s is not an object", url)
        return []
    return list(probes.items())


class _CachedFetch:
    """The probes of one endpoint for one polling cycle, fetched once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: list[Probe] | None = None

    def get(self, fetch: Callable[[], list[Probe]]) -> list[Probe]:
        with self._lock:
            if self._probes is None:
                self._probes = fetch()
            return self._probes


class _KwapiPollster(plugin_base.PollsterBase):
    """One sample per probe of every kwapi endpoint, from one shared GET per cycle."""

    name: str
    meter_type: str
    unit: str
    field: str
    #: A probe without *field* is skipped quietly rather than with a warning.
    field_optional: bool = False

    def setup_environment(self) -> None:
        options.register(self.conf)

    @property
    def default_discovery(self) -> str:
        return f"endpoint:{self.conf[options.SERVICE_TYPES_GROUP].kwapi}"

    def _probes(self, manager: PollingManager, cache: dict[str, Any], endpoint: str) -> list[Probe]:
        # setdefault is atomic: with threads_to_process_pollsters > 1 both
        # pollsters may get here at once, and still only one of them fetches.
        # (The cache is the polling cycle's, shared with every pollster: under
        # this key, it holds our _CachedFetch.)
        entry: _CachedFetch = cache.setdefault(f"{CACHE_KEY}:{endpoint}", _CachedFetch())
        return entry.get(lambda: self._fetch(manager, endpoint))

    def _fetch(self, manager: PollingManager, endpoint: str) -> list[Probe]:
        try:
            session = manager.keystone.session
        except ksa_exceptions.ClientException as exc:
            LOG.error("kwapi: no Keystone session to poll %s: %s", endpoint, exc)
            return []
        return fetch_probes(session, endpoint, self.conf[options.KWAPI_GROUP].timeout)

    def get_samples(
        self, manager: PollingManager, cache: dict[str, Any], resources: list[str]
    ) -> Iterator[sample.Sample]:
        for endpoint in resources:
            for probe_id, fields in self._probes(manager, cache, endpoint):
                made = self._sample(endpoint, probe_id, fields)
                if made is not None:
                    yield made

    def _sample(self, endpoint: str, probe_id: str, fields: object) -> sample.Sample | None:
        if not isinstance(fields, dict):
            LOG.warning("kwapi: skipping probe %r of %s: not an object", probe_id, endpoint)
            return None
        if self.field not in fields and self.field_optional:
            LOG.debug(
                "kwapi: probe %r of %s has no %r: no %s sample",
                probe_id,
                endpoint,
                self.field,
                self.name,
            )
            return None
        volume = finite_number(fields.get(self.field))
        timestamp = iso_timestamp(fields.get("timestamp"))
        if volume is None or timestamp is None:
            bad = self.field if volume is None else "timestamp"
            LOG.warning(
                "kwapi: skipping probe %r of %s for %s: %r is %r, not a number",
                probe_id,
                endpoint,
                self.name,
                bad,
                fields.get(bad),
            )
            return None
        return sample.Sample(
            name=self.name,
            type=self.meter_type,
            unit=self.unit,
            volume=volume,
            user_id=None,
            project_id=None,
            resource_id=probe_id,
            timestamp=timestamp,
            resource_metadata={"measured_at": timestamp, "endpoint": endpoint},
        )


class EnergyPollster(_KwapiPollster):
    """``energy``: cumulative kWh of each probe since kwapi first saw it."""

    name = "energy"
    meter_type = sample.TYPE_CUMULATIVE
    unit = "kWh"
    field = "kwh"


class PowerPollster(_KwapiPollster):
    """``power``: last power reading of each probe, in watts."""

    name = "power"
    meter_type = sample.TYPE_GAUGE
    unit = "W"
    field = POWER_METER
    # kwapi-api serves probes that never sent power (a stream probe) without
    # ``w``: normal, not worth a warning every polling cycle.
    field_optional = True
