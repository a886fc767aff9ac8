"""Exponential backoff with jitter (kwapi.backoff), shared by drivers and kwapi-history."""

from kwapi.backoff import Backoff


def test_delays_double_up_to_the_cap_and_start_over_after_a_reset():
    backoff = Backoff(0.5, 4)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_a_peer_down_for_days_keeps_its_cap():
    """Over 1024 failures (under 3 hours at a 10 s cap) 2**n no longer fits a float."""
    backoff = Backoff(1.0, 10.0)
    delays = [backoff.next_delay() for _ in range(5000)]
    assert delays[-1] == 10.0 and max(delays) == 10.0


def test_jitter_draws_each_delay_in_its_upper_share():
    backoff = Backoff(8.0, 8.0, jitter=0.5)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(4.0 <= delay <= 8.0 for delay in delays)
    assert len(set(delays)) > 100
