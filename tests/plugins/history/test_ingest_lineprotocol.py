"""Samples of the bus as InfluxDB line protocol, checked against the stores' own parsers
in test_stores.py; here, the text itself."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwapi.bus.protocol import Batch, Measurement
from kwapi.plugins.history.lineprotocol import (
    LineFormat,
    escape_key,
    escape_measurement,
    series_name,
)
from kwapi.plugins.history.store import verdict_of, write_target


def test_one_sample_is_one_line_with_every_meter_a_field_and_ms_timestamps():
    line_format = LineFormat()
    message = Measurement("node-1", 1795451827.869, {"w": 84.5, "temperature": 41.0})
    assert line_format.lines(message) == [
        "kwapi,probe=node-1 w=84.5,temperature=41.0 1795451827869"
    ]


@pytest.mark.parametrize(
    ("precision", "stamp"),
    [("ms", "1795451827869"), ("us", "1795451827869051"), ("ns", "1795451827869051000")],
)
def test_timestamps_keep_the_precision_asked(precision, stamp):
    (line,) = LineFormat("kwapi", precision).lines(Measurement("p", 1795451827.869051, {"w": 1.0}))
    assert line.rsplit(" ", 1)[1].startswith(stamp)
    assert len(line.rsplit(" ", 1)[1]) == {"ms": 13, "us": 16, "ns": 19}[precision]


def test_a_batch_is_one_line_per_sample_oldest_first():
    batch = Batch(
        "gpu-0", [100.0, 100.02, 100.04], {"w": [1.5, 2.0, -0.5], "temp": [40.0, 41.0, 42.0]}
    )
    assert LineFormat("kwapi").lines(batch) == [
        "kwapi,probe=gpu-0 w=1.5,temp=40.0 100000",
        "kwapi,probe=gpu-0 w=2.0,temp=41.0 100020",
        "kwapi,probe=gpu-0 w=-0.5,temp=42.0 100040",
    ]
    power_only = Batch("gpu-0", [100.0, 100.5], {"w": [3.25, 1e-05]})
    assert LineFormat("m").lines(power_only) == [
        "m,probe=gpu-0 w=3.25 100000",
        "m,probe=gpu-0 w=1e-05 100500",
    ]


def test_values_keep_every_digit_of_the_float():
    value = 0.1 + 0.2
    (line,) = LineFormat().lines(Measurement("p", 1.0, {"w": value}))
    assert float(line.split("w=")[1].split(" ")[0]) == value


def test_names_are_escaped():
    assert escape_key("a b,c=d\\") == "a\\ b\\,c\\=d\\\\"
    assert escape_key("node-1.rack:2@site") == "node-1.rack:2@site"
    assert escape_measurement("my kwapi,x=y") == "my\\ kwapi\\,x=y"
    with pytest.raises(ValueError, match="newline"):
        escape_key("a\nb")


def test_series_names_as_victoriametrics_makes_them():
    assert series_name("kwapi", "w") == "kwapi_w"


def test_write_target_sets_the_precision_and_keeps_the_rest():
    _, target = write_target("http://u:p@h:8086/write?db=kwapi&precision=ns", "ms")
    assert target == "/write?db=kwapi&precision=ms"
    assert write_target("http://h:8428", "us")[1] == "/?precision=u"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (204, "written"),
        (200, "written"),
        (400, "rejected"),
        (413, "rejected"),
        (401, "retry"),
        (403, "retry"),
        (404, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_what_each_answer_means_for_the_batch(status, verdict):
    assert verdict_of(status) == verdict


odd_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e16, 1e15, 9.99e-5, 1e-4, -0.0, 0.0, 5e-324, 1.7976931348623157e308]),
    st.integers(-(10**20), 10**20),
)


@settings(max_examples=300, deadline=None)
@given(
    precision=st.sampled_from(["ms", "us", "ns"]),
    probe=st.sampled_from(["node-1", "a,b", "x=y", "pdu:outlet@3"]),
    measurement=st.sampled_from(["kwapi", "power usage", "m,n"]),
    meters=st.lists(st.sampled_from(["w", "up", "fps", "energy_j"]), min_size=1, unique=True),
    data=st.data(),
)
def test_body_text_is_exactly_the_lines_joined(precision, probe, measurement, meters, data):
    """The fast path of text() writes what lines() does, byte for byte, whatever the values."""
    count = data.draw(st.integers(1, 20))
    start = data.draw(st.floats(0, 4e9))
    steps = data.draw(st.lists(st.floats(1e-3, 100), min_size=count, max_size=count))
    timestamps = list(itertools.accumulate(steps, initial=start))[1:]
    columns = {
        name: data.draw(st.lists(odd_values, min_size=count, max_size=count)) for name in meters
    }
    batch = Batch(probe, timestamps, columns)
    line_format = LineFormat(measurement, precision)
    try:
        expected = ("\n".join(line_format.lines(batch)) + "\n").encode()
    except (ValueError, OverflowError, TypeError) as exc:
        with pytest.raises(type(exc)):
            line_format.text(batch)
        return
    assert line_format.text(batch) == expected
