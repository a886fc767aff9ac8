"""The shipped alert rules in a real Prometheus, scraping real kwapi daemons that really break.

kwapi-drivers reads a simulated BMC (RMCP+) and an ffmpeg stream, and
serves its health metrics; kwapi-api and kwapi-rrd listen to its bus and to
a second endpoint where the test publishes a forged message.  Prometheus
(Debian's package) scrapes all three every second and evaluates the
shipped rules every second, their ``for:`` durations shortened to 2 s (the
expressions are the shipped ones).  The test silences the BMC, stops the
stream and forges a message, sees each alert firing through Prometheus'
HTTP API, then brings the devices back and sees their alerts resolved.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from kwapi.bus.protocol import Measurement
from tests.drivers.simulators.bmc_fleet_fast import BmcFleetProcess
from tests.harness.bus import bus_publisher
from tests.harness.configs import api_config, drivers_conf, rrd_conf, write_config
from tests.harness.http import get, get_json
from tests.harness.processes import free_tcp_port, stop_process, wait_for

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
FFMPEG = shutil.which("ffmpeg")
RULES = Path(__file__).resolve().parents[2] / "etc" / "prometheus" / "kwapi-rules.yml"
BMC_PASSWORD = "bmc-Passw0rd"

pytestmark = pytest.mark.skipif(
    not (PROMETHEUS and PROMTOOL and FFMPEG),
    reason="prometheus and ffmpeg are installed by `make test` (Debian packages)",
)


class Stream:
    """A live MPEG-TS test pattern on UDP from ffmpeg, restartable."""

    def __init__(self, port: int) -> None:
        self.url = f"udp://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
                "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10",
                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                "-g", "10", "-f", "mpegts", self.url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def short_rules(directory: Path) -> Path:
    """The shipped rules with every ``for:`` at 2 s, so that a test need not wait minutes."""
    text = re.sub(r"(\n\s+for: )\d+[smh]", r"\g<1>2s", RULES.read_text())
    path = directory / "kwapi-rules.yml"
    path.write_text(text)
    return path


def prometheus_config(directory: Path, targets: dict[str, int], rules: Path) -> Path:
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for job, port in targets.items()
    )
    text = (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules}\nscrape_configs:\n{jobs}"
    )
    return write_config(directory, "prometheus.yml", text)


class Prometheus:
    """The real prometheus binary on a free port, its answers as JSON."""

    def __init__(self, directory: Path, config: Path) -> None:
        self.port = free_tcp_port()
        self.process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._ready, 30, "prometheus to be ready")

    def _ready(self) -> bool:
        return get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)[0] == 200

    def api(self, path: str, **query: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return get_json(url)["data"]

    def firing(self, name: str, **labels: str) -> list[dict]:
        """The alerts *name* now firing whose labels include *labels*."""
        return [
            alert
            for alert in self.api("alerts")["alerts"]
            if alert["labels"]["alertname"] == name
            and alert["state"] == "firing"
            and all(alert["labels"].get(key) == value for key, value in labels.items())
        ]

    def targets_up(self) -> set[str]:
        return {
            target["labels"]["job"]
            for target in self.api("targets")["activeTargets"]
            if target["health"] == "up"
        }

    def stop(self) -> None:
        stop_process(self.process)


def scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read()


@pytest.fixture
def room(daemon, tmpdir_short, tmp_path):
    """A BMC, a stream, the three daemons and Prometheus, all running; stopped at teardown."""
    bmc = BmcFleetProcess([{"username": "admin", "password": BMC_PASSWORD, "watts": 210}])
    stream = Stream(free_tcp_port())
    stream.start()
    ports = {"kwapi-drivers": free_tcp_port(), "kwapi-api": free_tcp_port()}
    ports["kwapi-rrd"] = free_tcp_port()
    bus, forged = f"ipc://{tmpdir_short}/drivers", f"ipc://{tmpdir_short}/forged"
    sections = f"""
        [BMC 1]
        driver = Ipmi
        probes = ['node-1']
        parameters = {{'host': '127.0.0.1', 'port': {bmc.ports[0]}, 'username': 'admin',
            'password': '{BMC_PASSWORD}', 'interval': 0.5, 'max_backoff': 1}}

        [Streams]
        driver = Ffprobe
        probes = ['stream-1']
        parameters = {{'urls': ['{stream.url}'], 'interval': 1, 'max_backoff': 1}}
        """
    config = drivers_conf(tmpdir_short, bus, sections, f"metrics_port = {ports['kwapi-drivers']}")
    daemon("kwapi-drivers", "--config-file", str(config))
    both = f"{bus}, {forged}"
    api = api_config(tmpdir_short, ports["kwapi-api"], probes_endpoint=both)
    daemon("kwapi-api", "--config-file", str(api))
    rrd = rrd_conf(tmpdir_short, both, ports["kwapi-rrd"], tmp_path / "rrd")
    daemon("kwapi-rrd", "--config-file", str(rrd))
    prometheus = Prometheus(tmp_path, prometheus_config(tmp_path, ports, short_rules(tmp_path)))
    yield prometheus, bmc, stream, ports, forged
    prometheus.stop()
    stream.stop()
    bmc.stop()


def test_alerts_fire_when_things_break_and_resolve_when_they_come_back(room):
    prometheus, bmc, stream, ports, forged = room
    wait_for(lambda: prometheus.targets_up() == set(ports), 60, "every daemon scraped")
    for job, port in ports.items():  # what Prometheus scrapes passes its own lint
        check = subprocess.run(
            [str(PROMTOOL), "check", "metrics"], input=scrape(port), capture_output=True
        )
        assert check.returncode == 0, (job, check.stdout, check.stderr)

    def up(section: str) -> bool:
        values = prometheus.api("query", query=f'kwapi_driver_up{{section="{section}"}}')
        return [sample["value"][1] for sample in values["result"]] == ["1"]

    wait_for(lambda: up("BMC 1") and up("Streams"), 60, "the BMC and the stream read")
    wait_for(lambda: prometheus.api("query", query="kwapi_up")["result"], 60, "the stream's up")

    bmc.command("silence 0")
    wait_for(lambda: prometheus.firing("KwapiDriverDown", section="BMC 1"), 60, "BMC down")
    stream.stop()
    wait_for(lambda: prometheus.firing("KwapiStreamDown", probe="stream-1"), 60, "stream down")

    publisher = bus_publisher(forged, secret="not-the-secret")
    try:

        def forgery_alert() -> list[dict]:
            publisher.publish(Measurement("node-1", 1.0, {"w": 1.0}))
            return prometheus.firing("KwapiBusForgeryOrReplay", reason="bad_signature")

        alerts = wait_for(forgery_alert, 60, "the forgery alert")
    finally:
        publisher.close()
    assert {alert["labels"]["job"] for alert in alerts} <= {"kwapi-api", "kwapi-rrd"}
    assert alerts[0]["labels"]["category"] == "security"
    assert "bad_signature" in alerts[0]["annotations"]["summary"]

    bmc.command("revive 0")
    stream.start()
    wait_for(lambda: not prometheus.firing("KwapiDriverDown"), 90, "the BMC alert resolved")
    wait_for(lambda: not prometheus.firing("KwapiStreamDown"), 90, "the stream alert resolved")
    assert prometheus.targets_up() == set(ports)
