"""The energy and power pollsters, run by the real Ceilometer against a real kwapi-api.

kwapi-api checks tokens against the test Keystone and is fed by a signed
publisher; a recording server in front of it counts the pollsters' requests.
Its ``energy`` endpoint is registered in Keystone, and Ceilometer's own
polling agent discovers it, authenticates, polls and notifies.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import threading
import time
from datetime import UTC, datetime

import oslo_messaging
import pytest
from ceilometer import keystone_client, messaging
from ceilometer import opts as ceilometer_opts
from ceilometer.polling import manager as polling_manager
from oslo_config import cfg
from stevedore import extension

from kwapi.bus.protocol import Batch
from kwapi.ceilometer.pollsters import EnergyPollster, PowerPollster
from tests.harness.configs import write_config
from tests.harness.http import RecordingServer
from tests.harness.keystone import ADMIN_PASSWORD, AuthApi
from tests.harness.processes import free_tcp_port, short_tmpdir, wait_for

# (probe, watts at t0, watts at t0 + 10 s): the API integrates 10 s between them.
READINGS = [("node-1", 100.0, 200.0), ("node-2", 50.0, 50.0)]
EXPECTED_KWH = {"node-1": 150.0 * 10 / 3.6e6, "node-2": 50.0 * 10 / 3.6e6}
#: A 50 Hz wattmeter sending 1 s batches, two of them, from t0 to t0 + 1.98 s:
#: (seconds after t0, watts) of every sample.
BATCHED = "gpu-0"
BATCHED_SAMPLES = [(i / 50, 200.0 + (i % 9) * 10) for i in range(100)]


def batches(t0: float) -> list[Batch]:
    """The two batched messages of BATCHED, each carrying 50 samples."""
    halves = (BATCHED_SAMPLES[:50], BATCHED_SAMPLES[50:])
    return [
        Batch(BATCHED, [t0 + t for t, _ in half], {"w": [w for _, w in half]}) for half in halves
    ]


def batched_kwh(t0: float) -> float:
    """The trapezoid of every sample of BATCHED, on the timestamps sent."""
    points = [(t0 + t, w) for t, w in BATCHED_SAMPLES]
    pairs = itertools.pairwise(points)
    return sum((w_a + w_b) / 2 * (t_b - t_a) for (t_a, w_a), (t_b, w_b) in pairs) / 3.6e6


CEILOMETER_CONFIG = """
[DEFAULT]
transport_url = fake://
[polling]
cfg_file = {dir}/polling.yaml
[service_credentials]
auth_type = password
auth_url = {keystone}
username = admin
password = {password}
project_name = admin
user_domain_name = Default
project_domain_name = Default
interface = public
region_name = RegionOne
"""

POLLING = """
sources:
  - name: kwapi
    interval: 600
    meters:
      - energy
      - power
"""


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@pytest.fixture(scope="module")
def site(keystone):
    """kwapi-api (Keystone auth) with two probes, behind a recording server, in the catalog."""
    api = AuthApi(keystone.url)
    proxy = RecordingServer(api.base)
    admin = keystone.token("admin", ADMIN_PASSWORD)

    def probes() -> dict:
        response = api.get("/v1/probes/", admin)
        return response.json()["probes"] if response.status_code == 200 else {}

    try:
        # The subscription takes a moment: publish until a first probe shows.
        wait_for(lambda: api.publish("warm-up", 10.0) or "warm-up" in probes(), 30, "warm-up")
        t0 = time.time() - 60
        for probe, first, second in READINGS:
            api.publish(probe, first, t0)
            api.publish(probe, second, t0 + 10)
        for message in batches(t0):
            api.publisher.publish(message)
        last = {p: t0 + 10 for p, *_ in READINGS} | {BATCHED: t0 + BATCHED_SAMPLES[-1][0]}
        wait_for(
            lambda: all(probes().get(p, {}).get("timestamp") == t for p, t in last.items()),
            30,
            "every probe's last reading in the API",
        )
        keystone.endpoint("energy", "kwapi", proxy.url + "/v1")
        yield api, proxy, probes(), t0
    finally:
        print(f"----- kwapi-api -----\n{api.daemon.output()}")
        proxy.close()
        api.close()


@pytest.fixture(scope="module")
def ceilometer_conf(keystone):
    """Ceilometer's configuration, registered and parsed the way ceilometer-polling does."""
    directory = short_tmpdir()
    write_config(directory, "polling.yaml", POLLING)
    path = write_config(
        directory,
        "ceilometer.conf",
        CEILOMETER_CONFIG.format(dir=directory, keystone=keystone.url, password=ADMIN_PASSWORD),
    )
    conf = cfg.ConfigOpts()
    for group, opts in ceilometer_opts.list_opts():
        conf.register_opts(list(opts), group=None if group == "DEFAULT" else group)
    keystone_client.register_keystoneauth_opts(conf)
    conf([], project="ceilometer", default_config_files=[str(path)])
    keystone_client.post_register_keystoneauth_opts(conf)
    yield conf
    # The fake:// transport the agent notified on (messaging.cleanup() fails on its own cache).
    messaging.get_transport(conf).cleanup()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(ceilometer_conf, site):
    """Ceilometer's central polling agent, with every central pollster it can load."""
    return polling_manager.AgentManager(0, ceilometer_conf, namespaces=["central"])


def test_pollsters_are_on_the_central_namespace(agent):
    names = {
        ext.name: ext.plugin
        for ext in extension.ExtensionManager("ceilometer.poll.central", invoke_on_load=False)
    }
    assert names["energy"] is EnergyPollster
    assert names["power"] is PowerPollster
    loaded = {ext.name: ext.obj for ext in agent.extensions}
    assert isinstance(loaded["energy"], EnergyPollster)
    assert isinstance(loaded["power"], PowerPollster)
    assert loaded["energy"].default_discovery == "endpoint:energy"


def test_energy_endpoint_is_discovered_in_keystone(agent, site):
    _api, proxy, _probes, _t0 = site
    assert agent.discover(["endpoint:energy"]) == [proxy.url + "/v1"]


def test_samples_and_one_request_for_both_pollsters(agent, ceilometer_conf, site):
    _api, proxy, served, t0 = site
    resources = agent.discover(["endpoint:energy"])
    before = len(proxy.gets("/v1/probes/"))
    cache: dict = {}
    energy = list(EnergyPollster(ceilometer_conf).get_samples(agent, cache, resources))
    power = list(PowerPollster(ceilometer_conf).get_samples(agent, cache, resources))

    requests_made = proxy.gets("/v1/probes/")[before:]
    assert len(requests_made) == 1
    assert requests_made[0].token  # the agent's token, which kwapi-api accepted

    assert {s.resource_id for s in energy} == set(served) == {s.resource_id for s in power}
    for made in energy:
        assert (made.name, made.type, made.unit) == ("energy", "cumulative", "kWh")
        assert made.volume == served[made.resource_id]["kwh"]
        assert made.timestamp == iso(served[made.resource_id]["timestamp"])
        assert made.user_id is None and made.project_id is None
    for made in power:
        assert (made.name, made.type, made.unit) == ("power", "gauge", "W")
        assert made.volume == served[made.resource_id]["w"]
        assert made.timestamp == iso(served[made.resource_id]["timestamp"])
    by_probe = {s.resource_id: s for s in energy}
    for probe, kwh in EXPECTED_KWH.items():
        assert by_probe[probe].volume == pytest.approx(kwh)
        assert by_probe[probe].timestamp == iso(t0 + 10)
    assert {s.resource_id: s.volume for s in power}["node-1"] == 200.0
    # The batched probe: the energy of all its samples, the power and time of its last.
    assert by_probe[BATCHED].volume == pytest.approx(batched_kwh(t0), rel=1e-9)
    assert by_probe[BATCHED].timestamp == iso(t0 + BATCHED_SAMPLES[-1][0])
    assert {s.resource_id: s.volume for s in power}[BATCHED] == BATCHED_SAMPLES[-1][1]


class NotificationSink:
    """A notification listener endpoint keeping the samples the agent sends."""

    def __init__(self) -> None:
        self.samples: list[dict] = []
        self.lock = threading.Lock()

    def sample(self, ctxt, publisher_id, event_type, payload, metadata) -> None:
        with self.lock:
            self.samples.extend(payload["samples"])


def test_polling_cycle_notifies_the_samples(agent, ceilometer_conf, site):
    _api, proxy, served, _t0 = site
    sink = NotificationSink()
    transport = messaging.get_transport(ceilometer_conf)
    listener = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic="notifications")], [sink], executor="threading"
    )
    listener.start()
    try:
        agent.polling_manager = polling_manager.PollingManager(ceilometer_conf)
        tasks = agent.setup_polling_tasks()
        assert list(tasks) == [600]
        before = len(proxy.gets("/v1/probes/"))
        agent.interval_task(tasks[600])
        wait_for(lambda: len(sink.samples) == 2 * len(served), 30, "the samples of one cycle")
    finally:
        listener.stop()
        listener.wait()
    assert len(proxy.gets("/v1/probes/")) == before + 1
    got = {(s["counter_name"], s["resource_id"]): s for s in sink.samples}
    for probe, fields in served.items():
        energy, power = got[("energy", probe)], got[("power", probe)]
        assert (energy["counter_type"], energy["counter_unit"]) == ("cumulative", "kWh")
        assert energy["counter_volume"] == fields["kwh"]
        assert (power["counter_type"], power["counter_unit"]) == ("gauge", "W")
        assert power["counter_volume"] == fields["w"]
        # The agent restamps samples with its polling time; kwapi's stays in the metadata.
        assert energy["resource_metadata"]["measured_at"] == iso(fields["timestamp"])


T0 = 1764000000.0
GOOD = {"timestamp": T0, "kwh": 1.5, "w": 90.0}
MIXED = {
    "good": GOOD,
    "no-w": {"timestamp": T0, "kwh": 2.0},
    "no-kwh": {"timestamp": T0, "w": 30.0},
    "text-w": {"timestamp": T0, "kwh": 1.0, "w": "ninety"},
    "bool-w": {"timestamp": T0, "kwh": 1.0, "w": True},
    "bad-time": {"timestamp": "yesterday", "kwh": 1.0, "w": 1.0},
    "huge-time": {"timestamp": 1e300, "kwh": 1.0, "w": 1.0},
    "not-an-object": [1, 2],
}


@pytest.fixture
def misbehaving():
    server = RecordingServer()
    yield server
    server.close()


def poll(conf, agent, resources: list[str]) -> tuple[list, list]:
    cache: dict = {}
    energy = list(EnergyPollster(conf).get_samples(agent, cache, resources))
    power = list(PowerPollster(conf).get_samples(agent, cache, resources))
    return energy, power


def test_bad_probes_are_skipped_with_a_log_line(agent, ceilometer_conf, misbehaving, caplog):
    misbehaving.answer("/v1/probes/", 200, json.dumps({"probes": MIXED}), "application/json")
    caplog.set_level(logging.WARNING, logger="kwapi.ceilometer")
    energy, power = poll(ceilometer_conf, agent, [misbehaving.url + "/v1"])
    assert sorted(s.resource_id for s in energy) == ["bool-w", "good", "no-w", "text-w"]
    assert sorted(s.resource_id for s in power) == ["good", "no-kwh"]
    assert {s.resource_id: s.volume for s in energy}["good"] == 1.5
    logged = caplog.text
    for probe in ("no-kwh", "text-w", "bool-w", "bad-time", "huge-time", "not-an-object"):
        assert f"skipping probe '{probe}'" in logged
    # A probe that never sent power (a stream) is normal: no power sample, no warning.
    assert "'no-w'" not in logged
    assert len(misbehaving.gets("/v1/probes/")) == 1


@pytest.mark.parametrize(
    ("status", "body", "content_type", "tries"),
    [
        (500, "<html><body>Internal error</body></html>", "text/html", 1),
        # keystoneauth renews the token once after a 401 before giving up.
        (401, '{"error": {"code": 401}}', "application/json", 2),
        (200, "not json at all", "text/plain", 1),
        (200, '{"probe": {}}', "application/json", 1),
        (200, '{"probes": ["node-1"]}', "application/json", 1),
    ],
)
def test_unreadable_answers_give_no_samples(
    agent, ceilometer_conf, misbehaving, caplog, status, body, content_type, tries
):
    misbehaving.answer("/v1/probes/", status, body, content_type)
    caplog.set_level(logging.ERROR, logger="kwapi.ceilometer")
    assert poll(ceilometer_conf, agent, [misbehaving.url + "/v1/"]) == ([], [])
    assert "kwapi: " in caplog.text and misbehaving.url in caplog.text
    assert len(misbehaving.gets("/v1/probes/")) == tries


def test_unreachable_endpoint_gives_no_samples(agent, ceilometer_conf, caplog):
    caplog.set_level(logging.ERROR, logger="kwapi.ceilometer")
    dead = f"http://127.0.0.1:{free_tcp_port()}/v1"
    started = time.monotonic()
    assert poll(ceilometer_conf, agent, [dead]) == ([], [])
    assert time.monotonic() - started < 30
    assert f"cannot read {dead}/probes/" in caplog.text
