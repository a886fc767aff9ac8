"""kwapi-drivers: read every wattmeter of drivers.conf and publish on the bus."""

from __future__ import annotations

import logging
import sys

from kwapi import opts, service, systemd
from kwapi.bus.options import make_publisher
from kwapi.config import ConfigError, config_files, read_sections
from kwapi.drivers.aio import EventLoopThread
from kwapi.drivers.config import parse_wattmeters
from kwapi.drivers.health import serve_health
from kwapi.drivers.manager import DriverManager

PROG = "kwapi-drivers"
LOG = logging.getLogger(PROG)
SUMMARY = (
    "reads every wattmeter of drivers.conf (a thread, or a task of one event loop, each) "
    "and publishes signed measurements on the bus."
)


def event_loop_responds() -> bool:
    """Whether the async drivers' shared event loop, if started, still runs callbacks."""
    loop = EventLoopThread.shared_if_started()
    return loop is None or loop.responds()


def serve(argv: list[str] | None = None) -> int:
    """Start every wattmeter of the configuration and run until signalled."""
    conf = service.prepare(PROG, argv, opts.list_drivers_opts(), SUMMARY)
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
    health = None
    if conf.metrics_port:
        health = serve_health(conf.metrics_host, conf.metrics_port, manager.states)
        LOG.info("health metrics on http://%s:%d/metrics", conf.metrics_host, conf.metrics_port)
    manager.start()
    systemd.ready()
    try:
        manager.run(stop, service.Heartbeat(event_loop_responds))
    finally:
        if health is not None:
            health.shutdown()
        publisher.close()
    samples = sum(state.health.published for state in manager.states())
    LOG.info("stopped; %d measurement(s) published in %d message(s)", samples, publisher.sent)
    return 0


def main() -> None:
    """Console script entry point."""
    service.run(PROG, lambda: serve(sys.argv[1:]))
