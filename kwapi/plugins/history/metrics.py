"""kwapi-history's ingest figures: Prometheus families for /metrics, the state for /healthz.

Every family is computed at scrape time from the writer's, the spool's and
the receiver's counters; the receiver's carry the names kwapi-api and
kwapi-rrd use (:func:`kwapi.plugins.monitoring.receiver_families`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from kwapi.plugins.history.spool import Spool
from kwapi.plugins.history.writer import LATENCY_BUCKETS, HistoryWriter
from kwapi.plugins.monitoring import histogram_family, receiver_families

#: prometheus_client leaves this helper unannotated: its type, as used here.

#: The receiver's counters (:meth:`kwapi.bus.receiver.ReceiverStats.snapshot`).
StatsSource = Callable[[], Mapping[str, Any]]


def writer_families(writer: HistoryWriter) -> Iterator[Metric]:
    """Samples received, written, dropped; the store's state and write latency."""
    stats, spool = writer.stats, writer.spool
    yield CounterMetricFamily(
        "kwapi_history_samples_received",
        "Samples kwapi-history received from the bus (one line of line protocol each).",
        value=stats.received,
    )
    yield CounterMetricFamily(
        "kwapi_history_samples_written",
        "Samples the store took (2xx), directly or replayed from the spool.",
        value=stats.written,
    )
    dropped = CounterMetricFamily(
        "kwapi_history_samples_dropped",
        "Samples given up, by reason: rejected (the store answered 400 or another "
        "final 4xx), spool_full (oldest spooled samples dropped for newer ones), "
        "spool_error (the spool could not be written or read), unformattable.",
        labels=["reason"],
    )
    for reason, value in (
        ("rejected", stats.rejected),
        ("spool_full", spool.stats.dropped_full),
        ("spool_error", spool.stats.dropped_error),
        ("unformattable", stats.unformattable),
    ):
        dropped.add_metric([reason], value)
    yield dropped
    yield CounterMetricFamily(
        "kwapi_history_batches_rejected",
        "Batches the store rejected as malformed (400...), logged and not retried.",
        value=stats.rejected_batches,
    )
    failures = CounterMetricFamily(
        "kwapi_history_write_failures",
        "Writes the store did not take and that were kept to retry, by HTTP status "
        '("none": no connection or a timeout).',
        labels=["status"],
    )
    for status, count in sorted(writer.stats.failures.items()):
        failures.add_metric([status], count)
    yield failures
    yield GaugeMetricFamily(
        "kwapi_history_store_up",
        "1 while the store takes writes; 0 from a failed write until one succeeds.",
        value=1.0 if writer.store.up else 0.0,
    )
    yield GaugeMetricFamily(
        "kwapi_history_pending_samples",
        "Samples received and held in memory, not yet written or spooled.",
        value=writer.pending(),
    )
    yield latency_histogram(writer)


def latency_histogram(writer: HistoryWriter) -> HistogramMetricFamily:
    """The duration of the writes the store answered, as cumulative buckets."""
    stats = writer.stats
    return histogram_family(
        "kwapi_history_write_seconds",
        "Duration of each write the store answered (a gzipped batch posted).",
        LATENCY_BUCKETS,
        list(stats.latency_counts),
        stats.latency_sum,
    )


def spool_families(spool: Spool) -> Iterator[Metric]:
    """What the spool holds and what went through it."""
    yield CounterMetricFamily(
        "kwapi_history_samples_spooled",
        "Samples written to the spool because the store did not take them.",
        value=spool.stats.spooled,
    )
    yield CounterMetricFamily(
        "kwapi_history_samples_replayed",
        "Spooled samples the store took later.",
        value=spool.stats.replayed,
    )
    yield GaugeMetricFamily(
        "kwapi_history_spool_bytes", "Bytes of the batches in the spool.", value=spool.size
    )
    yield GaugeMetricFamily(
        "kwapi_history_spool_max_bytes", "The spool's cap (spool_max_bytes).", value=spool.max_bytes
    )
    yield GaugeMetricFamily(
        "kwapi_history_spool_batches", "Batches (files) in the spool.", value=len(spool)
    )
    yield GaugeMetricFamily(
        "kwapi_history_spool_full",
        "1 once the spool dropped samples for lack of room, until it empties.",
        value=1.0 if spool.full else 0.0,
    )


def make_metrics(
    writer: HistoryWriter, receiver_stats: StatsSource
) -> Callable[[], Iterable[Metric]]:
    """The ``metrics`` callable of the app: ingest, spool, receiver and process families."""
    process = ProcessCollector(registry=None)
    platform = PlatformCollector(registry=None)

    def metrics() -> Iterator[Metric]:
        yield from writer_families(writer)
        yield from spool_families(writer.spool)
        yield from receiver_families(receiver_stats())
        yield from process.collect()
        yield from platform.collect()

    return metrics


def ingest_status(writer: HistoryWriter) -> dict[str, Any]:
    """What /healthz shows of the writer, the store and the spool."""
    stats, store, spool = writer.stats, writer.store, writer.spool
    return {
        "writer": {
            "alive": writer.is_alive(),
            "received": stats.received,
            "written": stats.written,
            "pending": writer.pending(),
        },
        "store": {
            "url": writer.client.url,
            "up": store.up,
            "since": store.since,
            "last_error": store.last_error or None,
            "last_written": store.last_written,
        },
        "spool": {
            "directory": str(spool.directory),
            "batches": len(spool),
            "bytes": spool.size,
            "max_bytes": spool.max_bytes,
            "full": spool.full,
            "spooled": spool.stats.spooled,
            "replayed": spool.stats.replayed,
        },
    }


def make_healthy(
    writer: HistoryWriter, receiver_status: Callable[[], Mapping[str, Any]]
) -> Callable[[], tuple[bool, dict[str, Any]]]:
    """The ``healthy`` callable of the app: healthy while the receiver and the writer run.

    A store that is down does not make kwapi-history unhealthy (it keeps
    every sample in the spool meanwhile); the body says so, ``status`` then
    being ``store_down``.
    """

    def healthy() -> tuple[bool, dict[str, Any]]:
        receiver = dict(receiver_status())
        body = {"receiver": receiver, **ingest_status(writer)}
        alive = bool(receiver.get("alive")) and writer.is_alive()
        status = "down" if not alive else "ok" if writer.store.up else "store_down"
        return alive, {"status": status, **body}

    return healthy
