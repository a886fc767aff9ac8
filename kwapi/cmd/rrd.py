"""kwapi-rrd: keep every probe's history in RRD files and serve graphs of it."""

from __future__ import annotations

import logging
import sys
import threading

import waitress

from kwapi import service
from kwapi.bus.options import make_receiver, receiver_opts
from kwapi.config import ConfigError
from kwapi.plugins.rrd.app import create_app
from kwapi.plugins.rrd.diskwatch import DiskWatch
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.options import rrd_opts
from kwapi.plugins.rrd.storage import RrdStorage, StorageError
from kwapi.plugins.rrd.writer import BatchWriter
from kwapi.plugins.streams import stream_map_from_conf, stream_opts

PROG = "kwapi-rrd"
LOG = logging.getLogger(PROG)


def serve(argv: list[str] | None = None) -> int:
    """Record measurements and serve the web interface until SIGTERM or SIGINT."""
    conf = service.prepare(PROG, argv, [(None, receiver_opts + rrd_opts + stream_opts)])
    streams = stream_map_from_conf(conf)
    stop = service.stop_event_on_signals()
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
        receiver_stats=lambda: {**receiver.stats.snapshot(), "pending_writes": writer.pending()},
        disk_status=disk_watch.snapshot if disk_watch else None,
        streams=streams,
    )
    try:
        server = waitress.create_server(
            app, host=conf.rrd_host, port=conf.rrd_port, threads=conf.rrd_threads, ident=PROG
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {conf.rrd_host}:{conf.rrd_port}: {exc.strerror or exc}",
            section="DEFAULT",
            key="rrd_port",
        ) from None

    if disk_watch is not None:
        disk_watch.check()
        disk_watch.start()
    writer.start()
    receiver.start()
    receiver.wait_ready(10)
    web = threading.Thread(target=server.run, name="web", daemon=True)
    web.start()
    LOG.info(
        "recording %d known probes in %s%s; graphs on http://%s:%s/",
        len(storage.probes()),
        storage.directory,
        f" through rrdcached at {storage.daemon}" if storage.daemon else "",
        conf.rrd_host,
        server.effective_port,
    )
    service.wait_for_stop(stop)

    receiver.stop()
    receiver.join(10)
    writer.stop()
    if disk_watch is not None:
        disk_watch.stop()
    try:
        storage.flush()
    except (OSError, StorageError) as exc:
        LOG.error("could not flush rrdcached: %s", exc)
    server.close()
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
    LOG.info(
        "stopped: %d values written, %d dropped as older than their file, receiver %s",
        storage.stats["updated"],
        storage.stats["dropped_old"],
        receiver.stats.snapshot(),
    )
    return 0


def main() -> None:
    """Console script entry point."""
    service.run(PROG, lambda: serve(sys.argv[1:]))
