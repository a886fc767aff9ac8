"""What kwapi-api's and kwapi-rrd's /metrics share: the receiver's families and the response.

Both plugins receive through :class:`kwapi.bus.receiver.Receiver`; its
counters are exported under the same names by both, so that one alert rule
(forgery, replay) covers every daemon that listens to the bus.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from flask import Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

#: prometheus_client leaves this helper unannotated: its type, as used here.
_go_float: Callable[[float], str] = floatToGoString

#: gzip level of /metrics: level 1 makes 10,000 probes' 2.2 MB about 170 kB
#: in about 6 ms; level 9 saves 8 % more for nine times the time.
METRICS_GZIP_LEVEL = 1


def receiver_families(stats: Mapping[str, Any]) -> Iterator[Metric]:
    """The receiver's counters: accepted, rejected by reason, handler errors, delays."""
    yield CounterMetricFamily(
        "kwapi_receiver_accepted",
        "Messages the receiver accepted.",
        value=stats["accepted"],
    )
    yield CounterMetricFamily(
        "kwapi_receiver_accepted_samples",
        "Samples in the messages the receiver accepted (a batch carries many).",
        value=stats.get("accepted_samples", stats["accepted"]),
    )
    rejected = CounterMetricFamily(
        "kwapi_receiver_rejected",
        "Messages the receiver rejected, by reason.",
        labels=["reason"],
    )
    for reason, count in sorted(stats["rejected"].items()):
        rejected.add_metric([reason], count)
    yield rejected
    yield CounterMetricFamily(
        "kwapi_receiver_handler_errors",
        "Accepted messages the daemon failed to fold in.",
        value=stats.get("handler_errors", 0),
    )
    delay = stats.get("delay")
    if delay:
        yield delay_histogram(delay)


def delay_histogram(delay: Mapping[str, Any]) -> HistogramMetricFamily:
    """The receiver's delay histogram (per-bucket counts) as cumulative buckets."""
    return histogram_family(
        "kwapi_receiver_delay_seconds",
        "Delay from a measurement's timestamp to its acceptance (includes clock skew).",
        delay["buckets"],
        delay["counts"],
        delay["sum"],
    )


def histogram_family(
    name: str, documentation: str, bounds: Sequence[float], counts: Sequence[int], total: float
) -> HistogramMetricFamily:
    """A histogram of per-bucket *counts* (one more than *bounds*: the last is
    unbounded) as Prometheus' cumulative buckets."""
    buckets, running = [], 0
    labels = [_go_float(bound) for bound in bounds] + ["+Inf"]
    for label, count in zip(labels, counts, strict=True):
        running += count
        buckets.append((label, running))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class TextRegistry(CollectorRegistry):
    """A registry that also serves families its writers put straight in the text format.

    For families of a sample per probe: prometheus_client's objects cost
    several microseconds and a few hundred bytes a sample.  The writers'
    families come first in :meth:`exposition`.
    """

    def __init__(self) -> None:
        super().__init__(auto_describe=False)
        self._writers: list[Callable[[], str]] = []

    def add_text(self, writer: Callable[[], str]) -> None:
        """Add *writer*: it returns whole families in Prometheus' text format."""
        self._writers.append(writer)

    def exposition(self) -> bytes:
        """The writers' families, then the registered collectors', in the text format."""
        written = "".join(writer() for writer in self._writers)
        return written.encode("utf-8") + generate_latest(self)


def metrics_response(registry: CollectorRegistry) -> Response:
    """*registry* in Prometheus' text format, gzipped when the client accepts it."""
    # Always the text format: Prometheus reads it, and prometheus_client
    # takes about twice as long to write OpenMetrics (see performance.rst).
    if isinstance(registry, TextRegistry):
        body = registry.exposition()
    else:
        body = generate_latest(registry)
    response = Response(body, content_type=CONTENT_TYPE_LATEST)
    response.vary.add("Accept-Encoding")
    if request.accept_encodings["gzip"]:  # Prometheus asks for it on every scrape
        response.set_data(gzip.compress(response.get_data(), compresslevel=METRICS_GZIP_LEVEL))
        response.content_encoding = "gzip"
    return response
