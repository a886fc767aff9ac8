"""Options of kwapi-drivers."""

from oslo_config import cfg

manager_opts = [
    cfg.FloatOpt(
        "check_drivers_interval",
        default=5.0,
        min=0.1,
        help="Seconds between checks that every driver thread is alive; "
        "a dead one is restarted with exponential backoff capped at 60 s.",
    ),
    cfg.HostAddressOpt(
        "metrics_host",
        default="127.0.0.1",
        help="Address on which kwapi-drivers serves its health metrics (Prometheus "
        "text format, at /metrics) when metrics_port is set.",
    ),
    cfg.PortOpt(
        "metrics_port",
        default=0,
        help="TCP port of the health metrics: whether each wattmeter is read, when it "
        "last was, its errors and restarts by reason. 0 serves none.",
    ),
]
