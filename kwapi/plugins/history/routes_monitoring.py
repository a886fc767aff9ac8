"""kwapi-history's own state: /healthz for load balancers, /metrics for Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from kwapi.plugins.history.query_context import context
from kwapi.plugins.monitoring import metrics_response

blueprint = Blueprint("monitoring", __name__)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 while the daemon works, 503 when not, with what it says of itself."""
    healthy, details = context().healthy()
    return jsonify({"status": "ok" if healthy else "down", **details}), 200 if healthy else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    """The daemon's metrics and the query side's, in Prometheus' text format."""
    return metrics_response(context().registry)
