"""Options of kwapi-api (the receiver's and the auth options live elsewhere)."""

from __future__ import annotations

from oslo_config import cfg

from kwapi.plugins.energy import max_gap_opt

api_opts = [
    cfg.HostAddressOpt(
        "api_host",
        default="127.0.0.1",
        help="Address the REST API listens on.",
    ),
    cfg.PortOpt(
        "api_port",
        default=5000,
        help="TCP port the REST API listens on.",
    ),
    cfg.IntOpt(
        "api_threads",
        default=4,
        min=1,
        help="Threads of the WSGI server that answer requests.",
    ),
    max_gap_opt,
    cfg.FloatOpt(
        "cleaning_interval",
        default=300.0,
        min=1.0,
        help="Seconds without a measurement after which a probe leaves the API; "
        "its energy stays in the state file and resumes if it comes back.",
    ),
    cfg.StrOpt(
        "state_file",
        default="/var/lib/kwapi/api-state.json",
        help="File keeping each probe's energy counter across restarts.",
    ),
    cfg.FloatOpt(
        "state_save_interval",
        default=10.0,
        min=0.1,
        help="Seconds between two saves of the state file; at most this much "
        "energy is lost if the daemon is killed without warning.",
    ),
]
