"""Many simulated BMCs in one process, for tests of a whole machine room.

Run it as ``python -m tests.drivers.simulators.bmc_fleet``: it reads one JSON
list of BMC settings (see :class:`tests.drivers.simulators.bmc.Settings`) on
standard input, serves each on its own UDP port of 127.0.0.1 through
pyghmi's server, and prints ``ready <port> <port> ...`` in the same order.
A setting ``"silent": true`` binds the port and never answers: a host that
is down.
"""

from __future__ import annotations

import json
import socket
import sys

from pyghmi.ipmi.private import session

from tests.drivers.simulators.bmc import Settings, SimulatedBmc


def main() -> None:
    """Serve the BMCs listed on standard input until killed."""
    ports: list[int] = []
    silent: list[socket.socket] = []
    for raw in json.loads(sys.stdin.readline()):
        if raw.pop("silent", False):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", raw.get("port", 0)))
            silent.append(sock)
            ports.append(sock.getsockname()[1])
            continue
        ports.append(SimulatedBmc(Settings.from_json(json.dumps(raw))).port)
    print("ready", *ports, flush=True)
    while True:
        session.Session.wait_for_rsp(30)


if __name__ == "__main__":
    main()
