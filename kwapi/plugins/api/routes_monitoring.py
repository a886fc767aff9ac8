"""kwapi-api's own state: /healthz for load balancers, /metrics for Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from kwapi.plugins.api.context import context
from kwapi.plugins.monitoring import metrics_response

blueprint = Blueprint("monitoring", __name__)


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
    return metrics_response(context().registry)
