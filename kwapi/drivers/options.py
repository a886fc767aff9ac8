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
]
