"""kwapi-forwarder: relay measurements from drivers (or forwarders) to plugins."""

from __future__ import annotations

import logging
import sys

import zmq
from oslo_config import cfg

from kwapi import service
from kwapi.bus.options import (
    Endpoint,
    curve_allowed_clients_opt,
    curve_secret_key_opt,
    curve_server_key_opt,
    make_curve_client,
    make_curve_server,
)
from kwapi.config import ConfigError
from kwapi.forwarder import Forwarder, UpstreamError

PROG = "kwapi-forwarder"
LOG = logging.getLogger(PROG)

forwarder_opts = [
    cfg.ListOpt(
        "probes_endpoint",
        item_type=Endpoint,
        default=["ipc:///tmp/kwapi-drivers"],
        help="Endpoints of the drivers (or upstream forwarders) to relay.",
    ),
    cfg.Opt(
        "forwarder_endpoint",
        type=Endpoint,
        default="ipc:///tmp/kwapi-forwarder",
        help="Endpoint the forwarder binds for plugins and downstream forwarders.",
    ),
    cfg.IntOpt(
        "forwarder_rcvhwm",
        default=100_000,
        min=1,
        help="Messages queued from upstream before new ones are dropped.",
    ),
    cfg.IntOpt(
        "forwarder_sndhwm",
        default=100_000,
        min=1,
        help="Messages queued per downstream subscriber before new ones are dropped.",
    ),
    curve_secret_key_opt,
    curve_allowed_clients_opt,
    curve_server_key_opt,
]


def serve(argv: list[str] | None = None) -> int:
    """Relay until SIGTERM or SIGINT."""
    conf = service.prepare(PROG, argv, [(None, forwarder_opts)])
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
    service.wait_for_stop(stop)
    forwarder.stop()
    LOG.info("stopped")
    return 0


def main() -> None:
    """Console script entry point."""
    service.run(PROG, lambda: serve(sys.argv[1:]))
