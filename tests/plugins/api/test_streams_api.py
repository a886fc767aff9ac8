"""Energy per stream in kwapi-api: routes and /metrics in process, then the real daemon."""

from __future__ import annotations

import signal
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kwapi.bus.protocol import Measurement
from kwapi.plugins.api.app import create_app
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.metrics import make_registry
from kwapi.plugins.api.stream_energy import StreamEnergy
from kwapi.plugins.api.stream_views import StreamViews
from kwapi.plugins.streams import parse_stream_power
from tests.harness.bus import bus_publisher, publish_all, publish_first
from tests.harness.clock import Clock
from tests.harness.daemons import start_api
from tests.harness.http import get_json, request

HD = {"up": 1, "bitrate": 4_000_000.0, "fps": 25.0, "width": 1280.0, "height": 720.0}
SD = {"up": 1, "bitrate": 1_000_000.0, "fps": 25.0, "width": 640.0, "height": 360.0}


def kwh(w_prev: float, w_new: float, seconds: float) -> float:
    return (w_prev + w_new) / 2 * seconds / 3.6e6


@pytest.fixture
def app_setup():
    now = 1_800_000_000.0
    clock = Clock(now)
    collector = Collector(max_gap=60.0, clock=clock)
    streams = parse_stream_power(["enc = hd, sd", "enc-2 = radio"])
    energy = StreamEnergy(streams, collector.latest, max_gap=60.0, checkpoint_step=0)
    views = StreamViews(energy, collector, kwh_price=0.2, currency="USD", clock=clock)

    def feed(measurement: Measurement) -> None:
        collector.add(measurement)
        energy.observe(measurement)

    feed(Measurement("hd", now - 21, HD))
    feed(Measurement("sd", now - 21, SD))
    feed(Measurement("enc", now - 20, {"w": 100.0}))
    feed(Measurement("enc", now - 10, {"w": 100.0}))
    feed(Measurement("sd", now - 5, {"up": 0}))
    feed(Measurement("enc", now, {"w": 50.0}))
    registry = make_registry(collector, lambda: {"accepted": 0, "rejected": {}}, views)
    app = create_app(collector, lambda: {"alive": True}, registry, views)
    return app.test_client(), clock, now


def test_streams_route_serves_shares_and_efficiency(app_setup):
    client, _, now = app_setup
    body = client.get("/v1/streams/").get_json()["streams"]
    assert list(body) == ["hd", "sd", "radio"]
    hd = body["hd"]
    assert hd["host"] == "enc" and hd["up"] is True and hd["share"] == 1.0
    assert hd["w"] == 50.0 and hd["joules_per_video_second"] == 50.0
    assert hd["bits_per_joule"] == pytest.approx(4_000_000 / 50)
    assert hd["pixels_per_joule"] == pytest.approx(1280 * 720 * 25 / 50)
    assert hd["kwh"] == pytest.approx(kwh(80, 80, 10) + kwh(80, 50, 10))
    sd = body["sd"]
    # A stream that is down: null figures, not the last bitrate it had.
    assert sd["up"] is False and sd["timestamp"] == now - 5
    assert sd["bitrate"] is None and sd["fps"] is None and sd["width"] is None
    assert sd["w"] == 0.0 and sd["bits_per_joule"] is None and sd["pixels_per_joule"] is None
    assert sd["kwh"] == pytest.approx(kwh(20, 20, 10) + kwh(20, 0, 10))
    radio = body["radio"]
    assert radio["up"] is False and radio["timestamp"] is None and radio["w"] is None

    assert client.get("/v1/streams/hd/").get_json() == {"hd": hd}
    missing = client.get("/v1/streams/enc/")
    assert missing.status_code == 404 and missing.mimetype == "application/json"
    assert "not named in stream_power" in missing.get_json()["error"]["message"]


def test_the_probe_of_a_stream_that_went_down_keeps_no_stale_meters(app_setup):
    client, *_ = app_setup
    probes = client.get("/v1/probes/").get_json()["probes"]
    assert probes["sd"] == {
        "timestamp": pytest.approx(probes["sd"]["timestamp"]),
        "kwh": 0.0,
        "up": 0.0,
    }
    assert probes["hd"]["bitrate"] == 4_000_000.0


def test_stream_freshness_follows_max_gap(app_setup):
    client, clock, _ = app_setup
    clock.now += 55  # hd's reading is 76 s old, the host's 55 s
    body = client.get("/v1/streams/hd/").get_json()["hd"]
    assert body["up"] is False and body["w"] == 0.0
    clock.now += 10  # the host's power reading is too old as well
    assert client.get("/v1/streams/hd/").get_json()["hd"]["w"] is None


def test_hosts_route_with_a_period(app_setup):
    client, _, now = app_setup
    total = kwh(100, 100, 10) + kwh(100, 50, 10)
    body = client.get("/v1/stream-hosts/enc/?period=15").get_json()["enc"]
    assert body["streams"] == ["hd", "sd"] and body["streams_up"] == ["hd"]
    assert body["w"] == 50.0 and body["streaming_w"] == 50.0
    assert body["kwh"] == pytest.approx(total)
    assert body["cost"] == pytest.approx(total * 0.2)
    assert body["currency"] == "USD" and body["kwh_price"] == 0.2
    # The last 15 s: 5 s of the first interval (interpolated) and the second.
    last_15 = kwh(100, 100, 10) / 2 + kwh(100, 50, 10)
    assert body["period"] == {
        "seconds": 15.0,
        "since": now - 15,
        "kwh": pytest.approx(last_15),
        "cost": pytest.approx(last_15 * 0.2),
    }
    everything = client.get("/v1/stream-hosts/").get_json()["hosts"]
    assert set(everything) == {"enc", "enc-2"}
    assert everything["enc"]["period"]["seconds"] == 3600.0
    assert everything["enc"]["period"]["since"] == now - 20  # first reading
    assert everything["enc"]["period"]["kwh"] == pytest.approx(total)
    assert everything["enc-2"]["w"] is None and everything["enc-2"]["kwh"] == 0.0
    for bad in ("0", "-5", "abc", "nan", "inf", str(32 * 86400)):
        response = client.get(f"/v1/stream-hosts/enc/?period={bad}")
        assert response.status_code == 400, bad
        assert "period must be" in response.get_json()["error"]["message"]
    assert client.get("/v1/stream-hosts/hd/").status_code == 404


def test_metrics_of_streams(app_setup):
    client, *_ = app_setup
    text = client.get("/metrics").get_data(as_text=True)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("kwapi_stream_power_watts", stream="hd", host="enc") == 50.0
    assert value("kwapi_stream_power_watts", stream="sd", host="enc") == 0.0
    assert value("kwapi_stream_share_ratio", stream="hd", host="enc") == 1.0
    assert value("kwapi_stream_bits_per_joule", stream="hd", host="enc") == pytest.approx(80_000)
    assert value("kwapi_stream_pixels_per_joule", stream="hd", host="enc") == pytest.approx(460_800)
    assert ("kwapi_stream_bits_per_joule", (("host", "enc"), ("stream", "sd"))) not in samples
    hd_joules = (kwh(80, 80, 10) + kwh(80, 50, 10)) * 3.6e6
    assert value("kwapi_stream_energy_joules_total", stream="hd", host="enc") == pytest.approx(
        hd_joules
    )
    host_joules = (kwh(100, 100, 10) + kwh(100, 50, 10)) * 3.6e6
    assert value("kwapi_stream_host_energy_joules_total", host="enc") == pytest.approx(host_joules)
    assert value("kwapi_stream_host_cost_total", host="enc", currency="USD") == pytest.approx(
        host_joules / 3.6e6 * 0.2
    )


def test_without_stream_power_the_routes_are_empty():
    collector = Collector()
    app = create_app(collector, lambda: {"alive": True}, make_registry(collector, dict))
    client = app.test_client()
    assert client.get("/v1/streams/").get_json() == {"streams": {}}
    assert client.get("/v1/stream-hosts/").get_json() == {"hosts": {}}
    assert client.get("/v1/streams/x/").status_code == 404


# -- the real daemon ----------------------------------------------------------


@pytest.mark.slow
def test_daemon_serves_energy_per_stream_and_keeps_it_across_a_restart(daemon, tmpdir_short):
    options = {
        "stream_power": "enc = hd, sd",
        "stream_share": "pixels",
        "kwh_price": 0.5,
        "currency": "EUR",
        "max_gap": 60,
    }
    api = start_api(daemon, tmpdir_short, **options)
    publisher = bus_publisher(api.bus)
    t0 = time.time() - 30
    publish_first(api, publisher, Measurement("hd", t0, HD))
    series = [
        Measurement("sd", t0, SD),
        Measurement("enc", t0 + 1, {"w": 100.0}),
        Measurement("enc", t0 + 11, {"w": 150.0}),
        Measurement("sd", t0 + 12, {"up": 0}),
        Measurement("hd", t0 + 12, HD),
        Measurement("enc", t0 + 21, {"w": 120.0}),
    ]
    publish_all(api, publisher, series)

    # By hand: the pixel rates are 4:1, so hd has 80 % of the host while sd is up.
    hd_kwh = kwh(80, 120, 10) + kwh(120, 120, 10)
    sd_kwh = kwh(20, 30, 10) + kwh(30, 0, 10)
    host_kwh = kwh(100, 150, 10) + kwh(150, 120, 10)
    streams = get_json(api.url + "/v1/streams/")["streams"]
    assert streams["hd"] == {
        "host": "enc",
        "up": True,
        "timestamp": pytest.approx(t0 + 12),
        "bitrate": 4_000_000.0,
        "fps": 25.0,
        "width": 1280.0,
        "height": 720.0,
        "share": 1.0,
        "w": 120.0,
        "joules_per_video_second": 120.0,
        "bits_per_joule": pytest.approx(4_000_000 / 120),
        "pixels_per_joule": pytest.approx(1280 * 720 * 25 / 120),
        "kwh": pytest.approx(hd_kwh),
    }
    assert streams["sd"]["up"] is False and streams["sd"]["bitrate"] is None
    assert streams["sd"]["kwh"] == pytest.approx(sd_kwh)
    assert get_json(api.url + "/v1/probes/sd/") == {
        "sd": {"timestamp": pytest.approx(t0 + 12), "kwh": 0.0, "up": 0.0}
    }
    host = get_json(api.url + "/v1/stream-hosts/enc/?period=86400")["enc"]
    assert host["kwh"] == pytest.approx(host_kwh)
    assert host["period"]["kwh"] == pytest.approx(host_kwh)
    assert host["period"]["since"] == pytest.approx(t0 + 1)
    assert host["period"]["cost"] == pytest.approx(host_kwh * 0.5)
    assert host["currency"] == "EUR"
    bad = request("GET", api.url + "/v1/stream-hosts/enc/?period=zero")
    assert bad.status == 400 and bad.json()["error"]["code"] == 400

    # SIGTERM saves the energy per stream; a new daemon resumes from it.
    publisher.close()
    api.process.signal(signal.SIGTERM)
    assert api.process.process.wait(15) == 0
    again = start_api(daemon, tmpdir_short, **{**options, "api_port": api.port})
    restarted = get_json(again.url + "/v1/streams/")["streams"]
    assert restarted["hd"]["kwh"] == pytest.approx(hd_kwh)
    assert restarted["sd"]["kwh"] == pytest.approx(sd_kwh)
    publisher = bus_publisher(again.bus)
    publish_first(again, publisher, Measurement("enc", t0 + 31, {"w": 120.0}))
    after = get_json(again.url + "/v1/streams/hd/")["hd"]
    assert after["kwh"] == pytest.approx(hd_kwh + kwh(120, 120, 10))
    publisher.close()
