"""The web page in a real headless Chromium: graphs decode, links lead where they should."""

from __future__ import annotations

import os

import pytest

from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from tests.harness.browser import CHROMIUM, IMAGES_DECODED, Chromium
from tests.harness.http import served
from tests.harness.processes import wait_for
from tests.plugins.rrd.pngs import png_size

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def site(filled):
    """The real app served by waitress on 127.0.0.1, as kwapi-rrd serves it."""
    app = create_app(filled, Grapher(filled), refresh_interval=1)
    with served(app) as url:
        yield url


@pytest.fixture
def browser():
    chromium = Chromium()
    chromium.set_viewport(1280, 2400)  # every graph in view, so none waits lazily
    yield chromium
    chromium.close()


def test_page_graphs_menu_links_filter_and_refresh(site, browser, tmp_path):
    browser.navigate(f"{site}/")
    assert browser.evaluate("location.pathname") == "/last/minute/"
    decoded = browser.evaluate(IMAGES_DECODED)
    assert len(decoded) == 5  # the summary and four probes
    assert all(width > 500 for _, width in decoded), decoded

    shot = browser.screenshot(tmp_path / "page.png", keep_as="rrd-page.png")
    assert png_size(shot)[0] >= 1280

    # Graphs refresh in place: new image URLs, same document.
    browser.evaluate("window.kwapiMarker = 42")
    browser.wait(
        "document.getElementById('summary').src.includes('?t=')", 10, "a refreshed summary"
    )
    assert browser.evaluate("window.kwapiMarker") == 42

    # The filter hides other probes, and is remembered across visits.
    browser.evaluate(
        "const f = document.getElementById('filter'); f.value = 'pdu';"
        "f.dispatchEvent(new Event('input'))"
    )
    visible = (
        "Array.from(document.querySelectorAll('#graphs figure:not([hidden])'))"
        ".map(f => f.dataset.probe)"
    )
    assert browser.evaluate(visible) == ["pdu:outlet@3"]
    browser.navigate(f"{site}/last/minute/")
    assert browser.evaluate("document.getElementById('filter').value") == "pdu"
    assert browser.evaluate(visible) == ["pdu:outlet@3"]

    # Unticking a probe hides its graph, also after a reload.
    browser.evaluate(
        "const f = document.getElementById('filter'); f.value = '';"
        "f.dispatchEvent(new Event('input'));"
        "document.querySelector('input.select[value=\"gpu.0\"]').click()"
    )
    browser.navigate(f"{site}/last/minute/")
    assert "gpu.0" not in browser.evaluate(visible)
    assert (
        browser.evaluate("document.querySelector('input.select[value=\"gpu.0\"]').checked") is False
    )

    # Hovering a graph shows its latest value, from /data/, as a tooltip.
    browser.evaluate(
        "document.querySelector('figure[data-probe=\"host-1\"]')"
        ".dispatchEvent(new MouseEvent('mouseenter'))"
    )
    title = browser.wait(
        "document.querySelector('figure[data-probe=\"host-1\"] img').title", 10, "a tooltip"
    )
    assert title.startswith("host-1 at ") and " W (min " in title, title

    # The period menu leads to the period's page.
    browser.evaluate("document.querySelector('#periods a[data-period=\"day\"]').click()")
    browser.wait("location.pathname === '/last/day/'", 15, "the day page")
    browser.wait_loaded()
    assert browser.evaluate("document.querySelector('#periods a.current').textContent") == "day"
    assert browser.evaluate("document.getElementById('summary').getAttribute('src')") == (
        "/graph/day/"
    )

    # A probe link leads to that probe's page, with one decoded graph per period.
    browser.evaluate(
        "Array.from(document.querySelectorAll('a.probe-link'))"
        ".find(a => a.textContent === 'pdu:outlet@3').click()"
    )
    browser.wait("location.pathname === '/probe/pdu:outlet@3/'", 15, "the probe page")
    browser.wait_loaded()
    assert browser.evaluate("document.querySelector('.probe-id').textContent") == "pdu:outlet@3"
    decoded = browser.evaluate(IMAGES_DECODED)
    assert len(decoded) == 6 and all(width > 500 for _, width in decoded), decoded


class RequestLog:
    """WSGI middleware keeping the path of every request the app gets."""

    def __init__(self, app) -> None:
        self.app = app
        self.paths: list[str] = []

    def __call__(self, environ, start_response):
        self.paths.append(environ["PATH_INFO"])
        return self.app(environ, start_response)

    def count(self, path: str) -> int:
        return self.paths.count(path)


def test_only_graphs_in_view_are_refreshed(filled, browser):
    log = RequestLog(create_app(filled, Grapher(filled), refresh_interval=1))
    summary, below = "/graph/minute/", "/graph/minute/stream-1/bitrate/"
    figure = "document.querySelector('figure[data-probe=\"stream-1\"]')"
    with served(log) as site:
        browser.set_viewport(1280, 500)
        browser.navigate(f"{site}/last/minute/")
        assert browser.evaluate(f"{figure}.getBoundingClientRect().top > window.innerHeight")

        # Three refreshes of the summary; the graph below the fold is fetched at most
        # once (lazily, if the browser reads ahead), never refreshed.
        wait_for(lambda: log.count(summary) >= 4, 20, "three refreshes of the summary")
        assert log.count(below) <= 1
        assert "?t=" not in browser.evaluate(f"{figure}.querySelector('img').src")

        # Scrolled into view, it gets a fresh image.
        browser.evaluate(f"{figure}.scrollIntoView()")
        browser.wait(f"{figure}.querySelector('img').src.includes('?t=')", 10, "a fresh graph")
        assert log.count(below) >= 1

        # Out of view again: no more requests for it while the summary refreshes on.
        browser.evaluate("window.scrollTo(0, 0)")
        seen = log.count(summary)
        wait_for(lambda: log.count(summary) > seen, 10, "one more refresh of the summary")
        fetched, seen = log.count(below), log.count(summary)
        wait_for(lambda: log.count(summary) >= seen + 3, 20, "three more refreshes")
        assert log.count(below) == fetched


def test_page_fits_a_phone_and_404_is_readable(site, browser, tmp_path):
    browser.set_viewport(390, 844, mobile=True)
    browser.navigate(f"{site}/last/hour/")
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    widths = browser.evaluate(
        "Array.from(document.images).map(i => i.getBoundingClientRect().width)"
    )
    # Graphs below the fold load lazily (width 0 until scrolled to); none overflows.
    assert widths and widths[0] > 300 and all(width <= 390 for width in widths)
    for _ in range(len(widths)):  # scroll through, as a thumb would
        browser.evaluate("window.scrollBy(0, window.innerHeight)")
    browser.wait(
        "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
        15,
        "every graph to load after scrolling",
    )
    browser.evaluate("window.scrollTo(0, 0)")
    browser.screenshot(tmp_path / "phone.png", keep_as="rrd-phone.png")

    browser.navigate(f"{site}/probe/no-such-probe/")
    assert "No probe called “no-such-probe”" in browser.evaluate("document.body.innerText")
