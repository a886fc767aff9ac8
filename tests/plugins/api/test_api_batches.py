"""kwapi-api on batched probes: energy of every sample, per stream too, in process and over HTTP."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kwapi.bus.protocol import Batch, Measurement, Message
from kwapi.cmd.api import make_handler
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.stream_energy import StreamEnergy
from kwapi.plugins.streams import parse_stream_power
from tests.harness.bus import bus_publisher, publish_all, publish_first
from tests.harness.daemons import start_api
from tests.harness.energy import trapezoid_kwh
from tests.harness.http import get_json, request

HZ = 50
STREAM_UP = {"up": 1, "bitrate": 4e6, "fps": 25.0, "width": 1280.0, "height": 720.0}


def trapezoid(samples: list[tuple[float, float]], max_gap: float) -> tuple[float, int]:
    """kWh and gaps of (time, watts) *samples* by the rule's text: negative as 0 W."""
    return trapezoid_kwh(samples, max_gap)


def series(start: float, count: int, watts) -> list[tuple[float, float]]:
    """*count* samples at 50 Hz from *start*; watts(i) gives the i-th reading."""
    return [(start + i / HZ, float(watts(i))) for i in range(count)]


def as_batch(probe: str, samples: list[tuple[float, float]]) -> Batch:
    return Batch(probe, [t for t, _ in samples], {"w": [w for _, w in samples]})


def node_messages(t0: float, max_gap: float) -> tuple[list[Message], list[tuple[float, float]]]:
    """Batches across message boundaries, negative readings, a gap inside a batch and
    single samples in between; the messages and every sample they carry."""
    first = series(t0, HZ, lambda i: 100 + i)
    second = series(t0 + 1, HZ, lambda i: -40 if 10 <= i < 20 else 200 - i)  # negatives
    third = series(t0 + 2, 10, lambda i: 120) + series(t0 + 2.2 + max_gap, 10, lambda i: 90)
    single = [(t0 + 3 + max_gap, 95.0)]
    fourth = series(t0 + 3.02 + max_gap, HZ, lambda i: 150 + (i % 7))
    messages: list[Message] = [
        as_batch("node-1", first),
        as_batch("node-1", second),
        as_batch("node-1", third),
        Measurement("node-1", single[0][0], {"w": single[0][1]}),
        as_batch("node-1", fourth),
    ]
    return messages, first + second + third + single + fourth


def test_stream_energy_of_a_batched_power_probe_is_that_of_its_samples():
    t0 = 1_800_000_000.0
    host = series(t0 + 0.5, 3 * HZ, lambda i: 100 + (i % 13) * 10)
    messages: list[Message] = [Measurement("hd", t0, STREAM_UP)]
    messages += [as_batch("enc", host[:HZ]), as_batch("enc", host[HZ : 2 * HZ])]
    messages += [Measurement("enc", t, {"w": w}) for t, w in host[2 * HZ :]]

    def fed(split: bool) -> StreamEnergy:
        collector = Collector(max_gap=60.0)
        energy = StreamEnergy(parse_stream_power(["enc = hd"]), collector.latest, max_gap=60.0)
        handler = make_handler(collector, energy)
        for message in messages:
            for part in message.measurements() if split else [message]:
                handler(part)
        return energy

    batched, one_by_one = fed(False), fed(True)
    expected, _ = trapezoid(host, 60.0)
    assert batched.stream_kwh("hd") == pytest.approx(expected, rel=1e-9)
    assert batched.stream_kwh("hd") == one_by_one.stream_kwh("hd")
    assert batched.export() == one_by_one.export()
    host_energy = batched.host("enc")
    assert host_energy is not None
    assert (host_energy.w, host_energy.power_timestamp) == (host[-1][1], host[-1][0])


@pytest.mark.slow
def test_daemon_integrates_every_sample_of_batched_probes(daemon, tmpdir_short):
    max_gap = 60.0
    api = start_api(daemon, tmpdir_short, max_gap=int(max_gap), stream_power="enc = hd")
    publisher = bus_publisher(api.bus)
    t0 = time.time() - 200
    publish_first(api, publisher, Measurement("hd", t0, STREAM_UP))
    node, node_samples = node_messages(t0, max_gap)
    host = series(t0 + 0.5, 2 * HZ, lambda i: 80 + (i % 11) * 5)
    messages = [*node, as_batch("enc", host[:HZ]), as_batch("enc", host[HZ:])]
    samples_before = get_json(api.url + "/healthz")["receiver"]["accepted_samples"]
    publish_all(api, publisher, messages)
    publisher.close()

    node_kwh, node_gaps = trapezoid(node_samples, max_gap)
    host_kwh, _ = trapezoid(host, max_gap)
    assert node_gaps == 1
    probes = get_json(api.url + "/v1/probes/")["probes"]
    # /v1/probes/ shows the last sample, and the energy of all of them.
    assert probes["node-1"] == {
        "timestamp": node_samples[-1][0],
        "kwh": pytest.approx(node_kwh, rel=1e-9),
        "w": node_samples[-1][1],
    }
    assert probes["enc"]["kwh"] == pytest.approx(host_kwh, rel=1e-9)
    assert probes["enc"]["w"] == host[-1][1]
    health = get_json(api.url + "/healthz")["receiver"]
    assert health["accepted_samples"] - samples_before == len(node_samples) + len(host)

    text = request("GET", api.url + "/metrics").body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(family: str, **labels: str) -> float:
        found = [s.value for s in families[family].samples if s.labels == labels]
        assert len(found) == 1, (family, labels)
        return found[0]

    assert value("kwapi_energy_joules", probe="node-1") == pytest.approx(node_kwh * 3.6e6, 1e-9)
    assert value("kwapi_energy_gaps", probe="node-1") == 1
    assert value("kwapi_power_watts", probe="node-1") == node_samples[-1][1]
    assert value("kwapi_receiver_accepted_samples") == health["accepted_samples"]

    # The stream is the host's only one, up all along: it gets all the host's energy.
    stream = get_json(api.url + "/v1/streams/hd/")["hd"]
    assert stream["kwh"] == pytest.approx(host_kwh, rel=1e-9)
