"""kwapi-api: collect energy from the bus and serve it over HTTP."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable

import waitress
from waitress.server import BaseWSGIServer, MultiSocketServer

from kwapi import service
from kwapi.bus.options import make_receiver, receiver_opts
from kwapi.bus.protocol import Measurement
from kwapi.bus.receiver import Receiver
from kwapi.config import ConfigError
from kwapi.plugins.api import auth
from kwapi.plugins.api.app import create_app
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.metrics import make_registry
from kwapi.plugins.api.options import api_opts
from kwapi.plugins.api.state import PeriodicSaver, StateStore
from kwapi.plugins.api.stream_views import StreamViews
from kwapi.plugins.streams import StreamEnergy, price_opts, stream_map_from_conf, stream_opts

PROG = "kwapi-api"
LOG = logging.getLogger(PROG)


#: The signals that stop the daemon, saving the state first.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stop(SystemExit):
    """Raised in the main thread by SIGTERM/SIGINT to leave the server loop."""


def receiver_status(receiver: Receiver) -> dict:
    """What /healthz shows of *receiver*."""
    stats = receiver.stats.snapshot()
    return {"alive": receiver.is_alive(), "endpoints": receiver.endpoints, **stats}


def make_handler(collector: Collector, energy: StreamEnergy) -> Callable[[Measurement], None]:
    """The receiver's handler: the collector, then the energy per stream for power probes."""
    hosts = energy.map.hosts
    if not hosts:
        return collector.add
    add, observe = collector.add, energy.observe

    def fold(measurement: Measurement) -> None:
        add(measurement)
        if measurement.probe_id in hosts:
            observe(measurement)

    return fold


def serve(argv: list[str] | None = None) -> int:
    """Receive, collect and serve until SIGTERM or SIGINT."""
    conf = service.prepare(
        PROG,
        argv,
        [(None, receiver_opts + api_opts + auth.auth_opts + stream_opts + price_opts)],
    )
    stream_map = stream_map_from_conf(conf)
    stop = service.stop_event_on_signals()

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
    registry = make_registry(
        collector, lambda: receiver.stats.snapshot(), views if stream_map else None
    )
    app = create_app(
        collector, lambda: receiver_status(receiver), registry, views if stream_map else None
    )
    wsgi_app = auth.wrap(app.wsgi_app, conf)
    app.wsgi_app = wsgi_app
    try:
        server = waitress.create_server(
            app,
            host=conf.api_host,
            port=conf.api_port,
            threads=conf.api_threads,
            ident="kwapi-api",
            clear_untrusted_proxy_headers=True,
        )
    except ValueError as exc:  # waitress: the host does not resolve
        raise ConfigError(
            f"cannot listen on {conf.api_host}:{conf.api_port}: {exc}",
            section="DEFAULT",
            key="api_host",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {conf.api_host}:{conf.api_port}: {exc.strerror or exc}",
            section="DEFAULT",
            key="api_host" if isinstance(exc, socket.gaierror) else "api_port",
        ) from None

    receiver.start()
    receiver.wait_ready(10)
    saver.start()
    LOG.info(
        "receiving from %s (%s); %d probe(s) in the state file %s",
        ", ".join(receiver.endpoints),
        "signatures checked" if conf.signature_checking else "signatures NOT checked",
        len(collector),
        store.path,
    )

    def leave(signum: int, _frame: object) -> None:
        LOG.info("received %s, stopping", signal.Signals(signum).name)
        if not stop.is_set():  # a second signal must not escape the shutdown below
            stop.set()
            raise _Stop(0)

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        # Installed inside the try: a signal right after one is installed is a _Stop here.
        for sig in STOP_SIGNALS:
            signal.signal(sig, leave)
        if not stop.is_set():
            LOG.info(
                "serving the API on http://%s:%s/v1/ (auth: %s)",
                conf.api_host,
                getattr(server, "effective_port", conf.api_port),
                conf.auth_strategy,
            )
            server.run()
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _shutdown(server, receiver, saver, store, collector, energy)
    return 0


def _shutdown(
    server: BaseWSGIServer | MultiSocketServer,
    receiver: Receiver,
    saver: PeriodicSaver,
    store: StateStore,
    collector: Collector,
    energy: StreamEnergy,
) -> None:
    """Stop serving, stop receiving, then save the state one last time."""
    server.task_dispatcher.shutdown(timeout=5)
    server.close()
    receiver.stop()
    receiver.join(5)
    saver.stop()
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
