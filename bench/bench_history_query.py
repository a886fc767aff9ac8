"""kwapi-history: /v1/energy/ over 24 h of 1 Hz samples for 100 probes, beside a bare export.

1. Load: a bare writer posts gzipped InfluxDB line protocol (kwapi-history's
   format: measurement kwapi, field w, tag probe, milliseconds) over one
   keep-alive connection to a real VictoriaMetrics: 100 probes x 86,400
   samples = 8.64 million, timed.
2. Reference: the bare export of the same samples, ``/api/v1/export`` with
   every probe's series, the whole answer read and nothing done with it:
   the floor of any reader of the raw samples.
3. Query: ``GET /v1/energy/`` for the 100 probes over those 24 h, from the
   query application served by waitress (as kwapi-history serves it), over
   HTTP, with its default two worker processes (``query_processes``), then
   with none (every probe integrated in the daemon's threads); the energy is
   checked against the trapezoid the bench computes from the samples it
   wrote, and both answers must be equal.

Each runs ROUNDS times, alternating; the best and the median are printed,
with the ratio of the query to the bare export.
"""

from __future__ import annotations

import gzip
import http.client
import os
import resource
import statistics
import time
import urllib.parse

import orjson

from tests.harness.http import served
from tests.harness.stores import VictoriaMetrics
from tests.plugins.history.query_helpers import make_app

PROBES = int(os.environ.get("KWAPI_BENCH_HISTORY_PROBES", "100"))
SECONDS = int(os.environ.get("KWAPI_BENCH_HISTORY_SECONDS", "86400"))
ROUNDS = 3
LINES_PER_BODY = 200_000


def watts(probe: int, second: int) -> float:
    """A reading: a slow wave, a little noise, a negative reading now and then."""
    if second % 997 == 0:
        return -1.5
    return round(100.0 + probe + (second % 600) / 10.0 + (second * 7919 % 13) / 10.0, 1)


def bodies(start_ms: int) -> list[bytes]:
    """The gzipped line-protocol bodies of every sample, probe after probe."""
    out, lines = [], []
    for probe in range(PROBES):
        head = f"kwapi,probe=node-{probe:03d} w="
        for second in range(SECONDS):
            lines.append(f"{head}{watts(probe, second)} {start_ms + second * 1000}")
            if len(lines) == LINES_PER_BODY:
                out.append(gzip.compress("\n".join(lines).encode(), compresslevel=1))
                lines = []
    if lines:
        out.append(gzip.compress("\n".join(lines).encode(), compresslevel=1))
    return out


def load(store: VictoriaMetrics, start_ms: int) -> tuple[float, float]:
    """Write every sample; (seconds to encode, seconds to write)."""
    began = time.perf_counter()
    encoded = bodies(start_ms)
    encode_s = time.perf_counter() - began
    connection = http.client.HTTPConnection("127.0.0.1", store.port, timeout=600)
    began = time.perf_counter()
    for body in encoded:
        connection.request("POST", "/write?precision=ms", body, {"Content-Encoding": "gzip"})
        response = connection.getresponse()
        response.read()
        assert response.status == 204, response.status
    store.flush()
    write_s = time.perf_counter() - began
    connection.close()
    return encode_s, write_s


def bare_export(store: VictoriaMetrics, start: float, end: float) -> tuple[float, int]:
    """(seconds, bytes) of one export of every probe's samples, read whole."""
    form = urllib.parse.urlencode(
        {"match[]": '{__name__="kwapi_w"}', "start": f"{start:.3f}", "end": f"{end:.3f}"}
    )
    connection = http.client.HTTPConnection("127.0.0.1", store.port, timeout=600)
    began = time.perf_counter()
    connection.request(
        "POST", "/api/v1/export", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    response = connection.getresponse()
    size = 0
    while chunk := response.read(1 << 20):
        size += len(chunk)
    elapsed = time.perf_counter() - began
    connection.close()
    return elapsed, size


def energy_query(base: str, start: float, end: float) -> tuple[float, dict]:
    """(seconds, body) of GET /v1/energy/ for every probe over [start, end]."""
    query = urllib.parse.urlencode(
        [("probe", f"node-{p:03d}") for p in range(PROBES)]
        + [("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
    )
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    began = time.perf_counter()
    connection.request("GET", f"/v1/energy/?{query}")
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - began
    connection.close()
    assert response.status == 200, body[:500]
    return elapsed, orjson.loads(body)


def expected_kwh(probe: int) -> float:
    """The trapezoid over the samples written (1 s apart, negatives as 0 W)."""
    total = 0.0
    previous = max(watts(probe, 0), 0.0)
    for second in range(1, SECONDS):
        current = max(watts(probe, second), 0.0)
        total += (previous + current) / 2.0
        previous = current
    return total / 3.6e6


def main() -> None:
    samples = PROBES * SECONDS
    start_s = int(time.time()) - SECONDS - 600
    start, end = float(start_s), float(start_s + SECONDS - 1)
    store = VictoriaMetrics()
    store.start()
    try:
        encode_s, write_s = load(store, start_s * 1000)
        print(
            f"load: {samples:,} samples ({PROBES} probes x {SECONDS} s at 1 Hz): "
            f"encoded in {encode_s:.1f} s, written in {write_s:.1f} s "
            f"({samples / write_s:,.0f} samples/s)"
        )
        limit = max(samples * 2, 10_000_000)
        exports, queries, in_threads = [], [], []
        with (
            served(make_app(store.root, max_samples=limit)) as base,
            served(make_app(store.root, max_samples=limit, query_processes=0)) as threads_base,
        ):
            energy_query(base, start, start + 3600)  # starts the worker processes
            for _ in range(ROUNDS):
                exports.append(bare_export(store, start - 120, end + 120))
                queries.append(energy_query(base, start, end))
                in_threads.append(energy_query(threads_base, start, end))
        body = queries[-1][1]
        assert body == in_threads[-1][1]
        for probe in (0, PROBES - 1):
            figures = body["probes"][f"node-{probe:03d}"]
            assert figures["samples"] == SECONDS, figures
            assert abs(figures["kwh"] / expected_kwh(probe) - 1) < 1e-9, figures
        export_s = [seconds for seconds, _ in exports]
        query_s = [seconds for seconds, _ in queries]
        size = exports[0][1]
        print(
            f"bare export of the same samples: best {min(export_s):.2f} s, median "
            f"{statistics.median(export_s):.2f} s ({size / 1e6:.0f} MB of JSON lines)"
        )
        print(
            f"GET /v1/energy/ ({PROBES} probes, {SECONDS} s): best {min(query_s):.2f} s, "
            f"median {statistics.median(query_s):.2f} s "
            f"({samples / min(query_s) / 1e6:.1f} M samples/s), "
            f"{min(query_s) / min(export_s):.2f} x the bare export; "
            f"total {body['total']['kwh']:.3f} kWh"
        )
        threads_s = [seconds for seconds, _ in in_threads]
        print(
            f"the same with query_processes = 0 (all in the daemon's threads): best "
            f"{min(threads_s):.2f} s, median {statistics.median(threads_s):.2f} s "
            f"({min(threads_s) / min(export_s):.2f} x the bare export)"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the bench process (load included): {peak:.0f} MiB")
    finally:
        store.close()


if __name__ == "__main__":
    main()
