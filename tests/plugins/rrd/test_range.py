"""The From / To range: its table from the RRD files, its routes, and bad ranges (JSON 400)."""

from __future__ import annotations

import csv
import io
import math
import time

import pytest

from kwapi.bus.protocol import Batch, Measurement
from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.periods import LONGEST_RANGE, TimeRange
from kwapi.plugins.rrd.ranges import CSV_FIELDS, TOTAL_ROW, range_table
from kwapi.plugins.rrd.storage import RrdStorage
from kwapi.units import format_energy, format_power
from tests.harness.rrd import fill, flush

PROBES = {"host-1": 120.0, "pdu:outlet@3": 60.0, "gpu.0": 250.0}
SORTED = tuple(sorted(PROBES))


def watts(probe: str, timestamp: int) -> float:
    """What tests.harness.rrd.fill wrote for *probe* at *timestamp*."""
    index = list(PROBES).index(probe)
    base = PROBES[probe]
    return base + base * 0.2 * math.sin(timestamp / 15 + index)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """25 minutes of the three probes at 1 Hz, ending now: (storage, last timestamp)."""
    storage = RrdStorage(tmp_path_factory.mktemp("rrd"))
    end = fill(storage, PROBES, seconds=1500)
    return storage, end


def table(storage: RrdStorage, span: TimeRange, probes=SORTED):
    return range_table(storage, probes, span, kwh_price=0.2, currency="CHF")


def test_recent_range_is_read_at_1_s_and_equals_what_was_written(recorded):
    storage, end = recorded
    span = TimeRange(end - 300, end - 17)
    result = table(storage, span)
    assert result.resolution == 1
    seconds = range(span.start + 1, span.end + 1)  # each 1 s row ends at its timestamp
    for row in result.probes:
        written = [watts(row.probe, t) for t in seconds]
        assert row.joules == pytest.approx(sum(written), rel=1e-9)
        assert row.kwh == pytest.approx(sum(written) / 3.6e6, rel=1e-9)
        assert row.cost == pytest.approx(row.kwh * 0.2, rel=1e-12)
        assert row.average_w == pytest.approx(sum(written) / len(written), rel=1e-9)
        assert (row.min_w, row.max_w) == pytest.approx((min(written), max(written)), rel=1e-9)
        assert row.coverage == 1.0
    sums = [sum(watts(p, t) for p in PROBES) for t in seconds]
    total = result.total
    assert total.probe == TOTAL_ROW
    assert total.joules == pytest.approx(sum(sums), rel=1e-9)
    assert total.cost == pytest.approx(sum(row.cost for row in result.probes), rel=1e-9)
    # The total's extremes are those of the summed line, not sums of extremes.
    assert (total.min_w, total.max_w) == pytest.approx((min(sums), max(sums)), rel=1e-9)
    assert total.min_w > sum(row.min_w for row in result.probes)


def test_older_range_uses_the_10_s_archive_and_cuts_rows_at_its_edges(recorded):
    storage, end = recorded
    start = (end - 1400) // 10 * 10 + 3  # 3 s into a 10 s row: 7 s of it count
    span = TimeRange(start, start + 604)  # ends 7 s into a row: 7 s of it count
    assert end - span.start > 600  # older than the 1 s archive holds
    result = table(storage, span, ("gpu.0",))
    assert result.resolution == 10
    expected = 0.0
    for row_end in range(start - 3 + 10, span.end + 10, 10):
        average = sum(watts("gpu.0", t) for t in range(row_end - 9, row_end + 1)) / 10
        inside = min(row_end, span.end) - max(row_end - 10, span.start)
        expected += average * inside
    [row] = result.probes
    assert row.joules == pytest.approx(expected, rel=1e-9)
    assert row.coverage == 1.0


def test_a_probe_that_stopped_covers_part_of_the_range(tmp_path):
    storage = RrdStorage(tmp_path)
    now = int(time.time())
    for t in range(now - 200, now - 99):  # 100 s of 500 W, then silence
        storage.update(Measurement("node-1", float(t), {"w": 500.0}))
    result = table(storage, TimeRange(now - 200, now), ("node-1",))
    [row] = result.probes
    assert row.coverage == pytest.approx(0.5, abs=0.06)  # and the heartbeat's few seconds
    assert row.average_w == pytest.approx(500.0)
    assert row.joules == pytest.approx(500.0 * row.coverage * 200, rel=1e-9)
    empty = table(storage, TimeRange(now - 50, now), ("node-1",))
    assert empty.probes[0].average_w is None and empty.probes[0].kwh == 0.0


def test_through_rrdcached_updates_still_in_memory_count(rrd_dir, rrdcached):
    storage = RrdStorage(rrd_dir, daemon=rrdcached.address)
    end = fill(storage, {"host-1": 120.0}, seconds=60)
    span = TimeRange(end - 40, end - 10)
    through = table(storage, span, ("host-1",))
    written = [watts("host-1", t) for t in range(span.start + 1, span.end + 1)]
    assert through.probes[0].joules == pytest.approx(sum(written), rel=1e-9)
    flush(rrd_dir, rrdcached.address)


def test_table_agrees_with_the_graph_legend(recorded):
    storage, end = recorded
    span = TimeRange(end - 240, end - 20)
    grapher = Grapher(storage)
    legend = [text.strip() for text in grapher.probe_between(span, "host-1").legend]
    average, energy = legend[legend.index("host-1") + 1], legend[legend.index("host-1") + 5]
    [row] = table(storage, span, ("host-1",)).probes
    # Two computations (rrdtool's VDEFs over the graph's rows, which may take one row more
    # at an edge, and the table's xport) of one range agree to about a row in 220.
    assert float(average.split()[0]) == pytest.approx(row.average_w, rel=1 / 200)
    assert float(energy.split()[0]) == pytest.approx(row.kwh * 1000, rel=1 / 100)


# -- routes ---------------------------------------------------------------------


@pytest.fixture
def client(recorded):
    storage, _ = recorded
    return create_app(storage, Grapher(storage, kwh_price=0.2, currency="CHF")).test_client()


def test_json_and_csv_give_the_table(client, recorded):
    storage, end = recorded
    span = TimeRange(end - 120, end - 10)
    query = f"?start={span.start}&end={span.end}"
    expected = table(storage, span)
    body = client.get(f"/data/range/{query}").get_json()
    assert body == expected.as_json()
    assert body["resolution"] == 1 and body["currency"] == "CHF"
    assert set(body["probes"]) == set(PROBES)

    response = client.get(f"/data/range.csv{query}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition == f'attachment; filename="kwapi-energy-{span.start}-{span.end}.csv"'
    text = response.get_data(as_text=True)
    assert text.count("\r\n") == 1 + len(PROBES) + 1 and text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_FIELDS
    assert [row["probe"] for row in rows] == [*sorted(PROBES), TOTAL_ROW]
    for row in rows[:-1]:
        assert float(row["kwh"]) == body["probes"][row["probe"]]["kwh"]
        assert float(row["max_w"]) == body["probes"][row["probe"]]["max_w"]
        assert row["resolution_s"] == "1" and row["currency"] == "CHF"
    assert float(rows[-1]["joules"]) == body["total"]["joules"]


def test_times_may_be_rfc_3339_or_relative(client, recorded):
    _, end = recorded
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - 100))
    body = client.get(f"/data/range/?start={stamp}&end={end}").get_json()
    assert (body["start"], body["end"]) == (end - 100, end)
    # What a datetime-local field sends without the page's script: local time.
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(end - 60))
    body = client.get(f"/data/range/?start={local}&end={end}").get_json()
    assert body["start"] == end - 60
    before = int(time.time())
    body = client.get("/data/range/?start=-2m").get_json()
    assert before - 1 <= body["end"] <= int(time.time()) + 1
    assert body["end"] - body["start"] in (120, 121)


def test_range_page_has_the_table_graphs_and_csv_link(client, recorded):
    storage, end = recorded
    span = TimeRange(end - 120, end - 10)
    query = f"start={span.start}&amp;end={span.end}"
    page = client.get(f"/range/?start={span.start}&end={span.end}").get_data(as_text=True)
    expected = table(storage, span)
    for row in expected.probes:
        assert f'<tr data-probe="{row.probe}">' in page
        assert f'<td class="energy">{format_energy(row.kwh)}</td>' in page
        assert f"<td>{format_power(row.max_w)}</td>" in page
    assert f'<td class="energy">{format_energy(expected.total.kwh)}</td>' in page
    assert "From the RRD archives of 1 s rows" in page
    assert f'href="/data/range.csv?{query}" download' in page
    assert f'src="/range-graph/?{query}"' in page
    assert f'src="/range-graph/gpu.0/w/?{query}"' in page
    assert 'data-refresh="0"' in page  # a range is drawn once
    assert f'data-start="{span.start}" data-end="{span.end}"' in page  # the form shows it
    png = client.get(f"/range-graph/gpu.0/w/?start={span.start}&end={span.end}")
    assert png.status_code == 200 and png.mimetype == "image/png"


def test_period_pages_offer_the_period_as_the_range(client):
    page = client.get("/last/hour/").get_data(as_text=True)
    assert '<form id="range" class="range" action="/range/" method="get"' in page
    start = int(page.split('data-start="')[1].split('"')[0])
    end = int(page.split('data-end="')[1].split('"')[0])
    assert end - start == 3600 and abs(end - time.time()) < 5


BAD_RANGES = [
    ("", "start is required"),
    ("?start=", "start is required"),
    ("?start=yesterday", "start: cannot read 'yesterday' as a time"),
    ("?start=-1h&end=soon", "end: cannot read 'soon' as a time"),
    ("?start=-1h&end=-2h", "end: the range must end after its start"),
    ("?start=-5s", "end: the range must last at least 10 s"),
    (f"?start=-{LONGEST_RANGE // 86400 + 1}d", "start: the range may last at most 400 d"),
    ("?start=100&end=200", "start must fall between 1980 and 2100"),
    ("?start=-1h&end=4200000000", "end must fall between 1980 and 2100"),
    ("?start=" + "1" * 70, "is too long to be a time"),
    ("?start=0001-01-01T00:00:00", "start"),
]


@pytest.mark.parametrize(("query", "message"), BAD_RANGES)
@pytest.mark.parametrize("route", ["/data/range/", "/data/range.csv"])
def test_bad_ranges_get_a_json_400_naming_the_argument(client, route, query, message):
    response = client.get(route + query)
    assert response.status_code == 400 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == 400 and message in body["error"], body


@pytest.mark.parametrize("route", ["/range/", "/range-graph/", "/range-graph/host-1/"])
def test_bad_ranges_on_pages_and_graphs_are_a_400_page(client, route):
    response = client.get(route + "?start=-1h&end=-2h")
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "the range must end after its start" in response.get_data(as_text=True)


def test_unknown_probe_in_a_range_graph_is_a_404(client):
    response = client.get("/range-graph/nobody/?start=-1h")
    assert response.status_code == 404


def test_range_without_power_probes_is_an_empty_table(tmp_path):
    storage = RrdStorage(tmp_path)
    storage.update(Measurement("stream-1", time.time() - 5, {"fps": 25.0}))
    client = create_app(storage, Grapher(storage)).test_client()
    body = client.get("/data/range/?start=-1m").get_json()
    assert body["probes"] == {} and body["total"]["kwh"] == 0 and body["resolution"] == 0
    page = client.get("/range/?start=-1m").get_data(as_text=True)
    assert "No probe has reported power" in page


def test_a_high_frequency_probe_shows_its_true_peaks(tmp_path):
    """A 50 Hz probe's minimum and maximum are its samples', not its 1 s averages'."""
    storage = RrdStorage(tmp_path / "rrd")
    start = int(time.time()) - 120
    stamps = [start + i * 0.02 for i in range(1, 60 * 50 + 1)]
    # 100 W with one 40 ms spike to 900 W and one 40 ms dip to 10 W.
    values = [
        900.0 if 1000 <= i < 1002 else 10.0 if 2000 <= i < 2002 else 100.0
        for i in range(len(stamps))
    ]
    for first in range(0, len(stamps), 50):
        storage.update(
            Batch("lab-1", stamps[first : first + 50], {"w": values[first : first + 50]})
        )
    storage.write_open_steps(idle=0)
    [row] = table(storage, TimeRange(start, start + 60), ("lab-1",)).probes
    assert (row.min_w, row.max_w) == (10.0, 900.0)
    assert 100.0 < row.average_w < 110.0
