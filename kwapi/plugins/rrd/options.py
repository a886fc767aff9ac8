"""Options of kwapi-rrd; Kwapi's names are kept where they existed."""

from __future__ import annotations

from oslo_config import cfg

from kwapi.plugins.streams import currency_opt, kwh_price_opt

storage_opts = [
    cfg.StrOpt(
        "rrd_dir",
        default="/var/lib/kwapi/kwapi-rrd",
        help="Directory holding one sub-directory of RRD files per probe.",
    ),
    cfg.StrOpt(
        "rrdcached_address",
        help="Address of an rrdcached daemon (e.g. unix:/run/kwapi/rrdcached.sock "
        "or 127.0.0.1:42217); when set, every update, fetch and graph goes through it.",
    ),
    cfg.IntOpt(
        "rrd_batch_size",
        default=1000,
        min=1,
        help="Samples written together: through rrdcached, one BATCH command "
        "(one round trip) carries them all.",
    ),
    cfg.FloatOpt(
        "rrd_batch_interval",
        default=0.2,
        min=0.01,
        max=10.0,
        help="Longest time, in seconds, a received measurement waits before it is "
        "written (sooner when rrd_batch_size of them wait).",
    ),
    cfg.FloatOpt(
        "rrd_disk_check_interval",
        default=10.0,
        min=0.1,
        help="With rrdcached_address: seconds between two checks that the file system "
        "under rrd_dir is writable and has room, since rrdcached reports its write "
        "errors only in its own log.",
    ),
    cfg.IntOpt(
        "rrd_heartbeat",
        default=10,
        min=2,
        help="Seconds without a measurement after which a probe's value becomes unknown.",
    ),
]

#: The price options are the shared ones (kwapi-api prices streams with them), in
#: the order kwapi-rrd has always listed them.
graph_opts = [
    currency_opt,
    kwh_price_opt,
    cfg.IntOpt(
        "hue",
        default=100,
        min=0,
        max=360,
        help="Turns the graphs' colour palette (Okabe-Ito, colour-blind safe at the "
        "default 100) round the colour wheel by hue - 100 degrees; probes take its "
        "colours in the order of their ids.",
    ),
    cfg.FloatOpt(
        "max_watts",
        default=200.0,
        help="Kept so Kwapi configuration files still load; ignored, because the "
        "graphs' y axis scales to the data.",
    ),
    cfg.IntOpt(
        "graph_cache_size",
        default=512,
        min=1,
        help="Graphs kept in memory; a graph is redrawn once its period's resolution has passed.",
    ),
]

web_opts = [
    cfg.HostAddressOpt("rrd_host", default="127.0.0.1", help="Address the web server listens on."),
    cfg.PortOpt("rrd_port", default=8080, help="Port the web server listens on."),
    cfg.IntOpt(
        "refresh_interval",
        default=5,
        min=1,
        help="Seconds between two refreshes of the graphs in the web page.",
    ),
    cfg.IntOpt("rrd_threads", default=4, min=1, help="Threads of the web server serving requests."),
]

rrd_opts = storage_opts + graph_opts + web_opts
