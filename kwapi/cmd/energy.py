"""`kwapi energy`: the energy of some probes over a time range, asked of kwapi-history.

It sends ``GET /v1/energy/?probe=…&start=…&end=…`` to kwapi-history (times
read by :func:`kwapi.times.parse_time`, sent as Unix seconds) and prints a
table for a person, or JSON or CSV (RFC 4180) for a script.  A probe's
average power is its energy over the time its samples covered (so a probe
that stopped reporting half-way is not shown at half its power); the total's
is the sum of the probes' averages.

Exit status: 0 done; 1 kwapi-history could not be reached or failed (5xx,
401/403, an answer that is not the expected JSON); 2 the request is wrong
(an argument, or a 400/404/413 from kwapi-history, whose message is shown).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from kwapi import __version__
from kwapi.bus.protocol import is_valid_probe_id
from kwapi.times import TimeError, format_local, format_seconds, parse_time
from kwapi.units import format_energy, format_fraction, format_power

DEFAULT_API = "http://127.0.0.1:5001"
#: Environment variables read when the options are not given.
API_ENV, TOKEN_ENV = "KWAPI_HISTORY_URL", "OS_TOKEN"
#: The probe field of the total row in CSV: ``*`` can never be a probe id.
TOTAL_ROW = "*"
CSV_FIELDS = ("probe", "kwh", "joules", "average_w", "coverage", "samples", "gaps", "start", "end")

USAGE_ERROR, FAILURE = 2, 1


class EnergyError(Exception):
    """The energy could not be had; *status* is the exit status to end with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the energy sub-command."""
    parser = commands.add_parser(
        "energy",
        help="energy of probes over a time range, from kwapi-history",
        description="Energy (kWh), average power and coverage of probes over "
        "[start, end], as kwapi-history integrates it from every sample.",
        epilog="Times: Unix seconds, RFC 3339 (2026-12-06T14:02:10Z; without an offset, "
        "local time), now, or relative to now (now-15m, now-2h, now-1d; or --start=-15m).",
    )
    parser.add_argument("--probe", action="append", required=True, help="a probe id (repeatable)")
    parser.add_argument("--start", required=True, help="start of the range")
    parser.add_argument("--end", default="now", help="end of the range (default: now)")
    parser.add_argument(
        "--api",
        default=os.environ.get(API_ENV) or DEFAULT_API,
        help=f"kwapi-history's URL (default: ${API_ENV} or {DEFAULT_API})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"a keystone token, when kwapi-history uses keystone (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print CSV, one header line")


@dataclass(frozen=True)
class ProbeEnergy:
    """One probe's line: what kwapi-history answered, and its average power."""

    probe: str
    kwh: float
    joules: float
    samples: int
    coverage: float
    gaps: int
    average_w: float | None


@dataclass(frozen=True)
class EnergyReport:
    """kwapi-history's answer for a range, checked."""

    start: float
    end: float
    probes: tuple[ProbeEnergy, ...]
    kwh: float
    joules: float

    @property
    def average_w(self) -> float | None:
        """The sum of the probes' averages (None when no probe has data)."""
        known = [p.average_w for p in self.probes if p.average_w is not None]
        return sum(known) if known else None

    @property
    def coverage(self) -> float:
        """The probes' mean coverage."""
        return sum(p.coverage for p in self.probes) / len(self.probes) if self.probes else 0.0


def energy(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Ask kwapi-history for the energy of ``args.probe`` and print it (to *out*, default
    standard output); return the exit status."""
    out = sys.stdout if out is None else out
    try:
        start, end = time_range(args.start, args.end)
        probes = list(dict.fromkeys(args.probe))
        for probe in probes:
            if not is_valid_probe_id(probe):
                raise EnergyError(f"invalid probe id {probe!r}", USAGE_ERROR)
        body = fetch(args.api, probes, start, end, token=args.token, timeout=args.timeout)
        report = parse_report(body, probes)
    except EnergyError as exc:
        print(f"kwapi energy: error: {exc}", file=sys.stderr)
        return exc.status
    if args.json:
        out.write(json.dumps(report_json(report), indent=2) + "\n")
    elif args.csv:
        out.write(report_csv(report))
    else:
        out.write(report_table(report))
    return 0


def time_range(start_text: str, end_text: str) -> tuple[float, float]:
    """The range as Unix seconds, with one "now" for both ends; EnergyError if unreadable."""
    now = parse_time("now")
    try:
        start = parse_time(start_text, now)
    except TimeError as exc:
        raise EnergyError(f"--start: {exc}", USAGE_ERROR) from None
    try:
        end = parse_time(end_text, now)
    except TimeError as exc:
        raise EnergyError(f"--end: {exc}", USAGE_ERROR) from None
    if end <= start:
        raise EnergyError(
            f"--end ({format_local(end)}) must come after --start ({format_local(start)})",
            USAGE_ERROR,
        )
    return start, end


def unix_text(stamp: float) -> str:
    """*stamp* as kwapi-history reads Unix seconds: whole, or to the millisecond."""
    return str(int(stamp)) if stamp == int(stamp) else f"{stamp:.3f}"


def energy_url(api: str, probes: list[str], start: float, end: float) -> str:
    """The ``/v1/energy/`` URL of kwapi-history at *api* for *probes* over [start, end]."""
    query = urllib.parse.urlencode(
        [*(("probe", p) for p in probes), ("start", unix_text(start)), ("end", unix_text(end))]
    )
    return f"{api.rstrip('/')}/v1/energy/?{query}"


def fetch(
    api: str,
    probes: list[str],
    start: float,
    end: float,
    *,
    token: str | None = None,
    timeout: float = 30.0,
) -> object:
    """kwapi-history's JSON answer; EnergyError (with the server's message) otherwise."""
    url = energy_url(api, probes, start, end)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise EnergyError(f"--api must be an http:// or https:// URL, not {api!r}", USAGE_ERROR)
    headers = {"Accept": "application/json", "User-Agent": f"kwapi-energy/{__version__}"}
    if token:
        headers["X-Auth-Token"] = token
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as error:
        raise http_error(api, error.code, error.read()) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EnergyError(f"cannot reach kwapi-history at {api}: {reason}", FAILURE) from None
    try:
        return json.loads(data)
    except ValueError:
        raise EnergyError(f"kwapi-history at {api} did not answer JSON", FAILURE) from None


def http_error(api: str, status: int, body: bytes) -> EnergyError:
    """The error of an HTTP *status* from kwapi-history, with the message of its *body*."""
    message = server_message(body)
    if status in (400, 404, 413, 422):
        return EnergyError(f"kwapi-history refused the request ({status}): {message}", USAGE_ERROR)
    if status in (401, 403):
        return EnergyError(
            f"kwapi-history at {api} wants a valid keystone token "
            f"(--token or ${TOKEN_ENV}) ({status}): {message}",
            FAILURE,
        )
    return EnergyError(f"kwapi-history at {api} failed ({status}): {message}", FAILURE)


def server_message(body: bytes) -> str:
    """The error message in a server's answer: its JSON ``error`` (or ``message``), or its text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        for key in ("error", "message", "detail", "description"):
            value = document.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value:
                text = value
                break
    line = " ".join(text.split())
    return (line[:300] + "…") if len(line) > 300 else (line or "no message")


def parse_report(body: object, probes: list[str]) -> EnergyReport:
    """The checked :class:`EnergyReport` of kwapi-history's answer for *probes*."""
    try:
        document = _mapping(body)
        start, end = _number(document["start"]), _number(document["end"])
        answered = _mapping(document["probes"])
        lines = tuple(_probe_energy(p, _mapping(answered[p]), start, end) for p in probes)
        total = _mapping(document["total"])
        kwh, joules = _number(total["kwh"]), _number(total["joules"])
    except (KeyError, TypeError, ValueError):
        raise EnergyError(
            "kwapi-history's answer is not the /v1/energy/ document expected", FAILURE
        ) from None
    return EnergyReport(start, end, lines, kwh, joules)


def _mapping(value: object) -> Mapping[str, object]:
    """*value* if it is a JSON object; TypeError if not."""
    if not isinstance(value, dict):
        raise TypeError(value)
    return value


def _number(value: object) -> float:
    """*value* if it is a finite JSON number; ValueError if not."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def _probe_energy(probe: str, entry: Mapping[str, object], start: float, end: float) -> ProbeEnergy:
    """One probe's entry of the answer, with its average power over the time covered."""
    joules, coverage = _number(entry["joules"]), _number(entry["coverage"])
    covered = coverage * (end - start)
    return ProbeEnergy(
        probe=probe,
        kwh=_number(entry["kwh"]),
        joules=joules,
        samples=int(_number(entry["samples"])),
        coverage=coverage,
        gaps=int(_number(entry["gaps"])),
        average_w=joules / covered if covered > 0 else None,
    )


def report_json(report: EnergyReport) -> dict[str, object]:
    """The report for scripts: kwapi-history's numbers, plus averages, unrounded."""
    return {
        "start": report.start,
        "end": report.end,
        "probes": {
            p.probe: {
                "kwh": p.kwh,
                "joules": p.joules,
                "average_w": p.average_w,
                "coverage": p.coverage,
                "samples": p.samples,
                "gaps": p.gaps,
            }
            for p in report.probes
        },
        "total": {
            "kwh": report.kwh,
            "joules": report.joules,
            "average_w": report.average_w,
            "coverage": report.coverage,
        },
    }


def report_csv(report: EnergyReport) -> str:
    """RFC 4180 CSV: one header line, a row per probe, then the total (probe ``*``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    span = (unix_text(report.start), unix_text(report.end))
    for p in report.probes:
        writer.writerow(
            [p.probe, p.kwh, p.joules, _blank(p.average_w), p.coverage, p.samples, p.gaps, *span]
        )
    gaps = sum(p.gaps for p in report.probes)
    samples = sum(p.samples for p in report.probes)
    total = [TOTAL_ROW, report.kwh, report.joules, _blank(report.average_w), report.coverage]
    writer.writerow([*total, samples, gaps, *span])
    return buffer.getvalue()


def _blank(value: float | None) -> object:
    """An empty CSV field for a missing number."""
    return "" if value is None else value


def report_table(report: EnergyReport) -> str:
    """A table for a person: energy with its SI prefix, average power, coverage."""
    header = ("probe", "energy", "average", "coverage", "samples", "gaps")
    rows = [
        (
            p.probe,
            format_energy(p.kwh),
            format_power(p.average_w),
            format_fraction(p.coverage),
            str(p.samples),
            str(p.gaps),
        )
        for p in report.probes
    ]
    rows.append(
        (
            "total",
            format_energy(report.kwh),
            format_power(report.average_w),
            format_fraction(report.coverage),
            str(sum(p.samples for p in report.probes)),
            str(sum(p.gaps for p in report.probes)),
        )
    )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    title = (
        f"Energy from {format_local(report.start)} to {format_local(report.end)} "
        f"({format_seconds(report.end - report.start)})"
    )
    lines = [title, _row(header, widths)]
    lines += [_row(row, widths) for row in rows[:-1]]
    lines += ["-" * len(lines[1]), _row(rows[-1], widths)]
    return "\n".join(lines) + "\n"


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    """Cells padded to *widths*: the first to the left, numbers to the right."""
    first, *rest = cells
    return "  ".join(
        [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
    )
