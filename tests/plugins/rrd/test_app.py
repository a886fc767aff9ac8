"""Web routes of kwapi-rrd on a real storage: pages, graphs, downloads, JSON, 404s, escaping."""

from __future__ import annotations

import pytest

from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from tests.plugins.rrd.pngs import png_size

HOSTILE = "a<b>\"'&"
ESCAPED = "a&lt;b&gt;&#34;&#39;&amp;"


@pytest.fixture
def client(filled):
    app = create_app(filled, Grapher(filled), refresh_interval=7)
    return app.test_client()


def test_root_redirects_to_the_last_minutes(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/last/minute/")


def test_last_page_lists_probes_graphs_and_periods(client):
    response = client.get("/last/hour/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-refresh="7"' in page
    assert 'src="/graph/hour/"' in page
    assert 'href="/probe/pdu:outlet@3/"' in page
    assert 'src="/graph/hour/pdu:outlet@3/w/"' in page
    assert 'src="/graph/hour/stream-1/bitrate/"' in page  # no power: its first other meter
    for period in ("minute", "hour", "day", "week", "month", "year"):
        assert f'href="/last/{period}/"' in page
    assert 'class="current" aria-current="page">hour<' in page
    assert 'id="filter"' in page


def test_probe_page_has_every_meter_for_every_period(client):
    page = client.get("/probe/stream-1/").get_data(as_text=True)
    for meter in ("bitrate", "fps", "up"):
        for period in ("minute", "year"):
            assert f'src="/graph/{period}/stream-1/{meter}/"' in page
    assert 'href="/rrd/stream-1/bitrate/"' in page


@pytest.mark.parametrize(
    "url",
    ["/graph/minute/", "/graph/day/host-1/", "/graph/week/gpu.0/w/", "/graph/hour/stream-1/fps/"],
)
def test_graph_routes_return_pngs(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert png_size(response.get_data())[0] > 500
    assert response.headers["Cache-Control"].startswith("max-age=")


def test_rrd_download_is_the_probe_file(client, filled):
    response = client.get("/rrd/pdu:outlet@3/")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="pdu:outlet@3.rrd"'
    data = response.get_data()
    assert data == filled.path("pdu:outlet@3", "w").read_bytes()
    assert data.startswith(b"RRD\0")


def test_data_route_gives_the_series_as_json(client):
    body = client.get("/data/minute/host-1/").get_json()
    assert body["probe"] == "host-1" and body["period"] == "minute" and body["step"] == 1
    power = body["meters"]["w"]
    assert power["unit"] == "W"
    assert len(body["timestamps"]) == len(power["average"]) == len(power["min"])
    values = [v for v in power["average"] if v is not None]
    assert len(values) > 60 and all(90 <= v <= 150 for v in values)


def test_data_route_gives_each_meter_in_its_unit(client):
    body = client.get("/data/hour/stream-1/").get_json()
    units = {meter: series["unit"] for meter, series in body["meters"].items()}
    assert units == {"bitrate": "bit/s", "fps": "fps", "up": ""}
    bitrates = [v for v in body["meters"]["bitrate"]["max"] if v is not None]
    assert bitrates and all(2_500_000 <= v <= 2_560_000 for v in bitrates)  # bit/s, not kbit/s


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("/last/forever/", "no period called “forever”"),
        ("/graph/forever/", "no period called “forever”"),
        ("/probe/ghost/", "No probe called “ghost”"),
        ("/graph/hour/ghost/", "No probe called “ghost”"),
        ("/rrd/ghost/", "No probe called “ghost”"),
        ("/graph/hour/host-1/fps/", "has no meter called “fps”"),
        ("/nowhere", "There is no page at this address."),
    ],
)
def test_unknown_things_get_a_readable_404_page(client, url, words):
    response = client.get(url)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert words in page
    assert 'href="/last/minute/"' in page  # a way back


def test_unknown_probe_in_data_route_is_a_json_404(client):
    response = client.get("/data/minute/ghost/")
    assert response.status_code == 404
    assert "ghost" in response.get_json()["error"]


@pytest.mark.parametrize("prefix", ["/probe/", "/graph/hour/", "/rrd/", "/data/hour/"])
def test_hostile_probe_id_in_the_url_is_escaped(client, prefix):
    response = client.get(prefix + HOSTILE + "/")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "<b>" not in page and "a<b" not in page
    if response.mimetype == "text/html":
        assert ESCAPED in page  # in the message and in the path shown
    else:
        assert response.get_json()["error"].count(HOSTILE) == 1
        assert "\\u003cb\\u003e" in page  # JSON-escaped, safe even if sniffed as HTML


def test_template_autoescaping_is_on(client):
    app = client.application
    with app.test_request_context():
        assert app.jinja_env.autoescape is True or app.jinja_env.autoescape("x.html")
        rendered = app.jinja_env.from_string("{{ value }}").render(value=HOSTILE)
    assert rendered == ESCAPED


def test_a_broken_rrd_file_gives_a_readable_error_and_the_rest_still_works(client, filled):
    filled.path("gpu.0", "w").write_bytes(b"this is not an RRD file")
    response = client.get("/graph/minute/gpu.0/")
    assert response.status_code == 500
    assert "The RRD files could not be read" in response.get_data(as_text=True)
    assert client.get("/data/minute/gpu.0/").get_json()["status"] == 500
    assert client.get("/graph/minute/host-1/").status_code == 200
