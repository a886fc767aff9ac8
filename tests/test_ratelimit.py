"""Rate-limited logging: one line per key and period, then the count of those left out."""

from __future__ import annotations

import logging

from kwapi.ratelimit import RateLimitedLog


def test_one_line_per_key_and_period_then_the_count_left_out(caplog):
    now = [100.0]
    log = RateLimitedLog(logging.getLogger("kwapi.test.ratelimit"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="kwapi.test.ratelimit"):
        log.warning("a", "first %s", "a")
        log.warning("a", "second %s", "a")
        log.error("b", "first %s", "b")  # another key: its own budget
        now[0] += 9.9
        log.warning("a", "third %s", "a")
        now[0] += 0.1
        log.warning("a", "fourth %s", "a")
        log.warning("a", "fifth %s", "a")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "first a"),
        (logging.ERROR, "first b"),
        (logging.WARNING, "fourth a (2 more like this since the last report)"),
    ]
