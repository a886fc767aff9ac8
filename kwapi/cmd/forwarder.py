"""kwapi-forwarder: relay measurements from drivers (or forwarders) to plugins."""

from __future__ import annotations

import logging
import sys

import zmq

from kwapi import opts, service, systemd
from kwapi.bus.options import make_curve_client, make_curve_server
from kwapi.config import ConfigError
from kwapi.forwarder import Forwarder, UpstreamError

PROG = "kwapi-forwarder"
LOG = logging.getLogger(PROG)
SUMMARY = (
    "relays the measurement bus from drivers (or upstream forwarders) to plugins "
    "and downstream forwarders."
)


def serve(argv: list[str] | None = None) -> int:
    """Relay until SIGTERM or SIGINT."""
    conf = service.prepare(PROG, argv, opts.list_forwarder_opts(), SUMMARY)
    stop = service.stop_event_on_signals()
    try:
        forwarder = Forwarder(
            conf.probes_endpoint,
            conf.forwarder_endpoint,
            rcvhwm=conf.forwarder_rcvhwm,
            sndhwm=conf.forwarder_sndhwm,
            curve_server=make_curve_server(conf),
            curve_client=make_curve_client(conf, len(conf.probes_endpoint)),
        )
    except zmq.ZMQError as exc:
        raise ConfigError(
            f"cannot bind {conf.forwarder_endpoint}: {exc}",
            section="DEFAULT",
            key="forwarder_endpoint",
        ) from None
    except UpstreamError as exc:
        raise ConfigError(str(exc), section="DEFAULT", key="probes_endpoint") from None
    forwarder.start()
    LOG.info("relaying %s to %s", ", ".join(conf.probes_endpoint), conf.forwarder_endpoint)
    systemd.ready()
    service.wait_for_stop(stop, heartbeat=service.Heartbeat(forwarder.is_alive))
    forwarder.stop()
    LOG.info("stopped")
    return 0


def main() -> None:
    """Console script entry point."""
    service.run(PROG, lambda: serve(sys.argv[1:]))
