"""kwapi-forwarder as a real process: relaying, chaining, subscriptions, restarts."""

import time

import pytest
import zmq

from kwapi.bus.protocol import Measurement
from kwapi.bus.publisher import Publisher
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.bus.signing import Signer, Verifier
from tests.helpers import SECRET, run_command, wait_for, write_config


def start_forwarder(daemon, directory, name, upstream, bind):
    conf = write_config(
        directory,
        f"{name}.conf",
        f"""
        [DEFAULT]
        probes_endpoint = {", ".join(upstream)}
        forwarder_endpoint = {bind}
        """,
    )
    process = daemon("kwapi-forwarder", "--config-file", str(conf))
    process.wait_output("relaying", 15)
    return process


class Feed:
    """A publisher standing in for kwapi-drivers, sending fresh measurements on demand."""

    def __init__(self, endpoint, probes=("A",)):
        self.publisher = Publisher(endpoint, Signer(SECRET))
        self.probes = probes
        self.count = 0

    def send(self):
        self.count += 1
        for probe in self.probes:
            self.publisher.publish(Measurement(probe, time.time(), {"w": float(self.count)}))

    def until(self, condition, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not reached"
            self.send()
            time.sleep(0.02)

    def close(self):
        self.publisher.close()


@pytest.fixture
def feed_factory():
    feeds = []

    def make(*args, **kwargs):
        feed = Feed(*args, **kwargs)
        feeds.append(feed)
        return feed

    yield make
    for feed in feeds:
        feed.close()


def test_relays_through_a_chain_of_two_forwarders(tmpdir_short, daemon, bus_client, feed_factory):
    drivers, first, second = (f"ipc://{tmpdir_short}/{n}" for n in ("drv", "fw1", "fw2"))
    feed = feed_factory(drivers)
    start_forwarder(daemon, tmpdir_short, "fw1", [drivers], first)
    start_forwarder(daemon, tmpdir_short, "fw2", [first], second)
    client = bus_client(second)
    feed.until(lambda: client.socket.poll(0))
    measurement = client.receive(1)
    assert measurement.probe_id == "A"
    assert 1 <= measurement.meters["w"] <= feed.count
    assert not client.rejected  # signatures survive the relays byte for byte


def test_subscriptions_travel_upstream(tmpdir_short, daemon, bus_client):
    drivers, forwarder = f"ipc://{tmpdir_short}/drv", f"ipc://{tmpdir_short}/fw"
    upstream = zmq.Context.instance().socket(zmq.XPUB)  # stands in for the drivers' PUB
    upstream.setsockopt(zmq.LINGER, 0)
    upstream.bind(drivers)
    try:
        start_forwarder(daemon, tmpdir_short, "fw", [drivers], forwarder)
        bus_client(forwarder, probes=("node-7",))
        wait_for(lambda: upstream.poll(100), 15, "a subscription upstream")
        assert upstream.recv() == b"\x01node-7."
    finally:
        upstream.close()


def test_restarted_forwarder_is_picked_up_without_restarting_others(
    tmpdir_short, daemon, bus_client, feed_factory
):
    drivers, forwarder = f"ipc://{tmpdir_short}/drv", f"ipc://{tmpdir_short}/fw"
    feed = feed_factory(drivers)
    process = start_forwarder(daemon, tmpdir_short, "fw", [drivers], forwarder)
    client = bus_client(forwarder)
    got = []

    def drain():
        while client.socket.poll(0):
            got.append(client.receive(1))
        return got

    feed.until(drain)
    process.kill()
    sent_before_restart = feed.count
    got.clear()
    start_forwarder(daemon, tmpdir_short, "fw", [drivers], forwarder)
    feed.until(drain, timeout=20)
    # Fresh measurements arrive through the new forwarder on the same client socket.
    assert got[-1].meters["w"] > sent_before_restart


def test_a_plugin_may_listen_to_several_endpoints(tmpdir_short, feed_factory):
    one, two = f"ipc://{tmpdir_short}/one", f"ipc://{tmpdir_short}/two"
    feeds = [feed_factory(one, probes=("A",)), feed_factory(two, probes=("B",))]
    received = []
    receiver = Receiver([one, two], received.append, MessageValidator(Verifier([SECRET])))
    receiver.start()
    try:
        deadline = time.monotonic() + 15
        while {m.probe_id for m in received} != {"A", "B"}:
            assert time.monotonic() < deadline
            for feed in feeds:
                feed.send()
            time.sleep(0.02)
    finally:
        receiver.stop()
        receiver.join(5)


def test_stops_on_sigterm(tmpdir_short, daemon):
    process = start_forwarder(
        daemon, tmpdir_short, "fw", [f"ipc://{tmpdir_short}/d"], f"ipc://{tmpdir_short}/f"
    )
    assert process.stop(10) == 0
    assert "stopped" in process.output()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("forwarder_endpoint = nowhere\n", "[DEFAULT] forwarder_endpoint: invalid value"),
        ("probes_endpoint = ipc:///tmp/x, bogus\n", "[DEFAULT] probes_endpoint: invalid value"),
        ("forwarder_sndhwm = 0\n", "[DEFAULT] forwarder_sndhwm: invalid value"),
    ],
)
def test_bad_configuration_exits_2(tmpdir_short, options, expected):
    conf = write_config(tmpdir_short, "fw.conf", "[DEFAULT]\n" + options)
    result = run_command("kwapi-forwarder", "--config-file", str(conf))
    assert result.returncode == 2
    assert result.stderr.strip() == f"kwapi-forwarder: error: {conf}: {expected}" or (
        result.stderr.count("\n") == 1 and expected in result.stderr
    )
