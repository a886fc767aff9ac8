"""Time-series stores from Debian's packages, each started on a free port:
VictoriaMetrics, vmagent in front of it, and InfluxDB 1.x."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from tests.harness.processes import free_tcp_port, short_tmpdir, stop_process, wait_for

VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
VMAGENT = shutil.which("vmagent") or "/usr/bin/vmagent"
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


def http_get(url: str, timeout: float = 10.0) -> bytes:
    """The body of a GET of *url* (raises on a status other than 2xx)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def answers(url: str) -> bool:
    """Tell whether *url* answers a GET with 2xx."""
    try:
        http_get(url, timeout=2.0)
    except OSError:
        return False
    return True


class StoreProcess:
    """A store's process: its port, its data folder and its output file."""

    name = "store"

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = Path(data_dir or short_tmpdir(self.name[:4]))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_tcp_port()
        self.log_path = self.data_dir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        """The HTTP root, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that starts the store."""
        raise NotImplementedError

    def ready_url(self) -> str:
        """A URL that answers 2xx once the store takes writes."""
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        """Start the store (again, on the same port and data) and wait until it answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._running() and answers(self.ready_url()), timeout, self.name)

    def _running(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.output()[-2000:]}")
        return True

    def stop(self) -> None:
        """Stop the store (SIGTERM, then SIGKILL after 20 s)."""
        if self.process is not None:
            stop_process(self.process, timeout=20)
            self.process = None

    def output(self) -> str:
        """What the store printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Stop it and remove its data."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class VictoriaMetricsProcess(StoreProcess):
    """A program of VictoriaMetrics' package: /health, and line protocol on /write."""

    def ready_url(self) -> str:
        return f"{self.root}/health"

    @property
    def write_url(self) -> str:
        """The InfluxDB line-protocol endpoint."""
        return f"{self.root}/write"


class VictoriaMetrics(VictoriaMetricsProcess):
    """A single-node VictoriaMetrics, deduplicating samples of one series in the
    same millisecond (as kwapi's docs configure it)."""

    name = "victoria-metrics"

    def command(self) -> list[str]:
        return [
            VICTORIA_METRICS,
            f"-storageDataPath={self.data_dir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-dedup.minScrapeInterval=1ms",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=ERROR",
        ]

    def flush(self) -> None:
        """Make every sample written so far visible to queries."""
        http_get(f"{self.root}/internal/force_flush")

    def export(self, match: str = '{__name__=~"kwapi_.*"}') -> list[dict[str, object]]:
        """Every series matching *match*, with its raw samples (the export API)."""
        self.flush()
        query = urllib.parse.urlencode({"match[]": match})
        body = http_get(f"{self.root}/api/v1/export?{query}", timeout=60)
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def samples(
        self, match: str = '{__name__=~"kwapi_.*"}'
    ) -> dict[str, list[tuple[float, float]]]:
        """(seconds, value) of every sample per probe tag, sorted by time."""
        series: dict[str, list[tuple[float, float]]] = {}
        for line in self.export(match):
            metric = line["metric"]
            assert isinstance(metric, dict)
            values = line["values"]
            timestamps = line["timestamps"]
            assert isinstance(values, list) and isinstance(timestamps, list)
            points = series.setdefault(str(metric.get("probe")), [])
            points.extend((t / 1000.0, v) for t, v in zip(timestamps, values, strict=True))
        for points in series.values():
            points.sort()
        return series


class Vmagent(VictoriaMetricsProcess):
    """A vmagent that takes line protocol on /write and remote-writes to *target*
    (a VictoriaMetrics), buffering on disk while the target is away."""

    name = "vmagent"

    def __init__(self, target: VictoriaMetrics, data_dir: Path | None = None) -> None:
        super().__init__(data_dir)
        self.target = target

    def command(self) -> list[str]:
        return [
            VMAGENT,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-remoteWrite.url={self.target.root}/api/v1/write",
            f"-remoteWrite.tmpDataPath={self.data_dir / 'buffer'}",
            "-remoteWrite.flushInterval=200ms",
            "-loggerLevel=ERROR",
        ]


class InfluxDB(StoreProcess):
    """An InfluxDB 1.x with HTTP on a free port and database *database* created."""

    name = "influxdb"

    def __init__(self, data_dir: Path | None = None, database: str = "kwapi") -> None:
        super().__init__(data_dir)
        self.database = database
        self.rpc_port = free_tcp_port()

    def command(self) -> list[str]:
        config = self.data_dir / "influxdb.conf"
        config.write_text(
            f'reporting-enabled = false\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{self.data_dir}/meta"\n'
            f'[data]\n  dir = "{self.data_dir}/data"\n  wal-dir = "{self.data_dir}/wal"\n'
            "  query-log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            '[logging]\n  level = "error"\n'
        )
        return [INFLUXD, "-config", str(config)]

    def ready_url(self) -> str:
        return f"{self.root}/ping"

    def start(self, timeout: float = 30.0) -> None:
        super().start(timeout)
        self.query(f'CREATE DATABASE "{self.database}"', method="POST")

    @property
    def write_url(self) -> str:
        """The line-protocol endpoint of the database."""
        return f"{self.root}/write?db={self.database}&precision=ns"

    def query(self, influxql: str, method: str = "GET") -> dict[str, object]:
        """The JSON answer of an InfluxQL query."""
        params = urllib.parse.urlencode({"q": influxql, "db": self.database, "epoch": "ms"})
        request = urllib.request.Request(f"{self.root}/query?{params}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert isinstance(answer, dict)
        return answer
