"""Options of kwapi-history's ingest side: its web server, the store, batches and the spool.

The receiver's options are the bus' (:data:`kwapi.bus.options.receiver_opts`);
the query side's (``store_query_url``, ``max_gap``, the limits of a query) are
in :mod:`kwapi.plugins.history.query_options`, the authentication's in
:mod:`kwapi.plugins.auth`; :func:`kwapi.opts.list_history_opts` lists them all.
"""

from __future__ import annotations

from oslo_config import cfg, types

#: What store_write_url and store_query_url accept.
HttpUrl = types.URI(schemes=["http", "https"])

#: Timestamp precisions of the line protocol, as the option names them.
PRECISIONS = ("ms", "us", "ns")

web_opts = [
    cfg.HostAddressOpt(
        "history_host",
        default="127.0.0.1",
        help="Address kwapi-history's HTTP API (/v1/energy/, /metrics, /healthz) listens on.",
    ),
    cfg.PortOpt("history_port", default=5001, help="TCP port of kwapi-history's HTTP API."),
    cfg.IntOpt(
        "history_threads",
        default=4,
        min=1,
        help="Threads of the web server that answer requests.",
    ),
]

store_opts = [
    cfg.Opt(
        "store_write_url",
        type=HttpUrl,
        default="http://127.0.0.1:8428/write",
        help="InfluxDB line-protocol endpoint samples are written to: VictoriaMetrics' "
        "http://HOST:8428/write, vmagent's http://HOST:8429/write, or InfluxDB 1.x' "
        "http://HOST:8086/write?db=DATABASE. A user:password@ in the URL is sent as "
        "HTTP basic authentication; the precision query argument is set by store_precision.",
    ),
    cfg.StrOpt(
        "store_measurement",
        default="kwapi",
        regex=r"^[A-Za-z_][A-Za-z0-9_]*$",
        help="Measurement of every line written; each meter is one of its fields, the "
        "probe id its tag 'probe'. VictoriaMetrics names the series <measurement>_<meter> "
        "(kwapi_w for the power).",
    ),
    cfg.StrOpt(
        "store_precision",
        default="ms",
        choices=[
            ("ms", "milliseconds: what VictoriaMetrics keeps"),
            ("us", "microseconds"),
            ("ns", "nanoseconds"),
        ],
        help="Precision of the timestamps written (the drivers' clocks, rounded).",
    ),
    cfg.FloatOpt(
        "store_timeout",
        default=10.0,
        min=0.1,
        help="Seconds a write to the store may take before it counts as failed and "
        "its batch is kept in the spool.",
    ),
    cfg.FloatOpt(
        "store_retry_interval",
        default=0.5,
        min=0.01,
        help="Seconds before the first retry once the store failed; each failure in a "
        "row doubles it (with random jitter), up to store_retry_max_interval.",
    ),
    cfg.FloatOpt(
        "store_retry_max_interval",
        default=30.0,
        min=0.01,
        help="Longest wait, in seconds, between two tries of a store that does not answer.",
    ),
]

batch_opts = [
    cfg.IntOpt(
        "batch_size",
        default=5000,
        min=1,
        max=1_000_000,
        help="Samples (lines) in one write: a batch is sent once it holds this many, "
        "or after flush_interval.",
    ),
    cfg.FloatOpt(
        "flush_interval",
        default=1.0,
        min=0.01,
        max=60.0,
        help="Longest time, in seconds, a received sample waits before it is written. "
        "A kill -9 loses at most the samples of this last interval.",
    ),
]

spool_opts = [
    cfg.StrOpt(
        "spool_dir",
        default="/var/lib/kwapi/history-spool",
        help="Directory keeping on disk, fsync'ed, the batches the store did not take "
        "(refused, timed out, 5xx, 401, 403, 404, 429); they are replayed oldest first "
        "once it answers, across restarts.",
    ),
    cfg.IntOpt(
        "spool_max_bytes",
        default=1024**3,
        min=0,
        help="Largest size of the spool, in bytes of gzipped batches. Once full, the "
        "oldest spooled batches are dropped to make room for new ones (logged once, "
        'counted in kwapi_history_samples_dropped_total{reason="spool_full"}).',
    ),
]

history_opts = web_opts + store_opts + batch_opts + spool_opts
