"""Load: N probes at R Hz through the real bus, into kwapi-api and kwapi-rrd.

Publisher processes (kwapi's :class:`~kwapi.bus.publisher.Publisher`, each
second's batch of N measurements paced evenly) -> ``kwapi-forwarder`` ->
``kwapi-api``, ``kwapi-rrd`` (through a private ``rrdcached`` on a unix
socket) and, as the reference, a raw pyzmq SUB process that only counts the
same messages.  Every daemon is the real program with its own configuration
file; everything runs on ipc:// in a temporary directory.

Scenarios:

1. ``steady``: N probes (default 10,000) at R Hz each (default 1) for
   ~30 s, every subscriber at once (how kwapi runs).
2. ``ceiling``: one subscriber at a time (raw pyzmq, kwapi-api, kwapi-rrd),
   the rate raised by steps until the subscriber cannot keep up; the highest
   rate it kept up with is its ceiling.  A step is kept up with when nothing
   is lost and at least 97 % of what was sent during the step was handled
   (kwapi-rrd: written) within 0.5 s of the step's end, so the backlog does
   not grow.

Per daemon: measurements/s accepted, lost (sent - accepted - rejected: what
ZeroMQ dropped at a high-water mark, since nothing else drops silently),
rejected (by reason), CPU (user + system seconds from /proc/PID/stat over
the wall time), RSS, and the end-to-end delay p50/p99 from the receivers'
delay histograms (kwapi-api: /healthz, kwapi-rrd: /stats/, raw: the same
buckets, on one message in 16), i.e. from the driver timestamp to the
receiver taking the message.  kwapi-forwarder has a row of its own (steady
scenario): its CPU and RSS, and as relayed and lost what the raw subscriber,
which reads through it, received and missed (the forwarder counts nothing
itself; a loss there is at the forwarder's or the raw subscriber's
high-water mark).

Environment (to shorten a run), or the same as options of
``python -m bench.bench_load`` (--probes, --rate, --seconds, --step,
--publishers, --scenarios, --targets):
  KWAPI_BENCH_LOAD_PROBES       probes (10000)
  KWAPI_BENCH_LOAD_RATE         Hz per probe in the steady scenario (1)
  KWAPI_BENCH_LOAD_SECONDS      seconds of the steady scenario (30)
  KWAPI_BENCH_LOAD_STEP         seconds of each ceiling step (5)
  KWAPI_BENCH_LOAD_PUBLISHERS   publisher processes (1)
  KWAPI_BENCH_LOAD_SCENARIOS    comma-separated: steady,ceiling (both)
  KWAPI_BENCH_LOAD_TARGETS      ceiling subscribers: raw,api,rrd (all)
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from bench.machine import describe_machine
from kwapi.bus.receiver import DELAY_BUCKETS
from tests.harness.bus import SECRET, pending
from tests.harness.configs import api_config, forwarder_conf, rrd_conf
from tests.harness.http import get_json
from tests.harness.processes import free_tcp_port, short_tmpdir, wait_for
from tests.harness.rrd import DEFERRED_WRITES, Rrdcached

PROBES = int(os.environ.get("KWAPI_BENCH_LOAD_PROBES", "10000"))
RATE = float(os.environ.get("KWAPI_BENCH_LOAD_RATE", "1"))
SECONDS = float(os.environ.get("KWAPI_BENCH_LOAD_SECONDS", "30"))
STEP_SECONDS = float(os.environ.get("KWAPI_BENCH_LOAD_STEP", "5"))
PUBLISHERS = int(os.environ.get("KWAPI_BENCH_LOAD_PUBLISHERS", "1"))
SCENARIOS = os.environ.get("KWAPI_BENCH_LOAD_SCENARIOS", "steady,ceiling").split(",")
TARGETS = os.environ.get("KWAPI_BENCH_LOAD_TARGETS", "raw,api,rrd").split(",")
#: Rates of the ceiling search, in measurements per second: up by half each step.
FIRST_RATE = 10_000
RATE_FACTOR = 1.5
MAX_STEPS = 9
KEPT_UP = 0.97
#: Seconds after a step that still count as "in step": kwapi-rrd writes in
#: batches every rrd_batch_interval (0.2 s), and the receivers gather for 5 ms.
GRACE = 0.5
TICK = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent


# -- processes of the bench ------------------------------------------------------


def _publisher_main(endpoint: str, probes: list[str], control) -> None:
    """Child process: publish rounds of *probes* at the rate asked on *control*."""
    from kwapi.bus.protocol import Measurement
    from kwapi.bus.publisher import Publisher
    from kwapi.bus.signing import Signer

    publisher = Publisher(endpoint, Signer(SECRET), sndhwm=1_000_000)
    control.send(("ready", os.getpid()))
    count = len(probes)
    last = 0.0
    while True:
        command = control.recv()
        if command is None:
            break
        rate_hz, seconds = command  # every probe rate_hz times a second, for seconds
        total = int(count * rate_hz * seconds)
        per_second = count * rate_hz
        start = time.perf_counter()
        sent = 0
        late = 0.0
        while sent < total:
            now = time.perf_counter()
            due = min(total, int((now - start) * per_second) + 1)
            if due <= sent:
                time.sleep(max(0.0, start + (sent + 1) / per_second - now))
                continue
            late = max(late, now - (start + sent / per_second))
            now_stamp = time.time()
            for index in range(sent, due):
                # Strictly increasing, so no probe repeats a timestamp even when
                # a late chunk holds it twice (the receivers would reject a replay).
                last = max(now_stamp, last + 1e-6)
                probe = probes[index % count]
                publisher.publish(Measurement(probe, last, {"w": 100.0 + index % 50}))
            sent = due
        elapsed = time.perf_counter() - start
        control.send((sent, elapsed, late))
    publisher.close()


def _raw_main(endpoint: str, counters, delays, ready) -> None:
    """Child process: count every message, and the delay of one in 16 (raw pyzmq)."""
    import orjson

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    ready.set()
    received = 0
    while True:
        if not sock.poll(200):
            continue
        for frames in pending(sock):
            received += 1
            if received % 16 == 0:
                delay = time.time() - orjson.loads(frames[1])["timestamp"]
                delays[bisect.bisect_left(DELAY_BUCKETS, delay)] += 1
        counters[0] = received


# -- what the bench reads of a process -------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of *pid* (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory(pid: int) -> tuple[int, int]:
    """(RSS, peak RSS) of *pid* in bytes."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1]) * 1024
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def quantile(counts: list[int], fraction: float) -> float:
    """Quantile of a histogram over DELAY_BUCKETS, interpolated inside its bucket."""
    total = sum(counts)
    if total == 0:
        return float("nan")
    rank = fraction * total
    seen = 0
    for index, count in enumerate(counts):
        if seen + count >= rank and count:
            low = DELAY_BUCKETS[index - 1] if index else 0.0
            if index >= len(DELAY_BUCKETS):
                return low  # beyond the last bound: a lower bound
            return low + (DELAY_BUCKETS[index] - low) * (rank - seen) / count
        seen += count
    return DELAY_BUCKETS[-1]


@dataclass
class Sample:
    """Counters of one subscriber at one instant."""

    accepted: int
    rejected: dict[str, int]
    delays: list[int]
    cpu: float
    extra: dict = field(default_factory=dict)
    #: Measurements completely handled (kwapi-rrd: written or refused by
    #: the storage, which may lag behind the receiver); None: as accepted.
    handled: int | None = None

    @property
    def done(self) -> int:
        return self.accepted if self.handled is None else self.handled


class Subscriber:
    """A process taking the bus: raw SUB or a kwapi daemon."""

    name = "?"
    process: subprocess.Popen | multiprocessing.Process

    @property
    def pid(self) -> int:
        return self.process.pid

    def sample(self) -> Sample:
        raise NotImplementedError

    def alive(self) -> bool:
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll() is None
        return self.process.is_alive()

    def stop(self) -> None:
        if isinstance(self.process, subprocess.Popen):
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        else:
            self.process.terminate()
            self.process.join(10)


class RawSubscriber(Subscriber):
    name = "raw pyzmq"

    def __init__(self, endpoint: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.counters = context.Array("q", 1, lock=False)
        self.delays = context.Array("q", len(DELAY_BUCKETS) + 1, lock=False)
        ready = context.Event()
        self.process = context.Process(
            target=_raw_main, args=(endpoint, self.counters, self.delays, ready), daemon=True
        )
        self.process.start()
        ready.wait(30)

    def sample(self) -> Sample:
        return Sample(self.counters[0], {}, [16 * c for c in self.delays], cpu_seconds(self.pid))


class Daemon(Subscriber):
    """A kwapi daemon as a subprocess, logging to a file in the work directory;
    *url*, if given, is a JSON document it serves: the daemon is started once
    it answers (within *timeout* seconds)."""

    def __init__(
        self, program: str, directory: Path, conf: Path, url: str = "", timeout: float = 60
    ) -> None:
        self.name = program
        self.url = url
        self.log = directory / f"{program}.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / program), "--config-file", str(conf)], stdout=log, stderr=log
            )
        if url:
            wait_for(self._answers, timeout, program)

    def _answers(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
        try:
            return bool(get_json(self.url))
        except OSError:
            return False


class ApiDaemon(Daemon):
    def __init__(self, directory: Path, bus: str, port: int) -> None:
        conf = api_config(
            directory, port, probes_endpoint=bus, state_file=directory / "api-state.json"
        )
        super().__init__("kwapi-api", directory, conf, f"http://127.0.0.1:{port}/healthz")

    def sample(self) -> Sample:
        receiver = get_json(self.url)["receiver"]
        return Sample(
            receiver["accepted"],
            receiver["rejected"],
            receiver["delay"]["counts"],
            cpu_seconds(self.pid),
            {"handler_errors": receiver["handler_errors"]},
        )


class RrdDaemon(Daemon):
    def __init__(self, directory: Path, bus: str, port: int, rrd_dir: Path, cached: str) -> None:
        conf = rrd_conf(directory, bus, port, rrd_dir, f"rrdcached_address = {cached}")
        url = f"http://127.0.0.1:{port}/stats/"
        super().__init__("kwapi-rrd", directory, conf, url, timeout=120)

    def sample(self) -> Sample:
        body = get_json(self.url)
        receiver, storage = body["receiver"], body["storage"]
        return Sample(
            receiver["accepted"],
            receiver["rejected"],
            receiver["delay"]["counts"],
            cpu_seconds(self.pid),
            {"handler_errors": receiver["handler_errors"], **storage},
            storage["updated"] + storage["dropped_old"] + storage["errors"],
        )


# -- the pipeline ----------------------------------------------------------------


class Pipeline:
    """rrdcached, publishers and the forwarder, plus subscribers started on demand."""

    def __init__(self, probes: int, publishers: int) -> None:
        self.directory = Path(short_tmpdir("kwload"))
        self.rrd_dir = self.directory / "rrd"
        self.rrd_dir.mkdir()
        self.probes = [f"node-{i:05d}.rack-{i % 50:02d}" for i in range(probes)]
        self.subscribers: dict[str, Subscriber] = {}
        self.processes: dict[str, int] = {}
        self._start_rrdcached()
        self._start_publishers(publishers)
        self.bus = f"ipc://{self.directory}/forwarder"
        conf = forwarder_conf(self.directory, self.publisher_endpoints, self.bus)
        self.forwarder = Daemon("kwapi-forwarder", self.directory, conf)
        self.processes["kwapi-forwarder"] = self.forwarder.pid

    def _start_rrdcached(self) -> None:
        self.rrdcached = Rrdcached(self.rrd_dir, writes=DEFERRED_WRITES)
        self.cached_address = self.rrdcached.address
        self.processes["rrdcached"] = self.rrdcached.process.pid

    def _start_publishers(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.publisher_endpoints = []
        self.controls = []
        self.publisher_processes = []
        for index in range(count):
            endpoint = f"ipc://{self.directory}/drivers-{index}"
            parent, child = context.Pipe()
            process = context.Process(
                target=_publisher_main,
                args=(endpoint, self.probes[index::count], child),
                daemon=True,
            )
            process.start()
            _, pid = parent.recv()
            self.processes[f"publisher {index}"] = pid
            self.publisher_endpoints.append(endpoint)
            self.controls.append(parent)
            self.publisher_processes.append(process)

    def start(self, name: str) -> Subscriber:
        if name == "raw":
            subscriber: Subscriber = RawSubscriber(self.bus)
        elif name == "api":
            subscriber = ApiDaemon(self.directory, self.bus, free_tcp_port())
        else:
            subscriber = RrdDaemon(
                self.directory, self.bus, free_tcp_port(), self.rrd_dir, self.cached_address
            )
        self.subscribers[name] = subscriber
        return subscriber

    def stop(self, name: str) -> None:
        self.subscribers.pop(name).stop()

    def publish(self, rate_hz: float, seconds: float) -> tuple[int, float, float]:
        """Every probe *rate_hz* times a second for *seconds*; return (sent, seconds, late)."""
        for control in self.controls:
            control.send((rate_hz, seconds))
        results = [control.recv() for control in self.controls]
        return (
            sum(r[0] for r in results),
            max(r[1] for r in results),
            max(r[2] for r in results),
        )

    def warm_up(self, timeout: float = 300.0) -> None:
        """Send 1 Hz rounds until every subscriber has taken a whole round."""
        deadline = time.monotonic() + timeout
        while True:
            before = {name: s.sample().done for name, s in self.subscribers.items()}
            sent, _, _ = self.publish(1.0, 1.0)
            with contextlib.suppress(RuntimeError):
                self.drain(before, sent, settle=3.0, limit=max(1.0, deadline - time.monotonic()))
            after = {name: s.sample().done for name, s in self.subscribers.items()}
            if all(after[name] - before[name] >= sent for name in after):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"warm-up did not complete: {before} -> {after}, {sent} sent")

    def drain(self, before: dict[str, int], sent: int, settle: float, limit: float) -> float:
        """Wait until every subscriber took *sent* more, or made no progress for *settle* s."""
        last = {}
        changed = time.monotonic()
        deadline = changed + limit
        while True:
            now = {name: s.sample().done for name, s in self.subscribers.items()}
            if all(now[name] - before[name] >= sent for name in now):
                return time.monotonic()
            if now != last:
                last, changed = now, time.monotonic()
            elif time.monotonic() - changed > settle:
                return changed
            if time.monotonic() > deadline:
                raise RuntimeError("subscribers still busy")
            time.sleep(0.1)

    def close(self) -> None:
        for name in list(self.subscribers):
            self.stop(name)
        for control in self.controls:
            control.send(None)
        for process in self.publisher_processes:
            process.join(10)
        self.forwarder.stop()
        self.rrdcached.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Result:
    """What one subscriber did during one measured window."""

    name: str
    sent: int
    accepted: int
    accepted_in_window: int
    rejected: int
    lost: int
    rate: float
    cpu: float
    rss: int
    peak_rss: int
    p50: float
    p99: float
    extra: dict


def measure(pipeline: Pipeline, rate_hz: float, seconds: float) -> tuple[dict, dict]:
    """Publish at *rate_hz* for *seconds*; return (results by subscriber, bench info)."""
    others = pipeline.processes
    before = {name: s.sample() for name, s in pipeline.subscribers.items()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in others.items()}
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    sent, publish_seconds, late = pipeline.publish(rate_hz, seconds)
    send_end = time.monotonic()
    time.sleep(GRACE)  # what is taken in GRACE after the step still counts as in time
    window = {name: s.sample() for name, s in pipeline.subscribers.items()}
    ended = pipeline.drain(
        {name: b.done for name, b in before.items()}, sent, settle=2.0, limit=120
    )
    after = {name: s.sample() for name, s in pipeline.subscribers.items()}
    # Everything taken within GRACE: the step lasted as long as the sending
    # (the CPU used in GRACE is counted in it, erring on the high side).
    in_time = all(window[n].done - before[n].done >= sent for n in pipeline.subscribers)
    wall = (send_end if in_time else max(ended, send_end)) - began
    results = {}
    for name, subscriber in pipeline.subscribers.items():
        b, a, w = before[name], after[name], window[name]
        accepted = a.accepted - b.accepted
        rejected = sum(a.rejected.values()) - sum(b.rejected.values())
        delays = [x - y for x, y in zip(a.delays, b.delays, strict=True)]
        rss, peak = memory(subscriber.pid)
        extra = {
            k: v if k == "probes" else v - b.extra.get(k, 0)
            for k, v in a.extra.items()
            if isinstance(v, int)
        }
        results[name] = Result(
            name=subscriber.name,
            sent=sent,
            accepted=accepted,
            accepted_in_window=w.done - b.done,
            rejected=rejected,
            lost=sent - accepted - rejected,
            rate=accepted / wall,
            cpu=(a.cpu - b.cpu) / wall,
            rss=rss,
            peak_rss=peak,
            p50=quantile(delays, 0.50),
            p99=quantile(delays, 0.99),
            extra=extra,
        )
    info = {
        "sent": sent,
        "send_rate": sent / publish_seconds,
        "late": late,
        "wall": wall,
        "load": (load_before, os.getloadavg()[0]),
        "cpu": {name: (cpu_seconds(pid) - cpu_before[name]) / wall for name, pid in others.items()},
        "forwarder_memory": memory(pipeline.forwarder.pid),
    }
    return results, info


# -- reports ---------------------------------------------------------------------


def _per_message(result: Result) -> float:
    """CPU microseconds per accepted measurement."""
    return result.cpu * 1e6 / result.rate if result.rate else float("nan")


def _ms(seconds: float) -> str:
    return "   n/a" if seconds != seconds else f"{seconds * 1e3:6.1f}"


def print_results(results: dict[str, Result], info: dict) -> None:
    print(
        f"  sent {info['sent']:,} in {info['wall']:.1f} s wall "
        f"(publishers at {info['send_rate']:,.0f}/s, at most {info['late'] * 1e3:.0f} ms late); "
        f"load average {info['load'][0]:.2f} -> {info['load'][1]:.2f}"
    )
    print(
        f"  {'process':<16}{'accepted/s':>11}{'accepted':>10}{'lost':>8}{'rejected':>9}"
        f"{'CPU':>7}{'us/msg':>7}{'RSS MiB':>8}{'peak':>6}{'p50 ms':>8}{'p99 ms':>8}"
    )
    raw = results.get("raw")
    for result in results.values():
        print(
            f"  {result.name:<16}{result.rate:>11,.0f}{result.accepted:>10,}{result.lost:>8,}"
            f"{result.rejected:>9,}{result.cpu:>7.2f}{_per_message(result):>7.1f}"
            f"{result.rss / 2**20:>8.0f}"
            f"{result.peak_rss / 2**20:>6.0f}{_ms(result.p50):>8}{_ms(result.p99):>8}"
        )
    _print_forwarder(raw, info)
    if raw is not None:
        for result in results.values():
            if result is not raw and raw.cpu > 0:
                print(
                    f"  {result.name} / raw pyzmq: CPU x{result.cpu / raw.cpu:.1f}, "
                    f"accepted x{result.accepted / max(1, raw.accepted):.3f}"
                )
    others = ", ".join(
        f"{name} {cpu:.2f}" for name, cpu in info["cpu"].items() if name != "kwapi-forwarder"
    )
    print(f"  CPU (cores) of the rest: {others}")
    for result in results.values():
        if result.extra:
            print(f"  {result.name} counters: {result.extra}")


def _print_forwarder(raw: Result | None, info: dict) -> None:
    """The forwarder's row: relayed and lost as the raw subscriber saw them."""
    cpu = info["cpu"]["kwapi-forwarder"]
    rss, peak = info["forwarder_memory"]
    if raw is None:  # nothing downstream counts what it relayed
        counts = f"{'-':>11}{'-':>10}{'-':>8}{'-':>9}{cpu:>7.2f}{'-':>7}"
    else:
        per_message = cpu * 1e6 / raw.rate if raw.rate else float("nan")
        counts = (
            f"{raw.rate:>11,.0f}{raw.accepted:>10,}{raw.lost:>8,}{'-':>9}"
            f"{cpu:>7.2f}{per_message:>7.1f}"
        )
    print(
        f"  {'kwapi-forwarder':<16}{counts}{rss / 2**20:>8.0f}{peak / 2**20:>6.0f}"
        f"{'n/a':>8}{'n/a':>8}"
        + ("  (relayed, lost: as received by raw pyzmq)" if raw is not None else "")
    )


def steady(pipeline: Pipeline) -> None:
    print(f"\n-- steady: {PROBES:,} probes at {RATE:g} Hz for {SECONDS:.0f} s, every subscriber --")
    for name in ("raw", "api", "rrd"):
        pipeline.start(name)
    began = time.monotonic()
    pipeline.warm_up()
    print(
        f"  warm-up (first measurement of every probe; RRD files created): "
        f"{time.monotonic() - began:.0f} s"
    )
    results, info = measure(pipeline, RATE, SECONDS)
    print_results(results, info)
    for name in list(pipeline.subscribers):
        pipeline.stop(name)


def _step(pipeline: Pipeline, target: str, rate: float) -> tuple[bool, float, bool]:
    """One ceiling step at *rate* measurements/s: (kept up, rate sent, publishers behind)."""
    results, info = measure(pipeline, rate / len(pipeline.probes), STEP_SECONDS)
    result = results[target]
    in_step = result.accepted_in_window / max(1, result.sent)
    kept = result.lost == 0 and result.rejected == 0 and in_step >= KEPT_UP
    publisher_bound = info["send_rate"] < 0.95 * rate
    print(
        f"  {rate:>9,.0f}{info['send_rate']:>9,.0f}{result.rate:>11,.0f}{in_step:>8.1%}"
        f"{result.lost:>8,}{result.cpu:>6.2f}{_per_message(result):>7.1f}"
        f"{_ms(result.p50):>8}{_ms(result.p99):>8}{sum(info['cpu'].values()):>6.2f}"
        f"{info['load'][1]:>6.2f}  {'yes' if kept else 'NO'}"
        f"{' (publishers fell behind)' if publisher_bound else ''}"
        f"{f' ({result.rejected:,} rejected)' if result.rejected else ''}",
        flush=True,
    )
    return kept, info["send_rate"], publisher_bound


def ceiling(pipeline: Pipeline, target: str) -> None:
    subscriber = pipeline.start(target)
    print(f"\n-- ceiling of {subscriber.name} alone, {STEP_SECONDS:.0f} s steps --")
    pipeline.warm_up()
    print(
        f"  {'target/s':>9}{'sent/s':>9}{'accepted/s':>11}{'in step':>8}{'lost':>8}"
        f"{'CPU':>6}{'us/msg':>7}{'p50 ms':>8}{'p99 ms':>8}{'rest':>6}{'load':>6}  kept up"
    )
    best, failed = 0.0, 0.0
    rate = float(FIRST_RATE)
    for _ in range(MAX_STEPS):
        kept, sent_rate, publisher_bound = _step(pipeline, target, rate)
        if kept:
            best = max(best, sent_rate)
            if publisher_bound:
                print(f"  ceiling: above {best:,.0f}/s (the publishers could not go faster)")
                pipeline.stop(target)
                return
            if failed:
                break
            rate *= RATE_FACTOR
        else:
            failed = rate
            if best:
                break
            rate /= RATE_FACTOR  # not even the first rate: go down
    if best and failed:  # one more step half-way between the last kept and the first failed
        kept, sent_rate, _ = _step(pipeline, target, (best + failed) / 2)
        if kept:
            best = max(best, sent_rate)
    print(f"  ceiling: {best:,.0f} measurements/s sustained")
    pipeline.stop(target)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options of a run; the defaults come from the KWAPI_BENCH_LOAD_* variables."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_load", description=__doc__)
    parser.add_argument("--probes", type=int, default=PROBES)
    parser.add_argument("--rate", type=float, default=RATE, help="Hz per probe, steady scenario")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="steady scenario")
    parser.add_argument("--step", type=float, default=STEP_SECONDS, help="ceiling steps")
    parser.add_argument("--publishers", type=int, default=PUBLISHERS)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the scenarios (``python -m bench load`` passes no arguments)."""
    global PROBES, RATE, SECONDS, STEP_SECONDS
    args = parse_args(argv or [])
    if args.rate <= 0:
        raise SystemExit("bench_load: --rate must be more than 0 Hz")
    PROBES, RATE, SECONDS, STEP_SECONDS = args.probes, args.rate, args.seconds, args.step
    print(
        f"load: {PROBES:,} probes, {args.publishers} publisher process(es) -> kwapi-forwarder -> "
        "subscribers, ipc://, signed; kwapi-rrd through rrdcached (-w 600 -z 300 -t 4, journal)"
    )
    pipeline = Pipeline(PROBES, args.publishers)
    try:
        if "steady" in args.scenarios.split(","):
            steady(pipeline)
        if "ceiling" in args.scenarios.split(","):
            for target in args.targets.split(","):
                ceiling(pipeline, target)
    finally:
        pipeline.close()


if __name__ == "__main__":
    print(describe_machine())
    main(sys.argv[1:])
