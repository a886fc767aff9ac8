"""kwapi-api with auth_strategy = keystone, against a real Keystone.

The daemon runs as a subprocess, fed by a real signed publisher; tokens come
from keystoneauth1. Keystone itself is the session-wide ``keystone`` fixture.
"""

from __future__ import annotations

import shutil

import pytest
import requests

from tests.harness.bus import SECRET
from tests.harness.configs import write_config
from tests.harness.keystone import (
    ADMIN_PASSWORD,
    API_CONFIG,
    READER_USER,
    AuthApi,
    authtoken_section,
)
from tests.harness.processes import free_tcp_port, run_command, short_tmpdir, wait_for

PROBE = "node-1"


def assert_error(response: requests.Response, code: int) -> dict:
    """*response* is a JSON error document with status *code*."""
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["title"] and error["message"]
    return error


@pytest.fixture(scope="module")
def api(keystone):
    """kwapi-api checking tokens against the test Keystone, with one probe in it."""
    server = AuthApi(keystone.url, metrics_auth=True)
    admin = keystone.token("admin", ADMIN_PASSWORD)

    def probe_served() -> bool:
        server.publish(PROBE, 120.0)
        response = server.get("/v1/probes/", admin)
        return response.status_code == 200 and PROBE in response.json()["probes"]

    try:
        wait_for(probe_served, 30, "the probe in the API")
        yield server
    finally:
        print(f"----- kwapi-api -----\n{server.daemon.output()}")
        server.close()


@pytest.fixture(scope="module")
def admin_token(keystone):
    return keystone.token("admin", ADMIN_PASSWORD)


@pytest.mark.parametrize("path", ["/", "/v1/", "/v1/probes/", "/v1/probe-ids/", "/nowhere"])
def test_no_token_is_401(api, path):
    response = api.get(path)
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Keystone uri=")


def test_garbage_token_is_401(api):
    assert_error(api.get("/v1/probes/", "not-a-token"), 401)
    assert_error(api.get("/v1/probes/", "gAAAAAB" + "x" * 180), 401)


def test_revoked_token_is_401(api, keystone):
    token = keystone.token(*READER_USER)
    keystone.admin.delete(
        keystone.url + "/auth/tokens", headers={"X-Subject-Token": token}, raise_exc=True
    )
    assert_error(api.get("/v1/probes/", token), 401)


def test_admin_token_reads_the_api(api, admin_token):
    response = api.get("/v1/probes/", admin_token)
    assert response.status_code == 200
    probe = response.json()["probes"][PROBE]
    assert probe["w"] == 120.0
    assert api.get(f"/v1/probes/{PROBE}/w/", admin_token).json() == {PROBE: {"w": 120.0}}
    # The application's own errors pass through untouched.
    missing = api.get("/v1/probes/unknown/", admin_token)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404


def test_token_without_allowed_role_is_403(api, keystone):
    token = keystone.token(*READER_USER)
    error = assert_error(api.get("/v1/probes/", token), 403)
    assert "admin" in error["message"]
    assert "viewer" in api.daemon.output()


def test_headers_forged_by_the_client_do_not_count(api, keystone):
    token = keystone.token(*READER_USER)
    forged = {"X-Auth-Token": token, "X-Roles": "admin", "X-Identity-Status": "Confirmed"}
    response = requests.get(api.base + "/v1/probes/", headers=forged, timeout=30)
    assert_error(response, 403)
    forged.pop("X-Auth-Token")
    response = requests.get(api.base + "/v1/probes/", headers=forged, timeout=30)
    assert_error(response, 401)


def test_healthz_needs_no_token(api):
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_metrics_need_a_token_when_metrics_auth(api, admin_token):
    assert_error(api.get("/metrics"), 401)
    response = api.get("/metrics", admin_token)
    assert response.status_code == 200
    assert f'kwapi_power_watts{{probe="{PROBE}"}} 120.0' in response.text


@pytest.fixture(scope="module")
def api_without_keystone():
    """kwapi-api whose Keystone is a port nobody listens on; /metrics left open."""
    dead = f"http://127.0.0.1:{free_tcp_port()}/v3"
    server = AuthApi(dead, metrics_auth=False)
    try:
        yield server
    finally:
        print(f"----- kwapi-api -----\n{server.daemon.output()}")
        server.close()


def test_unreachable_keystone_is_503_never_open(api_without_keystone, admin_token):
    for token in (admin_token, "not-a-token"):
        error = assert_error(api_without_keystone.get("/v1/probes/", token), 503)
        assert "Keystone" in error["message"]
    # Without a token there is nothing to check: still refused.
    assert_error(api_without_keystone.get("/v1/probes/"), 401)
    assert "Unable to validate token" in api_without_keystone.daemon.output()


def test_keystone_going_down_then_coming_back(keystone):
    """A running Keystone stops: new tokens get 503, cached ones still pass; then it returns."""
    server = AuthApi(keystone.url)
    validated = keystone.token("admin", ADMIN_PASSWORD)
    unseen = keystone.token("admin", ADMIN_PASSWORD)
    assert validated != unseen
    try:
        assert server.get("/v1/probe-ids/", validated).status_code == 200
        keystone.halt()
        try:
            error = assert_error(server.get("/v1/probe-ids/", unseen), 503)
            assert "Keystone" in error["message"]
            # keystonemiddleware keeps a validated token for token_cache_time (300 s).
            assert server.get("/v1/probe-ids/", validated).status_code == 200
            assert server.daemon.process.poll() is None
        finally:
            keystone.start()
        # Back: the token refused during the outage is checked and let in, no restart.
        assert server.get("/v1/probe-ids/", unseen).status_code == 200
        assert "Traceback" not in server.daemon.output()
    finally:
        server.close()


@pytest.mark.parametrize("authtoken", [{"password": "wrong"}, {"interface": "internal"}])
def test_keystone_refusing_the_service_user_is_503(keystone, admin_token, authtoken):
    # A wrong service password, or an identity interface missing from the catalog.
    server = AuthApi(keystone.url, **authtoken)
    try:
        assert_error(server.get("/v1/probes/", admin_token), 503)
    finally:
        server.close()


def test_open_paths_without_keystone(api_without_keystone):
    assert api_without_keystone.get("/healthz").status_code == 200
    metrics = api_without_keystone.get("/metrics")
    assert metrics.status_code == 200
    assert "kwapi_receiver" in metrics.text or "# HELP" in metrics.text


def test_delay_auth_decision_does_not_open_the_door(keystone):
    server = AuthApi(keystone.url, delay_auth_decision="true")
    try:
        assert_error(server.get("/v1/probes/"), 401)
        assert_error(server.get("/v1/probes/", "not-a-token"), 401)
        assert_error(server.get("/v1/probes/", keystone.token(*READER_USER)), 403)
        assert server.get("/v1/probes/", keystone.token("admin", ADMIN_PASSWORD)).ok
    finally:
        server.close()


def test_service_credentials_in_another_section(keystone, admin_token):
    credentials = ("auth_type", "auth_url", "username", "password", "project_name")
    moved = authtoken_section(keystone.url).splitlines()
    server = AuthApi(
        keystone.url,
        extra_sections="[kwapi_service]\n"
        + "\n".join(line for line in moved if line.split(" =")[0] in credentials)
        + "\nuser_domain_name = Default\nproject_domain_name = Default",
        auth_section="kwapi_service",
        auth_type="",
        username="",
        password="",
    )
    try:
        assert server.get("/v1/probes/", admin_token).status_code == 200
        assert_error(server.get("/v1/probes/", "not-a-token"), 401)
    finally:
        server.close()


@pytest.mark.parametrize(
    ("default", "authtoken", "expected"),
    [
        ("", {"auth_type": ""}, "[keystone_authtoken] auth_type: auth_type is not set"),
        ("", {"auth_type": "nonsense"}, "[keystone_authtoken] auth_type: unknown authentication"),
        ("", {"auth_url": "ftp://127.0.0.1/v3"}, "auth_url: 'ftp://127.0.0.1/v3' is not an http"),
        ("", {"http_connect_timeout": "soon"}, "http_connect_timeout: invalid value"),
        ("", {"auth_url": ""}, "[keystone_authtoken] auth_url: missing for auth_type password"),
        ("allowed_roles =", {}, "[DEFAULT] allowed_roles: no role listed"),
    ],
)
def test_bad_keystone_configuration_fails_at_start(default, authtoken, expected):
    directory = short_tmpdir()
    try:
        config = write_config(
            directory,
            "api.conf",
            API_CONFIG.format(
                port=free_tcp_port(),
                endpoint=f"ipc://{directory}/bus",
                secret=SECRET,
                dir=directory,
                metrics_auth="true",
                extra_default=default,
                extra_sections="",
                authtoken=authtoken_section("http://127.0.0.1:1/v3", **authtoken),
            ),
        )
        result = run_command("kwapi-api", "--config-file", str(config))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"kwapi-api: error: {config}: ")
        assert expected in lines[0]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
