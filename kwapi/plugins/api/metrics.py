"""Prometheus metrics of kwapi-api, computed from the collector at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from prometheus_client import PlatformCollector, ProcessCollector
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
from kwapi.plugins.monitoring import TextRegistry, receiver_families

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
    """Exports the number of served probes and the receiver's counters at each scrape.

    The probes' own families are written by :func:`probe_families_text`.
    """

    def __init__(self, collector: Collector, receiver_stats: StatsSource) -> None:
        self._collector = collector
        self._receiver_stats = receiver_stats

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "kwapi_probes",
            "Probes currently served by the API.",
            value=self._collector.count_visible(),
        )
        yield CounterMetricFamily(
            "kwapi_collector_out_of_order",
            "Measurements ignored because they were not newer than the probe's last one.",
            value=self._collector.out_of_order,
        )
        yield from receiver_families(self._receiver_stats())


#: The families of every probe: (name as written, type, help, value of a record or None).
_PROBE_FAMILIES: tuple[tuple[str, str, str, Callable[[ProbeRecord], float | None]], ...] = (
    (
        "kwapi_power_watts",
        "gauge",
        "Last power reading of the probe, in watts.",
        lambda record: record.meters.get(POWER_METER),
    ),
    (
        "kwapi_energy_joules_total",
        "counter",
        "Energy the probe has used since it was first seen, in joules.",
        lambda record: record.kwh * JOULES_PER_KWH,
    ),
    (
        "kwapi_measurement_timestamp_seconds",
        "gauge",
        "Driver time of the probe's last measurement, in seconds since the epoch.",
        lambda record: record.timestamp,
    ),
    (
        "kwapi_energy_gaps_total",
        "counter",
        "Intervals left out of the probe's energy: longer than max_gap, or overflowing.",
        lambda record: float(record.gaps),
    ),
)


def probe_families_text(records: Collection[ProbeRecord]) -> str:
    """Power, energy, time and gaps of every probe, then a gauge per other meter, as text.

    The Prometheus text format, as prometheus_client writes it but about ten
    times faster and without an object per sample: at 10,000 probes those
    cost most of a scrape's time and memory.  Probe ids need no escaping in
    a label value (``A-Za-z0-9._:@-``); a value is Python's ``repr`` of a
    float, which Prometheus reads exactly.
    """
    out: list[str] = []  # a string per family: its lines exist only while it is written
    for name, kind, help_text, value_of in _PROBE_FAMILIES:
        lines = [f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"]
        lines.extend(
            f'{name}{{probe="{record.probe_id}"}} {value!r}\n'
            for record in records
            if (value := value_of(record)) is not None
        )
        out.append("".join(lines))
    others: dict[str, list[str]] = {}
    families: dict[str, str | None] = {}
    for record in records:
        for meter, value in record.meters.items():
            if meter == POWER_METER:
                continue
            family = families.get(meter, "")
            if family == "":  # a meter not seen yet in this scrape
                family = families[meter] = meter_family(meter)
            if family is None:
                continue
            written = others.get(family)
            if written is None:
                help_text = f"Last value of meter {meter!r} of the probe."
                written = others[family] = [f"# HELP {family} {help_text}\n# TYPE {family} gauge\n"]
            written.append(f'{family}{{probe="{record.probe_id}"}} {float(value)!r}\n')
    out.extend("".join(written) for written in others.values())
    return "".join(out)


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
) -> TextRegistry:
    """A registry with kwapi's metrics and the process' own (memory, CPU, files)."""
    registry = TextRegistry()
    registry.add_text(lambda: probe_families_text(list(collector.visible().values())))
    registry.register(KwapiMetrics(collector, receiver_stats))
    if streams is not None:
        registry.register(StreamMetrics(streams))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
