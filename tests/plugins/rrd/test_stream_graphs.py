"""Stream graphs of kwapi-rrd: rrdtool's CDEFs agree with kwapi.plugins.streams, pages link."""

from __future__ import annotations

import time

import pytest
import rrdtool

from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.periods import PERIODS
from kwapi.plugins.rrd.storage import RrdStorage
from kwapi.plugins.rrd.stream_graphs import KINDS, StreamGrapher
from kwapi.plugins.streams import StreamSample, figures, parse_stream_power, shares
from tests.harness.rrd import HD, RADIO, SD, fill_streams
from tests.plugins.rrd.pngs import png_size

LINES = ["enc = hd, sd, radio"]


@pytest.fixture
def streamed(storage) -> tuple[RrdStorage, int]:
    end = int(time.time())
    fill_streams(storage, end)
    return storage, end


def sample_of(meters: dict) -> StreamSample:
    if meters.get("up") != 1:
        return StreamSample(False)
    return StreamSample(True, **{k: float(v) for k, v in meters.items() if k != "up"})


def exported(grapher: StreamGrapher, stream: str, start: int, end: int) -> list[tuple]:
    result = rrdtool.xport(
        "--start",
        str(start),
        "--end",
        str(end),
        "--step",
        "1",
        *grapher.definitions(stream),
        "XPORT:share:share",
        "XPORT:sw:watts",
        "XPORT:bpj:bits per joule",
        "XPORT:ppj:pixels per joule",
    )
    return result["data"]


@pytest.mark.parametrize("mode", ["pixels", "bitrate", "equal"])
def test_rrdtool_computes_the_same_figures_as_the_api(streamed, mode):
    storage, end = streamed
    grapher = StreamGrapher(Grapher(storage), parse_stream_power(LINES, mode))
    phases = {  # (start, end) of a stretch -> what each stream was then
        (end - 110, end - 70): {"hd": HD, "sd": SD, "radio": RADIO},
        (end - 50, end - 10): {"hd": HD, "sd": {"up": 0}, "radio": RADIO},
    }
    for (start, stop), meters in phases.items():
        samples = {name: sample_of(values) for name, values in meters.items()}
        split = shares(samples, mode)
        for stream in ("hd", "sd", "radio"):
            expected = figures(samples[stream], split[stream], 100.0)
            rows = exported(grapher, stream, start, stop)
            assert len(rows) >= 30
            for share, watts, bits, pixels in rows:
                assert share == pytest.approx(split[stream]), (mode, stream)
                assert watts == pytest.approx(expected.w)
                assert bits == pytest.approx(expected.bits_per_joule)
                assert pixels == pytest.approx(expected.pixels_per_joule)


def test_stream_graphs_are_pngs(streamed):
    storage, end = streamed
    grapher = StreamGrapher(Grapher(storage), parse_stream_power(LINES))
    for kind in KINDS:
        for period in ("minute", "day"):
            graph = grapher.draw(PERIODS[period], "hd", kind, end=end)
            assert png_size(graph.png) == (graph.width, graph.height)
            assert 600 <= graph.width <= 1200
    power = grapher.draw(PERIODS["minute"], "hd", "power", end=end)
    assert power.value_max is not None and 95 <= power.value_max <= 120
    pixels = grapher.draw(PERIODS["minute"], "hd", "pixels_per_joule", end=end)
    assert pixels.value_max >= 1280 * 720 * 25 / 100 * 0.9


@pytest.fixture
def client(streamed):
    storage, _ = streamed
    streams = parse_stream_power(["enc = hd, sd, radio", "idle-host = never-seen"])
    app = create_app(storage, Grapher(storage), refresh_interval=1, streams=streams)
    return app.test_client()


def test_stream_page_links_and_graphs(client):
    assert client.get("/stream/hd/").headers["Location"].endswith("/stream/hd/minute/")
    page = client.get("/stream/hd/hour/").get_data(as_text=True)
    for kind in KINDS:
        assert f'src="/stream-graph/hour/hd/{kind}/"' in page
    assert 'src="/graph/hour/hd/bitrate/"' in page
    assert 'src="/graph/hour/hd/fps/"' in page
    assert 'href="/stream/sd/hour/"' in page  # the host's other streams
    assert 'href="/probe/enc/"' in page
    for kind in KINDS:
        response = client.get(f"/stream-graph/hour/hd/{kind}/")
        assert response.status_code == 200 and response.mimetype == "image/png"
        png_size(response.get_data())
    main = client.get("/last/minute/").get_data(as_text=True)
    assert 'href="/stream/hd/minute/"' in main and 'href="/stream/never-seen/minute/"' in main
    assert 'href="/stream/hd/minute/"' in client.get("/probe/hd/").get_data(as_text=True)
    assert 'href="/stream/radio/minute/"' in client.get("/probe/enc/").get_data(as_text=True)


def test_a_stream_not_measured_yet_has_a_page_without_graphs(client):
    response = client.get("/stream/never-seen/minute/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "No energy graph yet" in page and "<img" not in page
    missing = client.get("/stream-graph/minute/never-seen/power/")
    assert missing.status_code == 404
    assert "has not sent a measurement yet" in missing.get_data(as_text=True)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("/stream/enc/", "no stream called “enc”"),
        ("/stream/hd/forever/", "no period called “forever”"),
        ("/stream-graph/minute/hd/loudness/", "no stream graph called “loudness”"),
        ("/stream-graph/minute/ghost/power/", "no stream called “ghost”"),
    ],
)
def test_unknown_streams_get_a_readable_404(client, url, words):
    response = client.get(url)
    assert response.status_code == 404
    assert words in response.get_data(as_text=True)
