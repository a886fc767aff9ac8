"""High-frequency meters into kwapi-api: N probes x 50 samples/s, in batches of 1 s.

The bench process publishes, for S seconds, one batched message per probe
and per second (50 timestamps 20 ms apart, 50 power readings), signed, on
ipc://, the N messages of a second spread evenly over it.  The very same
frames go first to a raw pyzmq SUB process that only counts them (the
reference), then to a real ``kwapi-api`` process with its default options
(receiver high-water mark 100,000), one after the other so that neither
competes with the other for the cores.  Per subscriber: messages and
samples taken, lost (sent - accepted - rejected), its CPU (user + system
from /proc/PID/stat, from the first send to the last message taken,
divided by that time).  For kwapi-api, every probe's kWh (GET /v1/probes/)
is then checked against the trapezoid of its samples computed here, to
1e-9 relative.

Environment (to shorten a run):
  KWAPI_BENCH_HF_PROBES    probes (10000)
  KWAPI_BENCH_HF_SECONDS   seconds of publishing (30)
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator

import orjson
import zmq

from bench.bench_api import Api, _warm_up
from bench.bench_load import cpu_seconds, memory
from bench.spread import bound_pub, publish_spread
from kwapi.bus.protocol import topic_for
from kwapi.bus.signing import Signer
from tests.harness.bus import SECRET
from tests.harness.http import get_json
from tests.harness.processes import short_tmpdir, wait_for

PROBES = int(os.environ.get("KWAPI_BENCH_HF_PROBES", "10000"))
SECONDS = int(os.environ.get("KWAPI_BENCH_HF_SECONDS", "30"))
RATE_HZ = 50
STEP = 1.0 / RATE_HZ
JOULES_PER_KWH = 3.6e6


class Load:
    """The batches of the run: probe *p*'s message of second *s*, built on demand.

    Sample *k* of a probe (k = 0, 1, ... over the whole run) is at
    ``t0 + k * STEP`` and reads a deterministic power between 100 and 200 W.
    """

    def __init__(self, probes: int, seconds: int, t0: float) -> None:
        self.probes = [f"hf-{index:05d}" for index in range(probes)]
        self.topics = [topic_for(probe) for probe in self.probes]
        self.seconds = seconds
        self.t0 = t0
        self.signer = Signer(SECRET)

    @property
    def messages(self) -> int:
        return len(self.probes) * self.seconds

    def samples(self, probe: int, second: int) -> tuple[list[float], list[float]]:
        """Timestamps and watts of *probe*'s batch of *second*."""
        first = second * RATE_HZ
        t0 = self.t0
        times = [t0 + k * STEP for k in range(first, first + RATE_HZ)]
        watts = [100.0 + ((k * 37 + probe * 11) % 1000) / 10 for k in range(first, first + RATE_HZ)]
        return times, watts

    def frames(self, index: int) -> list[bytes]:
        """Message *index* (second-major) as its three frames."""
        second, probe = divmod(index, len(self.probes))
        times, watts = self.samples(probe, second)
        payload = orjson.dumps({"probe_id": self.probes[probe], "timestamps": times, "w": watts})
        return [self.topics[probe], payload, self.signer.sign(payload)]

    def expected_kwh(self, probe: int) -> float:
        """The trapezoid of every sample of *probe*, by the rule's text (negative as 0 W)."""
        joules = 0.0
        previous: tuple[float, float] | None = None
        for second in range(self.seconds):
            for t, w in zip(*self.samples(probe, second), strict=True):
                if previous is not None:
                    joules += (max(previous[1], 0.0) + max(w, 0.0)) / 2 * (t - previous[0])
                previous = (t, w)
        return joules / JOULES_PER_KWH


def publish(pub: zmq.Socket, load: Load) -> float:
    """Send every message of *load*, each second's spread over it; return the lateness."""
    return publish_spread(pub, load.frames, load.messages, len(load.probes))


def _raw_subscriber(endpoint: str, count: int, ready, result, finish) -> None:
    """Child process: count the measured messages; report when the last one arrived,
    then stay until *finish* is set (so that its CPU time and memory can be read)."""
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    received, last = 0, time.monotonic()
    while received < count and sock.poll(10_000):
        frames = sock.recv_multipart()
        if frames[0] == b"warmup.":
            ready.set()
            continue
        received += 1
        last = time.monotonic()
    result.put((received, last))
    finish.wait(60)
    sock.close()


def run_raw(load: Load) -> dict[str, float]:
    """The reference: a pyzmq SUB process that only counts the frames."""
    directory = short_tmpdir("kwhr")
    endpoint = f"ipc://{directory}/bus"
    pub = bound_pub(endpoint)
    context = multiprocessing.get_context("spawn")
    ready, result, finish = context.Event(), context.Queue(), context.Event()
    arguments = (endpoint, load.messages, ready, result, finish)
    raw = context.Process(target=_raw_subscriber, args=arguments)
    raw.start()
    try:
        _warm_up(pub, ready.is_set)
        assert raw.pid is not None
        cpu, start = cpu_seconds(raw.pid), time.monotonic()
        late = publish(pub, load)
        received, last = result.get(timeout=120 + load.seconds)
        cpu, rss = cpu_seconds(raw.pid) - cpu, memory(raw.pid)[0]
        finish.set()
        raw.join(10)
        return _row(received, received * RATE_HZ, 0, cpu, last - start, late, rss)
    finally:
        pub.close()
        if raw.is_alive():
            raw.terminate()
        shutil.rmtree(directory, ignore_errors=True)


def run_api(load: Load, check: Callable[[dict], None]) -> dict[str, float]:
    """kwapi-api with its default options; *check* gets its probes at the end."""
    directory = short_tmpdir("kwha")
    endpoint = f"ipc://{directory}/bus"
    pub = bound_pub(endpoint)
    api = Api(directory, endpoint, receiver_hwm=100_000)
    try:
        _warm_up(pub, lambda: api.accepted() > 0)
        before = api.health()["receiver"]
        cpu, start = cpu_seconds(api.process.pid), time.monotonic()
        late = publish(pub, load)
        target = before["accepted"] + load.messages

        def drained() -> dict | None:
            receiver = api.health()["receiver"]
            taken = receiver["accepted"] + sum(receiver["rejected"].values())
            return receiver if taken >= target + sum(before["rejected"].values()) else None

        try:
            after = wait_for(drained, 60, "kwapi-api to take every message")
        except AssertionError:  # some were lost: count them below
            after = api.health()["receiver"]
        wall = time.monotonic() - start
        cpu = cpu_seconds(api.process.pid) - cpu
        probes = get_json(f"http://127.0.0.1:{api.port}/v1/probes/", timeout=60)["probes"]
        check(probes)
        accepted = after["accepted"] - before["accepted"]
        rejected = sum(after["rejected"].values()) - sum(before["rejected"].values())
        samples = after["accepted_samples"] - before["accepted_samples"]
        return _row(accepted, samples, rejected, cpu, wall, late, memory(api.process.pid)[0])
    finally:
        api.stop()
        pub.close()
        shutil.rmtree(directory, ignore_errors=True)


def _row(
    messages: int, samples: int, rejected: int, cpu: float, wall: float, late: float, rss: int
) -> dict[str, float]:
    return {
        "rss": rss,
        "messages": messages,
        "samples": samples,
        "rejected": rejected,
        "cpu": cpu / wall,
        "rate": messages / wall,
        "late": late,
    }


def check_energy(load: Load, probes: dict, verdict: dict[str, object]) -> None:
    """Compare every probe's kWh with the trapezoid of its samples, to 1e-9 relative."""
    worst, wrong, missing = 0.0, 0, 0
    for index, probe in enumerate(load.probes):
        served = probes.get(probe)
        if served is None:
            missing += 1
            continue
        expected = load.expected_kwh(index)
        error = abs(served["kwh"] - expected) / expected
        worst = max(worst, error)
        wrong += error > 1e-9
        if served["timestamp"] != load.t0 + (load.seconds * RATE_HZ - 1) * STEP:
            wrong += 1
    verdict.update(worst=worst, wrong=wrong, missing=missing)


def _lines(load: Load, raw: dict, api: dict, verdict: dict) -> Iterator[str]:
    sent = load.messages
    yield (
        f"{len(load.probes)} probes x {RATE_HZ} samples/s, batch = 1 s, for {load.seconds} s: "
        f"{sent:,} messages, {sent * RATE_HZ:,} samples, signed, ipc://"
    )
    yield (
        "  subscriber             messages  lost  samples/s   msg/s  CPU cores  CPU µs/msg"
        "  RSS MiB  publisher late s"
    )
    for label, row in (("raw pyzmq SUB (counts)", raw), ("kwapi-api (accepted)", api)):
        lost = sent - row["messages"] - row["rejected"]
        yield (
            f"  {label:22s} {row['messages']:>8,}  {lost:>4,}"
            f"  {row['samples'] / load.seconds:>9,.0f}  {row['rate']:>6,.0f}"
            f"  {row['cpu']:>9.2f}  {row['cpu'] / row['rate'] * 1e6:>10.1f}"
            f"  {row['rss'] / 2**20:>7.0f}  {row['late']:>16.2f}"
        )
    yield (
        f"  kwapi-api kWh vs trapezoid: {len(load.probes) - verdict['missing']:,} probes, "
        f"{verdict['wrong']} beyond 1e-9 relative (worst {verdict['worst']:.1e}), "
        f"{verdict['missing']} missing; rejected {api['rejected']}"
    )


def main() -> None:
    """Publish the load to raw pyzmq, then to kwapi-api; print both and the energy check."""
    # Old enough that the last sample is in the past when sent, within the 300 s window.
    load = Load(PROBES, SECONDS, time.time() - SECONDS - 5)
    raw = run_raw(load)
    verdict: dict[str, object] = {}
    api = run_api(load, lambda probes: check_energy(load, probes, verdict))
    for line in _lines(load, raw, api, verdict):
        print(line)


if __name__ == "__main__":
    main()
