"""Times as people and job schedulers write them (kwapi energy, the kwapi-rrd range)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kwapi.times import TimeError, format_local, format_seconds, parse_time

NOW = 1_796_527_434.25


def test_unix_seconds_and_now():
    assert parse_time("1796527434", NOW) == 1796527434.0
    assert parse_time(" 1796527434.5 ", NOW) == 1796527434.5
    assert parse_time("now", NOW) == NOW
    assert parse_time("NOW", NOW) == NOW


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("-15m", 900), ("now-2h", 7200), ("now - 90s", 90), ("-1d", 86400), ("-1.5w", 907200)],
)
def test_relative_to_now(text, seconds):
    assert parse_time(text, NOW) == NOW - seconds


def test_rfc_3339_with_offsets_and_fractions():
    moment = datetime(2026, 12, 6, 14, 2, 10, tzinfo=UTC).timestamp()
    assert parse_time("2026-12-06T14:02:10Z", NOW) == moment
    assert parse_time("2026-12-06t14:02:10z", NOW) == moment
    assert parse_time("2026-12-06 15:02:10.250+01:00", NOW) == moment + 0.25


def test_without_an_offset_is_local_time():
    local = datetime(2026, 12, 6, 14, 2).timestamp()  # naive: this machine's zone
    assert parse_time("2026-12-06T14:02", NOW) == local
    assert parse_time("2026-12-06", NOW) == datetime(2026, 12, 6).timestamp()


@pytest.mark.parametrize("text", ["", "yesterday", "-15x", "12:00", "2026-13-01", "1e9", "--5m"])
def test_unreadable_times_say_what_is_accepted(text):
    with pytest.raises(TimeError, match="RFC 3339"):
        parse_time(text, NOW)


def test_durations_and_local_times_for_people():
    assert format_seconds(6323) == "1 h 45 min 23 s"
    assert format_seconds(2 * 86400 + 3 * 3600) == "2 d 3 h"
    assert format_seconds(12.5) == "12.5 s"
    assert parse_time(format_local(NOW), NOW) == int(NOW)


def test_a_server_refuses_a_date_time_without_offset():
    assert parse_time("2026-12-06T14:02:10+00:00", NOW, naive_is_local=False) == parse_time(
        "2026-12-06T14:02:10Z", NOW
    )
    with pytest.raises(TimeError, match="no offset"):
        parse_time("2026-12-06T14:02:10", NOW, naive_is_local=False)
