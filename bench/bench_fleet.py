"""Fleet: one kwapi-drivers reading a machine room's BMCs and PDUs at 1 Hz.

One real ``kwapi-drivers`` (its own drivers.conf, one section per
wattmeter) reads N simulated IPMI 2.0 BMCs (RMCP+ and DCMI Get Power
Reading, ``tests/drivers/simulators/bmc_fleet_fast.py``, one process per
250 BMCs) and M simulated SNMP PDUs of 24 outlets
(``tests/drivers/simulators/pdu_fleet.py``, one process per 100 PDUs), all
on 127.0.0.1.  A receiver process (raw pyzmq SUB, kwapi's MessageValidator:
signatures, protocol, replays) counts every reading and checks its value.

The figures cover a window of S seconds that starts after a warm-up (at
least 10 s, and until every living device has been read once, 90 s at
most):

- readings/s published against those expected: one reading is one outlet
  or one BMC; only living devices are expected (not the silent ones nor
  those holding another password; a device killed mid-run until its death);
- on time: the share of the expected readings that came at most 1.5
  intervals after the previous reading of the same probe (the first one of
  the window: after the last one before it); a probe that stalls loses the
  readings it missed;
- kwapi-drivers' CPU (cores: user + system over the window, from
  /proc/PID/stat), its RSS at the start and the end of the window and its
  thread count (/proc/PID/status) at the end; the simulators' and the
  receiver's CPU apart;
- with --kill-one, one living BMC and one PDU are silenced half-way
  through the window; "death->log" is the time from then to kwapi-drivers'
  first log line naming that device's host:port, and "death->metric" the
  time to its ``kwapi_driver_up`` reading 0 on kwapi-drivers' health
  metrics (scraped once a second once the device is dead).

``python -m bench fleet`` runs the rows N = 100, 500 and 1,000 BMCs with
M = 200 PDUs, then 1,000 BMCs of which 10 % are silent and 5 % hold another
password.  One row, from options or the environment:
``python -m bench.bench_fleet --bmcs 1000 --pdus 200 --seconds 60
--silent 10 --wrong-password 5 --kill-one``:
  KWAPI_BENCH_FLEET_BMCS            BMCs (one row instead of the default rows)
  KWAPI_BENCH_FLEET_PDUS            PDUs of 24 outlets (200)
  KWAPI_BENCH_FLEET_SECONDS         measured window (60)
  KWAPI_BENCH_FLEET_SILENT          % of the BMCs that never answer (0)
  KWAPI_BENCH_FLEET_WRONG_PASSWORD  % of the BMCs holding another password (0)
  KWAPI_BENCH_FLEET_KILL_ONE        1: kill a BMC and a PDU mid-run (1)
  KWAPI_BENCH_FLEET_INTERVAL        seconds between readings (1.0)
  KWAPI_BENCH_FLEET_WARM_UP         least warm-up seconds (10)
  KWAPI_BENCH_FLEET_SUITES          cipher suites the BMCs accept (3,17)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from bench.machine import describe_machine
from tests.drivers.simulators.bmc_fleet_fast import BmcFleetProcess
from tests.harness.bus import SECRET, pending
from tests.harness.configs import drivers_conf
from tests.harness.processes import free_tcp_port, short_tmpdir

try:
    from tests.drivers.simulators.pdu_fleet import FleetProcess as PduFleetProcess
    from tests.drivers.simulators.pdu_fleet import watts as outlet_watts
except ImportError:  # the PDU simulator is not there: BMCs only
    PduFleetProcess = outlet_watts = None

ENV = "KWAPI_BENCH_FLEET_"
BMCS = os.environ.get(f"{ENV}BMCS")
PDUS = int(os.environ.get(f"{ENV}PDUS", "200"))
SECONDS = float(os.environ.get(f"{ENV}SECONDS", "60"))
SILENT = float(os.environ.get(f"{ENV}SILENT", "0"))
WRONG_PASSWORD = float(os.environ.get(f"{ENV}WRONG_PASSWORD", "0"))
KILL_ONE = os.environ.get(f"{ENV}KILL_ONE", "1") not in ("0", "", "no", "false")
INTERVAL = float(os.environ.get(f"{ENV}INTERVAL", "1.0"))
WARM_UP = float(os.environ.get(f"{ENV}WARM_UP", "10"))
SUITES = os.environ.get(f"{ENV}SUITES", "3,17")
#: (BMCs, PDUs, % silent, % wrong password) of ``python -m bench fleet``.
DEFAULT_ROWS = [(100, 200, 0, 0), (500, 200, 0, 0), (1000, 200, 0, 0), (1000, 200, 10, 5)]
OUTLETS = 24
BMCS_PER_SIMULATOR = 250
PDUS_PER_SIMULATOR = 100
WARM_UP_LIMIT = 90.0  # seconds: the window starts then even if some device was never read
ON_TIME = 1.5  # intervals: a reading later than this after the previous one is late
LOG_WAIT = 45.0  # seconds after a death that the bench waits for its log line
PASSWORD = "bmc-Passw0rd"
TICK = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


# -- what the bench reads of a process -------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of *pid* (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def status(pid: int) -> tuple[int, int]:
    """(RSS in bytes, thread count) of *pid*; zeros once it is gone."""
    values = {"VmRSS:": 0, "Threads:": 0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition("\t")
                if key in values:
                    values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values["VmRSS:"] * 1024, values["Threads:"]


# -- the receiver ----------------------------------------------------------------


def _receiver_main(endpoint: str, expected: dict[str, float], control, counters) -> None:
    """Child process: take every message, check it, keep each probe's timestamps."""
    from kwapi.bus.receiver import MessageValidator, Rejected
    from kwapi.bus.signing import Verifier

    validator = MessageValidator(Verifier([SECRET]))
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 1_000_000)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    stamps: dict[str, list[float]] = defaultdict(list)
    wrong: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    control.send("ready")
    while True:
        if control.poll():
            if control.recv() is None:
                break
            control.send((dict(stamps), dict(wrong), dict(rejected)))
        if not sock.poll(100):
            continue
        for frames in pending(sock):
            try:
                measurement = validator.check(frames)
            except Rejected as exc:
                rejected[exc.reason] += 1
                continue
            probe = measurement.probe_id
            stamps[probe].append(measurement.timestamp)
            if measurement.meters.get("w") != expected.get(probe):
                wrong[probe] += 1
            counters[0] += 1
        counters[1] = len(stamps)


class Receiver:
    """The receiver process: counters live, every timestamp on demand."""

    def __init__(self, endpoint: str, expected: dict[str, float]) -> None:
        context = multiprocessing.get_context("spawn")
        self.counters = context.Array("q", 2, lock=False)  # readings, probes heard
        self.control, child = context.Pipe()
        self.process = context.Process(
            target=_receiver_main, args=(endpoint, expected, child, self.counters), daemon=True
        )
        self.process.start()
        if not self.control.poll(60):
            raise RuntimeError("the receiver did not start")
        self.control.recv()

    @property
    def pid(self) -> int:
        return self.process.pid

    def dump(self) -> tuple[dict[str, list[float]], dict[str, int], dict[str, int]]:
        """(timestamps by probe, wrong values by probe, rejected by reason)."""
        self.control.send("dump")
        if not self.control.poll(60):
            raise RuntimeError("the receiver did not answer")
        return self.control.recv()

    def stop(self) -> None:
        self.control.send(None)
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


# -- the devices -----------------------------------------------------------------


@dataclass
class Device:
    """One wattmeter: a BMC or a PDU, its section and what its probes read."""

    section: str
    driver: str
    probes: dict[str, float]  # probe -> watts it reads
    simulator: BmcFleetProcess | PduFleetProcess
    index: int  # in its simulator
    living: bool = True  # answers with the right credentials
    password: str = PASSWORD
    port: int = 0
    death: float | None = None  # time.time() of its death mid-run

    def conf(self, interval: float) -> str:
        """Its drivers.conf section."""
        if self.driver == "Ipmi":
            extra = f"'username': 'admin', 'password': '{self.password}'"
        else:
            extra = "'community': 'public', 'model': 'apc'"
        return (
            f"[{self.section}]\ndriver = {self.driver}\nprobes = {list(self.probes)!r}\n"
            f"parameters = {{'host': '127.0.0.1', 'port': {self.port}, {extra}, "
            f"'interval': {interval}}}\n\n"
        )


CONFIG_LOAD = """
import sys, time
started = time.perf_counter()
from kwapi.config import read_sections
from kwapi.drivers.config import parse_wattmeters
parse_wattmeters(read_sections([sys.argv[1]]))
print(time.perf_counter() - started)
"""


def config_load_seconds(conf: Path) -> float:
    """Seconds a fresh Python takes to read and validate *conf*, kwapi's imports included."""
    result = subprocess.run(
        [sys.executable, "-c", CONFIG_LOAD, str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(result.stdout)


def spread(count: int, total: int, offset: int = 0) -> set[int]:
    """*count* indexes evenly spread over range(*total*), shifted by *offset*."""
    if count <= 0:
        return set()
    step = total / count
    return {(int(i * step) + offset) % total for i in range(count)}


def start_bmcs(count: int, silent: int, wrong: int, suites: list[int]) -> tuple[list[Device], list]:
    """BMC devices and their simulator processes; *silent* and *wrong* of them dead;
    each BMC accepts the cipher *suites*."""
    silent_set = spread(silent, count)
    others = [i for i in range(count) if i not in silent_set]
    shift = len(others) // (2 * wrong) if wrong else 0  # between the silent ones
    wrong_set = {others[j] for j in spread(wrong, len(others), shift)}
    devices, processes = [], []
    for first in range(0, count, BMCS_PER_SIMULATOR):
        chunk = range(first, min(count, first + BMCS_PER_SIMULATOR))
        settings = [
            {
                "password": PASSWORD,
                "watts": 100 + i % 400,
                "silent": i in silent_set,
                "cipher_suites": suites,
            }
            for i in chunk
        ]
        process = BmcFleetProcess(settings)
        processes.append(process)
        for local, i in enumerate(chunk):
            device = Device(
                f"BMC {i}", "Ipmi", {f"node-{i:04d}": float(100 + i % 400)}, process, local
            )
            device.port = process.ports[local]
            device.living = i not in silent_set and i not in wrong_set
            if i in wrong_set:
                device.password = "another-Passw0rd"
            devices.append(device)
    return devices, processes


def start_pdus(count: int) -> tuple[list[Device], list]:
    """PDU devices (24 outlets each) and their simulator processes."""
    devices, processes = [], []
    for first in range(0, count, PDUS_PER_SIMULATOR):
        size = min(PDUS_PER_SIMULATOR, count - first)
        process = PduFleetProcess(pdus=size, outlets=OUTLETS, model="apc", community="public")
        processes.append(process)
        for local in range(size):
            p = first + local
            probes = {
                f"pdu-{p:03d}-{k:02d}": float(outlet_watts(local, k)) for k in range(1, OUTLETS + 1)
            }
            device = Device(f"PDU {p}", "Snmp", probes, process, local)
            device.port = process.ports[local]
            devices.append(device)
    return devices, processes


# -- one row ---------------------------------------------------------------------


@dataclass
class Row:
    """What one row runs."""

    bmcs: int
    pdus: int
    silent: float = 0.0  # % of the BMCs
    wrong_password: float = 0.0  # % of the BMCs
    seconds: float = SECONDS
    kill_one: bool = KILL_ONE
    interval: float = INTERVAL
    warm_up: float = WARM_UP
    suites: tuple[int, ...] = (3, 17)
    keep: bool = False  # keep the work directory (drivers.conf, kwapi-drivers.log)


@dataclass
class Snapshot:
    """CPU seconds of every process and kwapi-drivers' RSS and threads, at one instant."""

    wall: float
    stamp: float
    cpu: dict[str, float]
    rss: int
    threads: int


@dataclass
class Result:
    """What one row measured."""

    row: Row
    devices: list[Device]
    start: Snapshot
    end: Snapshot
    stamps: dict[str, list[float]]
    wrong: dict[str, int]
    rejected: dict[str, int]
    warm_up: float
    heard_at_start: int
    deaths: dict[str, float | None] = field(default_factory=dict)  # section -> seconds
    metric_deaths: dict[str, float | None] = field(default_factory=dict)  # the same, to up 0
    dead_lines: int = 0  # the most log lines that named one device dead from the start
    config_seconds: float = 0.0  # to read and validate drivers.conf, imports included
    stopped: str = ""


class Run:
    """The processes of one row: simulators, receiver, kwapi-drivers."""

    def __init__(self, row: Row) -> None:
        self.row = row
        self.directory = Path(short_tmpdir("kwfleet"))
        self.processes: dict[str, int] = {}
        self.simulators: list = []
        self.receiver: Receiver | None = None
        self.drivers: subprocess.Popen | None = None
        self.log = self.directory / "kwapi-drivers.log"
        self.dead_lines = 0
        self.config_seconds = 0.0
        self.metrics_port = free_tcp_port()

    def start(self) -> None:
        row = self.row
        silent = round(row.bmcs * row.silent / 100)
        wrong = round(row.bmcs * row.wrong_password / 100)
        bmcs, processes = start_bmcs(row.bmcs, silent, wrong, list(row.suites))
        self.simulators += processes
        pdus, processes = start_pdus(row.pdus) if row.pdus else ([], [])
        self.simulators += processes
        self.devices = bmcs + pdus
        for number, simulator in enumerate(self.simulators):
            self.processes[f"simulator {number}"] = simulator.pid
        endpoint = f"ipc://{self.directory}/drivers"
        expected = {p: w for device in self.devices for p, w in device.probes.items()}
        self.receiver = Receiver(endpoint, expected)
        self.processes["receiver"] = self.receiver.pid
        sections = "".join(device.conf(row.interval) for device in self.devices)
        conf = drivers_conf(
            self.directory, endpoint, sections, f"metrics_port = {self.metrics_port}"
        )
        self.config_seconds = config_load_seconds(conf)
        with open(self.log, "ab") as log:
            self.drivers = subprocess.Popen(
                [str(BIN / "kwapi-drivers"), "--config-file", str(conf)], stdout=log, stderr=log
            )
        self.processes["kwapi-drivers"] = self.drivers.pid

    def snapshot(self) -> Snapshot:
        rss, threads = status(self.drivers.pid)
        cpu = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        return Snapshot(time.monotonic(), time.time(), cpu, rss, threads)

    def warm_up(self) -> tuple[float, int]:
        """Wait for every living probe's first reading (bounded); (seconds, probes heard)."""
        living = sum(len(d.probes) for d in self.devices if d.living)
        began = time.monotonic()
        while True:
            elapsed = time.monotonic() - began
            heard = self.receiver.counters[1]
            if self.drivers.poll() is not None:
                raise RuntimeError(f"kwapi-drivers exited: {self.log.read_text()[-2000:]}")
            if (heard >= living and elapsed >= self.row.warm_up) or elapsed >= WARM_UP_LIMIT:
                return elapsed, heard
            time.sleep(0.2)

    def victims(self) -> list[Device]:
        """The last living BMC and the last PDU: those killed mid-run."""
        chosen = []
        for driver in ("Ipmi", "Snmp"):
            living = [d for d in self.devices if d.driver == driver and d.living]
            if living:
                chosen.append(living[-1])
        return chosen

    def measure(self) -> Result:
        row = self.row
        warm, heard = self.warm_up()
        start = self.snapshot()
        victims = self.victims() if row.kill_one else []
        watcher = LogWatcher(self.log)
        metrics = MetricsWatcher(self.metrics_port)
        killed = False
        while time.monotonic() < start.wall + row.seconds:
            if victims and not killed and time.monotonic() >= start.wall + row.seconds / 2:
                watcher.mark()
                for device in victims:
                    device.simulator.command(f"silence {device.index}")
                    device.death = time.time()
                killed = True
            watcher.poll(victims)
            metrics.poll(victims)
            time.sleep(0.2)
        end = self.snapshot()
        deadline = time.monotonic() + LOG_WAIT
        while (
            victims
            and time.monotonic() < deadline
            and not (watcher.all_seen(victims) and metrics.all_seen(victims))
        ):
            watcher.poll(victims)
            metrics.poll(victims)
            time.sleep(0.2)
        time.sleep(min(2.0, row.interval))  # let the readings of the window's end arrive
        stamps, wrong, rejected = self.receiver.dump()
        result = Result(row, self.devices, start, end, stamps, wrong, rejected, warm, heard)
        result.deaths = {d.section: watcher.delay(d) for d in victims}
        result.metric_deaths = {d.section: metrics.delay(d) for d in victims}
        return result

    def lines_per_dead_device(self) -> int:
        """The most kwapi-drivers log lines that named one device dead from the start."""
        if not self.log.exists():
            return 0
        lines = self.log.read_text(errors="replace").splitlines()
        counts = [
            sum(bool(re.search(rf"127\.0\.0\.1:{device.port}(?!\d)", line)) for line in lines)
            for device in self.devices
            if not device.living
        ]
        return max(counts, default=0)

    def stop(self) -> str:
        """Stop everything (bounded); tell how kwapi-drivers stopped."""
        how = "not started"
        if self.drivers is not None:
            self.drivers.send_signal(signal.SIGTERM)
            try:
                self.drivers.wait(30)
                how = f"exit {self.drivers.returncode}"
            except subprocess.TimeoutExpired:
                self.drivers.kill()
                self.drivers.wait(30)
                how = "killed: ignored SIGTERM for 30 s"
        if self.receiver is not None:
            self.receiver.stop()
        for simulator in self.simulators:
            simulator.stop()
        self.dead_lines = self.lines_per_dead_device()
        if self.row.keep:
            how += f"; its log: {self.log}"
        else:
            shutil.rmtree(self.directory, ignore_errors=True)
        return how


class Watcher:
    """When each dead device was first seen dead (time.time()), by its section."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def all_seen(self, devices: list[Device]) -> bool:
        return all(device.section in self.seen for device in devices)

    def delay(self, device: Device) -> float | None:
        seen = self.seen.get(device.section)
        return None if seen is None or device.death is None else seen - device.death


class MetricsWatcher(Watcher):
    """Finds when kwapi-drivers' health metrics first say a dead device's wattmeter is down."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.last_poll = 0.0

    def poll(self, devices: list[Device]) -> None:
        """Scrape once a second while a dead device's wattmeter is not yet seen down."""
        dead = [d for d in devices if d.death is not None and d.section not in self.seen]
        if not dead or time.monotonic() - self.last_poll < 1.0:
            return
        self.last_poll = time.monotonic()
        with urllib.request.urlopen(self.url, timeout=10) as answer:
            text = answer.read().decode()
        now = time.time()
        for device in dead:
            down = f'kwapi_driver_up{{driver="{device.driver}",section="{device.section}"}} 0.0'
            if down in text:
                self.seen[device.section] = now


class LogWatcher(Watcher):
    """Finds kwapi-drivers' first log line naming each dead device, after its death."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.offset = 0
        self.text = ""

    def mark(self) -> None:
        """Ignore what the log holds so far."""
        self.offset = self.path.stat().st_size

    def poll(self, devices: list[Device]) -> None:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        self.offset += len(chunk)
        self.text += chunk.decode(errors="replace")
        lines, _, self.text = self.text.rpartition("\n")
        now = time.time()
        for device in devices:
            dead = device.death is not None and device.section not in self.seen
            if dead and f"127.0.0.1:{device.port}" in lines:
                self.seen[device.section] = now


# -- figures ---------------------------------------------------------------------


@dataclass
class Figures:
    """The row's figures, computed from the receiver's timestamps."""

    expected: float = 0.0
    published: int = 0
    on_time: float = 0.0
    silent_probes: int = 0  # living probes with no reading in the window
    longest_gap: float = 0.0
    unexpected: int = 0  # readings of dead devices in the window


def figures(result: Result) -> Figures:
    """Readings expected, published and on time over the window (see the module's docstring)."""
    t0, t1 = result.start.stamp, result.end.stamp
    interval = result.row.interval
    out = Figures()
    for device in result.devices:
        until = t1 if device.death is None else min(t1, device.death)
        for probe in device.probes:
            stamps = result.stamps.get(probe, [])
            inside = [t for t in stamps if t0 <= t < until]
            if not device.living:
                out.unexpected += len(inside)
                continue
            expected = max(0.0, (until - t0) / interval)
            before = [t for t in stamps if t < t0]
            previous = before[-1] if before else t0
            on_time = 0
            for stamp in inside:
                on_time += stamp - previous <= ON_TIME * interval
                previous = stamp
            gaps = [b - a for a, b in zip([t0, *inside], [*inside, until], strict=True)]
            out.longest_gap = max(out.longest_gap, *gaps)
            out.expected += expected
            out.published += len(inside)
            out.on_time += min(on_time, expected)
            out.silent_probes += not inside
    return out


HEADER = (
    f"{'BMCs':>5}{'dead':>13}{'PDUs':>5}{'probes':>7}{'readings/s':>11}{'expected/s':>11}"
    f"{'pub %':>7}{'on time':>8}{'gap s':>7}{'CPU':>6}{'RSS MiB':>10}{'thr':>6}"
    f"{'sims':>6}{'recv':>6}{'death->log':>12}{'death->metric':>15}"
)


def _delays(delays: dict[str, float | None]) -> str:
    return "/".join("-" if delay is None else f"{delay:.1f}" for delay in delays.values())


def print_result(result: Result) -> None:
    row, out = result.row, figures(result)
    start, end = result.start, result.end
    wall = end.wall - start.wall
    silent = sum(1 for d in result.devices if d.driver == "Ipmi" and not d.living)
    probes = sum(len(d.probes) for d in result.devices)
    expected = max(1.0, out.expected)

    def cores(names: list[str]) -> float:
        return sum(end.cpu[n] - start.cpu[n] for n in names) / wall

    sims = [name for name in start.cpu if name.startswith("simulator")]
    deaths = _delays(result.deaths)
    metric_deaths = _delays(result.metric_deaths)
    print(
        f"{row.bmcs:>5}{f'{silent} ({row.silent:g}+{row.wrong_password:g}%)':>13}{row.pdus:>5}"
        f"{probes:>7}{out.published / wall:>11,.0f}{out.expected / wall:>11,.0f}"
        f"{out.published / expected:>7.1%}{out.on_time / expected:>8.1%}"
        f"{out.longest_gap:>7.1f}{cores(['kwapi-drivers']):>6.2f}"
        f"{f'{start.rss / 2**20:.0f}->{end.rss / 2**20:.0f}':>10}{end.threads:>6}"
        f"{cores(sims):>6.3f}{cores(['receiver']):>6.3f}{deaths or 'n/a':>12}"
        f"{metric_deaths or 'n/a':>15}",
        flush=True,
    )
    notes = [
        f"warm-up {result.warm_up:.0f} s ({result.heard_at_start:,} probes heard), "
        f"window {wall:.0f} s",
        f"kwapi-drivers {result.stopped}",
        f"drivers.conf of {len(result.devices):,} sections read and validated in "
        f"{result.config_seconds:.2f} s",
    ]
    if silent:
        notes.append(f"at most {result.dead_lines} log line(s) per dead device over the run")
    if out.silent_probes:
        notes.append(f"{out.silent_probes} living probes silent all window")
    if out.unexpected:
        notes.append(f"{out.unexpected} readings from dead devices")
    if result.wrong:
        notes.append(f"{sum(result.wrong.values())} readings with a wrong value")
    if result.rejected:
        notes.append(f"rejected by the receiver: {result.rejected}")
    print(f"      ({'; '.join(notes)})", flush=True)


def run_row(row: Row) -> None:
    run = Run(row)
    result = None
    try:
        run.start()
        result = run.measure()
    finally:
        stopped = run.stop()
    result.stopped = stopped
    result.dead_lines = run.dead_lines
    result.config_seconds = run.config_seconds
    print_result(result)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options of a run; the defaults come from the KWAPI_BENCH_FLEET_* variables."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fleet", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--bmcs", type=int, default=None if BMCS is None else int(BMCS))
    parser.add_argument("--pdus", type=int, default=PDUS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--silent", type=float, default=SILENT, help="%% of the BMCs")
    parser.add_argument("--wrong-password", type=float, default=WRONG_PASSWORD, help="%%")
    parser.add_argument("--kill-one", action=argparse.BooleanOptionalAction, default=KILL_ONE)
    parser.add_argument("--interval", type=float, default=INTERVAL)
    parser.add_argument("--warm-up", type=float, default=WARM_UP)
    parser.add_argument("--suites", default=SUITES, help="cipher suites the BMCs accept")
    parser.add_argument("--keep", action="store_true", help="keep drivers.conf and the log")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the rows (``python -m bench fleet`` passes no arguments)."""
    args = parse_args(argv or [])
    pdus = args.pdus
    if pdus and PduFleetProcess is None:
        print("fleet: tests/drivers/simulators/pdu_fleet.py is missing: no PDUs")
        pdus = 0
    common = {
        "seconds": args.seconds,
        "kill_one": args.kill_one,
        "interval": args.interval,
        "warm_up": args.warm_up,
        "suites": tuple(int(suite) for suite in args.suites.split(",")),
        "keep": args.keep,
    }
    if args.bmcs is None:
        rows = [Row(n, pdus and m, s, w, **common) for n, m, s, w in DEFAULT_ROWS]
    else:
        rows = [Row(args.bmcs, pdus, args.silent, args.wrong_password, **common)]
    print(
        f"fleet: one kwapi-drivers, simulated BMCs (RMCP+, DCMI) and PDUs ({OUTLETS} outlets, "
        f"SNMP v2c) on 127.0.0.1, BMC cipher suites {args.suites}, every {args.interval:g} s, "
        f"{args.seconds:g} s measured "
        f"after the warm-up; on time = at most {ON_TIME:g} intervals after the probe's "
        "previous reading, as a share of the readings expected; CPU in cores; "
        "death->log and death->metric in s (BMC/PDU)"
    )
    print(HEADER, flush=True)
    for row in rows:
        run_row(row)


if __name__ == "__main__":
    print(describe_machine())
    main(sys.argv[1:])
