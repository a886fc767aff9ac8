"""kwapi-api's probes: /v1/probe-ids/ and /v1/probes/, whole or one probe or meter."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import NotFound

from kwapi.plugins.api.context import context

blueprint = Blueprint("probes", __name__)


def find(probe: str) -> dict[str, float]:
    """The API object of *probe*; 404 if it is unknown or silent for too long."""
    record = context().collector.get(probe)
    if record is None:
        raise NotFound(f"no probe {probe!r} (unknown, or silent for too long)")
    return record.as_api()


@blueprint.get("/v1/probe-ids/")
def probe_ids() -> Response:
    """The id of every probe served."""
    return jsonify({"probe_ids": list(context().collector.visible())})


@blueprint.get("/v1/probes/")
def probes() -> Response:
    """Every probe served, with its meters and energy."""
    served = context().collector.visible()
    return jsonify({"probes": {probe: record.as_api() for probe, record in served.items()}})


@blueprint.get("/v1/probes/<probe>/")
def probe(probe: str) -> Response:
    """One probe, with its meters and energy."""
    return jsonify({probe: find(probe)})


@blueprint.get("/v1/probes/<probe>/<meter>/")
def probe_meter(probe: str, meter: str) -> Response:
    """One meter of one probe."""
    values = find(probe)
    if meter not in values:
        raise NotFound(f"probe {probe!r} has no meter {meter!r}")
    return jsonify({probe: {meter: values[meter]}})
