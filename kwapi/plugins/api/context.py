"""What kwapi-api's routes serve, kept on the application by :func:`install`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flask import Flask, current_app
from prometheus_client import CollectorRegistry

from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.stream_views import StreamViews

#: Key of :class:`ApiContext` in ``app.extensions``.
EXTENSION = "kwapi.api"

StatusSource = Callable[[], Mapping[str, object]]


@dataclass(frozen=True)
class ApiContext:
    """The application's dependencies.

    *receiver_status* returns the receiver's state for /healthz: ``alive``
    (bool) and whatever else is worth showing; *registry* is what /metrics
    exports; *streams* serves the energy per stream (none configured if None).
    """

    collector: Collector
    receiver_status: StatusSource
    registry: CollectorRegistry
    streams: StreamViews | None = None


def install(app: Flask, context: ApiContext) -> None:
    """Make *context* what the routes of *app* serve."""
    app.extensions[EXTENSION] = context


def context() -> ApiContext:
    """The dependencies of the application handling the current request."""
    found: ApiContext = current_app.extensions[EXTENSION]
    return found
