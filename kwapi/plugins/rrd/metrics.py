"""Prometheus metrics of kwapi-rrd: the receiver, the writes, rrdcached and rrd_dir's disk.

Computed at scrape time from the objects kwapi-rrd already keeps; nothing
is counted twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kwapi.plugins.monitoring import receiver_families
from kwapi.plugins.rrd.context import RrdContext
from kwapi.plugins.rrd.rrdcached import RrdcachedError

#: kwapi-rrd's storage counters, exported as ``kwapi_rrd_<name>_total``.
STORAGE_COUNTERS = {
    "updated": (
        "kwapi_rrd_updates",
        "Values written to RRD files (for batched probes, one per second and meter).",
    ),
    "batched": (
        "kwapi_rrd_batched_samples",
        "Values received in batched messages, summarised into one update per second.",
    ),
    "dropped_old": (
        "kwapi_rrd_dropped_old",
        "Values not written because their file already holds a later one.",
    ),
    "created": ("kwapi_rrd_files_created", "RRD files created."),
    "errors": ("kwapi_rrd_write_errors", "Values rrdtool or rrdcached failed to write."),
}


class RrdMetrics(Collector):
    """Exports kwapi-rrd's state at each scrape."""

    def __init__(self, served: RrdContext) -> None:
        self._served = served

    def collect(self) -> Iterator[Metric]:
        served = self._served
        stats = served.receiver_stats() if served.receiver_stats is not None else None
        if stats is not None:
            yield from receiver_families(stats)
            yield from _write_families(stats)
        for key, (name, text) in STORAGE_COUNTERS.items():
            yield CounterMetricFamily(name, text, value=served.storage.stats[key])
        yield GaugeMetricFamily(
            "kwapi_rrd_probes", "Probes with RRD files.", value=served.storage.probe_count()
        )
        yield from _rrdcached_families(served)
        yield from _disk_families(str(served.storage.directory))


def _write_families(stats: Mapping[str, Any]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "kwapi_rrd_pending_writes",
        "Samples received and not yet written.",
        value=stats.get("pending_writes", 0),
    )
    yield GaugeMetricFamily(
        "kwapi_rrd_write_lag_seconds",
        "Age of the oldest message waiting to be written (0 when none waits).",
        value=stats.get("write_lag_seconds", 0.0),
    )


def _rrdcached_families(served: RrdContext) -> Iterator[Metric]:
    client = served.storage.client
    if client is None:
        return
    try:
        client.stats()
        up = 1.0
    except (RrdcachedError, OSError):
        up = 0.0
    yield GaugeMetricFamily(
        "kwapi_rrd_rrdcached_up", "1 if rrdcached answered at this scrape, else 0.", value=up
    )


def _disk_families(directory: str) -> Iterator[Metric]:
    try:
        st = os.statvfs(directory)
    except OSError:
        yield GaugeMetricFamily(
            "kwapi_rrd_dir_writable", "1 if rrd_dir can be written, else 0.", value=0.0
        )
        return
    writable = not st.f_flag & os.ST_RDONLY and os.access(directory, os.W_OK | os.X_OK)
    yield GaugeMetricFamily(
        "kwapi_rrd_dir_writable", "1 if rrd_dir can be written, else 0.", value=float(writable)
    )
    yield GaugeMetricFamily(
        "kwapi_rrd_dir_free_bytes",
        "Bytes free for kwapi-rrd on rrd_dir's file system.",
        value=st.f_bavail * st.f_frsize,
    )
    yield GaugeMetricFamily(
        "kwapi_rrd_dir_size_bytes",
        "Size of rrd_dir's file system, in bytes.",
        value=st.f_blocks * st.f_frsize,
    )


def make_registry(served: RrdContext) -> CollectorRegistry:
    """A registry with kwapi-rrd's metrics and the process' own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RrdMetrics(served))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
