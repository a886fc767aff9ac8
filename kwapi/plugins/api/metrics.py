"""Prometheus metrics of kwapi-api, computed from the collector at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector as PrometheusCollector

from kwapi.bus.protocol import POWER_METER
from kwapi.plugins.api.collector import Collector, ProbeRecord
from kwapi.plugins.api.stream_views import StreamViews
from kwapi.plugins.energy import JOULES_PER_KWH
from kwapi.plugins.monitoring import receiver_families

PREFIX = "kwapi_"
#: Metric families kwapi-api defines itself; a meter whose name would clash is not exported.
RESERVED_FAMILIES = frozenset(
    {
        "kwapi_power_watts",
        "kwapi_energy_joules",
        "kwapi_measurement_timestamp_seconds",
        "kwapi_energy_gaps",
        "kwapi_probes",
        "kwapi_collector_out_of_order",
        "kwapi_receiver_delay_seconds",
        "kwapi_stream_power_watts",
        "kwapi_stream_share_ratio",
        "kwapi_stream_energy_joules",
        "kwapi_stream_bits_per_joule",
        "kwapi_stream_pixels_per_joule",
        "kwapi_stream_host_energy_joules",
        "kwapi_stream_host_cost",
    }
)
#: Meters that are exported under their own family rather than kwapi_<meter>.
SKIPPED_METERS = frozenset({POWER_METER, "kwh"})

#: The receiver's counters (:meth:`kwapi.bus.receiver.ReceiverStats.snapshot`): a JSON-like
#: mapping whose keys :func:`kwapi.plugins.monitoring.receiver_families` reads.
StatsSource = Callable[[], Mapping[str, Any]]


def meter_family(meter: str) -> str | None:
    """Name of the gauge family of *meter*, or None if it is not exported as such."""
    if meter in SKIPPED_METERS:
        return None
    name = PREFIX + meter
    base = name.removesuffix("_total").removesuffix("_created")
    if base in RESERVED_FAMILIES or name.startswith((PREFIX + "receiver_", PREFIX + "stream_")):
        return None
    return name


class KwapiMetrics(PrometheusCollector):
    """Exports every served probe and the receiver's counters at each scrape."""

    def __init__(self, collector: Collector, receiver_stats: StatsSource) -> None:
        self._collector = collector
        self._receiver_stats = receiver_stats

    def collect(self) -> Iterator[Metric]:
        records = self._collector.visible()
        yield from _probe_families(records)
        yield GaugeMetricFamily(
            "kwapi_probes", "Probes currently served by the API.", value=len(records)
        )
        yield CounterMetricFamily(
            "kwapi_collector_out_of_order",
            "Measurements ignored because they were not newer than the probe's last one.",
            value=self._collector.out_of_order,
        )
        yield from receiver_families(self._receiver_stats())


def _probe_families(records: dict[str, ProbeRecord]) -> list[Metric]:
    """Power, energy, time and gaps of every probe, then a gauge family per other meter."""
    power = GaugeMetricFamily(
        "kwapi_power_watts", "Last power reading of the probe, in watts.", labels=["probe"]
    )
    energy = CounterMetricFamily(
        "kwapi_energy_joules",
        "Energy the probe has used since it was first seen, in joules.",
        labels=["probe"],
    )
    stamp = GaugeMetricFamily(
        "kwapi_measurement_timestamp_seconds",
        "Driver time of the probe's last measurement, in seconds since the epoch.",
        labels=["probe"],
    )
    gaps = CounterMetricFamily(
        "kwapi_energy_gaps",
        "Intervals left out of the probe's energy: longer than max_gap, or overflowing.",
        labels=["probe"],
    )
    others: dict[str, GaugeMetricFamily] = {}
    for probe_id, record in records.items():
        labels = [probe_id]
        w = record.w
        if w is not None:
            power.add_metric(labels, w)
        energy.add_metric(labels, record.kwh * JOULES_PER_KWH)
        stamp.add_metric(labels, record.timestamp)
        gaps.add_metric(labels, record.gaps)
        for meter, value in record.meters.items():
            name = meter_family(meter)
            if name is None:
                continue
            family = others.get(name)
            if family is None:
                family = others[name] = GaugeMetricFamily(
                    name, f"Last value of meter {meter!r} of the probe.", labels=["probe"]
                )
            family.add_metric(labels, value)
    return [power, energy, stamp, gaps, *others.values()]


class StreamMetrics(PrometheusCollector):
    """Exports the energy per stream (see :mod:`kwapi.plugins.api.stream_energy`) at each scrape."""

    def __init__(self, views: StreamViews) -> None:
        self._views = views

    def collect(self) -> Iterator[Metric]:
        labels = ["stream", "host"]
        power = GaugeMetricFamily(
            "kwapi_stream_power_watts",
            "The stream's share of its host's power (also joules per second of video).",
            labels=labels,
        )
        share = GaugeMetricFamily(
            "kwapi_stream_share_ratio",
            "The stream's share of its host's power, 0 to 1 (0 while down).",
            labels=labels,
        )
        energy = CounterMetricFamily(
            "kwapi_stream_energy_joules",
            "Energy attributed to the stream since it was first seen, in joules.",
            labels=labels,
        )
        bits = GaugeMetricFamily(
            "kwapi_stream_bits_per_joule",
            "Bits the stream delivers per joule of its power share.",
            labels=labels,
        )
        pixels = GaugeMetricFamily(
            "kwapi_stream_pixels_per_joule",
            "Pixels (width x height x fps) the stream delivers per joule of its power share.",
            labels=labels,
        )
        for stream, body in self._views.streams().items():
            values = [stream, body["host"]]
            share.add_metric(values, body["share"])
            energy.add_metric(values, body["kwh"] * JOULES_PER_KWH)
            if body[POWER_METER] is not None:
                power.add_metric(values, body[POWER_METER])
            if body["bits_per_joule"] is not None:
                bits.add_metric(values, body["bits_per_joule"])
            if body["pixels_per_joule"] is not None:
                pixels.add_metric(values, body["pixels_per_joule"])
        host_energy = CounterMetricFamily(
            "kwapi_stream_host_energy_joules",
            "Energy the host used while at least one of its streams was up, in joules.",
            labels=["host"],
        )
        host_cost = CounterMetricFamily(
            "kwapi_stream_host_cost",
            "Cost of that energy at kwh_price, in currency.",
            labels=["host", "currency"],
        )
        for host, figures in self._views.hosts(1.0).items():
            host_energy.add_metric([host], figures["kwh"] * JOULES_PER_KWH)
            host_cost.add_metric([host, figures["currency"]], figures["cost"])
        yield from (power, share, energy, bits, pixels, host_energy, host_cost)


def make_registry(
    collector: Collector, receiver_stats: StatsSource, streams: StreamViews | None = None
) -> CollectorRegistry:
    """A registry with kwapi's metrics and the process' own (memory, CPU, files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KwapiMetrics(collector, receiver_stats))
    if streams is not None:
        registry.register(StreamMetrics(streams))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
