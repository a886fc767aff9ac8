"""The REST API (v1), /healthz and /metrics, as a Flask application.

Every error, including unknown routes and wrong methods, is answered with a
JSON body ``{"error": {"code", "title", "message"}}``; a path missing its
trailing slash is redirected (308) to the one with it, with a JSON body
``{"redirect": {"code", "title", "location"}}``, and a wrong method on it
is a 405 as on the path with the slash.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
from collections.abc import Callable

from flask import Flask, Response, jsonify, request, url_for
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import RequestRedirect

from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.stream_views import DEFAULT_PERIOD, MAX_PERIOD, StreamViews
from kwapi.plugins.openapi import add_routes as add_openapi_routes

LOG = logging.getLogger(__name__)

StatusSource = Callable[[], dict]

#: gzip level of /metrics: level 1 makes 10,000 probes' 2.2 MB about 170 kB
#: in about 6 ms; level 9 saves 8 % more for nine times the time.
METRICS_GZIP_LEVEL = 1


def error_body(code: int, title: str, message: str) -> dict:
    """The JSON document of an error response."""
    return {"error": {"code": code, "title": title, "message": message}}


def redirect_response(redirect: RequestRedirect) -> Response:
    """*redirect* (a 308 to the path with its trailing slash) with a JSON body."""
    title = HTTP_STATUS_CODES.get(redirect.code, "Redirect")
    body = {"redirect": {"code": redirect.code, "title": title, "location": redirect.new_url}}
    response = jsonify(body)
    response.status_code = redirect.code
    response.headers["Location"] = redirect.new_url
    return response


def create_app(
    collector: Collector,
    receiver_status: StatusSource,
    registry: CollectorRegistry,
    streams: StreamViews | None = None,
) -> Flask:
    """Build the application serving *collector*.

    *receiver_status* returns the receiver's state for /healthz: ``alive``
    (bool) and whatever else is worth showing; *registry* is what /metrics
    exports; *streams* serves the energy per stream (none configured if None).
    """
    app = Flask("kwapi.api")
    app.json.sort_keys = False
    app.json.compact = True

    @app.before_request
    def routing_in_json() -> Response | None:
        # Flask answers a redirect with werkzeug's HTML page, past the error
        # handlers, and a wrong method on a path missing its slash with a 404.
        routed = request.routing_exception
        if isinstance(routed, RequestRedirect):
            return redirect_response(routed)
        if isinstance(routed, NotFound) and not request.path.endswith("/"):
            # MethodNotAllowed propagates: the slashed path is a route, not for this method.
            with contextlib.suppress(NotFound, RequestRedirect):
                app.create_url_adapter(request).match(request.path + "/", method=request.method)
        return None

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = jsonify(error_body(exc.code, exc.name, exc.description))
        response.status_code = exc.code
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        LOG.exception("error while serving a request")
        body = error_body(500, "Internal Server Error", "the server failed to answer; see its log")
        return jsonify(body), 500

    def version_v1() -> dict:
        return {
            "id": "v1",
            "status": "CURRENT",
            "links": [
                {"rel": "self", "href": url_for("v1", _external=True)},
                {"rel": "probe-ids", "href": url_for("probe_ids", _external=True)},
                {"rel": "probes", "href": url_for("probes", _external=True)},
                {"rel": "streams", "href": url_for("streams_list", _external=True)},
                {"rel": "stream-hosts", "href": url_for("stream_hosts", _external=True)},
            ],
            "media-types": [{"base": "application/json"}],
        }

    @app.get("/")
    def versions() -> Response:
        return jsonify({"versions": [version_v1()]})

    @app.get("/v1/")
    def v1() -> Response:
        return jsonify({"version": version_v1()})

    @app.get("/v1/probe-ids/")
    def probe_ids() -> Response:
        return jsonify({"probe_ids": list(collector.visible())})

    @app.get("/v1/probes/")
    def probes() -> Response:
        served = collector.visible()
        return jsonify({"probes": {probe: record.as_api() for probe, record in served.items()}})

    def find(probe: str) -> dict:
        record = collector.get(probe)
        if record is None:
            raise NotFound(f"no probe {probe!r} (unknown, or silent for too long)")
        return record.as_api()

    @app.get("/v1/probes/<probe>/")
    def probe(probe: str) -> Response:
        return jsonify({probe: find(probe)})

    @app.get("/v1/probes/<probe>/<meter>/")
    def probe_meter(probe: str, meter: str) -> Response:
        values = find(probe)
        if meter not in values:
            raise NotFound(f"probe {probe!r} has no meter {meter!r}")
        return jsonify({probe: {meter: values[meter]}})

    def period_argument() -> float:
        text = request.args.get("period", str(DEFAULT_PERIOD))
        try:
            period = float(text)
        except ValueError:
            period = float("nan")
        if not 0 < period <= MAX_PERIOD:
            raise BadRequest(
                f"period must be a number of seconds above 0 and at most {MAX_PERIOD}, "
                f"not {text!r:.40}"
            )
        return period

    @app.get("/v1/streams/")
    def streams_list() -> Response:
        return jsonify({"streams": streams.streams() if streams else {}})

    @app.get("/v1/streams/<stream>/")
    def stream(stream: str) -> Response:
        body = streams.stream(stream) if streams else None
        if body is None:
            raise NotFound(f"no stream {stream!r} (not named in stream_power)")
        return jsonify({stream: body})

    @app.get("/v1/stream-hosts/")
    def stream_hosts() -> Response:
        period = period_argument()
        return jsonify({"hosts": streams.hosts(period) if streams else {}})

    @app.get("/v1/stream-hosts/<host>/")
    def stream_host(host: str) -> Response:
        period = period_argument()
        body = streams.host(host, period) if streams else None
        if body is None:
            raise NotFound(f"no power probe {host!r} in stream_power")
        return jsonify({host: body})

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        receiver = receiver_status()
        alive = bool(receiver.get("alive"))
        body = {
            "status": "ok" if alive else "down",
            "receiver": receiver,
            "probes": {"served": collector.count_visible(), "known": len(collector)},
        }
        return jsonify(body), 200 if alive else 503

    @app.get("/metrics")
    def metrics() -> Response:
        # Always the text format: Prometheus reads it, and prometheus_client
        # takes about twice as long to write OpenMetrics (see performance.rst).
        response = Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
        response.vary.add("Accept-Encoding")
        if request.accept_encodings["gzip"]:  # Prometheus asks for it on every scrape
            response.set_data(gzip.compress(response.get_data(), compresslevel=METRICS_GZIP_LEVEL))
            response.content_encoding = "gzip"
        return response

    add_openapi_routes(app, "kwapi.plugins.api")

    return app
