"""kwapi-history: write every sample of the bus to a time-series database and serve energy."""

from __future__ import annotations

import logging
import sys
import threading
import urllib.parse

from oslo_config import cfg

from kwapi import opts, service, systemd, wsgi_service
from kwapi.backoff import Backoff
from kwapi.bus.options import make_receiver
from kwapi.bus.receiver import Receiver
from kwapi.config import ConfigError
from kwapi.plugins.history.app import create_app
from kwapi.plugins.history.lineprotocol import LineFormat
from kwapi.plugins.history.metrics import make_healthy, make_metrics
from kwapi.plugins.history.spool import Spool, SpoolError
from kwapi.plugins.history.store import StoreClient
from kwapi.plugins.history.writer import HistoryWriter
from kwapi.wsgi_service import Listen, Server

PROG = "kwapi-history"
LOG = logging.getLogger(PROG)
SUMMARY = (
    "keeps every sample of the bus in a time-series database and serves "
    "the energy of any time range: /v1/energy/, /v1/series/, /metrics, /healthz."
)


def open_spool(conf: cfg.ConfigOpts) -> Spool:
    """The spool of *conf*; ConfigError if spool_dir cannot be used."""
    try:
        return Spool(conf.spool_dir, conf.spool_max_bytes)
    except SpoolError as exc:
        raise ConfigError(str(exc), section="DEFAULT", key="spool_dir") from None


def make_writer(conf: cfg.ConfigOpts, spool: Spool) -> HistoryWriter:
    """The writer thread of *conf* (not started); ConfigError if store_write_url has no host."""
    if not urllib.parse.urlsplit(conf.store_write_url).hostname:
        raise ConfigError(
            f"no host in {conf.store_write_url!r}", section="DEFAULT", key="store_write_url"
        )
    return HistoryWriter(
        StoreClient(conf.store_write_url, timeout=conf.store_timeout),
        spool,
        LineFormat(conf.store_measurement, conf.store_precision),
        batch_size=conf.batch_size,
        flush_interval=conf.flush_interval,
        # Each wait drawn in the upper half of its exponential delay (jitter).
        backoff=Backoff(conf.store_retry_interval, conf.store_retry_max_interval, jitter=0.5),
    )


def serve(argv: list[str] | None = None) -> int:
    """Receive, write and serve until SIGTERM or SIGINT; then write or spool what is left."""
    conf = service.prepare(PROG, argv, opts.list_history_opts(), SUMMARY)
    stop = service.stop_event_on_signals()
    writer = make_writer(conf, open_spool(conf))
    receiver = make_receiver(conf, writer.add)
    app = create_app(
        conf,
        metrics=make_metrics(writer, receiver.stats.snapshot),
        healthy=make_healthy(writer, receiver.status),
    )
    server = wsgi_service.bind(app, Listen.from_conf(conf, "history"), PROG)

    writer.start()
    receiver.start()
    receiver.wait_ready(10)
    LOG.info(
        "receiving from %s (%s); writing to %s in batches of %d samples or %.3g s; "
        "spool %s (%d batch(es) to replay)",
        ", ".join(receiver.endpoints),
        "signatures checked" if conf.signature_checking else "signatures NOT checked",
        conf.store_write_url,
        conf.batch_size,
        conf.flush_interval,
        conf.spool_dir,
        len(writer.spool),
    )
    LOG.info(
        "serving on http://%s:%s/ (auth: %s)",
        conf.history_host,
        wsgi_service.bound_port(server),
        conf.auth_strategy,
    )
    systemd.ready()
    alive = service.Heartbeat(lambda: receiver.is_alive() and writer.is_alive())
    try:
        wsgi_service.serve(server, stop, heartbeat=alive)
    finally:
        _shutdown(server, receiver, writer, conf.store_timeout)
    return 0


def _shutdown(server: Server, receiver: Receiver, writer: HistoryWriter, timeout: float) -> None:
    """Stop serving and receiving, then write (or spool) every sample received."""

    def stop_receiving() -> None:
        """Stop the receiver and wait for it (at most 5 s)."""
        receiver.stop()
        receiver.join(5)

    def flush() -> None:
        """Write or spool what is left: one try of the store, then the spool."""
        writer.stop(timeout * 2 + 10)
        stats, spool = writer.stats, writer.spool
        LOG.info(
            "stopped: %d sample(s) received, %d written, %d spooled, %d left in memory; "
            "the spool holds %d batch(es), %d bytes",
            stats.received,
            stats.written,
            spool.stats.spooled,
            writer.pending(),
            len(spool),
            spool.size,
        )

    wsgi_service.shutdown(server, stopping=[stop_receiving], saving=[flush])


def main() -> None:
    """Console script entry point."""
    threading.current_thread().name = PROG
    service.run(PROG, lambda: serve(sys.argv[1:]))
