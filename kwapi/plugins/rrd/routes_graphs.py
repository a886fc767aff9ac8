"""kwapi-rrd's graphs of probes, as PNG: the stacked total and one meter of one probe,
over a period ending now or over a From / To range."""

from __future__ import annotations

from flask import Blueprint, Response

from kwapi.plugins.rrd.context import context
from kwapi.plugins.rrd.lookups import find_meter, find_period, find_probe, range_arguments
from kwapi.plugins.rrd.responses import png_response

blueprint = Blueprint("graphs", __name__)


@blueprint.get("/graph/<period>/")
def summary_graph(period: str) -> Response:
    """Every probe's power over *period*, stacked."""
    chosen = find_period(period)
    return png_response(context().grapher.summary(chosen), chosen)


@blueprint.get("/graph/<period>/<probe>/")
@blueprint.get("/graph/<period>/<probe>/<meter>/")
def probe_graph(period: str, probe: str, meter: str | None = None) -> Response:
    """One meter of one probe over *period* (its first meter, power if it has it)."""
    chosen = find_period(period)
    find_probe(probe)
    meter = find_meter(probe, meter)
    return png_response(context().grapher.probe(chosen, probe, meter), chosen)


@blueprint.get("/range-graph/")
def range_summary_graph() -> Response:
    """Every probe's power over the range ``start`` to ``end``, stacked."""
    span = range_arguments()
    return png_response(context().grapher.summary_between(span), span.period())


@blueprint.get("/range-graph/<probe>/")
@blueprint.get("/range-graph/<probe>/<meter>/")
def range_probe_graph(probe: str, meter: str | None = None) -> Response:
    """One meter of one probe over the range ``start`` to ``end``."""
    span = range_arguments()
    find_probe(probe)
    meter = find_meter(probe, meter)
    return png_response(context().grapher.probe_between(span, probe, meter), span.period())
