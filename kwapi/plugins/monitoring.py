"""What kwapi-api's and kwapi-rrd's /metrics share: the receiver's families and the response.

Both plugins receive through :class:`kwapi.bus.receiver.Receiver`; its
counters are exported under the same names by both, so that one alert rule
(forgery, replay) covers every daemon that listens to the bus.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator, Mapping
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
    buckets, running = [], 0
    bounds = [_go_float(bound) for bound in delay["buckets"]] + ["+Inf"]
    for bound, count in zip(bounds, delay["counts"], strict=True):
        running += count
        buckets.append((bound, running))
    return HistogramMetricFamily(
        "kwapi_receiver_delay_seconds",
        "Delay from a measurement's timestamp to its acceptance (includes clock skew).",
        buckets=buckets,
        sum_value=delay["sum"],
    )


def metrics_response(registry: CollectorRegistry) -> Response:
    """*registry* in Prometheus' text format, gzipped when the client accepts it."""
    # Always the text format: Prometheus reads it, and prometheus_client
    # takes about twice as long to write OpenMetrics (see performance.rst).
    response = Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response.vary.add("Accept-Encoding")
    if request.accept_encodings["gzip"]:  # Prometheus asks for it on every scrape
        response.set_data(gzip.compress(response.get_data(), compresslevel=METRICS_GZIP_LEVEL))
        response.content_encoding = "gzip"
    return response
