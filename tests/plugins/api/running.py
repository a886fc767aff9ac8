"""Running a real kwapi-api in tests: config, start, HTTP helpers, a real publisher."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

from kwapi.bus.protocol import Measurement
from kwapi.bus.publisher import Publisher
from kwapi.bus.signing import Signer
from tests.helpers import SECRET, Daemon, free_tcp_port, wait_for, write_config


@dataclass
class HttpResult:
    status: int
    headers: dict
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def request(
    method: str, url: str, headers: dict | None = None, timeout: float = 10.0
) -> HttpResult:
    """One request without following redirects; any status is returned, not raised."""
    parsed = urllib.parse.urlsplit(url)
    connection = HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return HttpResult(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def get_json(url: str, timeout: float = 10.0) -> dict:
    """GET *url* (following redirects) and decode its JSON body; HTTP errors raise."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class ApiProcess:
    """A kwapi-api subprocess and where to reach it."""

    process: Daemon
    directory: Path
    config: Path
    port: int
    bus: str
    state_file: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> dict | None:
        try:
            return get_json(self.url + "/healthz", timeout=2)
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def wait_healthy(self, timeout: float = 20.0) -> dict:
        def ready():
            if self.process.process.poll() is not None:
                raise AssertionError(f"kwapi-api exited early:\n{self.process.output()}")
            return self.healthz()

        return wait_for(ready, timeout, "kwapi-api /healthz")

    def accepted(self) -> int:
        health = self.healthz()
        return health["receiver"]["accepted"] if health else -1


def api_config(directory: str | Path, port: int | None = None, **options: object) -> Path:
    """Write an api.conf in *directory* listening on 127.0.0.1 and an ipc:// bus."""
    directory = Path(directory)
    values = {
        "probes_endpoint": f"ipc://{directory}/bus",
        "driver_metering_secret": SECRET,
        "api_host": "127.0.0.1",
        "api_port": port or free_tcp_port(),
        "state_file": directory / "state.json",
        "state_save_interval": 10,
        **options,
    }
    lines = ["[DEFAULT]"] + [f"{key} = {value}" for key, value in values.items()]
    return write_config(directory, "api.conf", "\n".join(lines) + "\n")


def start_api(daemon_factory, directory: str | Path, **options: object) -> ApiProcess:
    """Start kwapi-api on a fresh config in *directory*; wait until /healthz answers.

    *daemon_factory* is the ``daemon`` fixture; extra *options* go to [DEFAULT]
    (a ``sections`` option, if given, is raw text appended to the file).
    """
    sections = options.pop("sections", "")
    config = api_config(directory, **options)
    if sections:
        config.write_text(config.read_text() + "\n" + sections)
    values = dict(line.split(" = ", 1) for line in config.read_text().splitlines() if " = " in line)
    process = daemon_factory("kwapi-api", "--config-file", str(config))
    api = ApiProcess(
        process,
        Path(directory),
        config,
        int(values["api_port"]),
        values["probes_endpoint"],
        Path(values["state_file"]),
        options,
    )
    api.wait_healthy()
    return api


def bus_publisher(endpoint: str, secret: str | None = SECRET) -> Publisher:
    """A real kwapi Publisher bound on *endpoint* (signed with *secret*)."""
    return Publisher(endpoint, Signer(secret) if secret else None, linger_ms=0)


def publish_first(api: ApiProcess, publisher: Publisher, measurement: Measurement) -> None:
    """Publish *measurement* until kwapi-api has it (ZeroMQ drops what is sent before
    the subscription arrives); later copies are rejected as replays, harmlessly."""
    before = api.accepted()

    def arrived() -> bool:
        publisher.publish(measurement)
        return api.accepted() > before

    wait_for(arrived, 20, f"kwapi-api to receive {measurement.probe_id}")
