"""Query parameters and the store reader: times, selectors, basic authentication."""

from __future__ import annotations

import pytest

from kwapi.plugins.history.export_lines import (
    StoreError,
    count_samples,
    parse_line,
    parse_lines,
)
from kwapi.plugins.history.store_reader import (
    StoreReader,
    TooManySamples,
    label_value,
    store_time,
)
from kwapi.times import parse_time
from tests.plugins.history.query_helpers import (
    RawVictoriaMetrics,
    line,
    make_app,
    write_with_auth,
)

T0 = 1_765_000_000


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1765000000", 1765000000.0),
        (" 1765000000.25 ", 1765000000.25),
        ("2025-12-06T05:46:40Z", 1765000000.0),
        ("2025-12-06t05:46:40.125z", 1765000000.125),
        ("2025-12-06 06:46:40.5+01:00", 1765000000.5),
        ("2025-12-05T23:46:40-06:00", 1765000000.0),
    ],
)
def test_times_parsed(text, seconds):
    assert parse_time(text, naive_is_local=False) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "soon",
        "1e9",
        "nan",
        "inf",
        "2025-12-06T05:46:40",
        "2025-13-06T05:46:40Z",
        "2025-02-30T00:00:00Z",
        "2025-12-06T05:46:40+25:00",
        "0x10",
    ],
)
def test_bad_times_refused(text):
    with pytest.raises(ValueError, match=r"as a time|no offset|out of range"):
        parse_time(text, naive_is_local=False)


def test_store_times_are_whole_milliseconds_outward():
    assert store_time(1765000000.0) == "1765000000.000"
    assert store_time(1765000000.0004) == "1765000000.000"
    assert store_time(1765000000.0004, up=True) == "1765000000.001"
    assert store_time(1765000000.25, up=True) == "1765000000.250"


def test_label_values_quoted():
    assert label_value('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


class AuthVictoriaMetrics(RawVictoriaMetrics):
    """A VictoriaMetrics asking for HTTP basic authentication."""

    def command(self) -> list[str]:
        return [*super().command(), "-httpAuth.username=kwapi", "-httpAuth.password=s3cr:t"]


@pytest.fixture(scope="module")
def guarded():
    server = AuthVictoriaMetrics()  # /health stays open: start() sees it ready
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_basic_authentication_from_the_url(guarded):
    write_with_auth(
        guarded, "kwapi", "s3cr:t", [line("n", (T0 + i) * 1000, w=1.0) for i in range(5)]
    )
    reader = StoreReader(f"http://kwapi:s3cr%3At@127.0.0.1:{guarded.port}", 10)
    found: dict[str, tuple[list[bytes], int]] = {}

    def fold(probe: str, lines: list[bytes], count: int) -> None:
        found[probe] = (lines, count)

    reader.read(["n"], "w", T0, T0 + 10, 100, fold)
    lines, count = found["n"]
    assert count == 5
    assert list(parse_lines(lines).values) == [1] * 5
    with pytest.raises(TooManySamples):
        reader.read(["n"], "w", T0, T0 + 10, 4, fold)
    assert reader.series(["n", "other"]) == {"n": {"w"}}
    wrong = StoreReader(f"http://kwapi:nope@127.0.0.1:{guarded.port}", 10)
    with pytest.raises(StoreError, match="401"):
        wrong.read(["n"], "w", T0, T0 + 10, 100, fold)
    response = (
        make_app(f"http://127.0.0.1:{guarded.port}")
        .test_client()
        .get(f"/v1/series/n/w/?start={T0}")
    )
    assert response.status_code == 502
    assert "401" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "line",
    [
        b'{"metric":{"__name__":"kwapi_w","probe":"a,b"},"values":[1,2.5,3],'
        b'"timestamps":[1000,2000,3000]}',
        b'{"timestamps":[1000,2000,3000],"metric":{"probe":"x"},"values":[1,2,3]}',
        b'{"metric":{},"values":[1],"timestamps":[1000]}',
        b'{"metric":{},"values":[],"timestamps":[]}',
        b'{"values":[4,5],"metric":{},"tsx":1,"timestamps" :[1,2]}',
    ],
)
def test_samples_counted_without_parsing(line):
    assert count_samples(line) == len(parse_line(line).timestamps)


@pytest.mark.parametrize(
    "line",
    [b"not json", b'{"values":[1,2],"timestamps":[1]}', b'{"values":[1]}', b"[1,2]"],
)
def test_malformed_export_lines(line):
    with pytest.raises(StoreError):
        parse_line(line)


def test_series_split_over_lines_merged_in_time_order_first_value_first():
    merged = parse_lines(
        [
            b'{"metric":{},"values":[1,3],"timestamps":[1000,3000]}',
            b'{"metric":{},"values":[2,9,4],"timestamps":[2000,3000,4000]}',
        ]
    )
    assert merged == ([1000, 2000, 3000, 3000, 4000], [1, 2, 3, 9, 4])
