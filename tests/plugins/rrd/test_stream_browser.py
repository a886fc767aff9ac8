"""A stream page in a real headless Chromium: reached from the main page, every graph decodes."""

from __future__ import annotations

import os
import time

import pytest

from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.streams import parse_stream_power
from tests.harness.browser import CHROMIUM, IMAGES_DECODED, Chromium
from tests.harness.http import served
from tests.harness.rrd import fill_streams
from tests.plugins.rrd.pngs import png_size

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def site(storage):
    fill_streams(storage, int(time.time()))
    streams = parse_stream_power(["enc = hd, sd, radio"])
    app = create_app(storage, Grapher(storage), refresh_interval=1, streams=streams)
    with served(app) as url:
        yield url


@pytest.fixture
def browser():
    chromium = Chromium()
    chromium.set_viewport(1280, 1600)
    yield chromium
    chromium.close()


def test_stream_page_from_the_main_page(site, browser, tmp_path):
    browser.navigate(f"{site}/last/minute/")
    links = browser.evaluate(
        "Array.from(document.querySelectorAll('#stream-list a.stream-link'))"
        ".map(a => a.textContent)"
    )
    assert links == ["hd", "sd", "radio"]
    browser.evaluate(
        "Array.from(document.querySelectorAll('a.stream-link'))"
        ".find(a => a.textContent === 'hd').click()"
    )
    browser.wait("location.pathname === '/stream/hd/minute/'", 15, "the stream page")
    browser.wait_loaded()
    assert browser.evaluate("document.querySelector('.stream-id').textContent") == "hd"
    decoded = browser.evaluate(IMAGES_DECODED)
    sources = [src for src, _ in decoded]
    assert sources == [
        "/stream-graph/minute/hd/power/",
        "/graph/minute/hd/bitrate/",
        "/graph/minute/hd/fps/",
        "/stream-graph/minute/hd/bits_per_joule/",
        "/stream-graph/minute/hd/pixels_per_joule/",
    ]
    assert all(width > 500 for _, width in decoded), decoded

    shot = browser.screenshot(tmp_path / "stream.png", keep_as="rrd-stream.png")
    assert png_size(shot)[0] >= 1280

    # The period menu of the stream page stays on the stream.
    browser.evaluate("document.querySelector('.stream-periods a[data-period=\"hour\"]').click()")
    browser.wait("location.pathname === '/stream/hd/hour/'", 15, "the hour page of the stream")
    browser.wait_loaded()
    decoded = browser.evaluate(IMAGES_DECODED)
    assert len(decoded) == 5 and all(width > 500 for _, width in decoded), decoded
