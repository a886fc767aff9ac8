"""kwapi: the operator's tool.

``kwapi tail`` subscribes to a driver or forwarder endpoint and prints each
measurement as it arrives, marking those that fail verification and why;
``kwapi keygen`` makes CURVE key pairs for encrypted buses; ``kwapi energy``
asks kwapi-history for the energy of probes over a time range.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import zmq

from kwapi import __version__
from kwapi.bus.curve import CurveClient, CurveKeyError
from kwapi.bus.protocol import Batch, is_valid_probe_id, topic_for
from kwapi.bus.receiver import MessageValidator, Rejected
from kwapi.bus.signing import Verifier
from kwapi.cmd import energy, keygen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kwapi", description="kwapi operator's tool")
    parser.add_argument("--version", action="version", version=f"kwapi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    tail = commands.add_parser(
        "tail", help="print measurements from a driver or forwarder endpoint as they arrive"
    )
    tail.add_argument("--endpoint", required=True, help="e.g. ipc:///tmp/kwapi-forwarder")
    tail.add_argument(
        "--secret",
        action="append",
        default=[],
        help="secret to verify signatures with (repeatable; default: $KWAPI_SECRET); "
        "without one, signatures are not checked",
    )
    tail.add_argument(
        "--probe", action="append", default=[], help="only this probe id (repeatable)"
    )
    tail.add_argument(
        "--count", type=int, default=0, help="exit after this many messages (default: never)"
    )
    tail.add_argument(
        "--timeout", type=float, default=0, help="exit after this many seconds (default: never)"
    )
    tail.add_argument(
        "--window",
        type=float,
        default=300.0,
        help="seconds a timestamp may differ from this clock (default 300)",
    )
    tail.add_argument(
        "--server-key",
        help="public CURVE key (Z85 or key file) of an encrypted endpoint",
    )
    tail.add_argument("--secret-key", help="CURVE secret key file to connect with")
    keygen.add_parser(commands)
    energy.add_parser(commands)
    return parser


def format_meters(meters: dict[str, float]) -> str:
    """Render meters as ``name=value`` pairs, watts first."""
    names = sorted(meters, key=lambda name: (name != "w", name))
    return " ".join(f"{name}={meters[name]:g}" for name in names)


def tail(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print messages from ``args.endpoint`` until count or timeout is reached."""
    for probe in args.probe:
        if not is_valid_probe_id(probe):
            print(f"kwapi tail: error: invalid probe id {probe!r}", file=sys.stderr)
            return 2
    secrets = args.secret or [s for s in [os.environ.get("KWAPI_SECRET")] if s]
    validator = MessageValidator(Verifier(secrets) if secrets else None, window=args.window)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    if args.server_key:
        try:
            CurveClient([args.server_key], args.secret_key).apply(socket)
        except CurveKeyError as exc:
            print(f"kwapi tail: error: {exc}", file=sys.stderr)
            socket.close()
            return 2
    for probe in args.probe:
        socket.setsockopt(zmq.SUBSCRIBE, topic_for(probe))
    if not args.probe:
        socket.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        socket.connect(args.endpoint)
    except zmq.ZMQError as exc:
        print(f"kwapi tail: error: cannot connect to {args.endpoint}: {exc}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    seen = 0
    try:
        while args.count <= 0 or seen < args.count:
            wait_ms = 500
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait_ms = min(wait_ms, int(left * 1000) + 1)
            if not socket.poll(wait_ms):
                continue
            frames = socket.recv_multipart()
            seen += 1
            out.write(describe(frames, validator) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        socket.close()
    return 0


def describe(frames: Sequence[bytes], validator: MessageValidator) -> str:
    """Return one line telling what *frames* carry, or why they were rejected."""
    try:
        measurement = validator.check(frames)
    except Rejected as exc:
        topic = frames[0][:64].decode("utf-8", "replace") if frames else ""
        return f"REJECTED {topic!r} {exc.reason}: {exc.detail}"
    if isinstance(measurement, Batch):
        return describe_batch(measurement)
    stamp = format_time(measurement.timestamp)
    return f"{measurement.probe_id} {stamp} {format_meters(dict(measurement.meters))}"


def format_time(timestamp: float) -> str:
    """*timestamp* as local date and time to the millisecond."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
    return stamp + f"{timestamp % 1:.3f}"[1:]


def describe_batch(batch: Batch) -> str:
    """One line for a batch: its span, its size and each meter's last, min and max."""
    span = batch.timestamp - batch.first_timestamp
    summary = " ".join(
        f"{name}={values[-1]:g} (min {min(values):g}, max {max(values):g})"
        for name, values in sorted(batch.meters.items())
    )
    return (
        f"{batch.probe_id} {format_time(batch.timestamp)} batch of {len(batch)} "
        f"over {span:.3f} s: {summary}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Console script entry point."""
    args = _parser().parse_args(argv)
    if args.command == "tail":
        sys.exit(tail(args))
    if args.command == "keygen":
        sys.exit(keygen.keygen(args))
    if args.command == "energy":
        sys.exit(energy.energy(args))
