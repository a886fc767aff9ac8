"""kwapi-api as a real process fed by a real Publisher over ipc://."""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import waitress
from prometheus_client.parser import text_string_to_metric_families

from kwapi.bus.protocol import Measurement
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.cmd.api import _shutdown
from kwapi.plugins.api.collector import Collector, ProbeRecord
from kwapi.plugins.api.state import PeriodicSaver, StateStore
from kwapi.plugins.api.stream_energy import StreamEnergy
from kwapi.plugins.streams import StreamMap
from tests.harness.bus import bus_publisher, publish_all, publish_first
from tests.harness.configs import write_config
from tests.harness.daemons import start_api
from tests.harness.http import get_json, request
from tests.harness.processes import busy_tcp_port, run_command, wait_for

pytestmark = pytest.mark.slow


def kwh(w_prev: float, w_new: float, seconds: float) -> float:
    return (w_prev + w_new) / 2 * seconds / 3.6e6


@pytest.fixture
def fed_api(daemon, tmpdir_short):
    """kwapi-api that has received a known series for two probes."""
    api = start_api(daemon, tmpdir_short)
    publisher = bus_publisher(api.bus)
    t0 = time.time() - 30
    publish_first(api, publisher, Measurement("node-1", t0, {"w": 100.0}))
    series = [
        Measurement("node-1", t0 + 10, {"w": 200.0}),
        Measurement("gpu-0", t0 + 11, {"w": 250.0, "temperature_c": 60.0}),
        Measurement("node-1", t0 + 20, {"w": 300.0}),
        Measurement("gpu-0", t0 + 21, {"w": 150.0, "temperature_c": 65.5}),
    ]
    publish_all(api, publisher, series)
    yield api, publisher, t0
    publisher.close()


def test_routes_over_http(fed_api):
    api, _, t0 = fed_api
    probes = get_json(api.url + "/v1/probes/")["probes"]
    assert probes == {
        "gpu-0": {
            "timestamp": t0 + 21,
            "kwh": pytest.approx(kwh(250, 150, 10)),
            "w": 150.0,
            "temperature_c": 65.5,
        },
        "node-1": {
            "timestamp": t0 + 20,
            "kwh": pytest.approx(kwh(100, 200, 10) + kwh(200, 300, 10)),
            "w": 300.0,
        },
    }
    assert get_json(api.url + "/v1/probe-ids/") == {"probe_ids": ["gpu-0", "node-1"]}
    assert get_json(api.url + "/v1/probes/node-1/") == {"node-1": probes["node-1"]}
    assert get_json(api.url + "/v1/probes/gpu-0/temperature_c/") == {
        "gpu-0": {"temperature_c": 65.5}
    }
    assert get_json(api.url + "/v1/")["version"]["id"] == "v1"

    redirect = request("GET", api.url + "/v1/probes")
    assert redirect.status in (301, 308)
    assert redirect.headers["Location"].endswith("/v1/probes/")
    for method, path, code in [
        ("GET", "/v1/probes/nope/", 404),
        ("GET", "/v1/probes/node-1/volts/", 404),
        ("GET", "/nowhere", 404),
        ("POST", "/v1/probes/", 405),
        ("DELETE", "/v1/probes/node-1/", 405),
    ]:
        result = request(method, api.url + path)
        assert result.status == code, (method, path)
        assert result.headers["Content-Type"] == "application/json"
        assert result.json()["error"]["code"] == code
    garbage = request("GET", api.url + "/v1/probes/%ff%fe/")
    assert garbage.status == 404
    assert garbage.json()["error"]["code"] == 404

    health = get_json(api.url + "/healthz")
    assert health["status"] == "ok"
    assert health["receiver"]["alive"] is True
    assert health["probes"] == {"served": 2, "known": 2}


def test_metrics_over_http(fed_api):
    api, _publisher, t0 = fed_api
    result = request("GET", api.url + "/metrics")
    assert result.status == 200
    assert result.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(result.body.decode())}

    def by_label(name: str, label: str = "probe") -> dict:
        return {
            s.labels[label]: s.value
            for s in families[name].samples
            if not s.name.endswith("_created")
        }

    assert by_label("kwapi_power_watts") == {"gpu-0": 150.0, "node-1": 300.0}
    assert by_label("kwapi_energy_joules") == {
        "gpu-0": pytest.approx(kwh(250, 150, 10) * 3.6e6),
        "node-1": pytest.approx((kwh(100, 200, 10) + kwh(200, 300, 10)) * 3.6e6),
    }
    assert by_label("kwapi_measurement_timestamp_seconds") == {
        "gpu-0": t0 + 21,
        "node-1": t0 + 20,
    }
    assert by_label("kwapi_temperature_c") == {"gpu-0": 65.5}
    accepted = families["kwapi_receiver_accepted"].samples[0].value
    assert accepted == api.accepted()
    rejected = by_label("kwapi_receiver_rejected", "reason")
    assert rejected == {k: float(v) for k, v in api.healthz()["receiver"]["rejected"].items()}
    assert set(rejected) >= {"bad_signature", "replay", "bad_json", "out_of_window"}
    assert "Content-Encoding" not in result.headers  # the client did not ask for gzip


def test_metrics_gzipped_when_asked_as_prometheus_does(fed_api):
    api, _publisher, _t0 = fed_api
    # The headers Prometheus 3 sends on every scrape.
    headers = {
        "Accept": "application/openmetrics-text;version=1.0.0;q=0.6,"
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "Accept-Encoding": "gzip",
    }
    result = request("GET", api.url + "/metrics", headers=headers)
    assert result.status == 200
    assert result.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in result.headers["Vary"]
    assert result.headers["Content-Type"].startswith("text/plain; version=")
    text = gzip.decompress(result.body).decode()
    assert int(result.headers["Content-Length"]) == len(result.body) < len(text)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    watts = {s.labels["probe"]: s.value for s in families["kwapi_power_watts"].samples}
    assert watts == {"gpu-0": 150.0, "node-1": 300.0}
    refused = request("GET", api.url + "/metrics", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers
    assert "kwapi_power_watts" in refused.body.decode()


def test_bad_messages_are_counted_and_never_stop_the_daemon(fed_api):
    api, publisher, t0 = fed_api
    health = api.healthz()
    replays = health["receiver"]["rejected"]["replay"]
    publisher.publish(Measurement("node-1", t0 + 20, {"w": 1e6}))  # replay
    wait_for(lambda: api.healthz()["receiver"]["rejected"]["replay"] == replays + 1, 20)
    publisher.publish(Measurement("node-1", t0 + 25, {"w": 300.0}))
    wait_for(lambda: get_json(api.url + "/v1/probes/node-1/w/")["node-1"]["w"] == 300.0, 20)
    assert api.process.process.poll() is None


def test_sigterm_saves_state_and_restart_continues_the_counter(daemon, tmpdir_short):
    api = start_api(daemon, tmpdir_short, state_save_interval=3600)
    publisher = bus_publisher(api.bus)
    t0 = time.time() - 60
    publish_first(api, publisher, Measurement("node-1", t0, {"w": 1000.0}))
    publish_all(api, publisher, [Measurement("node-1", t0 + 30, {"w": 1000.0})])
    first_kwh = get_json(api.url + "/v1/probes/node-1/kwh/")["node-1"]["kwh"]
    assert first_kwh == pytest.approx(kwh(1000, 1000, 30))

    assert api.process.stop() == 0
    output = api.process.output()
    assert "saved" in output
    assert "Traceback" not in output
    saved = json.loads(api.state_file.read_text())["probes"]["node-1"]
    assert saved["kwh"] == pytest.approx(first_kwh)

    again = start_api(daemon, tmpdir_short, port=api.port, state_save_interval=3600)
    # The counter is back before any new measurement arrives.
    assert get_json(again.url + "/v1/probes/node-1/kwh/")["node-1"]["kwh"] == first_kwh
    publish_first(again, publisher, Measurement("node-1", t0 + 40, {"w": 2000.0}))
    total = get_json(again.url + "/v1/probes/node-1/kwh/")["node-1"]["kwh"]
    assert total == pytest.approx(first_kwh + kwh(1000, 2000, 10))
    assert again.process.stop() == 0
    publisher.close()


def strict_json(body: bytes) -> dict:
    """Decode *body*, failing on Infinity and NaN, which are not JSON."""

    def refuse(constant: str) -> float:
        raise AssertionError(f"{constant} in {body[:200]!r}")

    return json.loads(body, parse_constant=refuse)


def test_huge_power_keeps_the_json_valid_and_the_state_saved(daemon, tmpdir_short):
    # 1.7e308 W is finite, so the bus accepts it, but two of them overflow a trapezoid.
    api = start_api(daemon, tmpdir_short, state_save_interval=3600)
    publisher = bus_publisher(api.bus)
    t0 = time.time() - 30
    publish_first(api, publisher, Measurement("huge", t0, {"w": 1.7e308}))
    publish_all(api, publisher, [Measurement("huge", t0 + 10, {"w": 1.7e308})])

    probes = strict_json(request("GET", api.url + "/v1/probes/").body)["probes"]
    assert probes["huge"] == {"timestamp": t0 + 10, "kwh": 0.0, "w": 1.7e308}
    families = {
        f.name: f
        for f in text_string_to_metric_families(request("GET", api.url + "/metrics").body.decode())
    }
    gaps = [s.value for s in families["kwapi_energy_gaps"].samples if s.name.endswith("_total")]
    assert gaps == [1.0]

    assert api.process.stop() == 0
    output = api.process.output()
    assert "stopped; state of 1 probe(s) saved" in output
    assert "Traceback" not in output and "cannot save" not in output
    saved = strict_json(api.state_file.read_bytes())["probes"]["huge"]
    assert saved["kwh"] == 0.0 and saved["gaps"] == 1
    publisher.close()


def test_a_final_save_that_fails_is_one_log_line_not_a_traceback(tmpdir_short, caplog):
    # A record JSON cannot hold makes the final save raise ValueError, not OSError.
    state = StateStore(f"{tmpdir_short}/state.json")
    state.save([ProbeRecord("p", 1.0, 0.5)])
    previous = Path(state.path).read_bytes()
    collector = Collector(records=[ProbeRecord("p", 2.0, math.inf)])
    receiver = Receiver([f"ipc://{tmpdir_short}/bus"], collector.add, MessageValidator(None))
    receiver.start()
    assert receiver.wait_ready(10)
    server = waitress.create_server(lambda environ, start: [], host="127.0.0.1", port=0)
    saver = PeriodicSaver(state, collector.records, 3600)
    energy = StreamEnergy(StreamMap(), collector.latest)
    with caplog.at_level(logging.INFO, logger="kwapi-api"):
        _shutdown(server, receiver, saver, state, collector, energy)
    assert not receiver.is_alive()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "cannot save state" in message and "ValueError" in message and "\n" not in message
    assert errors[0].exc_info is None  # no traceback
    assert Path(state.path).read_bytes() == previous
    assert sorted(os.listdir(tmpdir_short)) == ["state.json"]


def test_signals_in_a_burst_still_save_and_exit_cleanly(daemon, tmpdir_short):
    api = start_api(daemon, tmpdir_short)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        api.process.signal(signum)
    assert api.process.process.wait(20) == 0
    output = api.process.output()
    assert "stopped; state of 0 probe(s) saved" in output
    assert "Traceback" not in output


def test_kill_9_loses_at_most_state_save_interval(daemon, tmpdir_short):
    interval = 1.0
    api = start_api(daemon, tmpdir_short, state_save_interval=interval)
    publisher = bus_publisher(api.bus)
    first = time.time()
    publish_first(api, publisher, Measurement("rack", first, {"w": 3600.0}))
    stop = threading.Event()

    def stream() -> None:
        # One reading every 50 ms, stamped with the real time, as a driver would.
        while not stop.wait(0.05):
            publisher.publish(Measurement("rack", time.time(), {"w": 3600.0}))

    feeder = threading.Thread(target=stream)
    feeder.start()
    try:
        wait_for(lambda: api.accepted() >= 60, 30, "three seconds of readings")
        served = get_json(api.url + "/v1/probes/rack/")["rack"]
        api.process.kill()
        killed_at = time.time()
    finally:
        stop.set()
        feeder.join(10)
    assert served["timestamp"] > first + 2

    saved = json.loads(api.state_file.read_text())["probes"]["rack"]
    # The last save is at most one interval old (plus scheduling slack on a busy
    # machine, still less than the 3 s of streaming)...
    slack = 1.5
    assert saved["timestamp"] >= killed_at - interval - slack
    # ...and what it holds is consistent: 3600 W for (timestamp - first) seconds.
    assert saved["kwh"] == pytest.approx((saved["timestamp"] - first) / 1000.0, rel=1e-6)
    lost_kwh = served["kwh"] - saved["kwh"]
    assert lost_kwh <= (interval + slack) / 1000.0

    again = start_api(daemon, tmpdir_short, port=api.port, state_save_interval=interval)
    assert get_json(again.url + "/v1/probes/rack/kwh/")["rack"]["kwh"] == saved["kwh"]
    publisher.close()


def test_corrupt_state_file_is_set_aside_and_the_daemon_runs(daemon, tmpdir_short):
    (Path(tmpdir_short) / "state.json").write_text("{")
    api = start_api(daemon, tmpdir_short)
    assert get_json(api.url + "/v1/probe-ids/") == {"probe_ids": []}
    output = api.process.output()
    assert "is corrupt" in output and "moved to" in output
    aside = list(api.directory.glob("state.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_text() == "{"
    assert json.loads(api.state_file.read_text())["probes"] == {}


def _config(directory, text: str):
    return write_config(directory, "api.conf", text)


@pytest.mark.parametrize(
    "body, section, key",
    [
        ("api_port = http\n", "[DEFAULT]", "api_port"),
        ("api_port = 99999\n", "[DEFAULT]", "api_port"),
        ("max_gap = -1\n", "[DEFAULT]", "max_gap"),
        ("auth_strategy = magic\n", "[DEFAULT]", "auth_strategy"),
        ("state_save_interval = often\n", "[DEFAULT]", "state_save_interval"),
        ("probes_endpoint = http://nowhere\n", "[DEFAULT]", "probes_endpoint"),
        ("api_host = no-such-host.invalid\n", "[DEFAULT]", "api_host"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmpdir_short, body, section, key):
    path = _config(
        tmpdir_short,
        f"[DEFAULT]\ndriver_metering_secret = s\nstate_file = {tmpdir_short}/s.json\n{body}",
    )
    result = run_command("kwapi-api", "--config-file", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and section in lines[0] and key in lines[0]


def test_missing_secret_and_unwritable_state_exit_2(tmpdir_short):
    path = _config(tmpdir_short, f"[DEFAULT]\nstate_file = {tmpdir_short}/s.json\n")
    result = run_command("kwapi-api", "--config-file", str(path))
    assert result.returncode == 2
    assert "driver_metering_secret" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    blocker = f"{tmpdir_short}/blocker"
    open(blocker, "w").close()
    path = _config(
        tmpdir_short,
        f"[DEFAULT]\ndriver_metering_secret = s\nstate_file = {blocker}/state.json\n",
    )
    result = run_command("kwapi-api", "--config-file", str(path))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert str(path) in line and "[DEFAULT]" in line and "state_file" in line


def test_port_in_use_exits_2(tmpdir_short):
    with busy_tcp_port() as port:
        path = _config(
            tmpdir_short,
            f"[DEFAULT]\ndriver_metering_secret = s\nstate_file = {tmpdir_short}/s.json\n"
            f"api_port = {port}\n",
        )
        result = run_command("kwapi-api", "--config-file", str(path))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "api_port" in line and str(path) in line


def test_sigint_also_stops_cleanly(daemon, tmpdir_short):
    api = start_api(daemon, tmpdir_short)
    api.process.signal(signal.SIGINT)
    assert api.process.process.wait(20) == 0
    assert "stopped; state of 0 probe(s) saved" in api.process.output()
