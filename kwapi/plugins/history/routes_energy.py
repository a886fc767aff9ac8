"""GET /v1/energy/: energy per probe and in total over [start, end], from the raw samples."""

from __future__ import annotations

import threading

from flask import Blueprint, Response

from kwapi.bus.protocol import POWER_METER
from kwapi.plugins.history import query_formats as q
from kwapi.plugins.history.energy_range import ProbeEnergy, energy_document
from kwapi.plugins.history.query_context import context
from kwapi.plugins.history.query_reads import check_known, read_or_fail, timed

blueprint = Blueprint("energy", __name__)

CSV_HEADER = ("probe", "start", "end", "kwh", "joules", "samples", "coverage", "gaps")


@blueprint.get("/v1/energy/")
@timed("energy")
def energy() -> Response:
    """kWh and joules, sample count, coverage and gaps of each ``probe`` over [start, end]."""
    served = context()
    probes = q.probes_arg(served.max_probes)
    start, end = q.time_range()
    csv = q.wants_csv()
    found: dict[str, ProbeEnergy] = {}
    lock = threading.Lock()
    max_gap = served.max_gap

    def fold(probe: str, lines: list[bytes], count: int) -> None:
        result = served.workers.energy(lines, count, start, end, max_gap)
        with lock:
            found[probe] = result

    # The samples within max_gap of the range give the edges their interpolation.
    read_or_fail(probes, POWER_METER, start - max_gap, end + max_gap, fold)
    missing = [probe for probe in probes if probe not in found]
    if missing:
        check_known(missing)
    document = energy_document(start, end, {p: found.get(p, ProbeEnergy()) for p in probes})
    if not csv:
        return q.json_response(document)
    rows: list[tuple[object, ...]] = [
        (probe, start, end, *found.get(probe, ProbeEnergy()).as_json().values()) for probe in probes
    ]
    total = document["total"]
    assert isinstance(total, dict)
    rows.append(("", start, end, total["kwh"], total["joules"], "", "", ""))
    return q.csv_response(CSV_HEADER, rows, "energy.csv")
