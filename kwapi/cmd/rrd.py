"""kwapi-rrd: keep every probe's history in RRD files and serve graphs of it."""

from __future__ import annotations

import logging
import sys

from oslo_config import cfg

from kwapi import opts, service, systemd, wsgi_service
from kwapi.bus.options import make_receiver
from kwapi.bus.receiver import Receiver
from kwapi.config import ConfigError
from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.diskwatch import DiskWatch
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.storage import RrdStorage, StorageError
from kwapi.plugins.rrd.writer import BatchWriter
from kwapi.plugins.streams import stream_map_from_conf
from kwapi.wsgi_service import Listen, Server

PROG = "kwapi-rrd"
LOG = logging.getLogger(PROG)
SUMMARY = (
    "keeps every probe's history from the bus in RRD files (optionally through rrdcached) "
    "and serves power graphs on a web page."
)


def open_storage(conf: cfg.ConfigOpts) -> RrdStorage:
    """The RRD storage of *conf*; ConfigError if rrd_dir or rrdcached cannot be used."""
    try:
        storage = RrdStorage(
            conf.rrd_dir, daemon=conf.rrdcached_address, heartbeat=conf.rrd_heartbeat
        )
    except StorageError as exc:
        raise ConfigError(str(exc), section="DEFAULT", key="rrd_dir") from None
    try:
        storage.check_daemon()
    except StorageError as exc:
        raise ConfigError(str(exc), section="DEFAULT", key="rrdcached_address") from None
    return storage


def serve(argv: list[str] | None = None) -> int:
    """Record measurements and serve the web interface until SIGTERM or SIGINT."""
    conf = service.prepare(PROG, argv, opts.list_rrd_opts(), SUMMARY)
    streams = stream_map_from_conf(conf)
    stop = service.stop_event_on_signals()
    storage = open_storage(conf)
    # Through rrdcached, write errors show only in rrdcached's log: watch the disk.
    disk_watch = (
        DiskWatch(str(storage.directory), conf.rrd_disk_check_interval) if storage.daemon else None
    )
    writer = BatchWriter(storage, batch_size=conf.rrd_batch_size, interval=conf.rrd_batch_interval)
    receiver = make_receiver(conf, writer.add)
    grapher = Grapher(
        storage,
        hue=conf.hue,
        kwh_price=conf.kwh_price,
        currency=conf.currency,
        cache_size=conf.graph_cache_size,
    )
    app = create_app(
        storage,
        grapher,
        refresh_interval=conf.refresh_interval,
        receiver_stats=lambda: {
            **receiver.stats.snapshot(),
            "pending_writes": writer.pending(),
            "write_lag_seconds": writer.lag(),
        },
        disk_status=disk_watch.snapshot if disk_watch else None,
        streams=streams,
    )
    server = wsgi_service.bind(app, Listen.from_conf(conf, "rrd"), PROG)

    if disk_watch is not None:
        disk_watch.check()
        disk_watch.start()
    writer.start()
    receiver.start()
    receiver.wait_ready(10)
    LOG.info(
        "recording %d known probes in %s%s; graphs on http://%s:%s/",
        len(storage.probes()),
        storage.directory,
        f" through rrdcached at {storage.daemon}" if storage.daemon else "",
        conf.rrd_host,
        wsgi_service.bound_port(server),
    )
    systemd.ready()
    try:
        wsgi_service.serve(server, stop, heartbeat=service.Heartbeat(receiver.is_alive))
    finally:
        _shutdown(server, receiver, writer, disk_watch, storage)
    return 0


def _shutdown(
    server: Server,
    receiver: Receiver,
    writer: BatchWriter,
    disk_watch: DiskWatch | None,
    storage: RrdStorage,
) -> None:
    """Stop serving and receiving, write what waits, have rrdcached flush it to disk."""

    def stop_receiving() -> None:
        """Stop the receiver and wait for it (at most 10 s)."""
        receiver.stop()
        receiver.join(10)

    stopping = [stop_receiving, writer.stop]
    if disk_watch is not None:
        stopping.append(disk_watch.stop)
    wsgi_service.shutdown(server, stopping=stopping, saving=[lambda: _flush(storage, receiver)])


def _flush(storage: RrdStorage, receiver: Receiver) -> None:
    """Have rrdcached write every pending update to disk; log "stopped" with the counts."""
    try:
        storage.flush()
    except (OSError, StorageError) as exc:
        LOG.error("could not flush rrdcached: %s", exc)
    LOG.info(
        "stopped: %d values written, %d dropped as older than their file, receiver %s",
        storage.stats["updated"],
        storage.stats["dropped_old"],
        receiver.stats.snapshot(),
    )


def main() -> None:
    """Console script entry point."""
    service.run(PROG, lambda: serve(sys.argv[1:]))
