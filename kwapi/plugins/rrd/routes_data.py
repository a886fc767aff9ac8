"""kwapi-rrd's data: RRD file downloads, JSON series, range tables and the daemon's counters."""

from __future__ import annotations

import rrdtool
from flask import Blueprint, Response

from kwapi.bus.protocol import POWER_METER
from kwapi.plugins.rrd.context import context
from kwapi.plugins.rrd.lookups import (
    end_argument,
    find_meter,
    find_period,
    find_probe,
    range_arguments,
)
from kwapi.plugins.rrd.periods import meter_info, sort_meters
from kwapi.plugins.rrd.ranges import RangeTable, range_table
from kwapi.plugins.rrd.responses import json_response

blueprint = Blueprint("data", __name__)


@blueprint.get("/rrd/<probe>/")
@blueprint.get("/rrd/<probe>/<meter>/")
def rrd_file(probe: str, meter: str | None = None) -> Response:
    """One meter's RRD file (flushed from rrdcached first), as a download."""
    find_probe(probe)
    meter = find_meter(probe, meter)
    storage = context().storage
    path = storage.path(probe, meter)
    if storage.daemon:
        rrdtool.flushcached(*storage.daemon_args(), str(path))
    data = path.read_bytes()
    name = probe if meter == POWER_METER else f"{probe}.{meter}"
    response = Response(data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.rrd"'
    return response


@blueprint.get("/data/<period>/<probe>/")
def series(period: str, probe: str) -> Response:
    """Every meter of one probe over *period* (ending at ``end``), as JSON."""
    chosen = find_period(period)
    find_probe(probe)
    end = end_argument()
    storage = context().storage
    meters = {}
    timestamps: list[int] = []
    step = chosen.resolution
    for meter in sort_meters(storage.meters(probe)):
        fetched = storage.fetch(probe, meter, chosen, end)
        timestamps, step = fetched.timestamps, fetched.step
        meters[meter] = {
            "unit": meter_info(meter).unit,
            "average": fetched.average,
            "min": fetched.minimum,
            "max": fetched.maximum,
        }
    return json_response(
        {
            "probe": probe,
            "period": chosen.name,
            "step": step,
            "timestamps": timestamps,
            "meters": meters,
        }
    )


@blueprint.get("/stats/")
def stats() -> Response:
    """Counters of the receiver (with its delay histogram), of the storage and the disk."""
    served = context()
    receiver_stats, disk_status = served.receiver_stats, served.disk_status
    return json_response(
        {
            "receiver": receiver_stats() if receiver_stats is not None else None,
            "storage": {"probes": served.storage.probe_count(), **served.storage.stats},
            "disk": disk_status() if disk_status is not None else None,
        }
    )


def table_of_range() -> RangeTable:
    """The energy table of every power probe over the request's ``start`` to ``end``."""
    span = range_arguments()
    served = context()
    storage, grapher = served.storage, served.grapher
    probes = [p for p in storage.probes() if storage.has(p, POWER_METER)]
    return range_table(
        storage, probes, span, kwh_price=grapher.kwh_price, currency=grapher.currency
    )


@blueprint.get("/data/range/")
def range_json() -> Response:
    """Energy, average, min, max and cost of every power probe over a range, as JSON."""
    return json_response(table_of_range().as_json())


@blueprint.get("/data/range.csv")
def range_csv() -> Response:
    """The same table as CSV (RFC 4180), as a download."""
    table = table_of_range()
    response = Response(table.as_csv(), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="kwapi-energy-{table.span.start}-{table.span.end}.csv"'
    )
    return response
