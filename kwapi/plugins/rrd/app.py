"""The web interface of kwapi-rrd: HTML pages, PNG graphs, RRD downloads and JSON series.

Probe ids reach HTML only through Jinja2 templates with autoescaping, URLs
only through :func:`flask.url_for` (which percent-encodes), and JavaScript
only through HTML data attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

import rrdtool
from flask import Flask, Response, abort, redirect, render_template, request, url_for
from jinja2.utils import htmlsafe_json_dumps
from werkzeug.exceptions import HTTPException, NotFound

from kwapi.bus.protocol import is_valid_probe_id
from kwapi.plugins.openapi import add_routes as add_openapi_routes
from kwapi.plugins.rrd.graphs import Graph, Grapher, probe_colour
from kwapi.plugins.rrd.periods import PERIODS, POWER, Period, meter_info, sort_meters
from kwapi.plugins.rrd.storage import RrdStorage
from kwapi.plugins.rrd.stream_graphs import KINDS, StreamGrapher
from kwapi.plugins.streams import StreamMap

LOG = logging.getLogger(__name__)

#: Bounds of the ``end`` of a JSON series.  rrdtool fetches nothing before
#: 1980 (and reads a smaller number as a date, not as seconds since 1970), so
#: the longest period must fit after 1980; the upper bound is year 2100.
RRDTOOL_EPOCH = 315_446_400
END_MIN = RRDTOOL_EPOCH + max(period.seconds for period in PERIODS.values())
END_MAX = 4_102_444_800


def json_response(body: object, status: int = 200) -> Response:
    """JSON with ``<``, ``>``, ``&`` and ``'`` escaped, safe even if sniffed as HTML."""
    response = Response(htmlsafe_json_dumps(body), status=status, mimetype="application/json")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_app(
    storage: RrdStorage,
    grapher: Grapher,
    *,
    refresh_interval: int = 5,
    receiver_stats: Callable[[], dict] | None = None,
    disk_status: Callable[[], dict] | None = None,
    streams: StreamMap | None = None,
) -> Flask:
    """Build the Flask application serving *storage*'s probes and *grapher*'s graphs.

    *receiver_stats* returns the bus receiver's counters for ``/stats/``, and
    *disk_status* the state of ``rrd_dir``'s file system (watched with rrdcached);
    *streams* (``stream_power``) adds a page per stream with its energy graphs.
    """
    streams = streams or StreamMap()
    stream_grapher = StreamGrapher(grapher, streams)
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

    def end_argument() -> int | None:
        text = request.args.get("end")
        if text is None:
            return None
        valid = text.isascii() and text.isdigit() and len(text) <= len(str(END_MAX))
        if not (valid and END_MIN <= int(text) <= END_MAX):
            abort(
                HTTPStatus.BAD_REQUEST,
                f"end must be a whole number of seconds since 1970, from {END_MIN} "
                f"to {END_MAX}, not {text!r:.40}",
            )
        return int(text)

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
            "stream_map": streams,
        }

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if request.path.startswith("/data/"):
            response = json_response({"error": error.description, "status": error.code}, error.code)
        else:
            message = error.description
            if message == NotFound.description:
                message = "There is no page at this address."
            page = render_template(
                "error.html", code=error.code, title=error.name, message=message, path=request.path
            )
            response = Response(page, status=error.code, mimetype="text/html")
        # Keep what the error says beside its page: Allow on a 405, Location...
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(rrdtool.OperationalError)
    def rrd_error(error: rrdtool.OperationalError) -> Response:
        LOG.error("rrdtool failed on %s: %s", request.path, error)
        # librrd's words when rrdcached is down or restarting: a passing outage, not a bug.
        unreachable = storage.daemon is not None and "rrdcached" in str(error)
        if unreachable:
            code, title = HTTPStatus.SERVICE_UNAVAILABLE, "rrdcached unavailable"
            message = (
                f"rrdcached at {storage.daemon} does not answer ({error}); "
                "graphs and data come back when it does."
            )
        else:
            code, title = HTTPStatus.INTERNAL_SERVER_ERROR, "Graph unavailable"
            message = f"The RRD files could not be read: {error}"
        if request.path.startswith("/data/"):
            response = json_response({"error": message, "status": code}, code)
        else:
            page = render_template(
                "error.html", code=code, title=title, message=message, path=request.path
            )
            response = Response(page, status=code, mimetype="text/html")
        if unreachable:
            response.headers["Retry-After"] = "10"
        return response

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

    def get_stream(stream: str) -> str:
        if stream not in streams.streams:
            abort(
                HTTPStatus.NOT_FOUND,
                f"There is no stream called “{stream}” in this server's stream_power option.",
            )
        return stream

    @app.get("/stream/<stream>/")
    def stream_index(stream: str):
        return redirect(url_for("stream_page", stream=get_stream(stream), period="minute"))

    @app.get("/stream/<stream>/<period>/")
    def stream_page(stream: str, period: str):
        get_stream(stream)
        chosen = get_period(period)
        meters = [m for m in ("bitrate", "fps") if storage.has(stream, m)]
        return render_template(
            "stream.html",
            stream=stream,
            host=streams.streams[stream],
            period=chosen,
            meters=meters,
            energy=stream_grapher.can_draw(stream),
            kinds=KINDS,
            share=streams.share,
        )

    @app.get("/stream-graph/<period>/<stream>/<kind>/")
    def stream_graph(period: str, stream: str, kind: str):
        chosen = get_period(period)
        get_stream(stream)
        if kind not in KINDS:
            abort(
                HTTPStatus.NOT_FOUND,
                f"There is no stream graph called “{kind}”. Choose one of: {', '.join(KINDS)}.",
            )
        if not stream_grapher.can_draw(stream):
            abort(
                HTTPStatus.NOT_FOUND,
                f"Stream “{stream}” or its host “{streams.streams[stream]}” "
                "has not sent a measurement yet.",
            )
        return png(stream_grapher.graph(chosen, stream, kind), chosen)

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
        end = end_argument()
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

    @app.get("/stats/")
    def stats():
        """Counters of the receiver (with its delay histogram) and of the storage."""
        return json_response(
            {
                "receiver": receiver_stats() if receiver_stats is not None else None,
                "storage": {"probes": storage.probe_count(), **storage.stats},
                "disk": disk_status() if disk_status is not None else None,
            }
        )

    add_openapi_routes(app, "kwapi.plugins.rrd")

    return app
