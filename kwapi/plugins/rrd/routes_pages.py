"""kwapi-rrd's pages: every probe over a period, and one probe's page."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from werkzeug.wrappers import Response

from kwapi.plugins.rrd.context import context
from kwapi.plugins.rrd.graphs import probe_colour
from kwapi.plugins.rrd.lookups import find_period, find_probe
from kwapi.plugins.rrd.periods import sort_meters

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index() -> Response:
    """Redirect to every probe over the last 5 minutes."""
    return redirect(url_for("pages.last", period="minute"))


@blueprint.get("/last/<period>/")
def last(period: str) -> str:
    """Every probe's power over *period*: the stacked total, then one graph per probe."""
    chosen = find_period(period)
    served = context()
    probes = [
        (
            probe,
            sort_meters(served.storage.meters(probe))[0],
            probe_colour(probe, served.grapher.hue),
        )
        for probe in served.storage.probes()
    ]
    return render_template("last.html", period=chosen, probes=probes)


@blueprint.get("/probe/<probe>/")
def probe_page(probe: str) -> str:
    """One probe's graphs for every period, and its RRD files."""
    find_probe(probe)
    meters = sort_meters(context().storage.meters(probe))
    return render_template("probe.html", probe=probe, meters=meters)
