"""What kwapi-history's routes serve, kept on the application by :func:`install`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app
from prometheus_client import CollectorRegistry, Counter, Histogram

from kwapi.plugins.history.energy_workers import EnergyWorkers
from kwapi.plugins.history.store_reader import StoreReader

#: Key of :class:`QueryContext` in ``app.extensions``.
EXTENSION = "kwapi.history"

Health = Callable[[], tuple[bool, dict[str, object]]]


@dataclass(frozen=True)
class QueryStats:
    """The query side's own metrics, in the application's registry."""

    queries: Counter
    seconds: Histogram
    samples: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> QueryStats:
        """Create the metrics in *registry*."""
        return cls(
            Counter(
                "kwapi_history_queries",
                "Queries answered by /v1/energy/ and /v1/series/, by route and status code.",
                ["route", "code"],
                registry=registry,
            ),
            Histogram(
                "kwapi_history_query_seconds",
                "Time to answer a query, by route.",
                ["route"],
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
                registry=registry,
            ),
            Counter(
                "kwapi_history_query_samples",
                "Raw samples read from the store by queries.",
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class QueryContext:
    """The application's dependencies and limits (the options of the same names)."""

    reader: StoreReader
    max_samples: int
    max_probes: int
    max_gap: float
    healthy: Health
    registry: CollectorRegistry
    stats: QueryStats
    workers: EnergyWorkers


def install(app: Flask, context: QueryContext) -> None:
    """Make *context* what the routes of *app* serve."""
    app.extensions[EXTENSION] = context


def context() -> QueryContext:
    """The dependencies of the application handling the current request."""
    found: QueryContext = current_app.extensions[EXTENSION]
    return found
