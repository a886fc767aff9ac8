"""Regression tests of what HTTP fuzzing and the fault tests found in kwapi-rrd's routes."""

from __future__ import annotations

import json

import pytest

from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.lookups import END_MAX, END_MIN
from kwapi.plugins.rrd.storage import RrdStorage


@pytest.fixture
def client(filled):
    return create_app(filled, Grapher(filled)).test_client()


@pytest.mark.parametrize("path", ["/", "/last/minute/", "/probe/host-1/", "/data/minute/host-1/"])
def test_wrong_method_keeps_the_allow_header(client, path):
    # The error page used to drop it (RFC 9110 requires it on a 405).
    response = client.delete(path)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    "end",
    [
        "abc",
        "1e9",
        "-5",
        "+1000000000",
        " 1000000000",
        "1_000_000_000",
        "0",
        str(END_MIN - 1),
        str(END_MAX + 1),
        "99999999999999",
        "9" * 5000,  # longer than int() accepts
        "\u0661" + "\u0660" * 9,  # Arabic-Indic digits pass str.isdigit()
    ],
)
def test_series_end_out_of_range_is_400(client, end):
    # These used to be ignored, wrapped around, or read by rrdtool as a date (500).
    response = client.get("/data/minute/host-1/", query_string={"end": end})
    assert response.status_code == 400
    body = json.loads(response.get_data())
    assert body["status"] == 400 and "end must be" in body["error"]


@pytest.mark.parametrize("period", ["minute", "year"])
@pytest.mark.parametrize("end", [END_MIN, 1_000_000_000, END_MAX])
def test_series_end_in_range_is_served(client, period, end):
    response = client.get(f"/data/{period}/host-1/", query_string={"end": str(end)})
    assert response.status_code == 200
    body = json.loads(response.get_data())
    assert body["timestamps"] and body["timestamps"][-1] <= end + body["step"]


def test_rrdcached_down_is_503_with_retry_after(rrd_dir, rrdcached, filled):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    client = create_app(storage, Grapher(storage)).test_client()
    assert client.get("/data/minute/host-1/").status_code == 200
    rrdcached.process.kill()
    rrdcached.process.wait(10)
    for path in ("/data/minute/host-1/", "/rrd/host-1/"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"] == "10"
        assert "rrdcached" in response.get_data(as_text=True)
        assert "Traceback" not in response.get_data(as_text=True)
    # librrd draws a graph from the files alone once it finds rrdcached gone (the
    # first call on its broken connection fails): never a 500 either way.
    assert client.get("/graph/day/host-1/").status_code in (200, 503)
