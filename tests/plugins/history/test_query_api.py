"""/v1/energy/ and /v1/series/ on a real VictoriaMetrics, served by the Flask test client."""

from __future__ import annotations

import csv
import gzip
import io
import re
import socket
import threading

import pytest

from tests.harness.energy import trapezoid_joules
from tests.harness.processes import busy_tcp_port, free_tcp_port
from tests.plugins.history.query_helpers import RawVictoriaMetrics, line, make_app, write

T0 = 1_765_000_000  # whole seconds, a year before the tests' clock
N = 100


def watts_1(i: int) -> float:
    return 100.0 + (i % 10) * 1.5


#: Samples of probe dense (10 Hz): enough for its energy to be computed by a worker process.
DENSE = 25_000


def dense_watts(i: int) -> float:
    return -5.0 if i % 1000 == 7 else 200.0 + (i * 37 % 101) / 4


#: node-2: 1 Hz, a negative reading, then silent 200 s (a gap), then 10 more seconds.
NODE_2 = [(i, -30.0 if i == 3 else 50.0) for i in range(20)] + [(220 + i, 80.0) for i in range(11)]


def trapezoid(points: list[tuple[float, float]], max_gap: float = 120.0) -> float:
    """Joules of (seconds, watts) points, written out plainly for the comparison."""
    return trapezoid_joules(points, max_gap)[0]


@pytest.fixture(scope="module")
def store():
    """A VictoriaMetrics without deduplication, holding node-1, node-2 and idle.

    node-1's first 20 samples are written twice (a batch replayed)."""
    server = RawVictoriaMetrics()
    server.start()
    try:
        node_1 = [line("node-1", (T0 + i) * 1000, w=watts_1(i), temp=40.0 + i) for i in range(N)]
        write(server, node_1)
        write(server, node_1[:20])
        write(server, [line("node-2", (T0 + t) * 1000, w=w) for t, w in NODE_2])
        write(server, [line("idle", (T0 - 10_000) * 1000, w=5.0)])
        write(server, [line("dense", T0 * 1000 + i * 100, w=dense_watts(i)) for i in range(DENSE)])
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def client(store):
    return make_app(store.root).test_client()


def energy(client, *probes, **args):
    query = [("probe", p) for p in probes] + list(args.items())
    return client.get("/v1/energy/", query_string=query)


def assert_bad(response, code: int, parameter: str) -> str:
    """*response* is a JSON error *code* naming *parameter*; returns its message."""
    assert response.status_code == code, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert (error["code"], error["parameter"]) == (code, parameter)
    assert parameter in error["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return error["message"]


def test_energy_over_exactly_the_samples(client):
    response = energy(client, "node-1", "node-2", start=T0, end=T0 + N - 1)
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["start", "end", "probes", "total"]
    assert (body["start"], body["end"]) == (T0, T0 + N - 1)
    node_1 = body["probes"]["node-1"]
    expected = trapezoid([(i, watts_1(i)) for i in range(N)])
    assert node_1["joules"] == pytest.approx(expected, rel=1e-9)
    assert node_1["kwh"] == pytest.approx(expected / 3.6e6, rel=1e-9)
    # The replayed samples count once.
    assert (node_1["samples"], node_1["coverage"], node_1["gaps"]) == (N, 1.0, 0)
    node_2 = body["probes"]["node-2"]
    assert node_2["joules"] == pytest.approx(trapezoid(NODE_2[:20]), rel=1e-9)
    assert node_2["samples"] == 20
    assert node_2["coverage"] == pytest.approx(19 / (N - 1))
    assert node_2["gaps"] == 0  # the gap starts at 19 s and ends after the range
    assert body["total"]["joules"] == pytest.approx(node_1["joules"] + node_2["joules"])
    assert body["total"]["kwh"] == pytest.approx(node_1["kwh"] + node_2["kwh"])


def test_energy_edges_interpolated_and_gaps_counted(client):
    body = energy(client, "node-2", start=T0 + 2.5, end=T0 + 225).get_json()
    node_2 = body["probes"]["node-2"]
    # 2.5..3: 50 W -> -30 W (0 W): 25 W at 2.5 s; then integer seconds to 19; gap; 220..225.
    expected = (25.0 + 0.0) / 2 * 0.5 + trapezoid(NODE_2[3:20]) + 80.0 * 5
    assert node_2["joules"] == pytest.approx(expected, rel=1e-9)
    assert node_2["gaps"] == 1
    assert node_2["samples"] == 17 + 6
    assert node_2["coverage"] == pytest.approx((16.5 + 5) / 222.5)


def test_rfc3339_times(client):
    by_seconds = energy(client, "node-1", start=T0 + 10, end=T0 + 20).get_json()
    iso = energy(
        client, "node-1", start="2025-12-06T05:46:50Z", end="2025-12-06T06:47:00+01:00"
    ).get_json()
    assert (iso["start"], iso["end"]) == (T0 + 10, T0 + 20)
    assert iso == by_seconds


def test_probe_without_data_in_range_is_listed_with_zero_coverage(client):
    body = energy(client, "idle", "node-1", start=T0, end=T0 + 10).get_json()
    assert list(body["probes"]) == ["idle", "node-1"]
    assert body["probes"]["idle"] == {
        "kwh": 0.0,
        "joules": 0.0,
        "samples": 0,
        "coverage": 0.0,
        "gaps": 0,
    }
    assert body["total"]["kwh"] == body["probes"]["node-1"]["kwh"] > 0


def test_energy_as_csv(client):
    for response in (
        energy(client, "node-1", "idle", start=T0, end=T0 + 50, format="csv"),
        client.get(
            "/v1/energy/",
            query_string={"probe": ["node-1", "idle"], "start": T0, "end": T0 + 50},
            headers={"Accept": "text/csv"},
        ),
    ):
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        text = response.get_data(as_text=True)
        assert text.count("\r\n") == 4 and text.endswith("\r\n")
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == ["probe", "start", "end", "kwh", "joules", "samples", "coverage", "gaps"]
        assert [row[0] for row in rows[1:]] == ["node-1", "idle", ""]
        as_json = energy(client, "node-1", "idle", start=T0, end=T0 + 50).get_json()
        assert float(rows[1][3]) == as_json["probes"]["node-1"]["kwh"]
        assert float(rows[3][3]) == as_json["total"]["kwh"]
        assert rows[1][5:] == ["51", "1.0", "0"]


def test_series_raw_samples_json_and_csv(client):
    response = client.get(f"/v1/series/node-1/w/?start={T0 + 5}&end={T0 + 9}")
    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "probe": "node-1",
        "meter": "w",
        "start": T0 + 5,
        "end": T0 + 9,
        "step": None,
        "samples": [[T0 + i, watts_1(i)] for i in range(5, 10)],
    }
    duplicated = client.get(f"/v1/series/node-1/temp/?start={T0}&end={T0 + 30}").get_json()
    assert [t for t, _ in duplicated["samples"]] == [T0 + i for i in range(31)]
    text = client.get(
        f"/v1/series/node-1/temp/?start={T0}&end={T0 + 2}", headers={"Accept": "text/csv"}
    ).get_data(as_text=True)
    assert text == "timestamp,value\r\n" + "".join(
        f"{float(T0 + i)!r},{40.0 + i!r}\r\n" for i in range(3)
    )


def test_series_averages_per_step(client):
    body = client.get(f"/v1/series/node-2/w/?start={T0}&end={T0 + 240}&step=1m").get_json()
    assert body["step"] == 60.0
    assert [t for t, _ in body["samples"]] == [T0, T0 + 60, T0 + 120, T0 + 180]
    first, second, third, fourth = (v for _, v in body["samples"])
    # Readings averaged as sent: the -30 W counts as -30 here.
    assert first == pytest.approx((50 * 19 - 80) / 19)
    assert second is None and third is None
    assert fourth == pytest.approx(80.0)
    text = client.get(
        f"/v1/series/node-2/w/?start={T0}&end={T0 + 240}&step=60&format=csv"
    ).get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["timestamp", "average"]
    assert [row[1] for row in rows[2:4]] == ["", ""]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"probe": "node-1", "start": T0 + 10, "end": T0}, "end"),
        ({"probe": "node-1", "start": T0, "end": T0}, "end"),
        ({"probe": "node-1", "start": "yesterday"}, "start"),
        ({"probe": "node-1", "start": T0, "end": "2025-12-06T05:46:50"}, "end"),
        ({"probe": "node-1"}, "start"),
        ({"start": T0}, "probe"),
        ({"probe": "no such probe", "start": T0}, "probe"),
        ({"probe": ["node-1", "ghost"], "start": T0, "end": T0 + 5}, "probe"),
        ({"probe": "node-1", "start": T0, "format": "xml"}, "format"),
    ],
)
def test_energy_bad_input_is_a_json_400_naming_the_parameter(client, query, parameter):
    assert_bad(client.get("/v1/energy/", query_string=query), 400, parameter)


def test_unknown_probe_is_named(client):
    message = assert_bad(energy(client, "node-1", "ghost", start=T0, end=T0 + 5), 400, "probe")
    assert "ghost" in message and "node-1" not in message


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        (f"/v1/series/ghost/w/?start={T0}", "probe"),
        (f"/v1/series/node-1/volts/?start={T0}", "meter"),
        (f"/v1/series/node-1/W/?start={T0}", "meter"),
        (f"/v1/series/node-1/w/?start={T0}&step=-5", "step"),
        (f"/v1/series/node-1/w/?start={T0}&step=0", "step"),
        (f"/v1/series/node-1/w/?start={T0}&step=1&end={T0 + 10**9}", "step"),
        (f"/v1/series/node-1/w/?start={T0}&end=soon", "end"),
    ],
)
def test_series_bad_input_is_a_json_400_naming_the_parameter(client, path, parameter):
    assert_bad(client.get(path), 400, parameter)


def test_too_many_probes_is_a_400(store):
    client = make_app(store.root, max_probes=2).test_client()
    assert energy(client, "node-1", "node-2", start=T0, end=T0 + 5).status_code == 200
    message = assert_bad(energy(client, "node-1", "node-2", "idle", start=T0), 400, "probe")
    assert "max_probes = 2" in message


def test_too_many_samples_is_a_413(store):
    client = make_app(store.root, max_samples=50, max_gap=0.0).test_client()
    assert energy(client, "node-1", start=T0 + 20, end=T0 + 69).status_code == 200
    message = assert_bad(energy(client, "node-1", start=T0, end=T0 + 60), 413, "end")
    assert "max_samples = 50" in message
    assert_bad(client.get(f"/v1/series/node-1/w/?start={T0}&end={T0 + 60}"), 413, "end")


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == 503 and "store" in error["message"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_store_not_listening_is_a_503():
    client = make_app(f"http://127.0.0.1:{free_tcp_port()}").test_client()
    assert_unavailable(energy(client, "node-1", "node-2", start=T0, end=T0 + 5))
    assert_unavailable(client.get(f"/v1/series/node-1/w/?start={T0}"))


def test_store_not_answering_is_a_503_after_query_timeout():
    with busy_tcp_port() as port:  # accepts connections, never answers
        client = make_app(f"http://127.0.0.1:{port}", query_timeout=0.3).test_client()
        assert_unavailable(energy(client, "node-1", start=T0, end=T0 + 5))


def test_store_failing_is_a_503():
    """A store answering 500 (vmselect without its vmstorage nodes, say)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 21\r\n"
                    b"Connection: close\r\n\r\ncannot reach vmstorage"
                )

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        client = make_app(f"http://127.0.0.1:{server.getsockname()[1]}").test_client()
        response = client.get(f"/v1/series/node-1/w/?start={T0}")
        thread.join(10)
    assert_unavailable(response)
    assert "500" in response.get_json()["error"]["message"]


def test_unknown_route_and_method_are_json(client):
    missing = client.get("/v1/nothing/")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == 404
    wrong = client.post("/v1/energy/")
    assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]
    redirect = client.get("/v1/energy")
    assert redirect.status_code == 308 and redirect.get_json()["redirect"]["code"] == 308


def test_healthz_and_metrics(store):
    up = make_app(store.root).test_client()
    response = up.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "store": {"up": True}}
    down = make_app(store.root, healthy=False).test_client().get("/healthz")
    assert down.status_code == 503 and down.get_json()["status"] == "down"
    energy(up, "node-1", start=T0, end=T0 + 9)
    assert_bad(energy(up, "node-1", start="never"), 400, "start")
    scraped = up.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert scraped.headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(scraped.get_data()).decode()
    assert "kwapi_history_samples_written_total 42.0" in text
    assert 'kwapi_history_queries_total{code="200",route="energy"} 1.0' in text
    assert 'kwapi_history_queries_total{code="400",route="energy"} 1.0' in text
    # The samples within max_gap (120 s) of the range, node-1's first 20 twice.
    assert f"kwapi_history_query_samples_total {N + 20}.0" in text
    assert 'kwapi_history_query_seconds_count{route="energy"} 2.0' in text


def test_openapi_document_is_valid_and_describes_every_route(client):
    from openapi_spec_validator import validate

    from kwapi.plugins import openapi

    document = openapi.load("kwapi.plugins.history")
    validate(document)
    assert client.get("/openapi.json").get_json() == document
    served = {
        re.sub(r"<(?:[a-z]+:)?([A-Za-z_]+)>", r"{\1}", rule.rule)
        for rule in client.application.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert served == set(document["paths"])


def test_large_probes_computed_by_worker_processes_give_the_same_energy(store):
    end = T0 + (DENSE - 1) / 10
    query = f"/v1/energy/?probe=dense&probe=node-1&start={T0}&end={end}"
    app = make_app(store.root, query_processes=2)
    try:
        in_workers = app.test_client().get(query).get_json()
        assert app.extensions["kwapi.history"].workers._pool is not None  # they did run
    finally:
        app.extensions["kwapi.history"].workers.close()
    in_threads = make_app(store.root, query_processes=0).test_client().get(query).get_json()
    assert in_workers == in_threads
    dense = in_workers["probes"]["dense"]
    expected = trapezoid([(i / 10, dense_watts(i)) for i in range(DENSE)])
    assert dense["joules"] == pytest.approx(expected, rel=1e-9)
    assert (dense["samples"], dense["coverage"]) == (DENSE, 1.0)
