"""A simulated OmegaWatt-style wattmetre reader, as the Wattmetre driver's command.

It writes on its standard output what the lab's reader writes: one CSV line
per measurement round, ``<debug>,<debug>,<seconds>.<nanoseconds>,OK,<watts>,...``
(an empty column for a port without a sample).

    python wattmetre_meter.py [--lines FILE] [--live PORTS] [--for SECONDS]
                              [--exit STATUS]

``--lines`` first copies FILE's lines as they are (the test's exact
script: noise, rounds, bad statuses); ``--live`` then writes rounds of
PORTS ports at 50 Hz stamped with the clock, for ``--for`` seconds (until
killed without it); ``--exit`` then says ``meter unplugged`` on standard
error and exits with STATUS.  Without ``--exit`` it waits to be killed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

RATE = 50.0


def live_line(index: int, ports: int) -> str:
    """One round stamped now: port p reads 100 * (p + 1) plus a ripple; port 1 is
    empty every fifth round."""
    now = time.time_ns()
    values = []
    for port in range(ports):
        empty = port == 1 and index % 5 == 4
        values.append("" if empty else f"{100.0 * (port + 1) + index % 7 * 0.125:.3f}")
    return f"{index},0x1f,{now // 10**9}.{now % 10**9:09d},OK,{','.join(values)}\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines")
    parser.add_argument("--live", type=int, default=0)
    parser.add_argument("--for", dest="seconds", type=float, default=None)
    parser.add_argument("--exit", dest="status", type=int, default=None)
    args = parser.parse_args()
    out = sys.stdout
    if args.lines:
        with open(args.lines) as handle:
            out.write(handle.read())
        out.flush()
    if args.live:
        start = time.monotonic()
        index = 0
        while args.seconds is None or time.monotonic() - start < args.seconds:
            out.write(live_line(index, args.live))
            out.flush()
            index += 1
            time.sleep(max(0.0, start + index / RATE - time.monotonic()))
    if args.status is not None:
        print("meter unplugged", file=sys.stderr, flush=True)
        return args.status
    signal.pause()  # like the real reader: runs until killed
    return 0


if __name__ == "__main__":
    sys.exit(main())
