"""Snmp driver against snmpsim serving recorded PDU data on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from kwapi.config import ConfigError, Section
from kwapi.drivers.config import parse_wattmeters
from kwapi.drivers.snmp import SnmpDriver, SnmpParameters
from tests.harness.daemons import expect_config_error
from tests.harness.drivers import driver_thread, warnings_about
from tests.harness.processes import VENV_BIN, free_udp_port, stop_process, wait_for

hlapi = pytest.importorskip("pysnmp.hlapi.v3arch.asyncio")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pysnmp.smi.compiler")

DATA_DIR = Path(__file__).parent / "simulators" / "snmprec"
V3 = {"user": "kwapi", "auth_key": "kwapi-auth-key", "priv_key": "kwapi-priv-key"}
# The simulator's SNMPv3 users: (authentication, privacy) protocols, None for
# none; user u's passphrases are "u-auth-key" and "u-priv-key".  Between
# them every protocol the driver offers is used once at least.
V3_USERS = {
    "kwapi": ("sha", "aes"),
    "md5-des": ("md5", "des"),
    "sha224-3des": ("sha224", "3des"),
    "sha256-aes256": ("sha256", "aes256"),
    "sha384-aes192": ("sha384", "aes192"),
    "sha512-aes128": ("sha512", "aes128"),
    "sha-nopriv": ("sha", None),
    "noauth": (None, None),
}


def v3_parameters(user: str) -> dict[str, str]:
    """The driver parameters of the simulator's SNMPv3 *user*."""
    auth, priv = V3_USERS[user]
    parameters = {"protocol": "3", "user": user}
    if auth is not None:
        parameters.update(auth_key=f"{user}-auth-key", auth_protocol=auth)
    if priv is not None:
        parameters.update(priv_key=f"{user}-priv-key", priv_protocol=priv)
    return parameters


def v3_user_options() -> list[str]:
    """snmpsim-command-responder's options declaring the users of V3_USERS."""
    options = []
    for user, (auth, priv) in V3_USERS.items():
        options.append(f"--v3-user={user}")
        if auth is not None:
            options += [f"--v3-auth-key={user}-auth-key", f"--v3-auth-proto={auth.upper()}"]
        if priv is not None:
            options += [f"--v3-priv-key={user}-priv-key", f"--v3-priv-proto={priv.upper()}"]
    return options


class SnmpSimulator:
    """snmpsim-command-responder serving tests/drivers/simulators/snmprec.

    v1/v2c communities and v3 context names are the data files' names
    (eaton, apc, raritan, sentry4, custom); the v3 users are those of
    V3_USERS.
    """

    def __init__(self) -> None:
        self.port = free_udp_port()
        self.workdir = tempfile.mkdtemp(prefix="kwsnmp")
        self.process: subprocess.Popen | None = None

    def start(self) -> SnmpSimulator:
        log = open(Path(self.workdir) / "snmpsim.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "snmpsim-command-responder"),
                f"--data-dir={DATA_DIR}",
                f"--cache-dir={self.workdir}/cache",
                f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
                *v3_user_options(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
        )
        log.close()
        wait_for(self._answers, 30, f"snmpsim on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"snmpsim exited: {self.output()[-2000:]}")

        async def probe():
            engine = hlapi.SnmpEngine()
            try:
                target = await hlapi.UdpTransportTarget.create(
                    ("127.0.0.1", self.port), timeout=0.3, retries=0
                )
                answer = await hlapi.get_cmd(
                    engine,
                    hlapi.CommunityData("apc"),
                    target,
                    hlapi.ContextData(),
                    hlapi.ObjectType(hlapi.ObjectIdentity("1.3.6.1.2.1.1.5.0")),
                    lookupMib=False,
                )
                return answer[0] is None and not answer[1]
            finally:
                engine.close_dispatcher()

        return asyncio.run(probe())

    def output(self) -> str:
        return (Path(self.workdir) / "snmpsim.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signum=signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class UdpRelay(threading.Thread):
    """Forwards UDP datagrams to *port* and counts the requests it relays."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.upstream = ("127.0.0.1", port)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(self.upstream)
        self.requests = 0
        self.client = None
        self.stopping = threading.Event()

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.front, selectors.EVENT_READ)
            selector.register(self.back, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select(0.1):
                    if key.fileobj is self.front:
                        data, self.client = self.front.recvfrom(65535)
                        self.requests += 1
                        self.back.send(data)
                    else:
                        with contextlib.suppress(ConnectionRefusedError):
                            data = self.back.recv(65535)
                            if self.client:
                                self.front.sendto(data, self.client)

    def close(self) -> None:
        self.stopping.set()
        self.join(5)
        self.front.close()
        self.back.close()


@pytest.fixture(scope="module")
def agent():
    """One simulator shared by the module's tests that only read from it."""
    simulator = SnmpSimulator().start()
    yield simulator
    simulator.close()


@pytest.fixture
def own_agent():
    """A simulator of the test's own, which it may stop and start."""
    simulator = SnmpSimulator()
    yield simulator
    simulator.close()


def running(publisher, port, probes, **given):
    parameters = {"host": "127.0.0.1", "port": port, "interval": 0.2, "max_backoff": 1.0, **given}
    driver = SnmpDriver("pdu-1", list(probes), SnmpParameters(**parameters), publisher.publish)
    return driver_thread(driver, timeout=20)


def one_reading(client, count: int) -> dict[str, float]:
    """The next reading of *count* probes, which share one timestamp."""
    while True:
        first = client.receive(timeout=15)
        batch = [first, *client.collect(count - 1, timeout=5)] if count > 1 else [first]
        if len({m.timestamp for m in batch}) == 1:
            return {m.probe_id: m.meters["w"] for m in batch}


@pytest.mark.parametrize(
    ("parameters", "probes", "expected"),
    [
        (
            {"model": "eaton", "community": "eaton"},
            ["e0-1", "e0-2", "e0-3", "e0-4"],
            {"e0-1": 101, "e0-2": 0, "e0-3": 230, "e0-4": 57},
        ),
        (
            {"model": "eaton", "community": "eaton", "unit": 1},
            ["e1-1", "e1-2", None, "e1-4"],
            {"e1-1": 310, "e1-2": 42, "e1-4": 75},
        ),
        (
            {"model": "apc", "community": "apc"},
            ["a1", None, "a3", "a4", "a5", "a6"],
            {"a1": 88, "a3": 0, "a4": 12, "a5": 260, "a6": 33},
        ),
        (
            {"model": "raritan", "community": "raritan"},
            [f"r{i}" for i in range(1, 9)],
            dict(
                zip([f"r{i}" for i in range(1, 9)], [64, 0, 199, 321, 7, 150, 90, 45], strict=True)
            ),
        ),
        (
            # Outlet 2 reports -1 (no reading): nothing is published for it.
            {"model": "sentry4", "community": "sentry4"},
            ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"],
            {"s1": 120, "s3": 35, "s4": 0, "s5": 77, "s6": 18, "s7": 240, "s8": 3},
        ),
        (
            {"oid": ".1.3.6.1.4.1.8072.9999.9999.1.1.2", "community": "custom", "scale": 0.1},
            ["c1", "c2", "c3"],
            {"c1": 123.4, "c2": 5.6, "c3": 789.0},
        ),
    ],
    ids=["eaton", "eaton-unit-1", "apc", "raritan", "sentry4", "custom-oid"],
)
def test_models_and_custom_oid(agent, bus, parameters, probes, expected):
    publisher, client = bus
    with running(publisher, agent.port, probes, **parameters):
        reading = one_reading(client, len(expected))
    assert reading == pytest.approx(expected)


@pytest.mark.parametrize(
    "parameters",
    [
        {"protocol": "1", "community": "raritan"},
        {"protocol": "v1", "community": "raritan"},
        {"protocol": "2c", "community": "raritan"},
        {"protocol": "v2c", "community": "raritan"},
        {"protocol": "3", "context": "raritan", **V3},
        {"protocol": "v3", "context": "raritan", "auth_protocol": "sha", **V3},
    ],
    ids=["1", "v1", "2c", "v2c", "3", "v3"],
)
def test_snmp_versions(agent, bus, parameters):
    publisher, client = bus
    with running(publisher, agent.port, ["r1", "r2", "r3"], model="raritan", **parameters):
        assert one_reading(client, 3) == {"r1": 64, "r2": 0, "r3": 199}


@pytest.mark.parametrize("user", list(V3_USERS))
def test_v3_security_levels_and_protocols(agent, bus, user):
    publisher, client = bus
    parameters = v3_parameters(user)
    with running(publisher, agent.port, ["a1", "a2"], model="apc", context="apc", **parameters):
        assert one_reading(client, 2) == {"a1": 88, "a2": 145}


@pytest.mark.parametrize(
    ("user", "change"),
    [
        ("md5-des", {"auth_protocol": "sha"}),
        ("md5-des", {"priv_protocol": "aes"}),
        ("sha256-aes256", {"priv_protocol": "aes192"}),
        ("sha-nopriv", {"priv_key": "sha-nopriv-priv-key"}),
    ],
    ids=["auth-protocol", "priv-protocol", "aes-key-size", "priv-not-configured"],
)
def test_v3_protocol_other_than_the_users_is_refused(agent, bus, caplog, user, change):
    """The agent refuses a protocol its user does not have: the parameters reach the wire."""
    publisher, client = bus
    parameters = {**v3_parameters(user), **change}
    with running(
        publisher, agent.port, ["a1"], model="apc", context="apc", timeout=0.3, **parameters
    ) as driver:
        wait_for(lambda: warnings_about(caplog, "PDU 127.0.0.1"), 20, "failure logged")
        assert driver.published == 0
    with pytest.raises(AssertionError, match="no measurement"):
        client.receive(timeout=0.2)


def test_one_request_per_reading(agent, bus):
    publisher, client = bus
    relay = UdpRelay(agent.port)
    relay.start()
    try:
        with running(
            publisher, relay.port, ["a1", "a2", None, "a4"], model="apc", community="apc"
        ) as driver:
            for _ in range(4):
                one_reading(client, 3)
        readings, rest = divmod(driver.published, 3)
    finally:
        relay.close()
    assert rest == 0 and readings >= 4
    # One GETBULK learns the rows, then one GET per reading.
    assert relay.requests == readings + 1


def test_probes_beyond_the_outlets_are_reported(agent, bus, caplog):
    publisher, client = bus
    probes = ["c1", "c2", "c3", "c4", "c5"]
    with running(
        publisher, agent.port, probes, oid="1.3.6.1.4.1.8072.9999.9999.1.1.2", community="custom"
    ):
        assert set(one_reading(client, 3)) == {"c1", "c2", "c3"}
    [line] = warnings_about(caplog, "3 outlet(s)")
    assert "nothing for c4, c5" in line


def test_wrong_community_logs_one_timeout_and_publishes_nothing(agent, bus, caplog):
    caplog.set_level(logging.DEBUG, logger="kwapi")
    publisher, client = bus
    with running(
        publisher,
        agent.port,
        ["a1"],
        model="apc",
        community="wrong",
        timeout=0.2,
        retries=0,
        max_backoff=0.2,
    ) as driver:

        def retries():
            return [r for r in caplog.records if "still failing" in r.getMessage()]

        wait_for(lambda: len(retries()) >= 2, 20, "two retries")
        assert driver.published == 0
    [line] = warnings_about(caplog, "No SNMP response")
    assert f"PDU 127.0.0.1:{agent.port}" in line
    assert "wrong" not in line
    with pytest.raises(AssertionError, match="no measurement"):
        client.receive(timeout=0.2)


def test_wrong_v3_key_logs_one_line(agent, bus, caplog):
    publisher, client = bus
    parameters = {**V3, "auth_key": "not-the-key", "protocol": "3", "context": "apc"}
    with running(publisher, agent.port, ["a1"], model="apc", timeout=0.3, **parameters) as driver:
        wait_for(lambda: warnings_about(caplog, "PDU 127.0.0.1"), 20, "failure logged")
        assert driver.published == 0
    assert len(warnings_about(caplog, "PDU 127.0.0.1")) == 1
    assert "not-the-key" not in caplog.text
    with pytest.raises(AssertionError, match="no measurement"):
        client.receive(timeout=0.2)


def test_agent_down_then_back(own_agent, bus, caplog):
    publisher, client = bus
    own_agent.start()
    with running(
        publisher,
        own_agent.port,
        ["a1", "a2"],
        model="apc",
        community="apc",
        timeout=1.0,  # a loaded machine can make snmpsim slow
        retries=0,
    ) as driver:
        assert one_reading(client, 2) == {"a1": 88, "a2": 145}
        own_agent.stop()
        wait_for(lambda: warnings_about(caplog, "No SNMP response"), 15, "outage logged")
        published = driver.published
        own_agent.start()
        wait_for(lambda: warnings_about(caplog, "device is back"), 20, "recovery logged")
        wait_for(lambda: driver.published > published, 5, "readings again")
    assert len(warnings_about(caplog, "No SNMP response")) == 1


def section(parameters: str, probes: str = "['o1', 'o2']") -> Section:
    return Section(
        "drivers.conf", "Rack 1 PDU", {"driver": "Snmp", "probes": probes, "parameters": parameters}
    )


@pytest.mark.parametrize(
    ("parameters", "key", "fragment"),
    [
        ("{'model': 'apc'}", "parameters['host']", "required"),
        ("{'host': 'h', 'model': 'cisco'}", "parameters['model']", "'eaton'"),
        ("{'host': 'h', 'model': 'apc', 'protocol': '4'}", "parameters['protocol']", "1, 2c, 3"),
        ("{'host': 'h', 'model': 'apc', 'protocol': 'v5'}", "parameters['protocol']", "1, 2c, 3"),
        ("{'host': 'h', 'oid': '1.3.x.1'}", "parameters['oid']", "numeric OID"),
        ("{'host': 'h', 'model': 'apc', 'port': 0}", "parameters['port']", "greater than"),
        ("{'host': 'h', 'model': 'apc', 'scale': 'x'}", "parameters['scale']", "valid number"),
        ("{'host': 'h', 'model': 'apc', 'interval': 'x'}", "parameters['interval']", "number"),
        (
            "{'host': 'h', 'model': 'apc', 'protocol': 3, 'user': 'u', 'auth_key': 'short'}",
            "parameters['auth_key']",
            "at least 8",
        ),
        (
            "{'host': 'h', 'model': 'apc', 'auth_protocol': 'rot13'}",
            "parameters['auth_protocol']",
            "'sha'",
        ),
        ("{'host': 'h'}", "parameters", "exactly one of the parameters 'oid' and 'model'"),
        ("{'host': 'h', 'model': 'apc', 'oid': '1.3.6.1'}", "parameters", "exactly one"),
        (
            "{'host': 'h', 'model': 'apc', 'unit': 1}",
            "parameters",
            "'unit' applies to model 'eaton'",
        ),
        ("{'host': 'h', 'model': 'apc', 'protocol': 'v3'}", "parameters", "'user' is required"),
    ],
)
def test_configuration_errors_name_section_and_key(parameters, key, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters([section(parameters)])
    error = caught.value
    assert error.section == "Rack 1 PDU"
    assert error.key == key
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("given", "normalised"), [("1", "1"), ("v1", "1"), (2, "2c"), ("V2C", "2c"), (3, "3")]
)
def test_protocol_spellings(given, normalised):
    assert SnmpParameters(host="h", model="apc", protocol=given).protocol == normalised


def test_kwapi_drivers_daemon_publishes_outlets(agent, kwapi_drivers):
    process, client = kwapi_drivers(
        f"""
        [Rack 1 PDU]
        driver = Snmp
        probes = ['node-1', None, 'node-3']
        parameters = {{'host': '127.0.0.1', 'port': {agent.port}, 'protocol': 'v2c',
            'community': 'apc', 'model': 'apc', 'interval': 0.2}}
        """
    )
    assert one_reading(client, 2) == {"node-1": 88, "node-3": 0}
    assert process.stop() == 0


def test_kwapi_drivers_refuses_an_unknown_model(tmpdir_short):
    parameters = "{'host': 'pdu-1', 'model': 'acme'}"
    line = expect_config_error(tmpdir_short, "Rack 1 PDU", "Snmp", "['node-1']", parameters)
    assert "model" in line
