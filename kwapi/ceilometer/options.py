"""Options the kwapi pollsters add to Ceilometer's configuration.

Kept apart from the pollsters so that oslo-config-generator can list them
without Ceilometer installed.
"""

from __future__ import annotations

from oslo_config import cfg

SERVICE_TYPES_GROUP = "service_types"
KWAPI_GROUP = "kwapi"

service_opts: list[cfg.Opt] = [
    cfg.StrOpt(
        "kwapi",
        default="energy",
        help="Service type of kwapi's API in the Keystone catalog; the pollsters "
        "poll every endpoint of that type (its URL ends in /v1).",
    ),
]

client_opts: list[cfg.Opt] = [
    cfg.FloatOpt(
        "timeout",
        default=30.0,
        min=0.1,
        help="Seconds to wait for kwapi's API to answer GET <endpoint>/probes/.",
    ),
]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """The pollsters' options: what :func:`register` registers and the generator lists."""
    return [(SERVICE_TYPES_GROUP, service_opts), (KWAPI_GROUP, client_opts)]


def register(conf: cfg.ConfigOpts) -> None:
    """Register the pollsters' options on Ceilometer's *conf* (idempotent)."""
    for group, opts in list_opts():
        conf.register_opts(opts, group=group)
