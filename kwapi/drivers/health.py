"""kwapi-drivers' health as Prometheus metrics: is each wattmeter read, and if not, why.

One series per wattmeter section (labels ``section`` and ``driver``), and
the time of each probe's last reading (labels ``section`` and ``probe``).
Served on ``metrics_host``:``metrics_port`` by prometheus_client's own HTTP
server, in a thread of its own; nothing is computed between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kwapi.config import ConfigError
from kwapi.drivers.manager import WattmeterState

LABELS = ["section", "driver"]


GAUGES = {
    "up": ("kwapi_driver_up", "1 if the wattmeter's last reading succeeded, else 0."),
    "last": (
        "kwapi_driver_last_success_timestamp_seconds",
        "Unix time of the wattmeter's last successful reading.",
    ),
    "interval": ("kwapi_driver_interval_seconds", "Seconds between readings."),
    "backoff": (
        "kwapi_driver_backoff_seconds",
        "Seconds the wattmeter waits before its next try to reach the device (0 when up).",
    ),
    "stalled": (
        "kwapi_driver_stalled",
        "1 while the wattmeter publishes nothing with no device error to say why.",
    ),
}
COUNTERS = {
    "published": ("kwapi_driver_published", "Measurements published on the bus."),
    "dropped": (
        "kwapi_driver_dropped",
        "Measurements not published because a meter was not a finite number.",
    ),
}
BY_REASON = {
    "read_errors": (
        "kwapi_driver_read_errors",
        "Readings that failed, by reason (timeout, authentication, parse, device_gone, other).",
    ),
    "restarts": (
        "kwapi_driver_restarts",
        "Times the device was set up again after a failure, by reason (crash: the "
        "driver died of a bug and the manager started a new one).",
    ),
}


class DriverHealthCollector(Collector):
    """Collects the wattmeters' health from *states* (the driver manager's) at each scrape."""

    def __init__(self, states: Callable[[], Sequence[WattmeterState]]) -> None:
        self._states = states

    def collect(self) -> Iterator[Metric]:
        gauges = {key: GaugeMetricFamily(*text, labels=LABELS) for key, text in GAUGES.items()}
        counters = {
            key: CounterMetricFamily(*text, labels=LABELS) for key, text in COUNTERS.items()
        }
        reasons = {
            key: CounterMetricFamily(*text, labels=[*LABELS, "reason"])
            for key, text in BY_REASON.items()
        }
        probes = GaugeMetricFamily(
            "kwapi_driver_probe_last_success_timestamp_seconds",
            "Unix time of the probe's last published measurement.",
            labels=["section", "probe"],
        )
        for state in self._states():
            labels = [state.wattmeter.name, state.wattmeter.driver_name]
            health = state.health
            gauges["up"].add_metric(labels, float(health.up and not state.stalled))
            if health.last_success is not None:
                gauges["last"].add_metric(labels, health.last_success)
            gauges["interval"].add_metric(labels, state.wattmeter.parameters.interval)
            gauges["backoff"].add_metric(labels, health.backoff)
            gauges["stalled"].add_metric(labels, float(state.stalled))
            counters["published"].add_metric(labels, health.published)
            counters["dropped"].add_metric(labels, health.dropped)
            for key, family in reasons.items():
                for reason, count in sorted(dict(getattr(health, key)).items()):
                    family.add_metric([*labels, reason], count)
            for probe, stamp in sorted(dict(health.probes_last_success).items()):
                probes.add_metric([state.wattmeter.name, probe], stamp)
        yield from (*gauges.values(), *counters.values(), *reasons.values(), probes)


def health_registry(states: Callable[[], Sequence[WattmeterState]]) -> CollectorRegistry:
    """A registry with the wattmeters' health and the process' own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DriverHealthCollector(states))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def serve_health(
    host: str, port: int, states: Callable[[], Sequence[WattmeterState]]
) -> WSGIServer:
    """Serve the health metrics on *host*:*port* in a thread; ConfigError if it cannot bind."""
    try:
        server, _thread = start_http_server(port, host, registry=health_registry(states))
    except OSError as exc:
        raise ConfigError(
            f"cannot serve the health metrics on {host}:{port}: {exc.strerror or exc}",
            key="metrics_port",
        ) from None
    return server
