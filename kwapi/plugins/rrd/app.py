"""The web interface of kwapi-rrd: HTML pages, PNG graphs, RRD downloads and JSON series.

:func:`create_app` is the application factory: it keeps the dependencies on
the application (:mod:`kwapi.plugins.rrd.context`) and registers one
blueprint per group of routes. Probe ids reach HTML only through Jinja2
templates with autoescaping, URLs only through :func:`flask.url_for` (which
percent-encodes), and JavaScript only through HTML data attributes.
"""

from __future__ import annotations

from flask import Flask

from kwapi.plugins.openapi import add_routes as add_openapi_routes
from kwapi.plugins.rrd import (
    errors,
    routes_data,
    routes_graphs,
    routes_metrics,
    routes_pages,
    routes_streams,
)
from kwapi.plugins.rrd.context import RrdContext, StatusSource, context, install
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.metrics import make_registry
from kwapi.plugins.rrd.periods import PERIODS, meter_info
from kwapi.plugins.rrd.storage import RrdStorage
from kwapi.plugins.rrd.stream_graphs import StreamGrapher
from kwapi.plugins.streams import StreamMap

BLUEPRINTS = (
    errors.blueprint,
    routes_pages.blueprint,
    routes_streams.blueprint,
    routes_graphs.blueprint,
    routes_data.blueprint,
    routes_metrics.blueprint,
)


def create_app(
    storage: RrdStorage,
    grapher: Grapher,
    *,
    refresh_interval: int = 5,
    receiver_stats: StatusSource | None = None,
    disk_status: StatusSource | None = None,
    streams: StreamMap | None = None,
) -> Flask:
    """Build the Flask application serving *storage*'s probes and *grapher*'s graphs.

    See :class:`RrdContext` for the other arguments.
    """
    streams = streams or StreamMap()
    app = Flask(__name__)  # finds templates/ and static/ beside this module
    app.jinja_env.autoescape = True
    served = RrdContext(
        storage,
        grapher,
        streams,
        StreamGrapher(grapher, streams),
        refresh_interval=refresh_interval,
        receiver_stats=receiver_stats,
        disk_status=disk_status,
    )
    install(app, served)
    app.extensions[routes_metrics.REGISTRY] = make_registry(served)
    app.context_processor(template_globals)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    add_openapi_routes(app, "kwapi.plugins.rrd")
    return app


def template_globals() -> dict[str, object]:
    """What every template may use: the periods, the refresh interval, the meters, the streams."""
    served = context()
    return {
        "periods": PERIODS,
        "refresh_interval": served.refresh_interval,
        "meter_info": meter_info,
        "stream_map": served.streams,
    }
