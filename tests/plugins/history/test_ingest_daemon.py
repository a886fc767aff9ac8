"""kwapi-history under load, fed through the bus, into a real VictoriaMetrics.

Samples are counted back through VictoriaMetrics' export API (raw samples).
Timestamps are whole milliseconds, what the store keeps; series of past
samples are sent in batches, well within the receiver's acceptance window,
so that a minute of 1 Hz samples takes no minute to send.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.harness.history import (
    HELLO_PROBE,
    Load,
    bus,
    connect,
    messages,
    power_series,
    restart_history,
    start_history,
)
from tests.harness.processes import wait_for
from tests.harness.stores import VictoriaMetrics

pytestmark = pytest.mark.slow


@pytest.fixture
def victoria(tmpdir_short):
    store = VictoriaMetrics(f"{tmpdir_short}/vm")
    store.start()
    yield store
    store.close()


def stored(store: VictoriaMetrics) -> dict[str, list[tuple[float, float]]]:
    """The power samples of every probe but the hello probe."""
    samples = store.samples("kwapi_w")
    samples.pop(HELLO_PROBE, None)
    return samples


def test_200_probes_at_1_hz_for_a_minute_are_all_in_the_store(daemon, tmpdir_short, victoria):
    history = start_history(daemon, tmpdir_short, victoria.write_url, batch_size=2000)
    publisher = bus(tmpdir_short)
    connect(history, publisher)
    probes = [f"node-{index:03d}" for index in range(200)]
    series = power_series(probes, 60, time.time() - 200)
    # Half the probes send one message a sample, half one batch of their minute.
    for message in messages(series, batched=probes[::2]):
        publisher.publish(message)
    connect(history, publisher)  # received after them all: they all were
    publisher.close()
    wait_for(
        lambda: sum(map(len, stored(victoria).values())) >= 12_000, 30, "12,000 samples stored"
    )
    assert stored(victoria) == series
    received = history.metric("kwapi_history_samples_received_total")
    assert received >= 12_001  # and the hello sample(s) of connect()
    wait_for(lambda: history.metric("kwapi_history_samples_written_total") == received, 10)
    assert history.metric("kwapi_history_samples_spooled_total") == 0
    assert history.process.stop() == 0


def test_outage_and_kill_9_under_load(daemon, tmpdir_short, victoria):
    """The store stops under load, then comes back: every sample arrives, once.
    Then, the store down again, kwapi-history is killed with -9 and restarted:
    what it received in the last flush interval before the kill is all it loses,
    and the spool is replayed."""
    flush = 0.5
    history = start_history(
        daemon, tmpdir_short, victoria.write_url, flush_interval=flush, batch_size=1000
    )
    publisher = bus(tmpdir_short)
    connect(history, publisher)
    probes = [f"node-{index:02d}" for index in range(50)]
    load = Load(publisher, probes, period=0.05).start()  # 1,000 samples/s
    try:
        wait_for(lambda: history.metric("kwapi_history_samples_written_total") > 2000, 20)
        victoria.stop()
        wait_for(lambda: history.metric("kwapi_history_spool_batches") >= 3, 20, "spooling")
        assert history.metric("kwapi_history_store_up") == 0
        victoria.start()
        wait_for(lambda: history.metric("kwapi_history_spool_batches") == 0, 30, "replay")
        assert history.metric("kwapi_history_store_up") == 1
        assert history.metric("kwapi_history_samples_replayed_total") > 0

        victoria.stop()
        wait_for(lambda: history.metric("kwapi_history_spool_batches") >= 3, 20, "spooling")
        # Killed with a batch half filled (not right after one was closed).
        wait_for(lambda: history.metric("kwapi_history_pending_samples") >= 250, 20, "a batch")
        history.process.signal(signal.SIGKILL)
        killed_at = time.time()
        history.process.kill()
        victoria.start()
        restarted = restart_history(daemon, history.config)
        wait_for(lambda: restarted.metric("kwapi_history_samples_replayed_total") > 0, 20)
        connect(restarted, publisher)
        back_at = time.time()
        wait_for(lambda: len(load.stamps(after=back_at)) >= 20, 20, "a second of load")
    finally:
        load.stop()
    connect(restarted, publisher)  # received after every round of the load: all of them are
    wait_for(lambda: restarted.metric("kwapi_history_spool_batches") == 0, 30, "spool empty")
    assert restarted.process.stop() == 0  # writes what it holds

    # Every round published before the last flush interval before the kill is
    # stored (a round published to a dead daemon is not its loss), and so is
    # every round published once the restarted daemon received.
    slack = 0.2  # the bus' and the receiver's own delays
    required = load.stamps(before=killed_at - flush - slack) | load.stamps(after=back_at)
    stamps = wait_for(lambda: stored_rounds(victoria, probes, required), 20, "the samples")
    for probe in probes:
        assert len(set(stamps[probe])) == len(stamps[probe]), f"{probe} has a sample twice"
        assert stamps[probe] == sorted(stamps[probe])
    kept = set.intersection(*(set(points) for points in stamps.values()))
    lost = load.stamps(before=killed_at) - kept
    assert len(lost) * len(probes) <= (flush + slack) * load.rate(), sorted(lost)


def stored_rounds(
    store: VictoriaMetrics, probes: list[str], required: set[float]
) -> dict[str, list[float]] | None:
    """The timestamps stored per probe once each probe has every one of *required*."""
    stamps = {probe: [t for t, _ in points] for probe, points in stored(store).items()}
    if all(required <= set(stamps.get(probe, ())) for probe in probes):
        return stamps
    return None
