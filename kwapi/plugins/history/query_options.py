"""Options of kwapi-history's query side: where the store answers, and the limits of a query.

``max_gap`` is kwapi-api's option (:data:`kwapi.plugins.energy.max_gap_opt`):
the ingest side writes every sample whatever the gaps, and the query side
integrates with the same rule.
"""

from __future__ import annotations

from oslo_config import cfg, types

from kwapi.plugins.energy import max_gap_opt

query_opts = [
    cfg.Opt(
        "store_query_url",
        type=types.URI(schemes=["http", "https"]),
        default="http://127.0.0.1:8428",
        help="Root of the store's Prometheus-compatible query API that /v1/energy/ and "
        "/v1/series/ read: a VictoriaMetrics single node (http://HOST:8428) or a cluster's "
        "vmselect (http://HOST:8481/select/0/prometheus). A user:password@ in the URL is "
        "sent as HTTP basic authentication.",
    ),
    cfg.IntOpt(
        "max_samples",
        default=10_000_000,
        min=1,
        help="Most raw samples one query may read from the store (24 h of 1 Hz samples "
        "of 100 probes is 8.64 million); a query over it is refused with a 413.",
    ),
    cfg.IntOpt(
        "max_probes",
        default=1000,
        min=1,
        help="Most probes one /v1/energy/ query may name; more is refused with a 400.",
    ),
    cfg.FloatOpt(
        "query_timeout",
        default=30.0,
        min=0.1,
        help="Seconds the store may take to answer one read (connecting, then each "
        "read of the answer); beyond, the query is answered with a 503.",
    ),
    cfg.IntOpt(
        "query_processes",
        default=2,
        min=0,
        max=64,
        help="Worker processes computing the energy of the probes with many samples in a "
        "query, so that it uses more than one core; 0 computes it in the daemon's threads.",
    ),
    max_gap_opt,
]
