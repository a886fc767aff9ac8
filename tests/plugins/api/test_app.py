"""The Flask application: every route and every kind of error, in process."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kwapi.bus.protocol import Measurement
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.plugins.api.app import create_app
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.metrics import make_registry
from tests.harness.clock import Clock


@pytest.fixture
def setup(tmpdir_short):
    now = time.time()
    clock = Clock(now)
    collector = Collector(max_gap=120.0, cleaning_interval=300.0, clock=clock)
    collector.add(Measurement("node-1", now - 10, {"w": 100.0}))
    collector.add(Measurement("node-1", now - 1, {"w": 200.0}))
    collector.add(Measurement("gpu-0", now - 1, {"w": 250.0, "temperature_c": 61.5}))
    receiver = Receiver([f"ipc://{tmpdir_short}/bus"], collector.add, MessageValidator(None))
    receiver.start()
    assert receiver.wait_ready(10)
    registry = make_registry(collector, receiver.stats.snapshot)
    app = create_app(collector, receiver.status, registry)
    yield app.test_client(), collector, clock, receiver, now
    receiver.stop()
    receiver.join(10)


def assert_error(response, code: int) -> dict:
    assert response.status_code == code
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["title"]
    assert error["message"]
    return error


def test_version_document(setup):
    client, *_ = setup
    body = client.get("/v1/").get_json()
    assert body["version"]["id"] == "v1"
    assert body["version"]["status"] == "CURRENT"
    hrefs = {link["rel"]: link["href"] for link in body["version"]["links"]}
    assert hrefs == {
        "self": "http://localhost/v1/",
        "probe-ids": "http://localhost/v1/probe-ids/",
        "probes": "http://localhost/v1/probes/",
        "streams": "http://localhost/v1/streams/",
        "stream-hosts": "http://localhost/v1/stream-hosts/",
    }
    assert client.get("/").get_json()["versions"][0]["id"] == "v1"


def test_probe_ids_sorted(setup):
    client, *_ = setup
    assert client.get("/v1/probe-ids/").get_json() == {"probe_ids": ["gpu-0", "node-1"]}


def test_probes_flat_shape(setup):
    client, _, _, _, now = setup
    body = client.get("/v1/probes/").get_json()
    assert set(body) == {"probes"}
    assert body["probes"]["node-1"] == {
        "timestamp": now - 1,
        "kwh": pytest.approx(150.0 * 9 / 3.6e6),
        "w": 200.0,
    }
    gpu = body["probes"]["gpu-0"]
    assert gpu == {"timestamp": now - 1, "kwh": 0.0, "w": 250.0, "temperature_c": 61.5}
    for values in body["probes"].values():
        assert all(isinstance(v, float) for v in values.values())


def test_one_probe_and_one_meter(setup):
    client, _, _, _, now = setup
    assert client.get("/v1/probes/gpu-0/").get_json() == {
        "gpu-0": {"timestamp": now - 1, "kwh": 0.0, "w": 250.0, "temperature_c": 61.5}
    }
    assert client.get("/v1/probes/gpu-0/w/").get_json() == {"gpu-0": {"w": 250.0}}
    assert client.get("/v1/probes/gpu-0/temperature_c/").get_json() == {
        "gpu-0": {"temperature_c": 61.5}
    }
    assert client.get("/v1/probes/node-1/timestamp/").get_json() == {
        "node-1": {"timestamp": now - 1}
    }
    kwh = client.get("/v1/probes/node-1/kwh/").get_json()["node-1"]["kwh"]
    assert kwh == pytest.approx(150.0 * 9 / 3.6e6)


def test_unknown_probe_meter_and_route_are_json_404(setup):
    client, *_ = setup
    assert "nope" in assert_error(client.get("/v1/probes/nope/"), 404)["message"]
    assert "volts" in assert_error(client.get("/v1/probes/gpu-0/volts/"), 404)["message"]
    assert_error(client.get("/v1/probes/nope/w/"), 404)
    assert_error(client.get("/v2/"), 404)
    assert_error(client.get("/v1/probes/gpu-0/w/extra/"), 404)
    assert_error(client.get("/metrics/"), 404)


def test_wrong_method_is_json_405_with_allow(setup):
    client, *_ = setup
    for path in ("/v1/probes/", "/v1/probes/gpu-0/", "/metrics", "/healthz"):
        response = client.post(path)
        assert_error(response, 405)
        assert "GET" in response.headers["Allow"]
    assert_error(client.delete("/v1/probes/gpu-0/w/"), 405)
    assert_error(client.put("/v1/"), 405)


def test_wrong_method_on_a_path_missing_its_slash_is_405_too(setup):
    client, *_ = setup
    for method, path in [
        ("POST", "/v1/probes"),
        ("POST", "/v1"),
        ("DELETE", "/v1/probes/gpu-0"),
        ("PUT", "/v1/probes/gpu-0/w"),
        ("POST", "/v1/probes/nope"),  # what a route would take, even for an unknown probe
    ]:
        slashed = client.open(path + "/", method=method)
        response = client.open(path, method=method)
        assert_error(response, 405)
        assert response.headers["Allow"] == slashed.headers["Allow"], (method, path)
        assert "GET" in response.headers["Allow"]
    # Paths that are no route, with or without the slash, stay 404.
    assert_error(client.post("/nowhere"), 404)
    assert_error(client.post("/v1/probes/gpu-0/w/extra"), 404)
    assert_error(client.post("/healthz/"), 404)


def test_missing_trailing_slash_redirects_with_a_json_body(setup):
    client, *_ = setup
    for path in ("/v1", "/v1/probes", "/v1/probe-ids", "/v1/probes/gpu-0", "/v1/probes/gpu-0/w"):
        response = client.get(path)
        assert response.status_code == 308, path
        location = response.headers["Location"]
        assert location == "http://localhost" + path + "/"
        assert response.mimetype == "application/json"
        assert response.get_json() == {
            "redirect": {"code": 308, "title": "Permanent Redirect", "location": location}
        }
    query = client.get("/v1/stream-hosts?period=60")
    assert query.headers["Location"] == "http://localhost/v1/stream-hosts/?period=60"
    assert query.get_json()["redirect"]["location"] == query.headers["Location"]
    head = client.head("/v1/probes")
    assert head.status_code == 308 and head.headers["Location"].endswith("/v1/probes/")
    followed = client.get("/v1/probes/gpu-0/w", follow_redirects=True)
    assert followed.get_json() == {"gpu-0": {"w": 250.0}}


def test_negative_power_is_served_as_sent_and_adds_no_energy(setup):
    client, collector, _, _, now = setup
    before = client.get("/v1/probes/node-1/kwh/").get_json()["node-1"]["kwh"]
    collector.add(Measurement("node-1", now - 0.5, {"w": -40.0}))
    served = client.get("/v1/probes/node-1/").get_json()["node-1"]
    assert served == {
        "timestamp": now - 0.5,
        "kwh": pytest.approx(before + 200.0 / 2 * 0.5 / 3.6e6),  # 200 W down to 0 W
        "w": -40.0,
    }
    collector.add(Measurement("node-1", now - 0.25, {"w": -40.0}))
    assert client.get("/v1/probes/node-1/kwh/").get_json()["node-1"]["kwh"] == served["kwh"]
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    watts = {s.labels["probe"]: s.value for s in families["kwapi_power_watts"].samples}
    assert watts["node-1"] == -40.0


def test_internal_error_is_json_500(setup):
    collector = setup[1]

    def broken_receiver() -> dict:
        raise RuntimeError("receiver state unavailable")

    app = create_app(collector, broken_receiver, make_registry(collector, broken_receiver))
    client = app.test_client()
    error = assert_error(client.get("/healthz"), 500)
    assert "receiver state unavailable" not in error["message"]  # no internals leak
    assert "Traceback" not in client.get("/metrics").get_data(as_text=True)
    assert_error(client.get("/metrics"), 500)


def test_cleaned_probe_leaves_every_route(setup):
    client, collector, clock, _, now = setup
    collector.add(Measurement("node-1", now + 200, {"w": 200.0}))
    clock.now = now + 300.5  # gpu-0 is silent for 301.5 s
    assert client.get("/v1/probe-ids/").get_json() == {"probe_ids": ["node-1"]}
    assert list(client.get("/v1/probes/").get_json()["probes"]) == ["node-1"]
    assert_error(client.get("/v1/probes/gpu-0/"), 404)
    assert_error(client.get("/v1/probes/gpu-0/w/"), 404)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert [s.labels["probe"] for s in families["kwapi_power_watts"].samples] == ["node-1"]


def test_healthz_shows_the_receiver(setup):
    client, _, _, receiver, _ = setup
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["receiver"]["alive"] is True
    assert body["receiver"]["endpoints"] == receiver.endpoints
    assert body["probes"] == {"served": 2, "known": 2}
    receiver.process([b"x."])  # a real malformed message, counted by the receiver
    assert client.get("/healthz").get_json()["receiver"]["rejected"]["bad_frames"] == 1
    receiver.stop()
    receiver.join(10)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "down"


def test_metrics(setup):
    client, _, _, receiver, now = setup
    receiver.process([b"gpu-0.", b"{broken"])
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}

    def values(name: str) -> dict:
        return {
            s.labels.get("probe", s.labels.get("reason")): s.value
            for s in families[name].samples
            if not s.name.endswith("_created")
        }

    assert families["kwapi_power_watts"].type == "gauge"
    assert values("kwapi_power_watts") == {"gpu-0": 250.0, "node-1": 200.0}
    assert families["kwapi_energy_joules"].type == "counter"
    assert values("kwapi_energy_joules") == {
        "gpu-0": 0.0,
        "node-1": pytest.approx(150.0 * 9),
    }
    assert values("kwapi_measurement_timestamp_seconds") == {
        "gpu-0": now - 1,
        "node-1": now - 1,
    }
    assert values("kwapi_temperature_c") == {"gpu-0": 61.5}
    assert values("kwapi_energy_gaps") == {"gpu-0": 0.0, "node-1": 0.0}
    assert values("kwapi_receiver_rejected")["bad_json"] == 1.0
    assert values("kwapi_receiver_rejected")["replay"] == 0.0
    assert families["kwapi_receiver_accepted"].samples[0].value == 0.0
    assert "process_resident_memory_bytes" in families
    delay = families["kwapi_receiver_delay_seconds"]
    assert delay.type == "histogram"
    buckets = [s for s in delay.samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf"
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative


def test_delay_histogram_counts_real_acceptances(setup):
    client, _, _, receiver, _ = setup
    for age in (30.0, 0.2, 0.0005):  # oldest first: the receiver refuses replays
        measurement = Measurement("late", time.time() - age, {"w": 1.0})
        topic, payload = measurement.encode()
        receiver.process([topic, payload])
    text = client.get("/metrics").text
    delay = next(
        f for f in text_string_to_metric_families(text) if f.name == "kwapi_receiver_delay_seconds"
    )
    cumulative = {s.labels["le"]: s.value for s in delay.samples if s.name.endswith("_bucket")}
    assert cumulative["+Inf"] == 3
    assert cumulative["10.0"] == 2
    assert cumulative["0.25"] >= 1
