"""kwapi-history's queries with auth_strategy = keystone, against a real Keystone.

The same code as kwapi-api's (kwapi.plugins.auth, kwapi.plugins.keystone):
tokens from the session's Keystone, the query application on a real
VictoriaMetrics, served by the Flask test client.
"""

from __future__ import annotations

import shutil

import pytest

from kwapi.config import ConfigError
from tests.harness.configs import write_config
from tests.harness.keystone import ADMIN_PASSWORD, READER_USER, authtoken_section
from tests.harness.processes import short_tmpdir
from tests.harness.stores import VictoriaMetrics
from tests.plugins.history.query_helpers import line, make_app, write

T0 = 1_765_000_000
ENERGY = f"/v1/energy/?probe=node-1&start={T0}&end={T0 + 2}"


@pytest.fixture(scope="module")
def store():
    server = VictoriaMetrics()
    server.start()
    write(server, [line("node-1", (T0 + i) * 1000, w=100.0) for i in range(3)])
    yield server
    server.close()


@pytest.fixture
def config_dir():
    directory = short_tmpdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def keystone_app(store, keystone, directory, default: str = "", **authtoken: str):
    config = write_config(
        directory,
        "history.conf",
        f"[DEFAULT]\nauth_strategy = keystone\n{default}\n"
        f"[keystone_authtoken]\n{authtoken_section(keystone.url, **authtoken)}\n",
    )
    return make_app(store.root, config_file=str(config))


def test_queries_need_a_token_with_an_allowed_role(store, keystone, config_dir):
    client = keystone_app(store, keystone, config_dir).test_client()
    refused = client.get(ENERGY)
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == 401
    assert refused.headers["WWW-Authenticate"].startswith("Keystone uri=")
    reader = client.get(ENERGY, headers={"X-Auth-Token": keystone.token(*READER_USER)})
    assert reader.status_code == 403
    admin = {"X-Auth-Token": keystone.token("admin", ADMIN_PASSWORD)}
    answered = client.get(ENERGY, headers=admin)
    assert answered.status_code == 200
    assert answered.get_json()["probes"]["node-1"]["joules"] == pytest.approx(200.0)
    # The application's own errors pass through untouched.
    bad = client.get("/v1/energy/?probe=node-1&start=never", headers=admin)
    assert bad.status_code == 400 and bad.get_json()["error"]["parameter"] == "start"
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 401


def test_metrics_open_when_metrics_auth_is_false(store, keystone, config_dir):
    client = keystone_app(store, keystone, config_dir, "metrics_auth = false").test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get(ENERGY).status_code == 401


def test_bad_keystone_configuration_is_a_config_error(store, keystone, config_dir):
    with pytest.raises(ConfigError, match="auth_type is not set"):
        keystone_app(store, keystone, config_dir, auth_type="")
