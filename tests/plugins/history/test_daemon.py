"""kwapi-history as a daemon: bad configuration, /healthz and /metrics, a clean stop."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from kwapi.bus.protocol import Batch
from tests.harness.history import bus, connect, history_conf, restart_history, start_history
from tests.harness.processes import VENV_BIN, busy_tcp_port, free_tcp_port, wait_for
from tests.harness.stores import VictoriaMetrics

pytestmark = pytest.mark.slow


def refused_url() -> str:
    """A write URL where nothing listens: every write is refused."""
    return f"http://127.0.0.1:{free_tcp_port()}/write"


def config_error(config) -> str:
    """Run kwapi-history on *config*: it must exit 2 with one line; that line."""
    result = subprocess.run(
        [str(VENV_BIN / "kwapi-history"), "--config-file", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr
    assert lines[0].startswith("kwapi-history: error: "), lines[0]
    return lines[0]


def test_a_bad_configuration_is_one_line_and_status_2(tmpdir_short):
    blocker = Path(tmpdir_short) / "file"
    blocker.write_text("")
    cases = {
        "spool_dir": {"spool_dir": blocker / "spool"},
        "store_write_url": {"store_write_url": "ftp://127.0.0.1/write"},
        "batch_size": {"batch_size": 0},
        "store_precision": {"store_precision": "s"},
        "store_measurement": {"store_measurement": "two words"},
    }
    for key, options in cases.items():
        line = config_error(history_conf(tmpdir_short, refused_url(), **options))
        assert f"{key}:" in line and "history.conf" in line, line
    with busy_tcp_port() as port:
        line = config_error(history_conf(tmpdir_short, refused_url(), history_port=port))
        assert "history_port" in line and "cannot listen" in line, line


def test_health_and_metrics_say_the_store_is_down_and_what_is_spooled(daemon, tmpdir_short):
    history = start_history(daemon, tmpdir_short, refused_url(), spool_max_bytes=10**6)
    publisher = bus(tmpdir_short)
    connect(history, publisher)
    publisher.publish(Batch("p", [time.time() - 10 + i for i in range(5)], {"w": [1.0] * 5}))
    wait_for(lambda: history.metric("kwapi_history_samples_spooled_total") >= 6, 10, "spooled")
    health = history.healthz()
    assert health["status"] == "store_down" and health["store"]["up"] is False
    assert "refused" in health["store"]["last_error"]
    assert health["receiver"]["alive"] and health["writer"]["alive"]
    assert health["spool"]["batches"] >= 1 and health["spool"]["max_bytes"] == 10**6
    metrics = history.metrics()
    assert metrics[("kwapi_history_store_up", ())] == 0
    assert metrics[("kwapi_history_write_failures_total", (("status", "none"),))] >= 1
    assert metrics[("kwapi_history_spool_bytes", ())] > 0
    assert metrics[("kwapi_history_samples_dropped_total", (("reason", "spool_full"),))] == 0
    assert metrics[("kwapi_receiver_accepted_samples_total", ())] >= 6
    assert ("kwapi_history_write_seconds_bucket", (("le", "+Inf"),)) in metrics
    publisher.close()


def test_sigterm_spools_what_the_store_refuses_and_the_next_start_replays_it(daemon, tmpdir_short):
    victoria = VictoriaMetrics(f"{tmpdir_short}/vm")
    try:
        # A store that is not there yet, and a batch that would wait a minute.
        config = history_conf(tmpdir_short, victoria.write_url, flush_interval=60, store_timeout=1)
        history = restart_history(daemon, config)
        publisher = bus(tmpdir_short)
        connect(history, publisher)
        stamps = [round(time.time() - 30 + i, 3) for i in range(20)]
        publisher.publish(Batch("p", stamps, {"w": [float(i) for i in range(20)]}))
        connect(history, publisher)
        assert history.metric("kwapi_history_samples_written_total") == 0
        assert history.process.stop() == 0  # SIGTERM: one try, then the spool
        assert "stopped:" in history.process.output()
        spooled = list(history.spool_dir.glob("*.lp.gz"))
        assert spooled, history.process.output()

        victoria.start()
        restarted = restart_history(daemon, config)
        wait_for(lambda: not list(history.spool_dir.glob("*.lp.gz")), 20, "the spool replayed")
        points = wait_for(lambda: victoria.samples('kwapi_w{probe="p"}').get("p"), 10, "p")
        assert [t for t, _ in points] == stamps
        assert restarted.metric("kwapi_history_samples_replayed_total") >= 20

        # With the store up, SIGTERM writes the batch being filled before exit.
        later = [round(time.time() - 5 + i / 10, 3) for i in range(10)]
        connect(restarted, publisher)
        publisher.publish(Batch("p", later, {"w": [2.0] * 10}))
        connect(restarted, publisher)
        assert restarted.process.stop() == 0
        assert list(history.spool_dir.glob("*.lp.gz")) == []
        wait_for(lambda: len(victoria.samples('kwapi_w{probe="p"}').get("p", [])) == 30, 10, "30")
        publisher.close()
    finally:
        victoria.close()
