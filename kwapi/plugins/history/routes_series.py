"""GET /v1/series/<probe>/<meter>/: raw samples, or time-weighted averages per step."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from flask import Blueprint, Response

from kwapi.plugins.history import query_formats as q
from kwapi.plugins.history.energy_range import Samples
from kwapi.plugins.history.export_lines import parse_lines
from kwapi.plugins.history.query_context import context
from kwapi.plugins.history.query_reads import check_known, read_or_fail, timed
from kwapi.plugins.history.series_steps import Row, raw_rows, step_count, step_rows

blueprint = Blueprint("series", __name__)


@blueprint.get("/v1/series/<probe>/<meter>/")
@timed("series")
def series(probe: str, meter: str) -> Response:
    """The samples of *meter* of *probe* within [start, end], or their averages per ``step``."""
    served = context()
    probe, meter = q.probe_id(probe), q.meter_name(meter)
    start, end = q.time_range()
    step = q.step_arg()
    csv = q.wants_csv()
    if step is not None and step_count(start, end, step) > served.max_samples:
        raise q.BadParameter("step", f"more than max_samples = {served.max_samples} steps")
    margin = served.max_gap if step is not None else 0.0
    found: list[Samples] = []

    def fold(_probe: str, lines: list[bytes], _count: int) -> None:
        found.append(parse_lines(lines))

    read_or_fail([probe], meter, start - margin, end + margin, fold)
    if not found:
        check_known([probe], meter)
    samples = found[0] if found else Samples([], [])
    rows: Iterable[Row] = (
        raw_rows(samples, start, end)
        if step is None
        else step_rows(samples, start, end, step, served.max_gap)
    )
    head = {"probe": probe, "meter": meter, "start": start, "end": end, "step": step}
    if csv:
        header = ("timestamp", "value" if step is None else "average")
        return q.csv_response(header, _csv_rows(rows), f"{probe}-{meter}.csv")
    return q.json_response({**head, "samples": [list(row) for row in rows]})


def _csv_rows(rows: Iterable[Row]) -> Iterator[tuple[float, float | str]]:
    """*rows* with an empty field for a step without an average."""
    for seconds, value in rows:
        yield seconds, "" if value is None else value
