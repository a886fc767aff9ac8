"""CURVE-encrypted bus between real processes: keys, admission, forwarding, and
kwapi-api and kwapi tail as CURVE clients."""

import os
import re
import stat
import sys
from pathlib import Path
from typing import NamedTuple

import zmq
import zmq.auth

from kwapi.bus.curve import CurveClient, generate_keys
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.bus.signing import Verifier
from tests.harness.bus import SECRET
from tests.harness.configs import drivers_conf, forwarder_conf
from tests.harness.daemons import start_api, start_drivers
from tests.harness.http import get_json
from tests.harness.processes import free_tcp_port, run_command, wait_for

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


def start_curve_drivers(daemon, directory, endpoint, secret_key, allowed_dir=None):
    """kwapi-drivers encrypting with *secret_key*, admitting the clients of *allowed_dir*."""
    allowed = f"curve_allowed_clients = {allowed_dir}\n" if allowed_dir else ""
    defaults = f"curve_secret_key = {secret_key}\n{allowed}"
    process = start_drivers(daemon, directory, endpoint, DUMMY, defaults)
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


class ServerAndClientKeys(NamedTuple):
    """Key files of an encrypting drivers daemon that admits one known client."""

    server_public: str
    server_secret: str
    server_value: str
    allowed_dir: str
    client_secret: str
    stranger_public: str
    stranger_secret: str


def server_and_client_keys(directory) -> ServerAndClientKeys:
    """Make the drivers' pair, an admitted client's pair and a stranger's pair."""
    server_public, server_secret, server_value = keygen(directory, "drivers")
    allowed_dir = f"{directory}/allowed"
    os.mkdir(allowed_dir)
    keygen(allowed_dir, "api")
    client_secret = f"{directory}/api.key_secret"
    os.rename(f"{allowed_dir}/api.key_secret", client_secret)
    stranger_public, stranger_secret, _ = keygen(directory, "stranger")
    return ServerAndClientKeys(
        server_public,
        server_secret,
        server_value,
        allowed_dir,
        client_secret,
        stranger_public,
        stranger_secret,
    )


def test_keygen_writes_a_private_secret_file(tmpdir_short):
    public, secret, value = keygen(tmpdir_short, "host1")
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert len(value) == 40
    with open(public) as handle:
        assert value in handle.read()
    again = run_command("kwapi", "keygen", "host1", "--dir", tmpdir_short)
    assert again.returncode == 2 and "exists" in again.stderr


def test_keygen_secret_file_is_private_whatever_the_umask(tmpdir_short):
    # A world-readable secret file left from a careless copy, and someone who
    # opened it: --force must not write the new secret into that file.
    stale = Path(tmpdir_short, "host1.key_secret")
    stale.write_text("stale")
    stale.chmod(0o644)
    previous = os.umask(0o022)
    try:
        with stale.open() as opened_before:
            result = run_command("kwapi", "keygen", "host1", "--dir", tmpdir_short, "--force")
            assert opened_before.read() == "stale"
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    public = Path(tmpdir_short, "host1.key")
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    public_key, no_secret = zmq.auth.load_certificate(public)
    same_public, secret_key = zmq.auth.load_certificate(stale)
    assert no_secret is None and same_public == public_key
    assert zmq.curve_public(secret_key) == public_key
    assert result.stdout.strip().endswith(public_key.decode())
    # No temporary file is left behind.
    assert sorted(os.listdir(tmpdir_short)) == ["host1.key", "host1.key_secret"]


def test_generate_keys_never_exposes_the_secret_even_for_a_moment(tmpdir_short):
    """At every file-system step of generate_keys (seen through audit hooks), no
    file holding a secret key is readable by group or others."""
    exposed: list[str] = []
    watch = {"on": True, "busy": False}

    def check_directory(event: str, args: tuple) -> None:
        if not watch["on"] or watch["busy"]:
            return
        watch["busy"] = True  # the checks below raise audit events of their own
        try:
            for entry in os.scandir(tmpdir_short):
                mode = stat.S_IMODE(entry.stat().st_mode)
                if mode & 0o077 and b"secret-key" in Path(entry.path).read_bytes():
                    exposed.append(f"{entry.name} mode {mode:o} at {event}")
        finally:
            watch["busy"] = False

    Path(tmpdir_short, "host1.key_secret").write_text("stale")
    os.chmod(f"{tmpdir_short}/host1.key_secret", 0o644)
    sys.addaudithook(check_directory)  # hooks cannot be removed: switched off below
    previous = os.umask(0o022)
    try:
        for _ in range(2):  # over the stale file, then over its own files
            generate_keys(tmpdir_short, "host1")
    finally:
        os.umask(previous)
        watch["on"] = False
    assert exposed == []
    assert zmq.auth.load_certificate(f"{tmpdir_short}/host1.key_secret")[1]


def test_only_allowed_clients_with_the_server_key_receive(tmpdir_short, daemon):
    keys = server_and_client_keys(tmpdir_short)
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    start_curve_drivers(daemon, tmpdir_short, endpoint, keys.server_secret, keys.allowed_dir)

    allowed, allowed_got = receiver(endpoint, CurveClient([keys.server_value], keys.client_secret))
    stranger, stranger_got = receiver(
        endpoint, CurveClient([keys.server_public], keys.stranger_secret)
    )
    plain = plain_subscriber(endpoint)
    try:
        wait_for(lambda: len(allowed_got) >= 20, 15, "20 measurements to the allowed client")
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
    start_curve_drivers(daemon, tmpdir_short, upstream, drivers_secret)
    # A Z85 key may hold "$", which oslo.config reads as a reference: written "$$".
    keys = f"curve_secret_key = {forwarder_secret}\n"
    keys += f"curve_server_key = {drivers_value.replace('$', '$$')}\n"
    conf = forwarder_conf(tmpdir_short, [upstream], downstream, extra=keys)
    daemon("kwapi-forwarder", "--config-file", str(conf)).wait_output("relaying", 15)
    thread, got = receiver(downstream, CurveClient([forwarder_value]))
    plain = plain_subscriber(downstream)
    try:
        wait_for(lambda: len(got) >= 10, 15, "10 measurements through the forwarder")
        assert not plain.poll(0)
    finally:
        thread.stop()
        thread.join(5)
        plain.close()


def test_unescaped_dollar_in_a_key_exits_2_and_says_why(tmpdir_short):
    bad_key = "curve_server_key = abcdefghij$klmnopqrstuvwxyz0123456789ABC\n"
    conf = forwarder_conf(
        tmpdir_short, [f"ipc://{tmpdir_short}/d"], f"ipc://{tmpdir_short}/f", extra=bad_key
    )
    result = run_command("kwapi-forwarder", "--config-file", str(conf))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"kwapi-forwarder: error: {conf}: [DEFAULT] curve_server_key: ")
    assert "as $$" in result.stderr


def test_bad_key_file_exits_2(tmpdir_short):
    missing = f"curve_secret_key = {tmpdir_short}/missing.key_secret\n"
    conf = drivers_conf(tmpdir_short, f"ipc://{tmpdir_short}/d", DUMMY, missing)
    result = run_command("kwapi-drivers", "--config-file", str(conf))
    assert result.returncode == 2
    assert result.stderr.startswith(f"kwapi-drivers: error: {conf}: [DEFAULT] curve_secret_key:")
    assert result.stderr.count("\n") == 1


def test_api_daemon_over_curve_accepts_and_a_wrong_server_key_gets_nothing(tmpdir_short, daemon):
    keys = server_and_client_keys(tmpdir_short)
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    start_curve_drivers(daemon, tmpdir_short, endpoint, keys.server_secret, keys.allowed_dir)
    good_dir, wrong_dir = Path(tmpdir_short, "good"), Path(tmpdir_short, "wrong")
    good_dir.mkdir()
    wrong_dir.mkdir()

    good = start_api(
        daemon,
        good_dir,
        probes_endpoint=endpoint,
        curve_server_key=keys.server_public,
        curve_secret_key=keys.client_secret,
    )
    wait_for(lambda: good.accepted() >= 20, 20, "kwapi-api to accept over CURVE")
    probe = get_json(good.url + "/v1/probes/")["probes"]["node-1"]
    assert probe["w"] > 0 and probe["kwh"] > 0
    assert set(good.healthz()["receiver"]["rejected"].values()) == {0}

    # The same admitted client key, but the public key of another server: the
    # handshake fails, so not one message reaches it while the good one takes 20 more.
    wrong = start_api(
        daemon,
        wrong_dir,
        probes_endpoint=endpoint,
        curve_server_key=keys.stranger_public,
        curve_secret_key=keys.client_secret,
    )
    baseline = good.accepted()
    wait_for(lambda: good.accepted() >= baseline + 20, 20, "more measurements to the good client")
    health = wrong.healthz()
    assert health["receiver"]["alive"]
    assert health["receiver"]["accepted"] == 0
    assert set(health["receiver"]["rejected"].values()) == {0}
    assert get_json(wrong.url + "/v1/probes/")["probes"] == {}


def test_tail_reads_an_encrypted_endpoint_with_the_server_key(tmpdir_short, daemon):
    keys = server_and_client_keys(tmpdir_short)
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    start_curve_drivers(daemon, tmpdir_short, endpoint, keys.server_secret, keys.allowed_dir)
    result = run_command(
        "kwapi",
        "tail",
        "--endpoint",
        endpoint,
        "--secret",
        SECRET,
        "--server-key",
        keys.server_public,
        "--secret-key",
        keys.client_secret,
        "--count",
        "3",
        "--timeout",
        "20",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"node-1 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} w=\S+", line), line
