"""The web interface of kwapi-rrd: HTML pages, PNG graphs, RRD downloads and JSON series.

Probe ids reach HTML only through Jinja2 templates with autoescaping, URLs
only through :func:`flask.url_for` (which percent-encodes), and JavaScript
only through HTML data attributes.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import rrdtool
from flask import Flask, Response, abort, redirect, render_template, request, url_for
from jinja2.utils import htmlsafe_json_dumps
from werkzeug.exceptions import HTTPException, NotFound

from kwapi.bus.protocol import is_valid_probe_id
from kwapi.plugins.rrd.graphs import Graph, Grapher, probe_colour
from kwapi.plugins.rrd.periods import PERIODS, POWER, Period, meter_info, sort_meters
from kwapi.plugins.rrd.storage import RrdStorage

LOG = logging.getLogger(__name__)


def json_response(body: object, status: int = 200) -> Response:
    """JSON with ``<``, ``>``, ``&`` and ``'`` escaped, safe even if sniffed as HTML."""
    response = Response(htmlsafe_json_dumps(body), status=status, mimetype="application/json")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_app(storage: RrdStorage, grapher: Grapher, *, refresh_interval: int = 5) -> Flask:
    """Build the Flask application serving *storage*'s probes and *grapher*'s graphs."""
    app = Flask(__name__)
    app.jinja_env.autoescape = True

    def get_period(name: str) -> Period:
        period = PERIODS.get(name)
        if period is None:
            abort(
                HTTPStatus.NOT_FOUND,
                f"There is no period called “{name}”. Choose one of: {', '.join(PERIODS)}.",
            )
        return period

    def get_probe(probe: str) -> str:
        if not is_valid_probe_id(probe) or not storage.has(probe):
            abort(
                HTTPStatus.NOT_FOUND,
                f"No probe called “{probe}” has sent a measurement to this server yet.",
            )
        return probe

    def get_meter(probe: str, meter: str | None) -> str:
        meters = sort_meters(storage.meters(probe))
        if meter is None:
            return meters[0]
        if meter not in meters:
            abort(
                HTTPStatus.NOT_FOUND,
                f"Probe “{probe}” has no meter called “{meter}”. It has: {', '.join(meters)}.",
            )
        return meter

    def png(graph: Graph, period: Period) -> Response:
        response = Response(graph.png, mimetype="image/png")
        response.headers["Cache-Control"] = f"max-age={period.resolution}"
        return response

    @app.context_processor
    def globals_for_templates() -> dict:
        return {
            "periods": PERIODS,
            "refresh_interval": refresh_interval,
            "meter_info": meter_info,
        }

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith("/data/"):
            return json_response({"error": error.description, "status": error.code}, error.code)
        message = error.description
        if message == NotFound.description:
            message = "There is no page at this address."
        page = render_template(
            "error.html", code=error.code, title=error.name, message=message, path=request.path
        )
        return page, error.code

    @app.errorhandler(rrdtool.OperationalError)
    def rrd_error(error: rrdtool.OperationalError):
        LOG.error("rrdtool failed on %s: %s", request.path, error)
        message = f"The RRD files could not be read: {error}"
        if request.path.startswith("/data/"):
            return json_response({"error": message, "status": 500}, 500)
        page = render_template(
            "error.html", code=500, title="Graph unavailable", message=message, path=request.path
        )
        return page, 500

    @app.get("/")
    def index():
        return redirect(url_for("last", period="minute"))

    @app.get("/last/<period>/")
    def last(period: str):
        chosen = get_period(period)
        probes = [
            (probe, sort_meters(storage.meters(probe))[0], probe_colour(probe, grapher.hue))
            for probe in storage.probes()
        ]
        return render_template("last.html", period=chosen, probes=probes)

    @app.get("/probe/<probe>/")
    def probe_page(probe: str):
        get_probe(probe)
        meters = sort_meters(storage.meters(probe))
        return render_template("probe.html", probe=probe, meters=meters)

    @app.get("/graph/<period>/")
    def summary_graph(period: str):
        chosen = get_period(period)
        return png(grapher.summary(chosen), chosen)

    @app.get("/graph/<period>/<probe>/")
    @app.get("/graph/<period>/<probe>/<meter>/")
    def probe_graph(period: str, probe: str, meter: str | None = None):
        chosen = get_period(period)
        get_probe(probe)
        meter = get_meter(probe, meter)
        return png(grapher.probe(chosen, probe, meter), chosen)

    @app.get("/rrd/<probe>/")
    @app.get("/rrd/<probe>/<meter>/")
    def rrd_file(probe: str, meter: str | None = None):
        get_probe(probe)
        meter = get_meter(probe, meter)
        path = storage.path(probe, meter)
        if storage.daemon:
            rrdtool.flushcached(*storage.daemon_args(), str(path))
        data = path.read_bytes()
        name = probe if meter == POWER else f"{probe}.{meter}"
        response = Response(data, mimetype="application/octet-stream")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}.rrd"'
        return response

    @app.get("/data/<period>/<probe>/")
    def data(period: str, probe: str):
        chosen = get_period(period)
        get_probe(probe)
        end = request.args.get("end", type=int)
        meters = {}
        timestamps: list[int] = []
        step = chosen.resolution
        for meter in sort_meters(storage.meters(probe)):
            series = storage.fetch(probe, meter, chosen, end)
            timestamps, step = series.timestamps, series.step
            meters[meter] = {
                "unit": meter_info(meter).unit,
                "average": series.average,
                "min": series.minimum,
                "max": series.maximum,
            }
        return json_response(
            {
                "probe": probe,
                "period": chosen.name,
                "step": step,
                "timestamps": timestamps,
                "meters": meters,
            }
        )

    return app
