"""Bus throughput: kwapi publisher -> kwapi-forwarder -> verifying receiver,
beside raw pyzmq PUB/SUB carrying the same payloads, in the same run.

Each path sends the same number of measurements over ipc:// from a separate
process; the rate is counted at the receiving end, from its first measured
message to its last.  Raw pyzmq sends pre-encoded frames and checks nothing,
so it is the ceiling the bus can approach.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import time

import zmq

from kwapi.bus.protocol import Measurement
from kwapi.bus.publisher import Publisher
from kwapi.bus.receiver import MessageValidator, Receiver
from kwapi.bus.signing import Signer, Verifier
from tests.harness.configs import forwarder_conf
from tests.harness.processes import Daemon, short_tmpdir

SECRET = "bench-secret"
MESSAGES = int(os.environ.get("KWAPI_BENCH_MESSAGES", "100000"))
REPEATS = int(os.environ.get("KWAPI_BENCH_REPEATS", "3"))
PROBES = 1000
WARMUP_PROBE = "warmup"


def _measurements(count: int, base: float) -> list[Measurement]:
    return [
        Measurement(f"node-{i % PROBES}", base + i * 1e-6, {"w": 100.0 + (i % 97)})
        for i in range(count)
    ]


def _publish(endpoint: str, kwapi: bool, count: int, ready, done) -> None:
    """Child process: warm up until the receiver is ready, then send *count* messages."""
    base = time.time()
    signer = Signer(SECRET)
    if kwapi:
        publisher = Publisher(endpoint, signer, sndhwm=10 * count)
        send = publisher.publish
        messages = _measurements(count, base + 1)
        warm = lambda n: publisher.publish(Measurement(WARMUP_PROBE, base + n * 1e-6, {"w": 0.0}))  # noqa: E731
    else:
        socket = zmq.Context.instance().socket(zmq.PUB)
        socket.setsockopt(zmq.LINGER, 0)  # never block the exit on unsent messages
        socket.setsockopt(zmq.SNDHWM, 10 * count)
        socket.bind(endpoint)
        send = socket.send_multipart
        messages = []
        for measurement in _measurements(count, base + 1):
            topic, payload = measurement.encode()
            messages.append([topic, payload, signer.sign(payload)])
        warm_topic, warm_payload = Measurement(WARMUP_PROBE, base, {"w": 0.0}).encode()
        warm = lambda n: socket.send_multipart([warm_topic, warm_payload, b"x"])  # noqa: E731
    n = 0
    while not ready.wait(0.01):
        n += 1
        warm(n)
    for message in messages:
        send(message)
    done.wait(120)


def _receive_raw(endpoint: str, count: int, ready) -> tuple[int, float]:
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, 10 * count)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(endpoint)
    received, first, last = 0, 0.0, 0.0
    while True:
        # Up to 30 s for the first (warm-up) message, then 3 s of silence ends the run.
        if not socket.poll(3000 if ready.is_set() else 30000):
            break
        frames = socket.recv_multipart()
        if frames[0] == WARMUP_PROBE.encode() + b".":
            ready.set()
            continue
        last = time.perf_counter()
        if received == 0:
            first = last
        received += 1
        if received == count:
            break
    socket.close()
    return received, last - first


def _receive_kwapi(endpoint: str, count: int, ready) -> tuple[int, float]:
    state = {"received": 0, "first": 0.0, "last": 0.0}
    finished = multiprocessing.Event()

    def handle(measurement: Measurement) -> None:
        if measurement.probe_id == WARMUP_PROBE:
            ready.set()
            return
        now = time.perf_counter()
        if state["received"] == 0:
            state["first"] = now
        state["last"] = now
        state["received"] += 1
        if state["received"] == count:
            finished.set()

    receiver = Receiver([endpoint], handle, MessageValidator(Verifier([SECRET])), rcvhwm=10 * count)
    receiver.start()
    deadline = time.monotonic() + 120
    while not finished.wait(0.5) and time.monotonic() < deadline:
        before = state["received"]
        if ready.is_set() and not finished.wait(3) and state["received"] == before:
            break  # nothing more is coming: some were dropped
    if not ready.is_set():
        print(f"  no warm-up message reached the receiver: {receiver.stats.snapshot()}")
    receiver.stop()
    receiver.join(5)
    return state["received"], state["last"] - state["first"]


def _forwarder(directory: str, upstream: str, bind: str) -> Daemon:
    hwm = "forwarder_rcvhwm = 1000000\nforwarder_sndhwm = 1000000\n"
    conf = forwarder_conf(directory, [upstream], bind, extra=hwm)
    return Daemon("kwapi-forwarder", "--config-file", str(conf))


def run_path(kwapi: bool, through_forwarder: bool, count: int = MESSAGES) -> tuple[int, float]:
    """Send *count* measurements along one path; return (received, seconds)."""
    directory = short_tmpdir("kwb")
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    publish_at = f"ipc://{directory}/pub"
    receive_at = publish_at
    forwarder = None
    try:
        if through_forwarder:
            receive_at = f"ipc://{directory}/fwd"
            forwarder = _forwarder(directory, publish_at, receive_at)
        publisher = context.Process(
            target=_publish, args=(publish_at, kwapi, count, ready, done), daemon=True
        )
        publisher.start()
        receive = _receive_kwapi if kwapi else _receive_raw
        result = receive(receive_at, count, ready)
        done.set()
        publisher.join(30)
        if publisher.is_alive():
            publisher.kill()
        return result
    finally:
        if forwarder is not None:
            forwarder.stop(10)
            forwarder.close()
        shutil.rmtree(directory, ignore_errors=True)


PATHS = (
    ("raw pyzmq PUB -> SUB", False, False),
    ("raw pyzmq PUB -> kwapi-forwarder -> SUB", False, True),
    ("kwapi Publisher (sign) -> Receiver (verify)", True, False),
    ("kwapi Publisher -> kwapi-forwarder -> Receiver", True, True),
)


def main() -> None:
    """Print messages/s of each path (median of the repeats) and the ratios."""
    print(
        f"{MESSAGES} measurements per path, {PROBES} probes, ipc://, separate processes, "
        f"median of {REPEATS} rounds (paths interleaved in each round)"
    )
    rates: dict[str, list[float]] = {label: [] for label, _, _ in PATHS}
    lost: dict[str, int] = dict.fromkeys(rates, 0)
    for _ in range(REPEATS):
        for label, kwapi, forwarder in PATHS:
            received, seconds = run_path(kwapi, forwarder)
            rates[label].append(received / seconds if seconds > 0 else 0.0)
            lost[label] += MESSAGES - received
    results = {label: statistics.median(values) for label, values in rates.items()}
    for label, rate in results.items():
        print(f"  {label:48s} {rate:>10,.0f} msg/s  ({lost[label]} lost in all rounds)")
    raw = results["raw pyzmq PUB -> SUB"]
    kwapi = results["kwapi Publisher -> kwapi-forwarder -> Receiver"]
    raw_forwarded = results["raw pyzmq PUB -> kwapi-forwarder -> SUB"]
    print(f"  kwapi end to end / raw direct:        {kwapi / raw:.2f}")
    print(f"  kwapi end to end / raw via forwarder: {kwapi / raw_forwarded:.2f}")


if __name__ == "__main__":
    main()
