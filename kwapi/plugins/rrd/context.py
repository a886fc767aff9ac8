"""What kwapi-rrd's routes serve, kept on the application by :func:`install`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flask import Flask, current_app

from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.storage import RrdStorage
from kwapi.plugins.rrd.stream_graphs import StreamGrapher
from kwapi.plugins.streams import StreamMap

#: Key of :class:`RrdContext` in ``app.extensions``.
EXTENSION = "kwapi.rrd"

StatusSource = Callable[[], Mapping[str, object]]


@dataclass(frozen=True)
class RrdContext:
    """The application's dependencies.

    *receiver_stats* returns the bus receiver's counters for ``/stats/``, and
    *disk_status* the state of ``rrd_dir``'s file system (watched with
    rrdcached); *streams* (``stream_power``) adds a page per stream.
    """

    storage: RrdStorage
    grapher: Grapher
    streams: StreamMap
    stream_grapher: StreamGrapher
    refresh_interval: int = 5
    receiver_stats: StatusSource | None = None
    disk_status: StatusSource | None = None


def install(app: Flask, context: RrdContext) -> None:
    """Make *context* what the routes of *app* serve."""
    app.extensions[EXTENSION] = context


def context() -> RrdContext:
    """The dependencies of the application handling the current request."""
    found: RrdContext = current_app.extensions[EXTENSION]
    return found
