"""What reading SNMP PDUs costs kwapi-drivers, against the simulated PDU fleet.

Every mode reads PDUs served by ``tests.drivers.simulators.pdu_fleet`` (one
process, one UDP port of 127.0.0.1 per PDU, --outlets outlets each), SNMP
--version 2c or 1, over loopback.

``fleet`` (default): one real :class:`~kwapi.drivers.snmp.SnmpDriver` per
PDU (--pdus of them) in this process, started as kwapi-drivers starts them
(a thread each, or a task each of the shared event loop for an
AsyncDriver).  It reports the start-up (until every driver has published
once), then over --seconds this process's CPU (cores: user + system seconds
per wall second), RSS, the readings per second achieved against the
expected pdus / interval, and the simulator's CPU per request it answered.
Measurements are counted, not sent on a bus (the bus's cost is bench_bus's).

``profile``: one SnmpDriver read --readings times in the main thread, then
as many under cProfile; prints the CPU per reading and where it goes.

``variants``: CPU per reading of the same GET of every outlet done four
ways, --readings times each: the SnmpDriver as it is; pysnmp's hlapi with
the ObjectTypes built once and reused; pysnmp's message API (pyasn1
encoding and decoding) over a plain UDP socket; the simulator's minimal BER
codec over an asyncio datagram endpoint, as a driver on the loop would.
Also the CPU and memory of one driver's set-up (its own SnmpEngine and the
walk of the column).

Run from the repository root, e.g.::

    .venv/bin/python -m bench.snmp_probe_cost --pdus 200 --seconds 30
    .venv/bin/python -m bench.snmp_probe_cost --mode profile --readings 500
    .venv/bin/python -m bench.snmp_probe_cost --mode variants --readings 500
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import logging
import os
import pstats
import socket
import time
from collections.abc import Callable

from bench.machine import describe_machine
from kwapi.drivers.snmp import SnmpDriver, SnmpParameters
from tests.drivers.simulators import pdu_fleet
from tests.drivers.simulators.pdu_fleet import FleetProcess, outlet_oid, watts

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process *pid*, all its threads."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    """Resident memory of process *pid* in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_driver(index: int, port: int, args: argparse.Namespace) -> SnmpDriver:
    """The SnmpDriver of PDU *index*; what it publishes is counted by the driver only."""
    parameters = SnmpParameters(
        host="127.0.0.1",
        port=port,
        protocol=args.version,
        model=args.model,
        community="public",
        interval=args.interval,
    )
    probes = [f"pdu{index}-{k}" for k in range(1, args.outlets + 1)]
    return SnmpDriver(f"pdu-{index}", probes, parameters, lambda measurement: None)


def fleet_settings(args: argparse.Namespace) -> dict[str, object]:
    return {"pdus": args.pdus, "outlets": args.outlets, "model": args.model}


def run_fleet(args: argparse.Namespace) -> None:
    """Mode fleet: one SnmpDriver per simulated PDU; see the module's docstring."""
    me = os.getpid()
    with FleetProcess(**fleet_settings(args)) as fleet:
        drivers = [make_driver(i, port, args) for i, port in enumerate(fleet.ports)]
        start, cpu_start = time.monotonic(), cpu_seconds(me)
        for driver in drivers:
            driver.start()
        try:
            wait_until_read(me, drivers, args, start, cpu_start)
            time.sleep(args.settle)
            window = measure_window(me, fleet, drivers, args.seconds)
            print("window over; stopping the drivers", flush=True)
        finally:
            for driver in drivers:
                driver.stop()
            for driver in drivers:
                driver.join(10)
    report_window(window, args)


def wait_until_read(
    me: int, drivers: list[SnmpDriver], args: argparse.Namespace, start: float, cpu_start: float
) -> None:
    """Wait (at most --setup-timeout s) until every driver has published; print progress."""
    deadline = start + args.setup_timeout
    while True:
        read = sum(d.published >= args.outlets for d in drivers)
        now = time.monotonic()
        done = read == len(drivers) or now > deadline
        if done or int(now - start) % 10 == 0:
            print(
                f"start-up: {read}/{len(drivers)} drivers read once after {now - start:.0f} s, "
                f"{cpu_seconds(me) - cpu_start:.1f} CPU s, RSS {rss_mib(me):.0f} MiB",
                flush=True,
            )
        if done:
            return
        time.sleep(1.0)


def measure_window(me: int, fleet: FleetProcess, drivers: list[SnmpDriver], seconds: float):
    """CPU, readings and requests over *seconds* of steady running."""

    def snapshot():
        return (
            time.monotonic(),
            cpu_seconds(me),
            cpu_seconds(fleet.pid),
            fleet.stats()[1],
            [d.published for d in drivers],
        )

    before = snapshot()
    time.sleep(seconds)
    after = snapshot()
    return before, after, rss_mib(me), rss_mib(fleet.pid)


def report_window(window, args: argparse.Namespace) -> None:
    """Print the figures of a :func:`measure_window`."""
    (t0, cpu0, sim0, answered0, pub0), (t1, cpu1, sim1, answered1, pub1), rss, sim_rss = window
    wall = t1 - t0
    readings = [(b - a) / args.outlets for a, b in zip(pub0, pub1, strict=True)]
    total = sum(readings)
    expected = args.pdus * wall / args.interval
    answered = answered1 - answered0
    print(f"window: {wall:.1f} s, {args.pdus} PDUs x {args.outlets} outlets, SNMP v{args.version}")
    print(
        f"kwapi drivers: {cpu1 - cpu0:.2f} CPU s = {(cpu1 - cpu0) / wall:.3f} cores, "
        f"RSS {rss:.0f} MiB, {total / wall:.1f} readings/s of {expected / wall:.1f} expected "
        f"({100 * total / expected:.1f} %), slowest PDU {min(readings) / wall:.2f}/s, "
        f"{1000 * (cpu1 - cpu0) / max(total, 1):.2f} CPU ms per reading"
    )
    print(
        f"simulator: {sim1 - sim0:.2f} CPU s = {(sim1 - sim0) / wall:.4f} cores, "
        f"RSS {sim_rss:.0f} MiB, {answered} answers, "
        f"{1e6 * (sim1 - sim0) / max(answered, 1):.0f} CPU us per answer"
    )


def complete(loop: asyncio.AbstractEventLoop, result: object) -> object:
    """The result of a driver step: awaited on *loop* for an AsyncDriver's coroutine."""
    return loop.run_until_complete(result) if inspect.isawaitable(result) else result


def run_profile(args: argparse.Namespace) -> None:
    """Mode profile: one driver's readings in this thread, then under cProfile."""
    loop = asyncio.new_event_loop()
    with FleetProcess(**fleet_settings(args) | {"pdus": 1}) as fleet:
        driver = make_driver(0, fleet.ports[0], args)
        complete(loop, driver.setup())
        try:
            complete(loop, driver.read())  # warm caches
            cpu = time.process_time()
            for _ in range(args.readings):
                complete(loop, driver.read())
            cpu = time.process_time() - cpu
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.readings):
                readings = complete(loop, driver.read())
            profiler.disable()
        finally:
            complete(loop, driver.teardown())
            close_loop(loop)
    assert readings[f"pdu0-{args.outlets}"] == {"w": watts(0, args.outlets)}
    print(f"{1000 * cpu / args.readings:.2f} CPU ms per reading (without the profiler)")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


def run_variants(args: argparse.Namespace) -> None:
    """Mode variants: one reading's CPU done four ways, and one driver's set-up."""
    loop = asyncio.new_event_loop()
    expected = [watts(0, k) for k in range(1, args.outlets + 1)]
    with FleetProcess(**fleet_settings(args) | {"pdus": 1}) as fleet:
        port = fleet.ports[0]
        setup_cost(loop, port, args)
        for name, variant in [
            ("SnmpDriver.read as it is", driver_reading),
            ("hlapi get_cmd, ObjectTypes reused", hlapi_reading),
            ("pysnmp message API + pyasn1", message_api_reading),
            ("minimal BER codec (the simulator's), asyncio UDP", codec_reading),
        ]:
            read, close = variant(loop, port, args)
            try:
                assert read() == expected, name
                cpu = time.process_time()
                for _ in range(args.readings):
                    read()
                cpu = time.process_time() - cpu
            finally:
                close()
            print(f"{name}: {1000 * cpu / args.readings:.3f} CPU ms per reading", flush=True)
    close_loop(loop)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what pysnmp left pending on *loop* (its dispatchers' timers), then close it."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()

    async def drain() -> None:
        await asyncio.gather(*pending, return_exceptions=True)

    loop.run_until_complete(drain())
    loop.close()


def setup_cost(loop: asyncio.AbstractEventLoop, port: int, args: argparse.Namespace) -> None:
    """Print the CPU and RSS that a driver's set-up costs (the first one excepted)."""
    drivers = [make_driver(i, port, args) for i in range(6)]
    complete(loop, drivers[0].setup())
    me = os.getpid()
    cpu, rss = time.process_time(), rss_mib(me)
    for driver in drivers[1:]:
        complete(loop, driver.setup())
    cpu, rss = time.process_time() - cpu, rss_mib(me) - rss
    print(f"SnmpDriver set-up: {1000 * cpu / 5:.0f} CPU ms, {rss / 5:.2f} MiB each")
    for driver in drivers:
        complete(loop, driver.teardown())


Variant = tuple[Callable[[], list], Callable[[], object]]  # (read, close)


def driver_reading(loop: asyncio.AbstractEventLoop, port: int, args) -> Variant:
    """A reading by the SnmpDriver itself."""
    driver = make_driver(0, port, args)
    complete(loop, driver.setup())
    names = [f"pdu0-{k}" for k in range(1, args.outlets + 1)]

    def read() -> list:
        readings = complete(loop, driver.read())
        return [readings[name]["w"] for name in names]

    return read, lambda: complete(loop, driver.teardown())


def hlapi_reading(loop: asyncio.AbstractEventLoop, port: int, args) -> Variant:
    """The driver's get_cmd, with its ObjectTypes (resolved on first use) kept."""
    from pysnmp.hlapi.v3arch import asyncio as hlapi

    engine = hlapi.SnmpEngine()
    target = loop.run_until_complete(
        hlapi.UdpTransportTarget.create(("127.0.0.1", port), timeout=1.0, retries=0)
    )
    auth = hlapi.CommunityData("public", mpModel=0 if args.version == "1" else 1)
    context = hlapi.ContextData()
    objects = [
        hlapi.ObjectType(hlapi.ObjectIdentity(outlet_oid(args.model, k)))
        for k in range(1, args.outlets + 1)
    ]

    def read() -> list:
        answer = loop.run_until_complete(
            hlapi.get_cmd(engine, auth, target, context, *objects, lookupMib=False)
        )
        return [int(value) for _, value in answer[3]]

    return read, engine.close_dispatcher


def message_api_reading(loop, port: int, args) -> Variant:
    """A GET message built once with pysnmp's message API, encoded and decoded by pyasn1."""
    from pyasn1.codec.ber import decoder, encoder
    from pysnmp.proto import api

    protocol = api.PROTOCOL_MODULES[api.SNMP_VERSION_1 if args.version == "1" else 1]
    pdu = protocol.GetRequestPDU()
    protocol.apiPDU.set_defaults(pdu)
    protocol.apiPDU.set_varbinds(
        pdu,
        [
            (protocol.ObjectIdentifier(outlet_oid(args.model, k)), protocol.Null(""))
            for k in range(1, args.outlets + 1)
        ],
    )
    message = protocol.Message()
    protocol.apiMessage.set_defaults(message)
    protocol.apiMessage.set_community(message, "public")
    protocol.apiMessage.set_pdu(message, pdu)
    sock = connected_socket(port)
    counter = iter(range(1, 2**31))

    def read() -> list:
        protocol.apiPDU.set_request_id(pdu, next(counter))
        sock.send(encoder.encode(message))
        answer, _ = decoder.decode(sock.recv(65535), asn1Spec=protocol.Message())
        bindings = protocol.apiPDU.get_varbinds(protocol.apiMessage.get_pdu(answer))
        return [int(value) for _, value in bindings]

    return read, sock.close


def codec_reading(loop: asyncio.AbstractEventLoop, port: int, args) -> Variant:
    """The GET encoded, sent through asyncio and its answer decoded, with the simulator's BER."""
    column = pdu_fleet.column(args.model)
    null = pdu_fleet.tlv(pdu_fleet.NULL, b"")
    names = [pdu_fleet.encode_oid((*column, k)) for k in range(1, args.outlets + 1)]
    bindings = pdu_fleet.tlv(
        pdu_fleet.SEQUENCE, b"".join(pdu_fleet.binding(name, null) for name in names)
    )
    version = 0 if args.version == "1" else 1
    head = pdu_fleet.integer(version) + pdu_fleet.tlv(pdu_fleet.OCTET_STRING, b"public")
    transport, answers = loop.run_until_complete(
        loop.create_datagram_endpoint(Answers, remote_addr=("127.0.0.1", port))
    )
    counter = iter(range(1, 2**31))

    async def get() -> list:
        request_id = next(counter)
        pdu = pdu_fleet.integer(request_id) + pdu_fleet.integer(0) + pdu_fleet.integer(0)
        message = head + pdu_fleet.tlv(pdu_fleet.GET, pdu + bindings)
        answers.waiting = loop.create_future()
        transport.sendto(pdu_fleet.tlv(pdu_fleet.SEQUENCE, message))
        return decode_values(await asyncio.wait_for(answers.waiting, 1.0), request_id)

    return lambda: loop.run_until_complete(get()), transport.close


class Answers(asyncio.DatagramProtocol):
    """Hands each datagram received to the future :attr:`waiting`, if any."""

    waiting: asyncio.Future | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(data)


def connected_socket(port: int) -> socket.socket:
    """A UDP socket connected to *port* of 127.0.0.1, timing out after 1 s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(1.0)
    return sock


def decode_values(data: bytes, request_id: int) -> list[int]:
    """The INTEGER values of a Response to *request_id*."""
    read, expect = pdu_fleet.read_tlv, pdu_fleet.expect
    pos, _ = expect(data, 0, pdu_fleet.SEQUENCE)
    _, _, pos = read(data, pos)  # version
    _, _, pos = read(data, pos)  # community
    pos, _ = expect(data, pos, pdu_fleet.RESPONSE)
    found_id, pos = pdu_fleet.read_integer(data, pos)
    status, pos = pdu_fleet.read_integer(data, pos)
    _, pos = pdu_fleet.read_integer(data, pos)
    if found_id != request_id or status:
        raise ValueError(f"answer {found_id} status {status}")
    pos, end = expect(data, pos, pdu_fleet.SEQUENCE)
    values = []
    while pos < end:
        start, pos = expect(data, pos, pdu_fleet.SEQUENCE)
        _, _, value_at = read(data, start)  # the OID
        values.append(pdu_fleet.read_integer(data, value_at)[0])
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["fleet", "profile", "variants"], default="fleet")
    parser.add_argument("--pdus", type=int, default=200)
    parser.add_argument("--outlets", type=int, default=24)
    parser.add_argument("--model", default="apc")
    parser.add_argument("--version", choices=["1", "2c"], default="2c")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--settle", type=float, default=3.0, help="wait before the window")
    parser.add_argument("--setup-timeout", type=float, default=180.0)
    parser.add_argument("--readings", type=int, default=500, help="profile and variants")
    parser.add_argument("--top", type=int, default=25, help="functions printed by profile")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    print(describe_machine(), flush=True)
    {"fleet": run_fleet, "profile": run_profile, "variants": run_variants}[args.mode](args)


if __name__ == "__main__":
    main()
