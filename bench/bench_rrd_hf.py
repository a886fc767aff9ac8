"""High-frequency meters into kwapi-rrd: N probes x 50 samples/s in batches of 1 s, rrdcached.

The bench process publishes, for S seconds, one batched message per probe
and per second (50 timestamps 20 ms apart, the last one right at the end of
the second, and 50 power readings), signed, on ipc://, the N messages of a
second spread evenly over it.  The very same frames go first to a raw pyzmq
SUB process that only counts them (the reference), then to a real
``kwapi-rrd`` process writing through a real ``rrdcached`` (deferred
writes, as a busy site runs it), one after the other so that neither
competes with the other for the cores.  Before kwapi-rrd's timed run, one
second of every probe is sent and written, so that the RRD files exist
(their creation is timed apart).

Per subscriber: messages and samples taken, lost (sent - accepted -
rejected), its CPU (user + system from /proc/PID/stat, from the first send
to the last value written, divided by that time) and rrdcached's beside it.
kwapi-rrd must also have written one update per probe and second, none
refused; then every 20th probe's file is read back with ``rrdtool fetch``
(AVERAGE of ``value``, MIN of ``min``, MAX of ``max``, each second) and
checked against the waveform it was sent.

Environment (to shorten a run):
  KWAPI_BENCH_RRD_HF_PROBES    probes (10000)
  KWAPI_BENCH_RRD_HF_SECONDS   seconds of publishing (30)
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import rrdtool
import zmq

from bench.bench_load import cpu_seconds
from bench.spread import bound_pub, publish_spread
from kwapi.bus.protocol import topic_for
from kwapi.bus.signing import Signer
from kwapi.plugins.rrd.storage import probe_key
from tests.harness.bus import SECRET
from tests.harness.configs import rrd_conf
from tests.harness.http import get_json
from tests.harness.processes import Daemon, free_tcp_port, short_tmpdir, wait_for
from tests.harness.rrd import DEFERRED_WRITES, Rrdcached

PROBES = int(os.environ.get("KWAPI_BENCH_RRD_HF_PROBES", "10000"))
SECONDS = int(os.environ.get("KWAPI_BENCH_RRD_HF_SECONDS", "30"))
RATE_HZ = 50
WAVES = 16  # distinct waveforms; probe p's second s is wave (p + s) % WAVES
CHECK_EVERY = 20  # every 20th probe's file is read back
#: What the raw subscriber is sent until it has joined: not counted.
WARM_UP = [b"warmup.", b"{}", b""]


def _wave(index: int) -> list[float]:
    """Fifty readings: a base with a short spike, a dip and some ripple."""
    base = 100.0 + 10 * index
    return [
        base + 400.0 * (sample in (index, index + 1)) - 60.0 * (sample == 40 - index)
        + (sample * 7 % 5) * 0.25
        for sample in range(RATE_HZ)
    ]  # fmt: skip


class Load:
    """The messages of the run, built from pre-encoded pieces (so that the bench
    process keeps up): second *s* of every probe has samples at
    ``t0 + s - 1 + (k + 1) / 50``, k = 0..49, so its batch completes second ``t0 + s``."""

    def __init__(self, probes: int, t0: int) -> None:
        self.probes = [f"hf-{index:05d}" for index in range(probes)]
        self.topics = [topic_for(probe) for probe in self.probes]
        self.heads = [b'{"probe_id":"%s","timestamps":' % p.encode() for p in self.probes]
        self.t0 = t0
        self.signer = Signer(SECRET)
        self.waves = [_wave(index) for index in range(WAVES)]
        self.wave_bytes = [
            b',"w":[' + b",".join(repr(v).encode() for v in wave) + b"]}" for wave in self.waves
        ]
        self._times: dict[int, bytes] = {}

    def times(self, second: int) -> bytes:
        """The timestamps of *second*, encoded (the same for every probe)."""
        if second not in self._times:
            start = self.t0 + second - 1
            self._times[second] = (
                b"[" + b",".join(repr(start + (k + 1) / RATE_HZ).encode() for k in range(50)) + b"]"
            )
        return self._times[second]

    def frames(self, probe: int, second: int) -> list[bytes]:
        payload = self.heads[probe] + self.times(second) + self.wave_bytes[(probe + second) % WAVES]
        return [self.topics[probe], payload, self.signer.sign(payload)]

    def expected(self, probe: int, second: int) -> tuple[float, float, float]:
        """Average (each sample held 1/50 s), min and max of *probe*'s *second*."""
        wave = self.waves[(probe + second) % WAVES]
        return sum(wave) / len(wave), min(wave), max(wave)


def publish(pub: zmq.Socket, load: Load, seconds: range) -> float:
    """Send every probe's message of each of *seconds*, spread evenly; return the lateness."""
    per_second = len(load.probes)

    def frames(index: int) -> list[bytes]:
        offset, probe = divmod(index, per_second)
        return load.frames(probe, seconds[offset])

    return publish_spread(pub, frames, per_second * len(seconds), per_second)


def _warm_up(pub: zmq.Socket, frames: list[bytes], joined: Callable[[], bool]) -> None:
    """Send *frames* until the subscriber got them once (it has joined)."""
    deadline = time.monotonic() + 30
    while not joined():
        if time.monotonic() > deadline:
            raise RuntimeError("the subscriber never joined")
        pub.send_multipart(frames)
        time.sleep(0.05)


def _raw_subscriber(endpoint: str, count: int, ready, result) -> None:
    """Child process: count messages (after the warm-up); report when the last one arrived."""
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    received, last = 0, time.monotonic()
    while received < count and sock.poll(10_000):
        frames = sock.recv_multipart()
        if frames[0] == WARM_UP[0]:
            ready.set()
            continue
        received += 1
        last = time.monotonic()
    result.put((received, last))
    sock.close()


def run_raw(load: Load) -> dict[str, float]:
    """The reference: a pyzmq SUB process that only counts the same frames."""
    directory = short_tmpdir("kwrr")
    endpoint = f"ipc://{directory}/bus"
    pub = bound_pub(endpoint, 1_000_000, 5000)
    context = multiprocessing.get_context("spawn")
    ready, result = context.Event(), context.Queue()
    count = len(load.probes) * SECONDS
    raw = context.Process(target=_raw_subscriber, args=(endpoint, count, ready, result))
    raw.start()
    try:
        _warm_up(pub, WARM_UP, ready.is_set)
        assert raw.pid is not None
        cpu, start = cpu_seconds(raw.pid), time.monotonic()
        late = publish(pub, load, range(1, SECONDS + 1))
        received, last = result.get(timeout=120 + SECONDS)
        cpu = cpu_seconds(raw.pid) - cpu if raw.is_alive() else float("nan")
        raw.join(10)
        wall = last - start
        return {"messages": received, "lost": count - received, "cpu": cpu / wall, "late": late}
    finally:
        pub.close()
        if raw.is_alive():
            raw.terminate()
        shutil.rmtree(directory, ignore_errors=True)


class RrdRun:
    """kwapi-rrd and its rrdcached in a temporary directory."""

    def __init__(self) -> None:
        self.directory = Path(short_tmpdir("kwrh"))
        self.rrd_dir = self.directory / "rrd"
        self.rrd_dir.mkdir()
        self.endpoint = f"ipc://{self.directory}/bus"
        self.cached = Rrdcached(self.rrd_dir, writes=DEFERRED_WRITES)
        port = free_tcp_port()
        conf = rrd_conf(
            self.directory,
            self.endpoint,
            port,
            self.rrd_dir,
            f"rrdcached_address = {self.cached.address}\nrrd_disk_check_interval = 60",
        )
        self.base = f"http://127.0.0.1:{port}"
        self.process = Daemon("kwapi-rrd", "--config-file", str(conf))
        wait_for(lambda: self.stats() is not None, 30, "kwapi-rrd to serve")

    def stats(self) -> dict | None:
        try:
            return get_json(self.base + "/stats/", timeout=10)
        except OSError:
            return None

    def stop(self) -> None:
        self.process.stop(timeout=120)
        self.cached.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _written(rrd: RrdRun, target: int) -> Callable[[], dict | None]:
    def done() -> dict | None:
        stats = rrd.stats()
        if stats is None or stats["storage"]["updated"] < target:
            return None
        return stats if stats["receiver"]["pending_writes"] == 0 else None

    return done


def check_files(rrd: RrdRun, load: Load) -> str:
    """Every CHECK_EVERY-th probe's seconds as fetched, against the waveform sent."""
    bad = checked = 0
    end = load.t0 + SECONDS
    for probe in range(0, len(load.probes), CHECK_EVERY):
        path = str(rrd.rrd_dir / probe_key(load.probes[probe]) / "w.rrd")
        rrdtool.flushcached("--daemon", rrd.cached.address, path)
        columns = {}
        for cf, ds in (("AVERAGE", "value"), ("MIN", "min"), ("MAX", "max")):
            (first, _, step), names, rows = rrdtool.fetch(
                path, cf, "-r", "1", "--start", str(load.t0), "--end", str(end)
            )
            columns[cf] = {
                first + step * (n + 1): row[names.index(ds)] for n, row in enumerate(rows)
            }
        for second in range(1, SECONDS + 1):
            average, low, high = load.expected(probe, second)
            at = load.t0 + second
            got = columns["AVERAGE"].get(at), columns["MIN"].get(at), columns["MAX"].get(at)
            checked += 1
            if got[0] is None or abs(got[0] - average) > 1e-3 or got[1:] != (low, high):
                bad += 1
    return f"{checked - bad}/{checked} seconds of {checked // SECONDS} files exact"


def run_rrd(load: Load) -> dict[str, object]:
    """kwapi-rrd through rrdcached: create the files, then the timed run."""
    rrd = RrdRun()
    pub = bound_pub(rrd.endpoint, 1_000_000, 5000)
    probes = len(load.probes)
    try:
        # Probe 0's first message until kwapi-rrd has it; its later copies are replays.
        _warm_up(
            pub,
            load.frames(0, 0),
            lambda: (rrd.stats() or {}).get("receiver", {}).get("accepted", 0) > 0,
        )
        began = time.monotonic()
        publish(pub, load, range(0, 1))
        wait_for(_written(rrd, probes), 600, "every file to be created")
        created = time.monotonic() - began
        before = rrd.stats()
        assert before is not None
        pid, cached_pid = rrd.process.pid, rrd.cached.process.pid
        cpu, cached_cpu, start = cpu_seconds(pid), cpu_seconds(cached_pid), time.monotonic()
        late = publish(pub, load, range(1, SECONDS + 1))
        target = before["storage"]["updated"] + probes * SECONDS
        try:
            after = wait_for(_written(rrd, target), 120, "kwapi-rrd to write every second")
        except AssertionError:  # some were lost: count them below
            after = rrd.stats()
        wall = time.monotonic() - start
        cpu, cached_cpu = cpu_seconds(pid) - cpu, cpu_seconds(cached_pid) - cached_cpu
        assert after is not None
        receiver, storage = after["receiver"], after["storage"]
        accepted = receiver["accepted"] - before["receiver"]["accepted"]
        rejected = sum(receiver["rejected"].values()) - sum(before["receiver"]["rejected"].values())
        sent = probes * SECONDS
        return {
            "messages": accepted,
            "samples": receiver["accepted_samples"] - before["receiver"]["accepted_samples"],
            "lost": sent - accepted - rejected,
            "rejected": rejected,
            "cpu": cpu / wall,
            "rrdcached_cpu": cached_cpu / wall,
            "late": late,
            "created_s": created,
            "updates": storage["updated"] - before["storage"]["updated"],
            "refused": storage["errors"] + storage["dropped_old"],
            "check": check_files(rrd, load),
        }
    finally:
        pub.close()
        rrd.stop()


def main() -> None:
    t0 = int(time.time()) + 2
    load = Load(PROBES, t0)
    print(
        f"{PROBES} probes x {RATE_HZ} samples/s, batch = 1 s, {SECONDS} s "
        f"({PROBES} messages and {PROBES * RATE_HZ} samples a second), signed, ipc://"
    )
    raw = run_raw(load)
    load = Load(PROBES, int(time.time()) + 2)  # fresh timestamps for kwapi-rrd
    rrd = run_rrd(load)
    print(f"{'subscriber':<30} {'messages':>9} {'lost':>5} {'CPU cores':>9} {'late s':>7}")
    for name, row in (("raw pyzmq SUB (reference)", raw), ("kwapi-rrd + rrdcached", rrd)):
        print(
            f"{name:<30} {row['messages']:>9} {row['lost']:>5} {row['cpu']:>9.2f} "
            f"{row['late']:>7.2f}"
        )
    print(
        f"kwapi-rrd: {rrd['samples']} samples, {rrd['rejected']} rejected, {rrd['updates']} "
        f"RRD updates ({rrd['refused']} refused); rrdcached CPU {rrd['rrdcached_cpu']:.2f} cores; "
        f"files created in {rrd['created_s']:.1f} s (untimed); "
        f"CPU ratio kwapi-rrd / raw {rrd['cpu'] / raw['cpu']:.1f}"  # type: ignore[operator]
    )
    print(f"read back: {rrd['check']}")


if __name__ == "__main__":
    main()
