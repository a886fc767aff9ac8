"""The documented defaults of the options, as each daemon resolves them with no config file."""

from __future__ import annotations

import pytest
from oslo_config import cfg

from kwapi import opts


def resolved_defaults(list_opts) -> cfg.ConfigOpts:
    """A ConfigOpts with the options of *list_opts* (from kwapi.opts), parsed without files."""
    conf = cfg.ConfigOpts()
    for group, options in list_opts():
        conf.register_opts(options, group=None if group == "DEFAULT" else group)
    conf([], project="kwapi", default_config_files=[], default_config_dirs=[])
    return conf


@pytest.fixture(scope="module")
def api():
    return resolved_defaults(opts.list_api_opts)


def test_api_defaults(api):
    assert api.api_host == "127.0.0.1"
    assert api.api_port == 5000
    assert api.max_gap == 120.0
    assert api.cleaning_interval == 300.0
    assert api.state_save_interval == 10.0
    assert api.state_file == "/var/lib/kwapi/api-state.json"


def test_api_auth_defaults(api):
    assert api.auth_strategy == "noauth"
    assert api.allowed_roles == ["admin"]
    assert api.metrics_auth is True


def test_rrd_web_server_defaults():
    rrd = resolved_defaults(opts.list_rrd_opts)
    assert rrd.rrd_host == "127.0.0.1"
    assert rrd.rrd_port == 8080


def test_history_defaults():
    history = resolved_defaults(opts.list_history_opts)
    assert (history.history_host, history.history_port) == ("127.0.0.1", 5001)
    assert history.store_write_url == "http://127.0.0.1:8428/write"
    assert history.store_query_url == "http://127.0.0.1:8428"
    assert history.store_measurement == "kwapi" and history.store_precision == "ms"
    assert history.spool_dir == "/var/lib/kwapi/history-spool"
    assert history.spool_max_bytes == 1024**3
    assert (history.batch_size, history.flush_interval) == (5000, 1.0)
    # The same integration rule as kwapi-api's, and the same authentication.
    api = resolved_defaults(opts.list_api_opts)
    assert history.max_gap == api.max_gap
    assert history.auth_strategy == api.auth_strategy == "noauth"
    assert history.probes_endpoint == api.probes_endpoint


def test_bus_endpoints_default_to_ipc_and_chain_up():
    drivers = resolved_defaults(opts.list_drivers_opts)
    forwarder = resolved_defaults(opts.list_forwarder_opts)
    api = resolved_defaults(opts.list_api_opts)
    rrd = resolved_defaults(opts.list_rrd_opts)
    assert drivers.probes_endpoint == "ipc:///tmp/kwapi-drivers"
    assert forwarder.probes_endpoint == ["ipc:///tmp/kwapi-drivers"]
    assert forwarder.forwarder_endpoint == "ipc:///tmp/kwapi-forwarder"
    assert api.probes_endpoint == rrd.probes_endpoint == ["ipc:///tmp/kwapi-forwarder"]
    # Out of the box the forwarder relays what the drivers publish to the plugins.
    assert forwarder.probes_endpoint == [drivers.probes_endpoint]
    assert api.probes_endpoint == [forwarder.forwarder_endpoint]
