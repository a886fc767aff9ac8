"""The From / To range in a real headless Chromium: the form, the graphs, the table, the CSV."""

from __future__ import annotations

import os
from datetime import datetime

import pytest

from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.periods import TimeRange
from kwapi.plugins.rrd.ranges import range_table
from kwapi.units import format_energy, format_money
from tests.harness.browser import CHROMIUM, IMAGES_DECODED, Chromium
from tests.harness.http import served
from tests.plugins.rrd.pngs import png_size

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def site(filled):
    app = create_app(filled, Grapher(filled, kwh_price=0.2, currency="CHF"), refresh_interval=1)
    with served(app) as url:
        yield url


@pytest.fixture
def browser():
    chromium = Chromium()
    chromium.set_viewport(1280, 2400)
    yield chromium
    chromium.close()


def local_field(stamp: int) -> str:
    """What a datetime-local field holds for *stamp* (Chromium runs in this machine's zone)."""
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%dT%H:%M:%S")


def test_range_form_graphs_table_and_csv(site, filled, browser, tmp_path):
    browser.navigate(f"{site}/last/hour/")
    # The fields show the hour the page graphs, in the browser's zone.
    start, end = browser.evaluate(
        "[Number(document.getElementById('range').dataset.start),"
        " Number(document.getElementById('range').dataset.end)]"
    )
    assert end - start == 3600
    fields = (
        "[document.querySelector('#range [name=start]').value,"
        " document.querySelector('#range [name=end]').value]"
    )
    assert browser.evaluate(fields) == [local_field(start), local_field(end)]

    # A person picks a range of the data (the last 100 s but 10) and presses Show.
    span = TimeRange(end - 100, end - 10)
    browser.evaluate(
        f"document.querySelector('#range [name=start]').value = '{local_field(span.start)}';"
        f"document.querySelector('#range [name=end]').value = '{local_field(span.end)}';"
        "document.querySelector('#range button[type=submit]').click()"
    )
    browser.wait("location.pathname === '/range/'", 15, "the range page")
    browser.wait_loaded()
    assert browser.evaluate("location.search") == f"?start={span.start}&end={span.end}"
    assert browser.evaluate(fields) == [local_field(span.start), local_field(span.end)]

    # Graphs of the range: the summary and one per probe, all decoded.
    decoded = browser.evaluate(IMAGES_DECODED)
    assert len(decoded) == 5 and all(width > 500 for _, width in decoded), decoded
    assert decoded[0][0] == f"/range-graph/?start={span.start}&end={span.end}"

    # The table: a row per power probe and the total, as the RRD files give them.
    expected = range_table(
        filled,
        ["gpu.0", "host-1", "pdu:outlet@3"],
        span,
        kwh_price=0.2,
        currency="CHF",
    )
    cells = browser.evaluate(
        "Array.from(document.querySelectorAll('#energy-table tr[data-probe]'))"
        ".map(tr => [tr.dataset.probe, tr.querySelector('.energy').textContent,"
        " tr.querySelector('.cost').textContent])"
    )
    assert cells == [
        [row.probe, format_energy(row.kwh), format_money(row.cost, "CHF")]
        for row in (*expected.probes, expected.total)
    ]
    assert "1 s rows" in browser.evaluate("document.getElementById('resolution').textContent")
    # Neighbouring probes are told apart: every swatch of the list has its own colour.
    swatches = browser.evaluate(
        "Array.from(document.querySelectorAll('#probe-list .swatch'))"
        ".map(s => getComputedStyle(s).backgroundColor)"
    )
    assert len(swatches) == 4 and len(set(swatches)) == 4

    # The CSV download: text/csv, one header, a row per probe and the total.
    link = "document.getElementById('csv-link')"
    assert browser.evaluate(f"{link}.hasAttribute('download')")
    kind, text = browser.evaluate(
        f"fetch({link}.href).then(r => r.text().then(t => [r.headers.get('content-type'), t]))"
    )
    assert kind.startswith("text/csv")
    lines = text.split("\r\n")
    assert lines[0].startswith("probe,kwh,joules,") and lines[-1] == ""
    assert [line.split(",")[0] for line in lines[1:-1]] == ["gpu.0", "host-1", "pdu:outlet@3", "*"]

    shot = browser.screenshot(tmp_path / "range.png", keep_as="rrd-range.png")
    assert png_size(shot)[0] >= 1280


def test_range_page_fits_a_phone_and_explains_a_bad_range(site, browser, tmp_path):
    browser.set_viewport(390, 844, mobile=True)
    browser.navigate(f"{site}/range/?start=-2m")
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert browser.evaluate("document.getElementById('energy-table') !== null")
    browser.screenshot(tmp_path / "range-phone.png", keep_as="rrd-range-phone.png")

    # Without the script's help (a form sent as typed), a backwards range is explained.
    browser.navigate(f"{site}/range/?start=-1m&end=-2m")
    assert "the range must end after its start" in browser.evaluate("document.body.innerText")
