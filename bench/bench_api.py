"""kwapi-api: ingest rate beside raw pyzmq, and GET /v1/probes/ latency and memory.

1. Ingest: the bench process publishes the same pre-encoded, signed
   measurements on ipc:// first to a raw pyzmq SUB process that only counts,
   then to a real kwapi-api process (one at a time: the machine may have
   only two cores); each rate runs from the start of publishing to the last
   message the subscriber took (kwapi-api: its accepted counter, read from
   /healthz).
2. Latency: a fresh kwapi-api is fed 10, 1,000 and 10,000 probes, then
   GET /v1/probes/ is timed over one keep-alive connection, beside GET /v1/
   (a constant, tiny document) as the floor of the same server in the same
   run; memory per probe is the growth of the process' RSS divided by the
   number of probes: once the probes are in (fed), after the requests, and
   settled, TRIM_PERIOD + 1 s later (kwapi-api then has given its heap's
   free pages back to the system).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import time
from http.client import HTTPConnection

import zmq

from bench.spread import bound_pub
from kwapi.bus.protocol import Measurement
from kwapi.bus.signing import Signer
from kwapi.plugins.api.memory import TRIM_PERIOD
from tests.harness.bus import SECRET
from tests.harness.configs import api_config
from tests.harness.http import get_json
from tests.harness.processes import Daemon, free_tcp_port, short_tmpdir, wait_for

INGEST_MESSAGES = int(os.environ.get("KWAPI_BENCH_API_MESSAGES", "200000"))
INGEST_PROBES = 1000
PROBE_COUNTS = (10, 1_000, 10_000)
WARMUP_PROBE = "warmup"


class Api:
    """A kwapi-api subprocess on a throw-away configuration."""

    def __init__(self, directory: str, bus: str, **options: object) -> None:
        self.port = free_tcp_port()
        values: dict[str, object] = {"state_save_interval": 3600, "receiver_hwm": 10_000_000}
        conf = api_config(directory, self.port, probes_endpoint=bus, **{**values, **options})
        self.process = Daemon("kwapi-api", "--config-file", str(conf))
        wait_for(self.health, 30, "kwapi-api to start")

    def health(self) -> dict | None:
        try:
            return get_json(f"http://127.0.0.1:{self.port}/healthz", timeout=5)
        except (OSError, ValueError):
            return None

    def accepted(self) -> int:
        return self.health()["receiver"]["accepted"]

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.stop(30)
        self.process.close()


def _signed_frames(measurements: list[Measurement]) -> list[list[bytes]]:
    signer = Signer(SECRET)
    frames = []
    for measurement in measurements:
        topic, payload = measurement.encode()
        frames.append([topic, payload, signer.sign(payload)])
    return frames


def _raw_subscriber(endpoint: str, count: int, ready, result) -> None:
    """Child process: count measured messages; report when the last one arrived."""
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 10 * count)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    warm_topic = WARMUP_PROBE.encode() + b"."
    received, last = 0, 0.0
    while received < count and sock.poll(10_000):
        frames = sock.recv_multipart()
        if frames[0] == warm_topic:
            ready.set()
            continue
        received += 1
        last = time.monotonic()
    result.put((received, last))
    sock.close()


def _warm_up(pub: zmq.Socket, ready) -> None:
    """Send warm-up measurements until *ready*() says the subscriber gets them."""
    base = time.time() - 100
    sent = 0

    def arrived() -> bool:
        nonlocal sent
        sent += 1
        measurement = Measurement(WARMUP_PROBE, base + sent * 1e-3, {"w": 0.0})
        pub.send_multipart(_signed_frames([measurement])[0])
        return ready()

    wait_for(arrived, 30, "the subscriber")


def _ingest_raw(messages: list[list[bytes]]) -> dict[str, float]:
    directory = short_tmpdir("kwbr")
    endpoint = f"ipc://{directory}/bus"
    pub = bound_pub(endpoint)
    context = multiprocessing.get_context("spawn")
    ready, result = context.Event(), context.Queue()
    raw = context.Process(target=_raw_subscriber, args=(endpoint, len(messages), ready, result))
    raw.start()
    try:
        _warm_up(pub, ready.is_set)
        start = time.monotonic()
        for frames in messages:
            pub.send_multipart(frames)
        sent = time.monotonic()
        received, last = result.get(timeout=120)
        raw.join(10)
        return {"rate": received / (last - start), "received": received, "sent": sent - start}
    finally:
        pub.close()
        if raw.is_alive():
            raw.terminate()
        shutil.rmtree(directory, ignore_errors=True)


def _ingest_api(messages: list[list[bytes]]) -> dict[str, float]:
    directory = short_tmpdir("kwba")
    endpoint = f"ipc://{directory}/bus"
    pub = bound_pub(endpoint)
    api = Api(directory, endpoint)
    try:
        _warm_up(pub, lambda: api.accepted() > 0)
        baseline = api.accepted()
        start = time.monotonic()
        for frames in messages:
            pub.send_multipart(frames)
        sent = time.monotonic()
        target = baseline + len(messages)
        last_count, last_change = baseline, time.monotonic()
        while True:
            accepted = api.accepted()
            now = time.monotonic()
            if accepted >= target:
                break
            if accepted != last_count:
                last_count, last_change = accepted, now
            elif now - last_change > 5:
                break  # nothing more is coming: some were dropped
            time.sleep(0.005)
        received = accepted - baseline
        return {"rate": received / (now - start), "received": received, "sent": sent - start}
    finally:
        api.stop()
        pub.close()
        shutil.rmtree(directory, ignore_errors=True)


def bench_ingest(count: int = INGEST_MESSAGES) -> dict[str, dict[str, float]]:
    """Messages per second taken by raw pyzmq, then by kwapi-api, from the same frames."""
    base = time.time()
    messages = _signed_frames(
        [
            Measurement(f"node-{i % INGEST_PROBES}", base + 1 + i * 1e-6, {"w": 100.0 + i % 97})
            for i in range(count)
        ]
    )
    return {"raw": _ingest_raw(messages), "api": _ingest_api(messages)}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _time_gets(
    connection: HTTPConnection, path: str, repeat: int, headers: dict | None = None
) -> tuple[list[float], int]:
    timings, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        timings.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        size = len(body)
    return timings, size


def bench_latency(probes: int) -> dict[str, float]:
    """GET /v1/probes/ p50/p99 and RSS per probe with *probes* probes."""
    directory = short_tmpdir("kwbl")
    endpoint = f"ipc://{directory}/bus"
    pub = bound_pub(endpoint)
    api = Api(directory, endpoint)
    try:
        base = time.time()
        _warm_up(pub, lambda: api.accepted() > 0)
        connection = HTTPConnection("127.0.0.1", api.port, timeout=30)
        _time_gets(connection, "/v1/", 20)  # warm the server and the connection up
        rss_before = api.rss_bytes()
        baseline = api.accepted()
        # Two readings per probe, so every probe has power and energy.
        messages = _signed_frames(
            [
                Measurement(f"node-{i:05d}.rack-{i % 40:02d}", base + step, {"w": 150.0 + i % 50})
                for step in (0.0, 1.0)
                for i in range(probes)
            ]
        )
        for frames in messages:
            pub.send_multipart(frames)
        wait_for(lambda: api.accepted() >= baseline + len(messages), 120, "every probe")
        rss_fed = api.rss_bytes()
        repeat = 200 if probes <= 1_000 else 60
        probes_times, size = _time_gets(connection, "/v1/probes/", repeat)
        floor_times, _ = _time_gets(connection, "/v1/", repeat)
        metrics_times, metrics_size = _time_gets(connection, "/metrics", max(10, repeat // 10))
        gzip_times, gzip_size = _time_gets(
            connection, "/metrics", max(10, repeat // 10), {"Accept-Encoding": "gzip"}
        )
        rss_after = api.rss_bytes()
        connection.close()
        # kwapi-api gives its heap's free pages back every TRIM_PERIOD seconds
        # (not worth the wait where the growth is noise anyway).
        if probes >= 1_000:
            time.sleep(TRIM_PERIOD + 1)
        rss_settled = api.rss_bytes()
        return {
            "probes": probes,
            "p50": _percentile(probes_times, 0.50),
            "p99": _percentile(probes_times, 0.99),
            "floor_p50": _percentile(floor_times, 0.50),
            "mean": statistics.fmean(probes_times),
            "size": size,
            "metrics_p50": _percentile(metrics_times, 0.50),
            "metrics_size": metrics_size,
            "metrics_gzip_p50": _percentile(gzip_times, 0.50),
            "metrics_gzip_size": gzip_size,
            "rss_per_probe": (rss_after - rss_before) / probes,
            "rss_fed_per_probe": (rss_fed - rss_before) / probes,
            "rss_settled_per_probe": (rss_settled - rss_before) / probes,
            "rss_after": rss_after,
        }
    finally:
        api.stop()
        pub.close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    """Print the ingest rates with their ratio, then latency and memory per probe count."""
    print(
        f"ingest: {INGEST_MESSAGES} signed measurements, {INGEST_PROBES} probes, ipc://; "
        "the same pre-encoded frames sent to a raw pyzmq SUB, then to kwapi-api"
    )
    ingest = bench_ingest()
    raw, api = ingest["raw"], ingest["api"]
    for label, r in (("raw pyzmq SUB (counts)", raw), ("kwapi-api (accepted)", api)):
        print(
            f"  {label:24s} {r['rate']:>10,.0f} msg/s ({r['received']} of {INGEST_MESSAGES}; "
            f"publisher sent at {INGEST_MESSAGES / r['sent']:,.0f} msg/s)"
        )
    print(f"  kwapi-api / raw pyzmq    {api['rate'] / raw['rate']:.2f}")
    print("GET /v1/probes/ (keep-alive connection; floor = GET /v1/ on the same server)")
    print(
        "  probes    p50 ms    p99 ms  floor p50 ms  p50/floor  body bytes"
        "  RSS B/probe: fed  after  settled  /metrics p50 ms  bytes  gzip p50 ms  bytes"
    )
    for probes in PROBE_COUNTS:
        r = bench_latency(probes)
        per_probe = (
            f"{r['rss_fed_per_probe']:>16,.0f}{r['rss_per_probe']:>7,.0f}"
            f"{r['rss_settled_per_probe']:>9,.0f}"
            if probes >= 1_000
            else "(noise)"
        )
        print(
            f"  {probes:>6}  {r['p50'] * 1e3:>8.2f}  {r['p99'] * 1e3:>8.2f}  "
            f"{r['floor_p50'] * 1e3:>12.2f}  {r['p50'] / r['floor_p50']:>9.1f}  "
            f"{r['size']:>10,}  {per_probe:>32}  {r['metrics_p50'] * 1e3:>15.1f}"
            f"  {r['metrics_size']:>9,}  {r['metrics_gzip_p50'] * 1e3:>11.1f}"
            f"  {r['metrics_gzip_size']:>7,}"
        )


if __name__ == "__main__":
    main()
