"""The REST API (v1), /healthz and /metrics, as a Flask application.

:func:`create_app` is the application factory: it keeps the dependencies on
the application (:mod:`kwapi.plugins.api.context`) and registers one
blueprint per group of routes. Errors and redirects are answered in JSON
(:mod:`kwapi.plugins.json_errors`).
"""

from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from prometheus_client import CollectorRegistry

from kwapi.plugins import json_errors
from kwapi.plugins.api import (
    routes_monitoring,
    routes_probes,
    routes_streams,
    routes_versions,
)
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.context import ApiContext, StatusSource, install
from kwapi.plugins.api.stream_views import StreamViews
from kwapi.plugins.openapi import add_routes as add_openapi_routes

BLUEPRINTS = (
    json_errors.blueprint,
    routes_versions.blueprint,
    routes_probes.blueprint,
    routes_streams.blueprint,
    routes_monitoring.blueprint,
)


def create_app(
    collector: Collector,
    receiver_status: StatusSource,
    registry: CollectorRegistry,
    streams: StreamViews | None = None,
) -> Flask:
    """Build the application serving *collector* (see :class:`ApiContext` for the rest)."""
    app = Flask("kwapi.api")
    if isinstance(app.json, DefaultJSONProvider):  # always: Flask's own provider
        app.json.sort_keys = False
        app.json.compact = True
    install(app, ApiContext(collector, receiver_status, registry, streams))
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    add_openapi_routes(app, "kwapi.plugins.api")
    return app
