"""kwapi-history's HTTP API: /v1/energy/, /v1/series/, /healthz and /metrics.

:func:`create_app` is the application factory: it reads the query options,
keeps the dependencies on the application
(:mod:`kwapi.plugins.history.query_context`), registers one blueprint per
group of routes, answers every error in JSON
(:mod:`kwapi.plugins.json_errors`) and puts the application behind the
authentication ``auth_strategy`` asks for, the same as kwapi-api's
(:mod:`kwapi.plugins.auth`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from oslo_config import cfg
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from kwapi.plugins import auth, json_errors
from kwapi.plugins.history import (
    query_formats,
    routes_energy,
    routes_monitoring,
    routes_series,
)
from kwapi.plugins.history.energy_workers import EnergyWorkers
from kwapi.plugins.history.query_context import Health, QueryContext, QueryStats, install
from kwapi.plugins.history.store_reader import StoreReader
from kwapi.plugins.openapi import add_routes as add_openapi_routes

BLUEPRINTS = (
    json_errors.blueprint,
    query_formats.blueprint,
    routes_energy.blueprint,
    routes_series.blueprint,
    routes_monitoring.blueprint,
)
#: The measurement kwapi-history writes, when the ingest side's option is not registered.
DEFAULT_MEASUREMENT = "kwapi"


class _Families(Collector):
    """A collector serving what *metrics* returns at each scrape."""

    def __init__(self, metrics: Callable[[], Iterable[Metric]]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics()


def create_app(
    conf: cfg.ConfigOpts,
    *,
    metrics: Callable[[], Iterable[Metric]],
    healthy: Health,
) -> Flask:
    """The application reading the store *conf* names.

    *metrics* returns the daemon's metric families at each scrape of
    /metrics (the query side adds its own); *healthy* returns (whether the
    daemon works, what /healthz shows of it). *conf* needs
    :data:`~kwapi.plugins.history.query_options.query_opts` and
    :data:`~kwapi.plugins.auth.auth_opts` registered; with
    ``auth_strategy = keystone`` a bad ``[keystone_authtoken]`` raises
    :class:`~kwapi.config.ConfigError`.
    """
    measurement = conf.store_measurement if "store_measurement" in conf else DEFAULT_MEASUREMENT
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(metrics))
    context = QueryContext(
        reader=StoreReader(conf.store_query_url, conf.query_timeout, measurement),
        max_samples=conf.max_samples,
        max_probes=conf.max_probes,
        max_gap=conf.max_gap,
        healthy=healthy,
        registry=registry,
        stats=QueryStats.register(registry),
        workers=EnergyWorkers(conf.query_processes),
    )
    app = Flask("kwapi.history")
    if isinstance(app.json, DefaultJSONProvider):  # always: Flask's own provider
        app.json.sort_keys = False
        app.json.compact = True
    install(app, context)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    add_openapi_routes(app, "kwapi.plugins.history")
    # Flask's documented way to put WSGI middleware around an application.
    app.wsgi_app = auth.wrap(app.wsgi_app, conf)  # type: ignore[method-assign,assignment]
    return app
