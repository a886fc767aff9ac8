"""kwapi-forwarder as a real process: relaying, chaining, subscriptions, restarts."""

import time

import pytest
import zmq

from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.bus.signing import Verifier
from tests.harness.bus import SECRET
from tests.harness.configs import write_config
from tests.harness.daemons import start_forwarder
from tests.harness.processes import run_command, wait_for


def test_relays_through_a_chain_of_two_forwarders(tmpdir_short, daemon, bus_client, feeds):
    drivers, first, second = (f"ipc://{tmpdir_short}/{n}" for n in ("drv", "fw1", "fw2"))
    feed = feeds(drivers)
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
    tmpdir_short, daemon, bus_client, feeds
):
    drivers, forwarder = f"ipc://{tmpdir_short}/drv", f"ipc://{tmpdir_short}/fw"
    feed = feeds(drivers)
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


def test_a_plugin_may_listen_to_several_endpoints(tmpdir_short, feeds):
    one, two = f"ipc://{tmpdir_short}/one", f"ipc://{tmpdir_short}/two"
    sources = [feeds(one, probes=("A",)), feeds(two, probes=("B",))]
    received = []
    receiver = Receiver([one, two], received.append, MessageValidator(Verifier([SECRET])))
    receiver.start()
    try:
        deadline = time.monotonic() + 15
        while {m.probe_id for m in received} != {"A", "B"}:
            assert time.monotonic() < deadline
            for feed in sources:
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
