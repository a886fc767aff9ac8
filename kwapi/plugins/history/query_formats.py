"""The parameters of a query, checked, and its answer as JSON or CSV.

A bad parameter is a :class:`BadParameter`: a JSON 400 (or 413) whose
error names it, ``{"error": {"code", "title", "message", "parameter"}}``.
CSV (``?format=csv`` or ``Accept: text/csv``) is RFC 4180: one header line,
CRLF line ends, fields quoted where needed (Python's csv module).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterable, Iterator, Sequence

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest

from kwapi.bus.protocol import METER_NAME_PATTERN, PROBE_ID_PATTERN
from kwapi.plugins.json_errors import error_body
from kwapi.times import ACCEPTED, parse_time

CSV_TYPE = "text/csv"
JSON_TYPE = "application/json"
#: Rows written to the CSV buffer before it is handed to the server.
CSV_ROWS_PER_CHUNK = 5000
#: A step: seconds, or a number with a unit (30s, 5m, 1h, 1d).
_STEP = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

blueprint = Blueprint("query_errors", __name__)


class BadParameter(BadRequest):
    """A query parameter the request cannot be answered with; *code* 400 or 413."""

    def __init__(self, parameter: str, message: str, code: int = 400) -> None:
        super().__init__(f"{parameter}: {message}")
        self.code = code
        self.parameter = parameter


@blueprint.app_errorhandler(BadParameter)
def bad_parameter(exc: BadParameter) -> tuple[Response, int]:
    """The JSON error document, naming the parameter."""
    code = exc.code or 400
    title = "Content Too Large" if code == 413 else "Bad Request"
    body = error_body(code, title, exc.description or "")
    body["error"]["parameter"] = exc.parameter
    return jsonify(body), code


def time_arg(name: str, default: float | None = None) -> float:
    """Query argument *name* as Unix seconds; a BadParameter if missing (without *default*)."""
    text = request.args.get(name)
    if text is None or not text.strip():
        if default is None:
            raise BadParameter(name, f"missing: {ACCEPTED}")
        return default
    try:
        return parse_time(text, naive_is_local=False)
    except ValueError as exc:
        raise BadParameter(name, str(exc)) from None


def time_range() -> tuple[float, float]:
    """``start`` (needed) and ``end`` (now if absent), end after start."""
    start = time_arg("start")
    end = time_arg("end", time.time())
    if end <= start:
        raise BadParameter("end", f"end ({end:.3f}) is not after start ({start:.3f})")
    return start, end


def step_arg() -> float | None:
    """Query argument ``step`` in seconds (``60``, ``30s``, ``5m``, ``1h``, ``1d``), or None."""
    text = request.args.get("step", "").strip()
    if not text:
        return None
    match = _STEP.fullmatch(text)
    seconds = float(match[1]) * _UNITS[match[2]] if match else 0.0
    if not seconds > 0.0:
        raise BadParameter("step", f"{text[:40]!r} is not a positive duration (60, 30s, 5m, 1h)")
    return seconds


def probe_id(text: str, parameter: str = "probe") -> str:
    """*text* if it is a valid probe id, else a BadParameter."""
    if PROBE_ID_PATTERN.fullmatch(text) is None or text in (".", ".."):
        raise BadParameter(parameter, f"{text[:80]!r} is not a probe id")
    return text


def meter_name(text: str) -> str:
    """*text* if it is a valid meter name, else a BadParameter."""
    if METER_NAME_PATTERN.fullmatch(text) is None:
        raise BadParameter("meter", f"{text[:80]!r} is not a meter name")
    return text


def probes_arg(limit: int) -> list[str]:
    """The ``probe`` arguments: valid ids, each once, in order, 1 to *limit* of them."""
    probes = list(dict.fromkeys(request.args.getlist("probe")))
    if not probes:
        raise BadParameter("probe", "name at least one probe: ?probe=ID&probe=ID2")
    if len(probes) > limit:
        raise BadParameter("probe", f"{len(probes)} probes asked, more than max_probes = {limit}")
    return [probe_id(probe) for probe in probes]


def wants_csv() -> bool:
    """Whether the client asks for CSV: ``?format=csv``, or ``Accept`` preferring text/csv."""
    chosen = request.args.get("format")
    if chosen is not None:
        if chosen not in ("csv", "json"):
            raise BadParameter("format", f"{chosen[:40]!r} is neither json nor csv")
        return chosen == "csv"
    return request.accept_mimetypes.best_match([JSON_TYPE, CSV_TYPE]) == CSV_TYPE


def csv_response(header: Sequence[str], rows: Iterable[Sequence[object]], name: str) -> Response:
    """*rows* under *header* as a streamed RFC 4180 CSV attachment *name*."""

    def chunks() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(header)
        for count, row in enumerate(rows, 1):
            writer.writerow(row)
            if count % CSV_ROWS_PER_CHUNK == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = Response(chunks(), content_type=f"{CSV_TYPE}; charset=utf-8; header=present")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.vary.add("Accept")
    return response


def json_response(document: object) -> Response:
    """*document* as JSON, varying on Accept (CSV is the other choice)."""
    response = jsonify(document)
    response.vary.add("Accept")
    return response
