"""kwapi-drivers: run one driver thread per wattmeter and publish on the bus."""

from __future__ import annotations

import logging
import sys

from kwapi import service
from kwapi.bus.options import make_publisher, publisher_opts
from kwapi.config import ConfigError, config_files, read_sections
from kwapi.drivers.config import parse_wattmeters
from kwapi.drivers.manager import DriverManager
from kwapi.drivers.options import manager_opts

PROG = "kwapi-drivers"
LOG = logging.getLogger(PROG)


def serve(argv: list[str] | None = None) -> int:
    """Start every wattmeter of the configuration and run until signalled."""
    conf = service.prepare(PROG, argv, [(None, publisher_opts + manager_opts)])
    wattmeters = parse_wattmeters(read_sections(config_files(conf)))
    if not wattmeters:
        raise ConfigError("no wattmeter section in the configuration")
    stop = service.stop_event_on_signals()
    publisher = make_publisher(conf)
    LOG.info(
        "publishing on %s (%s)",
        conf.probes_endpoint,
        "signed" if conf.enable_signing else "unsigned",
    )
    manager = DriverManager(wattmeters, publisher.publish, conf.check_drivers_interval)
    manager.start()
    try:
        manager.run(stop)
    finally:
        publisher.close()
    LOG.info("stopped; %d measurement(s) published", publisher.sent)
    return 0


def main() -> None:
    """Console script entry point."""
    service.run(PROG, lambda: serve(sys.argv[1:]))
