"""CURVE-encrypted bus between real processes: keys, admission, forwarding."""

import os
import stat
import time

import zmq

from kwapi.bus.curve import CurveClient
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.bus.signing import Verifier
from tests.helpers import SECRET, free_tcp_port, run_command, write_config

DUMMY = """
[Rack]
driver = Dummy
probes = ['node-1']
parameters = {'interval': 0.05}
"""


def keygen(directory, name):
    result = run_command("kwapi", "keygen", name, "--dir", str(directory))
    assert result.returncode == 0, result.stderr
    public_value = result.stdout.strip().splitlines()[-1].split(": ")[1]
    return f"{directory}/{name}.key", f"{directory}/{name}.key_secret", public_value


def start_drivers(daemon, directory, endpoint, secret_key, allowed_dir=None):
    allowed = f"curve_allowed_clients = {allowed_dir}\n" if allowed_dir else ""
    conf = write_config(
        directory,
        "drivers.conf",
        f"[DEFAULT]\nprobes_endpoint = {endpoint}\nmetering_secret = {SECRET}\n"
        f"curve_secret_key = {secret_key}\n{allowed}" + DUMMY,
    )
    process = daemon("kwapi-drivers", "--config-file", str(conf))
    process.wait_output("started 1 driver", 15)
    return process


def receiver(endpoint, curve):
    received = []
    thread = Receiver(
        [endpoint], received.append, MessageValidator(Verifier([SECRET])), curve=curve
    )
    thread.start()
    return thread, received


def plain_subscriber(endpoint):
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(endpoint)
    return socket


def until(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_keygen_writes_a_private_secret_file(tmpdir_short):
    public, secret, value = keygen(tmpdir_short, "host1")
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert len(value) == 40
    with open(public) as handle:
        assert value in handle.read()
    again = run_command("kwapi", "keygen", "host1", "--dir", tmpdir_short)
    assert again.returncode == 2 and "exists" in again.stderr


def test_only_allowed_clients_with_the_server_key_receive(tmpdir_short, daemon):
    server_public, server_secret, server_value = keygen(tmpdir_short, "drivers")
    allowed_dir = f"{tmpdir_short}/allowed"
    os.mkdir(allowed_dir)
    keygen(allowed_dir, "api")
    os.rename(f"{allowed_dir}/api.key_secret", f"{tmpdir_short}/api.key_secret")
    _, stranger_secret, _ = keygen(tmpdir_short, "stranger")
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    start_drivers(daemon, tmpdir_short, endpoint, server_secret, allowed_dir)

    allowed, allowed_got = receiver(
        endpoint, CurveClient([server_value], f"{tmpdir_short}/api.key_secret")
    )
    stranger, stranger_got = receiver(endpoint, CurveClient([server_public], stranger_secret))
    plain = plain_subscriber(endpoint)
    try:
        until(lambda: len(allowed_got) >= 20)
        assert stranger_got == []
        assert not plain.poll(0)
        assert allowed.stats.snapshot()["rejected"]["bad_signature"] == 0
    finally:
        for thread in (allowed, stranger):
            thread.stop()
            thread.join(5)
        plain.close()


def test_encrypted_forwarder_between_drivers_and_plugins(tmpdir_short, daemon):
    _, drivers_secret, drivers_value = keygen(tmpdir_short, "drivers")
    _, forwarder_secret, forwarder_value = keygen(tmpdir_short, "forwarder")
    upstream = f"tcp://127.0.0.1:{free_tcp_port()}"
    downstream = f"tcp://127.0.0.1:{free_tcp_port()}"
    start_drivers(daemon, tmpdir_short, upstream, drivers_secret)
    conf = write_config(
        tmpdir_short,
        "forwarder.conf",
        f"[DEFAULT]\nprobes_endpoint = {upstream}\nforwarder_endpoint = {downstream}\n"
        # A Z85 key may hold "$", which oslo.config reads as a reference: written "$$".
        f"curve_secret_key = {forwarder_secret}\n"
        f"curve_server_key = {drivers_value.replace('$', '$$')}\n",
    )
    daemon("kwapi-forwarder", "--config-file", str(conf)).wait_output("relaying", 15)
    thread, got = receiver(downstream, CurveClient([forwarder_value]))
    plain = plain_subscriber(downstream)
    try:
        until(lambda: len(got) >= 10)
        assert not plain.poll(0)
    finally:
        thread.stop()
        thread.join(5)
        plain.close()


def test_unescaped_dollar_in_a_key_exits_2_and_says_why(tmpdir_short):
    conf = write_config(
        tmpdir_short,
        "forwarder.conf",
        f"[DEFAULT]\nprobes_endpoint = ipc://{tmpdir_short}/d\n"
        f"forwarder_endpoint = ipc://{tmpdir_short}/f\n"
        "curve_server_key = abcdefghij$klmnopqrstuvwxyz0123456789ABC\n",
    )
    result = run_command("kwapi-forwarder", "--config-file", str(conf))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"kwapi-forwarder: error: {conf}: [DEFAULT] curve_server_key: ")
    assert "as $$" in result.stderr


def test_bad_key_file_exits_2(tmpdir_short):
    conf = write_config(
        tmpdir_short,
        "drivers.conf",
        f"[DEFAULT]\nprobes_endpoint = ipc://{tmpdir_short}/d\nmetering_secret = x\n"
        f"curve_secret_key = {tmpdir_short}/missing.key_secret\n" + DUMMY,
    )
    result = run_command("kwapi-drivers", "--config-file", str(conf))
    assert result.returncode == 2
    assert result.stderr.startswith(f"kwapi-drivers: error: {conf}: [DEFAULT] curve_secret_key:")
    assert result.stderr.count("\n") == 1
