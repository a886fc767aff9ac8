"""kwapi-history as the tests start it, and what they feed it through the bus."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from kwapi.bus.protocol import Batch, Measurement, Message
from kwapi.bus.publisher import Publisher
from tests.harness.bus import SECRET, bus_publisher
from tests.harness.configs import write_config
from tests.harness.daemons import StartDaemon
from tests.harness.http import get
from tests.harness.processes import Daemon, free_tcp_port, wait_for

#: Probe of the message published until kwapi-history receives it (see :func:`connect`).
HELLO_PROBE = "hello"


@dataclass
class HistoryProcess:
    """A kwapi-history subprocess, its configuration and where to reach it."""

    process: Daemon
    config: Path
    port: int
    bus: str
    spool_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> dict | None:
        """/healthz (200 or 503), or None while it does not answer."""
        try:
            status, body = get(self.url + "/healthz", timeout=2)
        except (OSError, urllib.error.URLError):
            return None
        return json.loads(body) if status in (200, 503) else None

    def wait_healthy(self, timeout: float = 20.0) -> dict:
        def ready() -> dict | None:
            if not self.process.alive():
                raise AssertionError(f"kwapi-history exited:\n{self.process.output()}")
            return self.healthz()

        return wait_for(ready, timeout, "kwapi-history /healthz")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics: {(name, sorted labels): value}."""
        status, body = get(self.url + "/metrics", timeout=10)
        assert status == 200, body
        values = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return values

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when it is not there)."""
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def accepted(self) -> int:
        health = self.healthz()
        return health["receiver"]["accepted"] if health else -1


def history_conf(
    directory: str | Path, store_url: str, port: int | None = None, **options: object
) -> Path:
    """kwapi-history's configuration in *directory*: the bus on ipc://, writing to
    *store_url*, the spool under *directory*; *options* add to [DEFAULT] or replace."""
    directory = Path(directory)
    values = {
        "probes_endpoint": f"ipc://{directory}/bus",
        "driver_metering_secret": SECRET,
        "history_port": port or free_tcp_port(),
        "store_write_url": store_url,
        "spool_dir": directory / "spool",
        "flush_interval": 0.2,
        "store_retry_interval": 0.05,
        "store_retry_max_interval": 0.5,
        "store_timeout": 5,
        **options,
    }
    lines = ["[DEFAULT]", *(f"{key} = {value}" for key, value in values.items())]
    return write_config(directory, "history.conf", "\n".join(lines) + "\n")


def start_history(
    daemons: StartDaemon, directory: str | Path, store_url: str, **options: object
) -> HistoryProcess:
    """kwapi-history on a fresh configuration (see :func:`history_conf`), once it answers."""
    config = history_conf(directory, store_url, **options)
    return restart_history(daemons, config)


def restart_history(daemons: StartDaemon, config: Path) -> HistoryProcess:
    """kwapi-history on *config*, once it answers."""
    values = dict(line.split(" = ", 1) for line in config.read_text().splitlines() if " = " in line)
    process = daemons("kwapi-history", "--config-file", str(config))
    history = HistoryProcess(
        process,
        config,
        int(values["history_port"]),
        values["probes_endpoint"],
        Path(values["spool_dir"]),
    )
    history.wait_healthy()
    return history


def connect(history: HistoryProcess, publisher: Publisher) -> None:
    """Publish a hello sample until *history* receives it (ZeroMQ drops what is
    sent before the subscription arrives): what follows is received."""
    before = history.accepted()
    stamp = time.time()

    def arrived() -> bool:
        nonlocal stamp
        stamp += 0.001
        publisher.publish(Measurement(HELLO_PROBE, stamp, {"w": 1.0}))
        return history.accepted() > before

    wait_for(arrived, 20, "kwapi-history to receive the bus")


def ms(seconds: float) -> float:
    """*seconds* rounded to the millisecond (what the stores keep)."""
    return round(seconds * 1000) / 1000


def power_series(probes: Sequence[str], seconds: int, start: float) -> dict[str, list]:
    """(timestamp, watts) of 1 Hz samples of each probe over *seconds* from *start*."""
    return {
        probe: [(ms(start + s), float(100 + index + (s * 7 % 13))) for s in range(seconds)]
        for index, probe in enumerate(probes)
    }


def messages(series: dict[str, list], batched: Iterable[str]) -> list[Message]:
    """The messages of *series*: one batch per probe of *batched*, single samples otherwise."""
    batched = set(batched)
    out: list[Message] = []
    for probe, points in series.items():
        if probe in batched:
            out.append(Batch(probe, [t for t, _ in points], {"w": [w for _, w in points]}))
        else:
            out.extend(Measurement(probe, t, {"w": w}) for t, w in points)
    return out


class Load:
    """A thread publishing one sample per probe every *period* seconds, stamped
    with the time (whole milliseconds), and recording when it sent what."""

    def __init__(self, publisher: Publisher, probes: Sequence[str], period: float) -> None:
        self.publisher = publisher
        self.probes = list(probes)
        self.period = period
        self.sent: list[tuple[float, float]] = []  # (timestamp, wall time of publication)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        last = 0.0
        while not self._stop.wait(self.period):
            stamp = max(ms(time.time()), last + 0.001)
            last = stamp
            for probe in self.probes:
                self.publisher.publish(Measurement(probe, stamp, {"w": 50.0}))
            self.sent.append((stamp, time.time()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def rate(self) -> float:
        """Samples published per second."""
        return len(self.probes) / self.period

    def stamps(self, before: float = float("inf"), after: float = 0.0) -> set[float]:
        """Timestamps of the rounds published between wall times *after* and *before*."""
        return {stamp for stamp, wall in self.sent if after <= wall < before}


def bus(directory: str | Path) -> Publisher:
    """The signed publisher kwapi-history of :func:`history_conf` listens to."""
    return bus_publisher(f"ipc://{directory}/bus")
