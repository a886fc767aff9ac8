"""kwapi-rrd's own state for Prometheus: /metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from kwapi.plugins.monitoring import metrics_response

blueprint = Blueprint("metrics", __name__)

#: Key of the application's metrics registry in ``app.extensions``.
REGISTRY = "kwapi.rrd.metrics"


@blueprint.get("/metrics")
def metrics() -> Response:
    """The receiver, the writes, rrdcached and rrd_dir's disk, in Prometheus' text format."""
    return metrics_response(current_app.extensions[REGISTRY])
