"""RRD plugin: updates per second the storage sustains, with and without rrdcached,
and how long graphs take to draw, each beside a reference measured in the same run.

Storage: N probes (1,000 and 10,000), each sending one power value per second;
the files are created first and written once, then rounds of N updates (one simulated second
each, timestamps in the past) are written for a few seconds of wall time, first one
``RrdStorage.update`` per value, then as the daemon writes them: ``RrdStorage.update_many``
on batches of ``rrd_batch_size`` (its default) measurements, which through rrdcached is one
BATCH command per batch.  The reference is bare ``rrdtool.update`` on the same files,
without the storage layer.  With rrdcached, the time to flush everything to disk
afterwards is given too.

``KWAPI_BENCH_RRD_SECONDS`` sets the seconds of each storage feed (default 4) and
``KWAPI_BENCH_RRD_PROBES`` the probe counts (comma-separated, default ``1000,10000``).

Graphs: the summary graph of the last 5 minutes for 1, 10 and 100 probes,
drawn without the cache, then the same graph served from the cache.  The
reference is a bare one-line ``rrdtool.graph`` of a single file.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import rrdtool

from kwapi.bus.protocol import Measurement
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.options import storage_opts
from kwapi.plugins.rrd.periods import PERIODS
from kwapi.plugins.rrd.storage import RrdStorage
from tests.harness.rrd import DEFERRED_WRITES, Rrdcached

SECONDS = float(os.environ.get("KWAPI_BENCH_RRD_SECONDS", "4"))
PROBE_COUNTS = tuple(
    int(count) for count in os.environ.get("KWAPI_BENCH_RRD_PROBES", "1000,10000").split(",")
)
#: Measurements per update_many call: the daemon's default rrd_batch_size.
BATCH_SIZE = next(opt.default for opt in storage_opts if opt.name == "rrd_batch_size")
GRAPH_PROBES = (1, 10, 100)


def _feed(storage: RrdStorage, probes: list[str], start: int, how: str) -> tuple[float, int]:
    """Write rounds of one update per probe for SECONDS; return (updates/s, rounds).

    *how* is ``update`` (RrdStorage.update per value), ``batch`` (RrdStorage.update_many
    on BATCH_SIZE measurements at a time, as the daemon's writer calls it) or ``bare``
    (rrdtool.update per value, without the storage layer).
    """
    daemon = storage.daemon_args()
    paths = [str(storage.path(p, "w")) for p in probes]
    pending: list[Measurement] = []
    began = time.perf_counter()
    rounds = 0
    while time.perf_counter() - began < SECONDS:
        timestamp = float(start + rounds)
        if how == "bare":
            for path in paths:
                rrdtool.update(path, *daemon, f"{timestamp:.6f}:{100.0 + rounds % 7!r}")
        elif how == "update":
            for probe in probes:
                storage.update(Measurement(probe, timestamp, {"w": 100.0 + rounds % 7}))
        else:
            for probe in probes:
                pending.append(Measurement(probe, timestamp, {"w": 100.0 + rounds % 7}))
                if len(pending) == BATCH_SIZE:
                    storage.update_many(pending)
                    pending = []
        rounds += 1
    if pending:  # the writer writes what is left too
        storage.update_many(pending)
    elapsed = time.perf_counter() - began
    return rounds * len(probes) / elapsed, rounds


def bench_storage(count: int, cached: bool) -> dict[str, float]:
    """Create *count* probes' files, then measure updates/s: update(), update_many(), bare."""
    directory = Path(tempfile.mkdtemp(prefix="kwbench-rrd"))
    daemon = Rrdcached(directory, writes=DEFERRED_WRITES) if cached else None
    try:
        storage = RrdStorage(directory, daemon=daemon.address if daemon else None)
        probes = [f"node-{i}" for i in range(count)]
        start = int(time.time()) - 7 * 86400  # far enough back for every round
        began = time.perf_counter()
        for probe in probes:
            storage.update(Measurement(probe, float(start), {"w": 1.0}))
        created = time.perf_counter() - began
        for probe in probes:  # one untimed round, so rrdcached knows every file
            storage.update(Measurement(probe, float(start + 1), {"w": 1.0}))
        written = storage.stats["updated"]
        ours, rounds = _feed(storage, probes, start + 2, "update")
        batched, more = _feed(storage, probes, start + 2 + rounds, "batch")
        rounds += more
        if storage.stats["updated"] - written != rounds * count:  # else the rates would lie
            raise RuntimeError(f"not every value was written: {dict(storage.stats)}")
        bare, more = _feed(storage, probes, start + 2 + rounds, "bare")
        flush = 0.0
        if daemon:
            began = time.perf_counter()
            storage.flush()
            # FLUSHALL only queues the work: wait for rrdcached's queue to drain.
            while daemon.client.stats()["QueueLength"] > 0:
                time.sleep(0.05)
            flush = time.perf_counter() - began
        return {
            "create_s": created,
            "updates_per_s": ours,
            "batched_per_s": batched,
            "bare_per_s": bare,
            "rounds": rounds + more,
            "flush_s": flush,
        }
    finally:
        if daemon:
            daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _timed(action, repeat: int) -> float:
    """Median seconds of *repeat* runs of *action*."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def bench_graphs() -> list[tuple[str, float]]:
    """Drawing times of summary graphs, a cached graph and a bare rrdtool graph."""
    directory = Path(tempfile.mkdtemp(prefix="kwbench-graph"))
    try:
        storage = RrdStorage(directory)
        end = int(time.time())
        probes = [f"node-{i}" for i in range(max(GRAPH_PROBES))]
        for offset in range(300, 0, -1):
            for index, probe in enumerate(probes):
                storage.update(Measurement(probe, float(end - offset), {"w": 50.0 + index}))
        grapher = Grapher(storage)
        minute = PERIODS["minute"]
        path = str(storage.path(probes[0], "w"))
        bare = _timed(
            lambda: rrdtool.graphv(
                "-",
                "--start",
                f"{end - 300}",
                "--end",
                f"{end}",
                f"DEF:v={path}:value:AVERAGE",
                "LINE1:v#00AA00",
            ),
            20,
        )
        rows = [("bare rrdtool.graph, 1 file, 1 line (reference)", bare)]
        for count in GRAPH_PROBES:
            subset = tuple(probes[:count])
            seconds = _timed(lambda s=subset: grapher.draw_summary(minute, s, end), 10)
            rows.append((f"summary graph, {count} probe(s), drawn", seconds))
        grapher.summary(minute)  # draw once into the cache
        cached = _timed(lambda: grapher.summary(minute), 1000)
        rows.append((f"summary graph, {len(probes)} probes, from the cache", cached))
        return rows
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    print(
        f"storage: files created first, then {SECONDS:g} s of 1 Hz rounds per feed: "
        f"update() per value, update_many() per {BATCH_SIZE} (rrd_batch_size), bare rrdtool"
    )
    print("x 1 Hz: how many times N updates/s update_many() (the daemon's path) reached")
    header = (
        f"{'probes':>7} {'rrdcached':>9} {'create s':>9} {'updates/s':>10} {'batched/s':>10} "
        f"{'bare/s':>9} {'ours/bare':>9} {'batch/bare':>10} {'x 1 Hz':>7} {'flush s':>8}"
    )
    print(header)
    for count in PROBE_COUNTS:
        for cached in (False, True):
            r = bench_storage(count, cached)
            print(
                f"{count:>7} {'yes' if cached else 'no':>9} {r['create_s']:>9.1f} "
                f"{r['updates_per_s']:>10.0f} {r['batched_per_s']:>10.0f} {r['bare_per_s']:>9.0f} "
                f"{r['updates_per_s'] / r['bare_per_s']:>9.2f} "
                f"{r['batched_per_s'] / r['bare_per_s']:>10.2f} "
                f"{r['batched_per_s'] / count:>7.1f} {r['flush_s']:>8.2f}",
                flush=True,
            )
    print("\ngraphs (median):")
    rows = bench_graphs()
    reference = rows[0][1]
    for label, seconds in rows:
        print(f"  {label:<52} {seconds * 1000:>9.3f} ms  {seconds / reference:>7.2f} x reference")


if __name__ == "__main__":
    main()
