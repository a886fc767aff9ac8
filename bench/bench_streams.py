"""Energy per stream: what it adds to kwapi-api's ingest path and to a request.

1. Ingest, in process: the same measurements (one power probe feeding 4
   streams, among 1,000 other power probes) folded by ``Collector.add``
   alone (the reference: kwapi-api without ``stream_power``), then by the
   handler kwapi-api uses with ``stream_power`` (``add``, then
   ``StreamEnergy.observe`` for the power probes it names);
   best of five alternated runs each.
2. Requests, in process (Flask test client): GET /v1/streams/ and
   GET /v1/stream-hosts/ beside GET /v1/probes/ of the same data.

Ratios against the reference of the same run are what to compare.
"""

from __future__ import annotations

import gc
import time

from kwapi.bus.protocol import Measurement
from kwapi.cmd.api import make_handler
from kwapi.plugins.api.app import create_app
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.metrics import make_registry
from kwapi.plugins.api.stream_energy import StreamEnergy
from kwapi.plugins.api.stream_views import StreamViews
from kwapi.plugins.streams import parse_stream_power

OTHERS = 1000
STREAMS = ("live-1", "live-2", "live-3", "live-4")
ROUNDS = 60
VIDEO = {"up": 1, "bitrate": 2.5e6, "fps": 25.0, "width": 1280.0, "height": 720.0}


def _measurements(start: float) -> list[Measurement]:
    result = []
    for second in range(ROUNDS):
        at = start + second
        result += [Measurement(f"node-{i}", at, {"w": 100.0 + i % 7}) for i in range(OTHERS)]
        result += [Measurement(stream, at, VIDEO) for stream in STREAMS]
        result.append(Measurement("encoder", at + 0.5, {"w": 180.0 + second % 5}))
    return result


def _setup():
    collector = Collector(max_gap=120.0)
    energy = StreamEnergy(
        parse_stream_power([f"encoder = {', '.join(STREAMS)}"]), collector.latest, max_gap=120.0
    )
    return collector, energy


def _fold(measurements: list[Measurement], streams: bool) -> float:
    """Seconds to fold *measurements* into a fresh collector (and StreamEnergy)."""
    collector, energy = _setup()
    gc.collect()
    began = time.perf_counter()
    handler = make_handler(collector, energy) if streams else collector.add
    for measurement in measurements:
        handler(measurement)
    return time.perf_counter() - began


def bench_ingest(repeat: int = 5) -> dict[str, float]:
    """Best of *repeat* alternated runs of each way, so neither gets a warmer machine."""
    measurements = _measurements(time.time() - ROUNDS)
    reference, with_streams = [], []
    for _ in range(repeat):
        reference.append(_fold(measurements, streams=False))
        with_streams.append(_fold(measurements, streams=True))
    count = len(measurements)
    return {
        "measurements": count,
        "add_per_s": count / min(reference),
        "add_observe_per_s": count / min(with_streams),
        "ratio": min(with_streams) / min(reference),
    }


def bench_requests(repeat: int = 300) -> dict[str, float]:
    collector, energy = _setup()
    for measurement in _measurements(time.time() - ROUNDS):
        collector.add(measurement)
        energy.observe(measurement)
    views = StreamViews(energy, collector)
    app = create_app(collector, lambda: {"alive": True}, make_registry(collector, dict), views)
    client = app.test_client()
    result = {}
    for name, path in (
        ("probes", "/v1/probes/"),
        ("streams", "/v1/streams/"),
        ("stream_hosts", "/v1/stream-hosts/?period=30"),
        ("version", "/v1/"),
    ):
        client.get(path)
        began = time.perf_counter()
        for _ in range(repeat):
            assert client.get(path).status_code == 200
        result[name] = (time.perf_counter() - began) / repeat * 1000.0
    return result


def main() -> None:
    ingest = bench_ingest()
    print(
        f"ingest of {ingest['measurements']} measurements: Collector.add alone "
        f"{ingest['add_per_s']:,.0f}/s; with stream_power "
        f"{ingest['add_observe_per_s']:,.0f}/s (time ratio {ingest['ratio']:.2f})"
    )
    requests = bench_requests()
    floor = requests["version"]
    for name, ms in requests.items():
        print(f"GET {name:13s} {ms:7.3f} ms  ({ms / floor:5.1f} x GET /v1/)")
    print(
        f"GET /v1/streams/ (4 streams) / GET /v1/probes/ ({OTHERS + 5} probes): "
        f"{requests['streams'] / requests['probes']:.3f}"
    )


if __name__ == "__main__":
    main()
