"""kwapi-history: samples per second into VictoriaMetrics, beside a bare writer.

Two measures, in one run against one VictoriaMetrics:

1. Bare writer: the bench process posts, one after the other over one
   keep-alive connection, the gzipped line-protocol bodies kwapi-history
   sends for the same samples (``batch_size`` lines each, measurement
   ``bare``, as long as ``kwapi``), made by kwapi-history's own functions
   (``LineFormat.text``, ``writer.bodies``, ``writer.gzip_body``: the same
   bytes, gzip level 1), and times them until the last answer: the store's
   own rate, with a writer doing nothing else. The bodies are made before
   the clock starts: the bare writer pays neither the formatting nor gzip,
   which kwapi-history pays inside its figure.
   kwapi-history, burst: the same samples, as signed batches of 50 samples
   (1,000 probes, one second of 50 Hz each), are published over ``ipc://``
   as fast as pyzmq sends pre-encoded frames; the rate runs from the first
   message to the moment kwapi-history has written every sample (its
   counter of samples written, read from /healthz). The two alternate for
   ``KWAPI_BENCH_HISTORY_ROUNDS`` rounds (3), each round on new series;
   the medians and the median of the rounds' ratios are reported.
2. kwapi-history, sustained: 1,000 probes x 50 samples a second, each
   probe's one-second batch published once a second (spread evenly over the
   second), for ``KWAPI_BENCH_HISTORY_SECONDS``; reported: how far behind
   the writes fell (most samples held in memory, the time to write the last
   second after it was published), and the samples the store holds.

Every count is read back from VictoriaMetrics (export API) after the run:
"lost" is published minus stored. VictoriaMetrics runs with
``-dedup.minScrapeInterval=1ms`` as doc/history.rst configures it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import threading
import time
import urllib.parse
from collections.abc import Iterator

import orjson
import zmq

from kwapi.bus.protocol import Batch
from kwapi.bus.signing import Signer
from kwapi.plugins.history.lineprotocol import LineFormat
from kwapi.plugins.history.writer import bodies as split_bodies
from kwapi.plugins.history.writer import gzip_body
from tests.harness.bus import SECRET
from tests.harness.history import history_conf
from tests.harness.http import get
from tests.harness.processes import Daemon, free_tcp_port, short_tmpdir, wait_for
from tests.harness.stores import VictoriaMetrics

PROBES = int(os.environ.get("KWAPI_BENCH_HISTORY_PROBES", "1000"))
RATE_HZ = 50  # samples per probe per second, one batch a second
BURST_SECONDS = int(os.environ.get("KWAPI_BENCH_HISTORY_BURST", "20"))
SUSTAINED_SECONDS = int(os.environ.get("KWAPI_BENCH_HISTORY_SECONDS", "30"))
ROUNDS = int(os.environ.get("KWAPI_BENCH_HISTORY_ROUNDS", "3"))
BATCH_SIZE = 5000  # kwapi-history's default


def batches(prefix: str, start: float, seconds: int) -> Iterator[list[Batch]]:
    """One list per second: each probe's batch of RATE_HZ samples (whole milliseconds)."""
    step = 1.0 / RATE_HZ
    for second in range(seconds):
        stamps = [round(start + second + i * step, 3) for i in range(RATE_HZ)]
        yield [
            Batch(
                f"{prefix}-{probe:04d}",
                stamps,
                {"w": [100.0 + (probe + second + i) % 97 for i in range(RATE_HZ)]},
            )
            for probe in range(PROBES)
        ]


def signed(messages: list[Batch]) -> list[list[bytes]]:
    """The frames of *messages*, signed."""
    signer = Signer(SECRET)
    frames = []
    for message in messages:
        topic, payload = message.encode()
        frames.append([topic, payload, signer.sign(payload)])
    return frames


def bodies(messages: list[Batch], measurement: str) -> list[bytes]:
    """The gzipped bodies kwapi-history sends for *messages* (BATCH_SIZE lines each):
    formatted, cut and compressed by kwapi-history's own functions."""
    line_format = LineFormat(measurement)
    texts = [line_format.text(message) for message in messages]
    return [gzip_body(body) for body, _ in split_bodies(texts, BATCH_SIZE)]


def bare_writer(store: VictoriaMetrics, posts: list[bytes]) -> float:
    """Post *posts* one after the other; the seconds until the last answer."""
    connection = http.client.HTTPConnection("127.0.0.1", store.port, timeout=60)
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
    started = time.perf_counter()
    for body in posts:
        connection.request("POST", "/write?precision=ms", body, headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 204, response.status
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


class History:
    """kwapi-history writing to *store*, listening to a PUB socket of the bench."""

    def __init__(self, directory: str, store: VictoriaMetrics) -> None:
        self.bus = f"ipc://{directory}/bus"
        self.pub = zmq.Context.instance().socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 0)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(self.bus)
        self.port = free_tcp_port()
        config = history_conf(
            directory,
            store.write_url,
            self.port,
            probes_endpoint=self.bus,
            flush_interval=1.0,
            batch_size=BATCH_SIZE,
            receiver_hwm=10_000_000,
        )
        self.process = Daemon("kwapi-history", "--config-file", str(config))
        wait_for(lambda: get(f"http://127.0.0.1:{self.port}/healthz")[0] == 200, 30, "start")

    def writer(self, part: str = "writer") -> dict[str, int]:
        """The writer's (or the spool's) counters from /healthz (cheaper than /metrics)."""
        status, body = get(f"http://127.0.0.1:{self.port}/healthz")
        assert status == 200, body
        counters: dict[str, int] = orjson.loads(body)[part]
        return counters

    def warm_up(self) -> None:
        """Publish a sample until it is received (the subscription is then in place)."""
        stamp = time.time() - 60

        def received() -> bool:
            nonlocal stamp
            stamp += 0.001
            self.pub.send_multipart(signed([Batch("warmup", [stamp], {"w": [0.0]})])[0])
            return self.writer()["received"] > 0

        wait_for(received, 30, "kwapi-history to receive")

    def written_by(self, target: float, timeout: float = 300) -> float:
        """Wait until *target* samples are written; the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while self.writer()["written"] < target:
            assert time.monotonic() < deadline, "kwapi-history did not write every sample"
            time.sleep(0.05)
        return time.monotonic()

    def close(self) -> None:
        self.process.stop(60)
        self.process.close()
        self.pub.close()


def burst(history: History, frames: list[list[bytes]], samples: int) -> float:
    """Publish *frames* at once; seconds until kwapi-history wrote their *samples*."""
    before = history.writer()["written"]
    started = time.monotonic()
    for message in frames:
        history.pub.send_multipart(message)
    return history.written_by(before + samples) - started


def sustained(history: History, seconds: int) -> dict[str, float]:
    """Publish 1 s batches of every probe each second for *seconds*; lag figures."""
    start = float(int(time.time()) + 2)
    rounds = [signed(messages) for messages in batches("s", start, seconds)]
    before = history.writer()["written"]
    most_pending = 0.0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most_pending
        while not stop.wait(0.25):
            pending = history.writer()["pending"]
            most_pending = max(most_pending, pending)

    watcher = threading.Thread(target=watch, daemon=True)
    slices = 10  # each second's messages in ten slices, 100 ms apart
    while time.time() < start + 1:
        time.sleep(0.01)
    watcher.start()
    for second, frames in enumerate(rounds):
        # The batch of second k is complete, hence published, at start + k + 1.
        for part in range(slices):
            due = start + second + 1 + part / slices
            while (left := due - time.time()) > 0:
                time.sleep(min(left, 0.01))
            for message in frames[part::slices]:
                history.pub.send_multipart(message)
    last_published = time.monotonic()
    done = history.written_by(before + seconds * PROBES * RATE_HZ)
    stop.set()
    watcher.join(5)
    return {"most_pending": most_pending, "last_second_written_after": done - last_published}


def stored(store: VictoriaMetrics, name: str) -> int:
    """Samples of the series *name* matches in the store (export API)."""
    store.flush()
    query = urllib.parse.urlencode({"match[]": name})
    status, body = get(f"{store.root}/api/v1/export?{query}", timeout=300)
    assert status == 200
    return sum(len(orjson.loads(line)["values"]) for line in body.splitlines() if line)


def rounds_of_burst(store: VictoriaMetrics, history: History) -> list[tuple[float, float]]:
    """(bare writer, kwapi-history) samples/s of each round, fresh series in each."""
    results = []
    for index in range(ROUNDS):
        start = float(int(time.time()) - 150)
        messages = [m for second in batches(f"b{index}", start, BURST_SECONDS) for m in second]
        samples = len(messages) * RATE_HZ
        posts = bodies(messages, f"bare{index}")
        frames = signed(messages)
        bare = samples / bare_writer(store, posts)
        kwapi = samples / burst(history, frames, samples)
        results.append((bare, kwapi))
        print(
            f"  round {index + 1}: bare writer {bare:,.0f} samples/s, kwapi-history "
            f"{kwapi:,.0f} samples/s, ratio {kwapi / bare:.2f}",
            flush=True,
        )
    return results


def main() -> None:
    directory = short_tmpdir("kwbh")
    store = VictoriaMetrics(f"{directory}/vm")
    store.start()
    history: History | None = None
    try:
        history = History(directory, store)
        history.warm_up()
        samples = BURST_SECONDS * PROBES * RATE_HZ
        body = bodies(next(batches("x", time.time(), 1))[: BATCH_SIZE // RATE_HZ], "x")[0]
        print(
            f"burst: {samples:,} samples a round ({BURST_SECONDS * PROBES:,} batches of "
            f"{RATE_HZ}; bodies of {BATCH_SIZE} lines, {len(body) / 1024:.0f} KiB gzipped), "
            f"{ROUNDS} rounds, the bare writer then kwapi-history in each:",
            flush=True,
        )
        results = rounds_of_burst(store, history)
        bare = statistics.median(b for b, _ in results)
        kwapi = statistics.median(k for _, k in results)
        ratio = statistics.median(k / b for b, k in results)
        print(
            f"burst, median: bare writer {bare:,.0f} samples/s, kwapi-history {kwapi:,.0f} "
            f"samples/s; ratio {ratio:.2f}",
            flush=True,
        )
        figures = sustained(history, SUSTAINED_SECONDS)
        sent = SUSTAINED_SECONDS * PROBES * RATE_HZ
        print(
            f"sustained {PROBES * RATE_HZ:,} samples/s for {SUSTAINED_SECONDS} s "
            f"({PROBES:,} probes x {RATE_HZ} Hz, 1 s batches): at most "
            f"{figures['most_pending']:,.0f} samples in memory; the last second written "
            f"{figures['last_second_written_after']:.2f} s after it was published",
            flush=True,
        )
        spooled = history.writer("spool")["spooled"]
        print(f"spooled on the way (a backlog over 500,000 samples): {spooled:,}", flush=True)
        history.close()
        history = None
        burst_stored = stored(store, '{__name__="kwapi_w",probe=~"b.*"}')
        bare_stored = stored(store, '{__name__=~"bare.*_w"}')
        sustained_stored = stored(store, '{__name__="kwapi_w",probe=~"s-.*"}')
        print(
            f"in the store: bare writer {bare_stored:,} of {ROUNDS * samples:,}; kwapi-history "
            f"burst {burst_stored:,} of {ROUNDS * samples:,}, sustained {sustained_stored:,} of "
            f"{sent:,}; lost: {ROUNDS * samples - burst_stored + sent - sustained_stored:,}",
            flush=True,
        )
    finally:
        if history is not None:
            history.close()
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
