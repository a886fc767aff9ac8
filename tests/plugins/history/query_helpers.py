"""Helpers of the query-side tests: a configuration, samples written to a real store."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

from oslo_config import cfg
from prometheus_client.core import CounterMetricFamily, Metric

from kwapi.plugins.auth import auth_opts
from kwapi.plugins.history.app import create_app
from kwapi.plugins.history.query_options import query_opts
from tests.harness.stores import VictoriaMetrics


def query_conf(
    store_query_url: str, config_file: str | None = None, **overrides: object
) -> cfg.ConfigOpts:
    """A configuration of the query side reading *store_query_url* (and *config_file*)."""
    conf = cfg.ConfigOpts()
    conf.register_opts(query_opts)
    conf.register_opts(auth_opts)
    args = ["--config-file", config_file] if config_file else []
    conf(args, project="kwapi", default_config_files=[])
    conf.set_override("store_query_url", store_query_url)
    for name, value in overrides.items():
        conf.set_override(name, value)
    return conf


def daemon_families() -> Iterable[Metric]:
    """What the daemon side would export: one counter."""
    yield CounterMetricFamily("kwapi_history_samples_written", "Samples written.", value=42)


def make_app(
    store_query_url: str, healthy: bool = True, config_file: str | None = None, **overrides: object
):
    """The query application on *store_query_url*, with stand-ins for the daemon's side."""
    conf = query_conf(store_query_url, config_file, **overrides)
    return create_app(
        conf, metrics=daemon_families, healthy=lambda: (healthy, {"store": {"up": healthy}})
    )


def line(probe: str, millis: int, **meters: float) -> str:
    """One line of kwapi-history's line protocol (values as repr: exact)."""
    fields = ",".join(f"{name}={value!r}" for name, value in meters.items())
    return f"kwapi,probe={probe} {fields} {millis}"


def write(store: VictoriaMetrics, lines: Iterable[str]) -> None:
    """Post *lines* to *store*'s /write (milliseconds) and make them visible to queries."""
    body = ("\n".join(lines) + "\n").encode()
    request = urllib.request.Request(f"{store.write_url}?precision=ms", body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 204
    store.flush()


class RawVictoriaMetrics(VictoriaMetrics):
    """A VictoriaMetrics that keeps a sample written twice twice (no deduplication),
    so that the reader's own dropping of duplicates is what the tests see."""

    def command(self) -> list[str]:
        return [arg for arg in super().command() if not arg.startswith("-dedup.")]


def write_with_auth(store: VictoriaMetrics, user: str, password: str, lines: list[str]) -> None:
    """:func:`write` to a store asking for basic authentication."""
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    body = ("\n".join(lines) + "\n").encode()
    request = urllib.request.Request(
        f"{store.write_url}?precision=ms", body, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 204
    flush = urllib.request.Request(f"{store.root}/internal/force_flush", headers=headers)
    with urllib.request.urlopen(flush, timeout=30):
        pass
