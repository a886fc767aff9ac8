"""`kwapi energy` against a real HTTP server speaking kwapi-history's /v1/energy/.

The server below stands for kwapi-history (being built beside this command):
it listens on a real socket on 127.0.0.1, reads the query as kwapi-history
does, integrates the constant power each probe drew and answers the JSON
document of the issue, or a JSON 400 naming the parameter, as kwapi-history
does for bad input.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kwapi.cmd import tool
from kwapi.cmd.energy import CSV_FIELDS, TOTAL_ROW
from kwapi.units import UNKNOWN, format_energy, format_fraction, format_power
from tests.harness.http import served
from tests.harness.processes import VENV_BIN, free_tcp_port
from tests.harness.stores import VictoriaMetrics

#: What each probe drew: (watts, first second, last second) of its samples, 1 a second.
T0 = 1_796_000_000


@dataclass
class Drawn:
    watts: float
    first: int
    last: int


@dataclass
class History:
    """A small kwapi-history: probes of constant power, and the requests it got."""

    probes: dict[str, Drawn]
    status: int | None = None  # answer every request with this status instead
    body: bytes = b""
    token: str | None = None  # the keystone token it wants, if any
    requests: list[tuple[dict[str, list[str]], str | None]] = field(default_factory=list)

    def answer(self, query: dict[str, list[str]], token: str | None) -> tuple[int, object]:
        self.requests.append((query, token))
        if self.token is not None and token != self.token:
            return 401, {"error": "authentication required"}
        probes = query.get("probe", [])
        try:
            start, end = float(query["start"][0]), float(query["end"][0])
        except (KeyError, ValueError):
            return 400, {"error": "start: not a time", "parameter": "start"}
        if end <= start:
            return 400, {"error": "end must come after start", "parameter": "end"}
        unknown = [p for p in probes if p not in self.probes]
        if unknown:
            return 400, {"error": f"unknown probe {unknown[0]}", "parameter": "probe"}
        answer: dict[str, dict[str, float]] = {}
        for probe in probes:
            drawn = self.probes[probe]
            covered = max(0.0, min(end, drawn.last) - max(start, drawn.first))
            joules = drawn.watts * covered
            samples = sum(1 for t in range(drawn.first, drawn.last + 1) if start <= t <= end)
            answer[probe] = {
                "kwh": joules / 3.6e6,
                "joules": joules,
                "samples": samples,
                "coverage": covered / (end - start),
                "gaps": 0,
            }
        joules = sum(entry["joules"] for entry in answer.values())
        return 200, {
            "start": start,
            "end": end,
            "probes": answer,
            "total": {"kwh": joules / 3.6e6, "joules": joules},
        }


@pytest.fixture
def history() -> Iterator[tuple[History, str]]:
    state = History(
        {
            "node-1": Drawn(120.0, T0, T0 + 3600),
            "node-2": Drawn(2500.0, T0 + 600, T0 + 7200),
            "idle": Drawn(0.5, T0, T0 + 7200),
        }
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if state.status is not None:
                status, body = state.status, state.body
            elif url.path != "/v1/energy/":
                status, body = 404, b'{"error": "no such route"}'
            else:
                query = urllib.parse.parse_qs(url.query)
                status, document = state.answer(query, self.headers.get("X-Auth-Token"))
                body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`kwapi ARGV` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        tool.main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def ask(api: str, *extra: str) -> list[str]:
    """The arguments asking for node-1 and node-2 over [T0 + 1200, T0 + 4800]."""
    return [
        "energy",
        "--probe",
        "node-1",
        "--probe",
        "node-2",
        "--start",
        str(T0 + 1200),
        "--end",
        str(T0 + 4800),
        "--api",
        api,
        *extra,
    ]


def test_table_gives_energy_with_its_prefix_average_and_coverage(history, capsys):
    state, api = history
    status, out, err = run(capsys, *ask(api))
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("Energy from ") and lines[0].endswith("(1 h)")
    assert lines[1].split() == ["probe", "energy", "average", "coverage", "samples", "gaps"]
    rows = {line.split()[0]: line for line in lines[2:] if not line.startswith("-")}
    # node-1 drew 120 W for the range's first 2400 s (of 3600 s), node-2 2500 W for all of it.
    node1_kwh, node2_kwh = 120 * 2400 / 3.6e6, 2500 * 3600 / 3.6e6
    assert rows["node-1"].split()[1:3] == format_energy(node1_kwh).split()
    assert format_energy(node1_kwh) == "80.0 Wh"
    assert rows["node-1"].split()[3:5] == format_power(120.0).split()  # energy / time covered
    assert rows["node-1"].split()[5:7] == format_fraction(2400 / 3600).split()
    assert rows["node-2"].split()[1:7] == ["2.50", "kWh", "2.50", "kW", "100.0", "%"]
    total = rows["total"].split()
    assert total[1:3] == format_energy(node1_kwh + node2_kwh).split()
    assert total[3:5] == format_power(2620.0).split()
    assert lines[-2].startswith("-") and lines[-1].startswith("total")
    # One request, both probes, the times as sent.
    [(query, token)] = state.requests
    assert query["probe"] == ["node-1", "node-2"]
    assert (query["start"], query["end"]) == ([str(T0 + 1200)], [str(T0 + 4800)])
    assert token is None


def test_json_and_csv_are_for_scripts(history, capsys):
    state, api = history
    status, out, _ = run(capsys, *ask(api, "--json"))
    assert status == 0
    document = json.loads(out)
    expected = state.answer(
        {"probe": ["node-1", "node-2"], "start": [str(T0 + 1200)], "end": [str(T0 + 4800)]}, None
    )[1]
    assert document["start"] == T0 + 1200 and document["end"] == T0 + 4800
    for probe in ("node-1", "node-2"):
        entry = document["probes"][probe]
        for key in ("kwh", "joules", "samples", "coverage", "gaps"):
            assert entry[key] == expected["probes"][probe][key]
        covered = entry["coverage"] * 3600
        assert entry["average_w"] == pytest.approx(entry["joules"] / covered, rel=1e-12)
    assert document["total"]["kwh"] == expected["total"]["kwh"]

    status, out, _ = run(capsys, *ask(api, "--csv"))
    assert status == 0
    assert out.endswith("\r\n") and out.count("\r\n") == 4  # header, two probes, total
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert list(rows[0]) == list(CSV_FIELDS)
    assert [row["probe"] for row in rows] == ["node-1", "node-2", TOTAL_ROW]
    assert float(rows[0]["kwh"]) == document["probes"]["node-1"]["kwh"]
    assert float(rows[2]["joules"]) == document["total"]["joules"]
    assert int(rows[2]["samples"]) == int(rows[0]["samples"]) + int(rows[1]["samples"])


def test_a_probe_without_data_has_no_average(history, capsys):
    _, api = history
    status, out, _ = run(
        capsys,
        "energy",
        "--probe",
        "node-2",
        "--start",
        str(T0),
        "--end",
        str(T0 + 600),
        "--api",
        api,
        "--json",
    )
    assert status == 0
    entry = json.loads(out)["probes"]["node-2"]
    assert entry["coverage"] == 0 and entry["average_w"] is None
    status, out, _ = run(
        capsys,
        "energy",
        "--probe",
        "node-2",
        "--start",
        str(T0),
        "--end",
        str(T0 + 600),
        "--api",
        api,
    )
    assert out.splitlines()[2].split()[3] == UNKNOWN  # no average to show


def test_times_in_rfc_3339_and_relative_to_now(history, capsys):
    state, api = history
    status, _, _ = run(
        capsys,
        "energy",
        "--probe",
        "idle",
        "--start",
        "2026-12-01T10:00:00Z",
        "--end",
        "2026-12-01T11:30:00.5+01:00",
        "--api",
        api,
    )
    assert status == 0
    query = state.requests[-1][0]
    start = datetime(2026, 12, 1, 10, tzinfo=UTC).timestamp()
    assert query["start"] == [str(int(start))]
    assert query["end"] == [f"{start + 30 * 60 + 0.5:.3f}"]  # 11:30:00.5 at +01:00
    before = time.time()
    status, _, _ = run(capsys, "energy", "--probe", "idle", "--start=-15m", "--api", api)
    after = time.time()
    assert status == 0
    query = state.requests[-1][0]
    start, end = float(query["start"][0]), float(query["end"][0])
    assert before - 1 <= end <= after + 1
    assert end - start == pytest.approx(900, abs=0.002)


def test_token_goes_to_kwapi_history(history, capsys, monkeypatch):
    state, api = history
    state.token = "secret-token"
    status, _, err = run(capsys, *ask(api))
    assert status == 1
    assert err.count("\n") == 1 and "keystone token" in err and "(401)" in err
    status, _, err = run(capsys, *ask(api, "--token", "secret-token"))
    assert status == 0 and err == "" and state.requests[-1][1] == "secret-token"
    monkeypatch.setenv("OS_TOKEN", "secret-token")
    state.requests.clear()
    status, _, _ = run(capsys, *ask(api))
    assert status == 0 and state.requests[-1][1] == "secret-token"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "yesterday"], "--start: cannot read 'yesterday' as a time"),
        (["--start", str(T0 + 60), "--end", str(T0)], "--end ("),
        (["--start", str(T0), "--probe", "a/b"], "invalid probe id 'a/b'"),
    ],
)
def test_bad_arguments_are_one_line_and_status_2(history, capsys, argv, message):
    state, api = history
    status, out, err = run(capsys, "energy", "--probe", "node-1", "--api", api, *argv)
    assert status == 2 and out == ""
    assert err.startswith("kwapi energy: error: ") and message in err and err.count("\n") == 1
    assert state.requests == []  # refused before asking


def test_server_refusals_show_its_message(history, capsys):
    state, api = history
    status, out, err = run(capsys, "energy", "--probe", "node-9", "--start", str(T0), "--api", api)
    assert status == 2 and out == ""
    refused = "kwapi-history refused the request (400): unknown probe node-9"
    assert err == f"kwapi energy: error: {refused}\n"

    state.status, state.body = 503, b'{"error": "the store at http://127.0.0.1:8428 is down"}'
    status, _, err = run(capsys, *ask(api))
    assert status == 1 and err.count("\n") == 1
    assert "failed (503): the store at http://127.0.0.1:8428 is down" in err

    state.status, state.body = 200, b"<html>not kwapi-history</html>"
    status, _, err = run(capsys, *ask(api))
    assert status == 1 and "did not answer JSON" in err

    state.status, state.body = 200, b'{"start": 1, "end": 2, "probes": {}}'
    status, _, err = run(capsys, *ask(api))
    assert status == 1 and "not the /v1/energy/ document" in err


def test_unreachable_server_from_the_installed_command():
    """The console script itself: one line on stderr, exit status 1, no traceback."""
    port = free_tcp_port()  # nothing listens there
    result = subprocess.run(
        [str(VENV_BIN / "kwapi"), *ask(f"http://127.0.0.1:{port}")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(
        f"kwapi energy: error: cannot reach kwapi-history at http://127.0.0.1:{port}"
    )
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# -- against the real kwapi-history -----------------------------------------------


@pytest.mark.slow
def test_against_the_real_kwapi_history_on_victoriametrics():
    """The command, kwapi-history's query side served over HTTP, a real VictoriaMetrics."""
    helpers = pytest.importorskip("tests.plugins.history.query_helpers")

    start = 1_765_000_000
    node_1 = [(start + i, 100.0 + (i % 10) * 1.5) for i in range(120)]
    node_2 = [(start + i, 40.0) for i in range(0, 120, 2)]  # every 2 s
    store = VictoriaMetrics()
    store.start()
    try:
        helpers.write(store, [helpers.line("node-1", t * 1000, w=w) for t, w in node_1])
        helpers.write(store, [helpers.line("node-2", t * 1000, w=w) for t, w in node_2])
        with served(helpers.make_app(store.root)) as api:
            argv = ["--probe", "node-1", "--probe", "node-2", "--api", api]
            span = ["--start", str(start), "--end", str(start + 119)]
            result = subprocess.run(
                [str(VENV_BIN / "kwapi"), "energy", *argv, *span, "--json"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            document = json.loads(result.stdout)
            for probe, points in (("node-1", node_1), ("node-2", node_2)):
                joules = sum(
                    (w0 + w1) / 2 * (t1 - t0) for (t0, w0), (t1, w1) in itertools.pairwise(points)
                )
                entry = document["probes"][probe]
                assert entry["joules"] == pytest.approx(joules, rel=1e-9)
                covered = entry["coverage"] * 119
                assert entry["average_w"] == pytest.approx(joules / covered, rel=1e-9)
            table = subprocess.run(
                [str(VENV_BIN / "kwapi"), "energy", *argv, *span],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert table.returncode == 0 and table.stdout.splitlines()[-1].startswith("total")
            # Its refusal of an unknown probe, one line, status 2.
            refused = subprocess.run(
                [str(VENV_BIN / "kwapi"), "energy", "--probe", "nobody", "--api", api, *span],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert refused.returncode == 2 and refused.stdout == ""
            assert refused.stderr.startswith("kwapi energy: error: kwapi-history refused")
            assert refused.stderr.count("\n") == 1 and "nobody" in refused.stderr
    finally:
        store.close()
