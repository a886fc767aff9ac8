"""kwapi-api's own state: /healthz for load balancers, /metrics for Prometheus."""

from __future__ import annotations

import gzip

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kwapi.plugins.api.context import context

blueprint = Blueprint("monitoring", __name__)

#: gzip level of /metrics: level 1 makes 10,000 probes' 2.2 MB about 170 kB
#: in about 6 ms; level 9 saves 8 % more for nine times the time.
METRICS_GZIP_LEVEL = 1


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 while the receiver is alive, 503 when not, with its state and probe counts."""
    served = context()
    receiver = served.receiver_status()
    alive = bool(receiver.get("alive"))
    body = {
        "status": "ok" if alive else "down",
        "receiver": receiver,
        "probes": {"served": served.collector.count_visible(), "known": len(served.collector)},
    }
    return jsonify(body), 200 if alive else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    """Every probe's meters and the daemon's counters, in Prometheus' text format."""
    # Always the text format: Prometheus reads it, and prometheus_client
    # takes about twice as long to write OpenMetrics (see performance.rst).
    response = Response(generate_latest(context().registry), content_type=CONTENT_TYPE_LATEST)
    response.vary.add("Accept-Encoding")
    if request.accept_encodings["gzip"]:  # Prometheus asks for it on every scrape
        response.set_data(gzip.compress(response.get_data(), compresslevel=METRICS_GZIP_LEVEL))
        response.content_encoding = "gzip"
    return response
