"""Drivers at 50 Hz: how many samples a minute, how regular, at what CPU cost.

Runs side by side, in one process and the same minute (KWAPI_BENCH_HF_SECONDS,
default 60), Dummy drivers publishing through a real signed kwapi Publisher
(ipc://, no subscriber):

- kwapi's driver loop (Pacer) at 50 Hz, ``batch`` = 1 and ``batch`` = 0;
- the same at 1 kHz, ``batch`` = 1;
- the reference: a naive thread doing ``read(); publish(); sleep(interval)``
  at 50 Hz, what a loop without a grid does.

For each: the samples whose timestamps fall in the measured window (the
first second left out), their deviation from the target count, the gaps
between samples (median, p99, max), the messages sent, and the thread's CPU
(utime + stime from /proc/self/task/<tid>/stat) as a share of one core.
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from collections.abc import Callable

from kwapi.bus.protocol import Measurement, Message
from kwapi.bus.publisher import Publisher
from kwapi.bus.signing import Signer
from kwapi.drivers.dummy import DummyDriver, DummyParameters
from tests.harness.processes import short_tmpdir

SECONDS = float(os.environ.get("KWAPI_BENCH_HF_SECONDS", "60"))
WARMUP = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Sink:
    """Publishes through *publisher* and keeps every sample's timestamp."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.stamps: list[float] = []
        self.messages = 0

    def publish(self, message: Message) -> None:
        self.publisher.publish(message)
        self.messages += 1
        self.stamps.extend(sample.timestamp for sample in message.measurements())


def thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of this process' thread *native_id*."""
    with open(f"/proc/self/task/{native_id}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class NaiveLoop(threading.Thread):
    """The reference: read, publish, sleep one interval; no grid."""

    def __init__(self, interval: float, publish: Callable[[Message], None]) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.publish = publish
        self.stop = threading.Event()
        params = DummyParameters(interval=interval, seed=1)
        self.device = DummyDriver("naive", ["naive"], params, publish)

    def run(self) -> None:
        self.device.setup()
        while not self.stop.is_set():
            for probe, meters in self.device.read().items():
                assert probe is not None
                self.publish(Measurement(probe, time.time(), dict(meters)))
            time.sleep(self.interval)


def row(name: str, rate: float, sink: Sink, start: float, cpu: float, wall: float) -> str:
    window = [stamp for stamp in sink.stamps if start <= stamp < start + SECONDS]
    gaps = sorted(b - a for a, b in itertools.pairwise(window))
    target = rate * SECONDS
    p99 = gaps[int(0.99 * (len(gaps) - 1))] if gaps else float("nan")
    return (
        f"{name:<32} {len(window):>7} {target:>7.0f} {100 * (len(window) / target - 1):>+7.2f} % "
        f"{1000 * statistics.median(gaps):>7.2f} {1000 * p99:>7.2f} {1000 * gaps[-1]:>7.1f} "
        f"{sink.messages:>8} {100 * cpu / wall:>6.1f} %"
    )


def main() -> None:
    directory = short_tmpdir()
    publisher = Publisher(f"ipc://{directory}/hf", Signer("bench-secret"), linger_ms=0)
    runs = {
        "kwapi 50 Hz, batch 1": (50.0, 1.0),
        "kwapi 50 Hz, batch 0": (50.0, 0.0),
        "kwapi 1 kHz, batch 1": (1000.0, 1.0),
    }
    sinks = {name: Sink(publisher) for name in [*runs, "naive sleep loop 50 Hz"]}
    drivers = {}
    for index, (name, (rate, batch)) in enumerate(runs.items()):
        params = DummyParameters(interval=1 / rate, batch=batch, seed=index)
        drivers[name] = DummyDriver(f"hf-{index}", [f"p{index}"], params, sinks[name].publish)
    naive = NaiveLoop(0.02, sinks["naive sleep loop 50 Hz"].publish)
    began = time.time()
    for driver in drivers.values():
        driver.start()
    naive.start()
    start = began + WARMUP
    time.sleep(WARMUP + SECONDS + 1.5)  # a bench: the window plus the last batch
    cpu = {name: thread_cpu(driver.native_id or 0) for name, driver in drivers.items()}
    cpu["naive sleep loop 50 Hz"] = thread_cpu(naive.native_id or 0)
    wall = time.time() - began
    for driver in drivers.values():
        driver.stop()
        driver.join(5)
    naive.stop.set()
    naive.join(5)
    publisher.close()
    print(f"{SECONDS:g} s window, samples counted by their own timestamps")
    print(
        f"{'loop':<32} {'samples':>7} {'target':>7} {'off':>9} "
        f"{'gap p50':>7} {'p99 ms':>7} {'max ms':>7} {'messages':>8} {'CPU':>8}"
    )
    for name in sinks:
        rate = runs.get(name, (50.0, 0.0))[0]
        print(row(name, rate, sinks[name], start, cpu[name], wall))


if __name__ == "__main__":
    main()
