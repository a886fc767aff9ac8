"""kwapi-api: collect energy from the bus and serve it over HTTP."""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from oslo_config import cfg

from kwapi import opts, service, systemd, wsgi_service
from kwapi.bus.options import make_receiver
from kwapi.bus.protocol import Batch, Message
from kwapi.bus.receiver import Receiver
from kwapi.config import ConfigError
from kwapi.plugins import auth
from kwapi.plugins.api import memory
from kwapi.plugins.api.app import create_app
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.metrics import make_registry
from kwapi.plugins.api.state import PeriodicSaver, StateStore
from kwapi.plugins.api.stream_energy import StreamEnergy
from kwapi.plugins.api.stream_views import StreamViews
from kwapi.plugins.streams import stream_map_from_conf
from kwapi.wsgi_service import Listen, Server

PROG = "kwapi-api"
LOG = logging.getLogger(PROG)
SUMMARY = (
    "integrates energy per probe from the bus and serves it over HTTP: "
    "REST API v1 (Ceilometer), /metrics (Prometheus), /healthz."
)


def make_handler(collector: Collector, energy: StreamEnergy) -> Callable[[Message], None]:
    """The receiver's handler: the collector, then the energy per stream for power probes.

    A batch is folded into its probe's record at once (see
    :meth:`Collector.add_batch`); only the hosts of streams walk it sample by sample.
    """
    hosts = energy.map.hosts
    add, add_batch, observe = collector.add, collector.add_batch, energy.observe

    def fold(message: Message) -> None:
        """Count every sample of *message* in its probe, then in the streams of its host."""
        if not isinstance(message, Batch):
            add(message)
            if hosts and message.probe_id in hosts:
                observe(message)
            return
        add_batch(message)
        if hosts and message.probe_id in hosts:
            for measurement in message.measurements():
                observe(measurement)

    return fold


@dataclass(frozen=True)
class Parts:
    """What kwapi-api runs beside its web server."""

    store: StateStore
    collector: Collector
    energy: StreamEnergy
    saver: PeriodicSaver
    receiver: Receiver
    views: StreamViews | None


def assemble(conf: cfg.ConfigOpts) -> Parts:
    """Load the state file, check it can be written, and build the receiving side."""
    stream_map = stream_map_from_conf(conf)
    store = StateStore(conf.state_file)
    collector = Collector(
        max_gap=conf.max_gap,
        cleaning_interval=conf.cleaning_interval,
        records=store.load(),
    )
    energy = StreamEnergy(stream_map, collector.latest, max_gap=conf.max_gap, state=store.streams)
    saver = PeriodicSaver(store, collector.records, conf.state_save_interval, energy.export)
    try:
        store.save(collector.records(), energy.export())
    except OSError as exc:
        raise ConfigError(
            f"cannot write the state file: {exc.strerror or exc}",
            section="DEFAULT",
            key="state_file",
        ) from None
    views = StreamViews(energy, collector, kwh_price=conf.kwh_price, currency=conf.currency)
    receiver = make_receiver(conf, make_handler(collector, energy))
    return Parts(store, collector, energy, saver, receiver, views if stream_map else None)


def serve(argv: list[str] | None = None) -> int:
    """Receive, collect and serve until SIGTERM or SIGINT."""
    conf = service.prepare(PROG, argv, opts.list_api_opts(), SUMMARY)
    stop = service.stop_event_on_signals()
    parts = assemble(conf)
    receiver = parts.receiver
    registry = make_registry(parts.collector, lambda: receiver.stats.snapshot(), parts.views)
    app = create_app(parts.collector, receiver.status, registry, parts.views)
    # Flask's documented way to put WSGI middleware around an application.
    app.wsgi_app = auth.wrap(app.wsgi_app, conf)  # type: ignore[method-assign,assignment]
    server = wsgi_service.bind(app, Listen.from_conf(conf, "api"), PROG)

    memory.map_big_buffers()
    trim = memory.HeapTrim()
    trim.start()
    # What the start made (modules, configuration, the state file's records) lives
    # as long as the daemon: out of every collection, it no longer makes a full one
    # pause a request (GET /v1/probes/ at 10,000 probes: p50 7.5 -> 4.3 ms in process).
    gc.freeze()
    receiver.start()
    receiver.wait_ready(10)
    parts.saver.start()
    LOG.info(
        "receiving from %s (%s); %d probe(s) in the state file %s",
        ", ".join(receiver.endpoints),
        "signatures checked" if conf.signature_checking else "signatures NOT checked",
        len(parts.collector),
        parts.store.path,
    )
    LOG.info(
        "serving the API on http://%s:%s/v1/ (auth: %s)",
        conf.api_host,
        wsgi_service.bound_port(server),
        conf.auth_strategy,
    )
    systemd.ready()
    try:
        wsgi_service.serve(server, stop, heartbeat=service.Heartbeat(receiver.is_alive))
    finally:
        trim.stop()
        _shutdown(server, receiver, parts.saver, parts.store, parts.collector, parts.energy)
    return 0


def _shutdown(
    server: Server,
    receiver: Receiver,
    saver: PeriodicSaver,
    store: StateStore,
    collector: Collector,
    energy: StreamEnergy,
) -> None:
    """Stop serving, stop receiving, then save the state one last time."""

    def stop_receiving() -> None:
        """Stop the receiver and wait for it (at most 5 s)."""
        receiver.stop()
        receiver.join(5)

    def save() -> None:
        """The final save."""
        _final_save(store, collector, energy, receiver)

    wsgi_service.shutdown(server, stopping=[stop_receiving, saver.stop], saving=[save])


def _final_save(
    store: StateStore, collector: Collector, energy: StreamEnergy, receiver: Receiver
) -> None:
    """Save the state; log "stopped" with what was saved, or one line on failure."""
    try:
        count = store.save(collector.records(), energy.export())
    except Exception as exc:  # OSError, ValueError (a number JSON cannot hold), any other
        LOG.error(
            "cannot save state to %s at exit (%s: %s); it keeps the last state saved",
            store.path,
            type(exc).__name__,
            exc,
        )
        return
    LOG.info(
        "stopped; state of %d probe(s) saved to %s (%d accepted, %d rejected)",
        count,
        store.path,
        receiver.stats.accepted,
        sum(receiver.stats.rejected.values()),
    )


def main() -> None:
    """Console script entry point."""
    threading.current_thread().name = PROG
    service.run(PROG, lambda: serve(sys.argv[1:]))
