"""Graphs: real PNGs from rrdtool, colours told apart, no clipping, and the cache."""

from __future__ import annotations

import colorsys
import itertools
import threading
import time

import pytest

from kwapi.bus.protocol import Measurement
from kwapi.plugins.rrd.graphs import (
    PALETTE,
    Graph,
    GraphCache,
    Grapher,
    palette,
    probe_colour,
    probe_colours,
    rrd_format,
    rrd_text,
)
from kwapi.plugins.rrd.periods import PERIODS, TimeRange
from tests.harness.processes import wait_for
from tests.harness.rrd import fill
from tests.plugins.rrd.pngs import png_size


def test_escaping_for_rrdtool():
    assert rrd_text("a:b@c") == "a\\:b@c"
    assert rrd_text("C:\\dir") == "C\\:\\\\dir"
    assert rrd_format("5% off: now") == "5%% off\\: now"


def rgb(colour: str) -> tuple[float, float, float]:
    red, green, blue = (int(colour[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return red, green, blue


def distance(one: str, other: str) -> float:
    """Euclidean distance of two colours in RGB (0 to 441)."""
    return sum((a - b) ** 2 for a, b in zip(rgb(one), rgb(other), strict=True)) ** 0.5 * 255


def test_neighbouring_probes_get_colours_told_apart():
    # The demo's five probes: five different palette colours, far apart from each other.
    demo = [f"demo-node-{n}" for n in range(1, 6)]
    colours = probe_colours(demo, 100)
    assert len(set(colours.values())) == 5 and set(colours.values()) <= set(PALETTE)
    values = list(colours.values())
    assert min(distance(a, b) for i, a in enumerate(values) for b in values[i + 1 :]) > 60
    # Many probes: any two neighbours in sorted order (stacked together) still differ.
    many = [f"node-{n:03d}" for n in range(40)]
    ordered = [probe_colours(many)[probe] for probe in sorted(many)]
    assert all(a != b for a, b in itertools.pairwise(ordered))


def test_hue_turns_the_palette_keeping_it_apart():
    assert palette(100) == PALETTE
    turned = palette(250)
    assert len(set(turned)) == len(PALETTE) and not set(turned) & set(PALETTE)
    for before, after in zip(PALETTE, turned, strict=True):
        hue_before, light_before, _ = colorsys.rgb_to_hls(*rgb(before))
        hue_after, light_after, _ = colorsys.rgb_to_hls(*rgb(after))
        assert (hue_after - hue_before) % 1 == pytest.approx(150 / 360, abs=0.01)
        assert light_after == pytest.approx(light_before, abs=0.01)
    assert probe_colours(["a", "b"], 250) == {"a": turned[0], "b": turned[1]}


def test_colour_of_a_probe_alone_is_fixed_and_from_the_palette():
    first = probe_colour("host-1", 100)
    assert first == probe_colour("host-1", 100) and first in PALETTE
    assert probe_colour("host-1", 250) in palette(250)
    assert probe_colour("b", 100, ["a", "b", "c"]) == PALETTE[1]


def test_pages_and_graphs_share_the_colours(filled):
    grapher = Grapher(filled)
    assert grapher.colours() == probe_colours(filled.probes())
    assert grapher.colour("pdu:outlet@3") == grapher.colours()["pdu:outlet@3"]


@pytest.mark.parametrize("period", list(PERIODS))
def test_summary_and_probe_graphs_are_pngs_of_sane_size(filled, period):
    grapher = Grapher(filled)
    for graph in (
        grapher.summary(PERIODS[period]),
        grapher.probe(PERIODS[period], "pdu:outlet@3"),
        grapher.probe(PERIODS[period], "stream-1", "bitrate"),
    ):
        width, height = png_size(graph.png)
        assert (width, height) == (graph.width, graph.height)
        assert 600 <= width <= 1200 and 200 <= height <= 800


def test_summary_legend_grows_with_probes_and_shows_the_total(filled):
    grapher = Grapher(filled, currency="%$:")  # characters rrdtool would misread
    summary = grapher.draw_summary(PERIODS["minute"])
    alone = grapher.draw_summary(PERIODS["minute"], ("host-1",))
    assert summary.height > alone.height  # one legend line per probe
    # The stacked total of 120 + 60 + 250 W (each +-20 %) tops the y axis.
    assert summary.value_max is not None and summary.value_max >= 430 * 0.8


def test_y_axis_follows_the_data_beyond_max_watts(storage):
    fill(storage, {"big": 5000.0}, seconds=30)
    graph = Grapher(storage).draw_probe(PERIODS["minute"], "big")
    assert graph.value_max is not None and graph.value_max >= 5000.0


def test_empty_summary_is_still_an_image(storage):
    graph = Grapher(storage).summary(PERIODS["minute"])
    assert png_size(graph.png)[0] > 0


def test_concurrent_requests_draw_a_graph_once(filled):
    grapher = Grapher(filled)
    period = PERIODS["hour"]  # fresh for 10 s
    barrier = threading.Barrier(8)
    results: list[Graph] = []

    def request():
        barrier.wait(10)
        results.append(grapher.summary(period))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8
    assert grapher.cache.draws == 1
    assert len({id(graph) for graph in results}) == 1


def test_a_graph_is_redrawn_once_its_resolution_has_passed(filled):
    grapher = Grapher(filled)
    minute = PERIODS["minute"]  # 1 s resolution
    first = grapher.probe(minute, "host-1")
    wait_for(lambda: grapher.probe(minute, "host-1") is not first, 5, "a redraw")
    assert grapher.cache.draws == 2


def test_cache_keeps_graphs_for_their_resolution_and_evicts_the_oldest():
    now = [0.0]
    cache = GraphCache(size=2, clock=lambda: now[0])
    drawn = []

    def draw(name):
        def make():
            drawn.append(name)
            return Graph(name.encode(), 1, 1, None, None, now[0])

        return make

    cache.get("a", 10, draw("a"))
    now[0] = 9.9
    assert cache.get("a", 10, draw("a")).png == b"a" and drawn == ["a"]
    now[0] = 10.0
    cache.get("a", 10, draw("a"))
    assert drawn == ["a", "a"]
    cache.get("b", 10, draw("b"))
    cache.get("c", 10, draw("c"))  # evicts "a", the least recently used
    cache.get("a", 10, draw("a"))
    assert drawn == ["a", "a", "b", "c", "a"]
    assert cache.draws == 5


def test_new_probe_gets_a_new_summary_at_once(filled):
    grapher = Grapher(filled)
    period = PERIODS["hour"]
    before = grapher.summary(period)
    filled.update(Measurement("newcomer", time.time(), {"w": 10.0}))
    assert grapher.summary(period) is not before


def legend_row(graph: Graph, label: str) -> list[str]:
    """The six figures after *label* in *graph*'s legend: average, min, max, last, kWh, cost."""
    texts = [text.strip() for text in graph.legend]
    start = texts.index(label) + 1
    return texts[start : start + 6]


def test_probe_legend_gives_energy_and_cost_of_the_period(storage):
    end = int(time.time()) // 10 * 10 - 100  # a row boundary of the hour archive, in the past
    # From a little before the hour to its end, at 1 Hz.  (rrdtool's TOTAL also counts the
    # row that ends one step after the graph's end: here it is unknown, as when drawn now.)
    for timestamp in range(end - 3600 - 20, end + 1):
        storage.update(Measurement("heater", float(timestamp), {"w": 3600.0}))
    grapher = Grapher(storage, kwh_price=0.2, currency="CHF")
    graph = grapher.draw_probe(PERIODS["hour"], "heater", end=end)
    # 3600 W for one hour is 3.6 kWh; at 0.2 CHF per kWh, 0.72 CHF.
    assert legend_row(graph, "heater") == [
        "3600.0 W",
        "3600.0 W",
        "3600.0 W",
        "3600.0 W",
        "3.60 kWh",
        "0.720 CHF",
    ]


def test_energy_legend_takes_the_prefix_that_fits(storage):
    end = int(time.time()) // 10 * 10 - 100
    for timestamp in range(end - 3600 - 20, end + 1):
        storage.update(Measurement("lamp", float(timestamp), {"w": 4.0}))
        storage.update(Measurement("charger", float(timestamp), {"w": 0.25}))
    grapher = Grapher(storage)
    # 4 W for an hour is 4 Wh (not 0.004 kWh); 0.25 W for an hour is 250 mWh.
    assert legend_row(grapher.draw_probe(PERIODS["hour"], "lamp", end=end), "lamp")[4] == "4.00  Wh"
    charger = grapher.draw_probe(PERIODS["hour"], "charger", end=end)
    assert legend_row(charger, "charger")[4] == "250.00 mWh"


def test_range_graphs_cover_the_range(filled):
    grapher = Grapher(filled)
    end = int(time.time())
    span = TimeRange(end - 90, end - 30)
    summary = grapher.summary_between(span)
    assert summary is grapher.summary_between(span)  # cached
    assert png_size(summary.png)[0] > 600
    assert "Total" in [text.strip() for text in summary.legend]
    probe = grapher.probe_between(span, "host-1")
    # Its legend is of the range: the energy is its average power over the 60 s.
    average, *_, energy, _ = legend_row(probe, "host-1")
    watts, (wh, unit) = float(average.split()[0]), energy.split()
    assert unit == "Wh" and float(wh) == pytest.approx(watts * 60 / 3600, rel=0.04)


def test_summary_total_extremes_are_those_of_the_total_not_sums_of_extremes(storage):
    # Two probes swapping 100 W and 300 W every 5 s: in each 10 s row of the hour graph
    # each one's MIN is 100 W and MAX 300 W, but together they always draw 400 W.
    end = int(time.time()) // 10 * 10 - 100
    for timestamp in range(end - 600, end + 1):
        high = timestamp // 5 % 2 == 0
        storage.update(Measurement("left", float(timestamp), {"w": 300.0 if high else 100.0}))
        storage.update(Measurement("right", float(timestamp), {"w": 100.0 if high else 300.0}))
    graph = Grapher(storage).draw_summary(PERIODS["hour"], ("left", "right"), end)
    assert legend_row(graph, "left")[1:3] == ["100.0 W", "300.0 W"]
    # Sums of the probes' MIN and MAX would say 200 W and 600 W.
    assert legend_row(graph, "Total")[:4] == ["400.0 W", "400.0 W", "400.0 W", "400.0 W"]


def test_other_meters_are_drawn_in_their_unit(filled):
    grapher = Grapher(filled)
    bitrate = grapher.draw_probe(PERIODS["minute"], "stream-1", "bitrate")
    fps = grapher.draw_probe(PERIODS["minute"], "stream-1", "fps")
    assert bitrate.vertical_label == "bit/s"
    assert fps.vertical_label == "fps"
    # Average, minimum, maximum and last, in the unit with an SI prefix: 2.5 Mbit/s, 25 fps.
    bitrate_figures = [text.split() for text in bitrate.legend if text.endswith("bit/s")]
    assert [figures[-1] for figures in bitrate_figures] == ["Mbit/s"] * 4
    assert all(2.49 <= float(figures[-2]) <= 2.57 for figures in bitrate_figures)
    assert [text.split()[-2:] for text in fps.legend if text.endswith("fps")] == [
        ["25.00", "fps"]
    ] * 4
    # No energy or cost for meters other than power.
    assert not any("kWh" in text for text in (*bitrate.legend, *fps.legend))


def test_band_reaches_the_spikes_that_the_average_smooths(storage):
    end = int(time.time()) // 10 * 10 - 100
    for timestamp in range(end - 3600 - 20, end + 21):
        spike = timestamp % 600 == 5  # one second at 1000 W every ten minutes
        storage.update(Measurement("spiky", float(timestamp), {"w": 1000.0 if spike else 100.0}))
    graph = Grapher(storage).draw_probe(PERIODS["hour"], "spiky", end=end)
    # The hour graph has 10 s rows: a spike's row averages 190 W, its MAX keeps 1000 W,
    # and the band drawn up to it sets the top of the y axis.
    assert graph.value_max is not None and graph.value_max >= 1000.0
    average, minimum, maximum = (float(text.split()[0]) for text in legend_row(graph, "spiky")[:3])
    assert maximum == 1000.0 and minimum == 100.0
    assert 100.0 < average < 200.0
