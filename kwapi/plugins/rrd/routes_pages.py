"""kwapi-rrd's pages: every probe over a period or a From / To range, and one probe's page."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from kwapi.plugins.rrd.context import context
from kwapi.plugins.rrd.lookups import find_period, find_probe
from kwapi.plugins.rrd.periods import PERIODS, TimeRange, sort_meters
from kwapi.plugins.rrd.routes_data import table_of_range
from kwapi.units import format_energy, format_fraction, format_money, format_power

blueprint = Blueprint("pages", __name__)

#: The range the From / To fields show on a page that has neither range nor period.
DEFAULT_FORM_SECONDS = 3600


@dataclass(frozen=True)
class ProbeView:
    """What a page shows of one probe: its first meter, its colour and its graph."""

    probe: str
    meter: str
    colour: str
    graph: str  # URL of its graph
    series: str | None  # URL of its JSON series (tooltips), if any


def probe_views(
    graph_url: Callable[[str, str], str], series_url: Callable[[str], str] | None
) -> list[ProbeView]:
    """A :class:`ProbeView` of every probe, its graph at *graph_url(probe, meter)*."""
    served = context()
    colours = served.grapher.colours()
    views = []
    for probe in served.storage.probes():
        meter = sort_meters(served.storage.meters(probe))[0]
        views.append(
            ProbeView(
                probe,
                meter,
                colours[probe],
                graph_url(probe, meter),
                series_url(probe) if series_url else None,
            )
        )
    return views


@blueprint.get("/")
def index() -> Response:
    """Redirect to every probe over the last 5 minutes."""
    return redirect(url_for("pages.last", period="minute"))


@blueprint.get("/last/<period>/")
def last(period: str) -> str:
    """Every probe's power over *period*: the stacked total, then one graph per probe."""
    chosen = find_period(period)
    probes = probe_views(
        lambda probe, meter: url_for(
            "graphs.probe_graph", period=chosen.name, probe=probe, meter=meter
        ),
        lambda probe: url_for("data.series", period=chosen.name, probe=probe),
    )
    return render_template("last.html", period=chosen, probes=probes)


@blueprint.get("/range/")
def range_page() -> str:
    """Every probe over the From / To range: the graphs, and a table of energy and cost."""
    table = table_of_range()
    span = g.time_range = table.span
    args = {"start": span.start, "end": span.end}
    probes = probe_views(
        lambda probe, meter: url_for(
            "graphs.range_probe_graph", probe=probe, meter=meter, start=span.start, end=span.end
        ),
        None,
    )
    return render_template(
        "range.html",
        span=span,
        table=table,
        args=args,
        probes=probes,
        colours=context().grapher.colours(),
        format_energy=format_energy,
        format_power=format_power,
        format_fraction=format_fraction,
        format_money=format_money,
    )


@blueprint.get("/probe/<probe>/")
def probe_page(probe: str) -> str:
    """One probe's graphs for every period, and its RRD files."""
    find_probe(probe)
    meters = sort_meters(context().storage.meters(probe))
    return render_template("probe.html", probe=probe, meters=meters)


@blueprint.app_context_processor
def range_form() -> dict[str, object]:
    """The From / To fields of every page: the range shown, else the period's span to now.

    ``range_form`` holds each field's value as local time (what a
    ``datetime-local`` field shows, read back as local time) and as Unix
    seconds (for the page's script, which writes them in the browser's zone).
    """
    span = getattr(g, "time_range", None)
    if span is None:
        now = int(time.time())
        period = PERIODS.get(str((request.view_args or {}).get("period")))
        seconds = period.seconds if period is not None else DEFAULT_FORM_SECONDS
        span = TimeRange(now - seconds, now)
    return {
        "range_form": {
            "start": span.start,
            "end": span.end,
            "start_value": local_value(span.start),
            "end_value": local_value(span.end),
        }
    }


def local_value(stamp: int) -> str:
    """*stamp* as a ``datetime-local`` field's value: ``2026-12-06T14:02:10``, local time."""
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%dT%H:%M:%S")
