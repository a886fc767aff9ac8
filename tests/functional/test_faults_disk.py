"""Faults: the disk under state_file or rrd_dir fills up or turns read-only.

The tests run as root, and root ignores permission bits, so a file system
really is filled or remounted read-only: each test mounts a small tmpfs of
its own (which needs CAP_SYS_ADMIN; without it the test is skipped and says
why).  "Full" is a filler file grown until the kernel answers ENOSPC;
"read-only" is ``mount -o remount,ro``, which refuses writes with EROFS even
to root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kwapi.bus.protocol import Measurement
from tests.harness.bus import bus_publisher
from tests.harness.daemons import (
    error_lines,
    no_traceback,
    start_api,
    start_dummy_drivers,
    start_rrd,
)
from tests.harness.http import get, get_json
from tests.harness.processes import free_tcp_port, wait_for
from tests.harness.rrd import Rrdcached, assert_rrd_files_sound, flush, rrd_last, values_between

pytestmark = pytest.mark.slow


class SmallDisk:
    """A tmpfs of *size* mounted on *path*, which a test can fill or make read-only."""

    def __init__(self, path: Path, size: str = "4m") -> None:
        self.path = path
        self.filler = path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        result = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
        if result.returncode != 0:
            pytest.skip(
                "a disk-full or read-only file system needs a tmpfs mounted by the test, "
                f"and mount failed here ({result.stderr.strip() or result.returncode}); "
                "run the tests as root with CAP_SYS_ADMIN"
            )

    def fill(self) -> None:
        """Take every free byte: the next write that needs a new page gets ENOSPC."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 16, 1 << 12, 1):  # big steps, then the last partial page
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
            with pytest.raises(OSError) as refused:
                os.write(fd, b"\0")
            assert refused.value.errno == errno.ENOSPC
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, flag: bool = True) -> None:
        result = _mount("-o", f"remount,{'ro' if flag else 'rw'}", str(self.path))
        assert result.returncode == 0, result.stderr

    def close(self) -> None:
        _mount("-o", "remount,rw", str(self.path))
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_disk(tmpdir_short) -> Iterator[SmallDisk]:
    disk = SmallDisk(Path(tmpdir_short) / "disk")
    yield disk
    disk.close()
    shutil.rmtree(disk.path, ignore_errors=True)


def wait_until_late_probe_refused(late, rrd) -> Callable[[], None]:
    """Publish probe late-1 on *late* until *rrd* logs that it cannot create
    its file; return the function that publishes it once more."""

    def publish_late() -> None:
        late.publish(Measurement("late-1", time.time(), {"w": 5.0}))

    def late_refused() -> bool:
        publish_late()
        return any("late-1" in line for line in error_lines(rrd))

    wait_for(late_refused, 20, "kwapi-rrd to report it cannot create late-1's file")
    return publish_late


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_api_state_file_on_a_failing_disk(daemon, tmpdir_short, small_disk, fault):
    endpoint = f"ipc://{tmpdir_short}/drv"
    state_file = small_disk.path / "state.json"
    start_dummy_drivers(daemon, tmpdir_short, endpoint)
    api = start_api(
        daemon,
        tmpdir_short,
        probes_endpoint=endpoint,
        state_file=state_file,
        state_save_interval=0.2,
    )

    def saved() -> dict:
        return json.loads(state_file.read_text())["probes"]

    wait_for(lambda: "node-1" in saved(), 20, "a save with node-1")
    if fault == "full":
        small_disk.fill()
        expected = os.strerror(errno.ENOSPC)
    else:
        small_disk.read_only()
        expected = os.strerror(errno.EROFS)
    api.process.wait_output(expected, 20)
    before = state_file.read_bytes()
    # One clear line for the whole outage, naming the file and the reason...
    errors = error_lines(api.process)
    assert len(errors) == 1 and str(state_file) in errors[0] and expected in errors[0]
    assert "still serving" in errors[0]
    # ...while the API goes on serving fresh readings...
    seen = get_json(api.url + "/v1/probes/node-1/")["node-1"]["timestamp"]
    wait_for(
        lambda: get_json(api.url + "/v1/probes/node-1/")["node-1"]["timestamp"] > seen + 0.5,
        20,
        "fresh readings while the disk fails",
    )
    assert api.healthz()["status"] == "ok"
    # ...and the last good state is intact: parseable, and no temporary file left.
    assert state_file.read_bytes() == before
    assert "node-1" in json.loads(before)["probes"]
    assert [p.name for p in small_disk.path.iterdir() if p.name.startswith(".")] == []

    if fault == "full":
        small_disk.free()
    else:
        small_disk.read_only(False)
    api.process.wait_output("state saved to", 20)
    wait_for(lambda: state_file.read_bytes() != before, 20, "saves to resume")
    assert saved()["node-1"]["kwh"] >= json.loads(before)["probes"]["node-1"]["kwh"]
    assert api.process.stop() == 0
    no_traceback(api.process)


def test_rrd_dir_full_existing_probes_go_on_new_ones_wait(daemon, tmpdir_short, small_disk):
    """RRD files are written in place at a fixed size: only a new probe's file needs space."""
    endpoint = f"ipc://{tmpdir_short}/drv"
    late_endpoint = f"ipc://{tmpdir_short}/late"  # for a probe that appears on a full disk
    rrd_dir = small_disk.path / "rrd"
    late = bus_publisher(late_endpoint)
    try:
        start_dummy_drivers(daemon, tmpdir_short, endpoint)
        rrd, base = start_rrd(
            daemon, tmpdir_short, f"{endpoint}, {late_endpoint}", rrd_dir, free_tcp_port()
        )
        wait_for(lambda: rrd_last(rrd_dir) and rrd_last(rrd_dir, "node-2"), 20, "both files")

        small_disk.fill()
        filled_at = int(time.time())

        publish_late = wait_until_late_probe_refused(late, rrd)
        assert any(os.strerror(errno.ENOSPC) in line for line in error_lines(rrd))
        # The known probes are still recorded, on the full disk.
        wait_for(lambda: rrd_last(rrd_dir) > filled_at + 1, 20, "node-1 still recorded")
        assert get(base + "/probe/node-1/")[0] == 200
        assert get(base + "/probe/late-1/")[0] == 404
        assert assert_rrd_files_sound(rrd_dir) == 2

        small_disk.free()
        wait_for(
            lambda: publish_late() or get(base + "/probe/late-1/")[0] == 200,
            20,
            "late-1 recorded once there is space",
        )
        assert assert_rrd_files_sound(rrd_dir) == 3
        assert rrd.process.poll() is None
        no_traceback(rrd)
    finally:
        late.close()


def test_rrd_dir_read_only_serves_history_and_resumes(daemon, tmpdir_short, small_disk):
    endpoint = f"ipc://{tmpdir_short}/drv"
    rrd_dir = small_disk.path / "rrd"
    start_dummy_drivers(daemon, tmpdir_short, endpoint)
    rrd, base = start_rrd(daemon, tmpdir_short, endpoint, rrd_dir, free_tcp_port())
    first = wait_for(lambda: rrd_last(rrd_dir), 20, "a first value")
    wait_for(lambda: rrd_last(rrd_dir) >= first + 2, 20, "some history")

    small_disk.read_only()
    frozen = rrd_last(rrd_dir)
    expected = os.strerror(errno.EROFS)
    wait_for(lambda: any(expected in line for line in error_lines(rrd)), 20, "the error logged")
    history = values_between(rrd_dir, first, frozen - 1)
    # Serving goes on from the files as they were.
    assert get(base + "/probe/node-1/")[0] == 200
    status, body = get(f"{base}/data/minute/node-1/")
    assert status == 200 and any(v is not None for v in json.loads(body)["meters"]["w"]["average"])
    assert get(f"{base}/graph/minute/node-1/")[0] == 200
    assert rrd_last(rrd_dir) == frozen
    assert len(error_lines(rrd)) <= 2  # rate limited, not one line per measurement

    small_disk.read_only(False)
    wait_for(lambda: rrd_last(rrd_dir) > frozen, 20, "writes to resume")
    assert values_between(rrd_dir, first, frozen - 1) == history
    assert assert_rrd_files_sound(rrd_dir) == 2
    assert rrd.process.poll() is None
    no_traceback(rrd)


def test_rrd_dir_read_only_under_rrdcached_is_reported_by_kwapi_rrd(
    daemon, tmpdir_short, small_disk
):
    """rrdcached writes the files and logs its failures only in its own log:
    kwapi-rrd watches the file system itself and says when it fails and recovers."""
    endpoint = f"ipc://{tmpdir_short}/drv"
    rrd_dir = small_disk.path / "rrd"
    rrd_dir.mkdir()
    cached = Rrdcached(rrd_dir)  # its socket and journal live elsewhere
    try:
        start_dummy_drivers(daemon, tmpdir_short, endpoint)
        extra = f"rrdcached_address = {cached.address}\nrrd_disk_check_interval = 0.2"
        rrd, base = start_rrd(daemon, tmpdir_short, endpoint, rrd_dir, free_tcp_port(), extra)

        def disk() -> dict:
            return json.loads(get(base + "/stats/")[1])["disk"]

        first = wait_for(lambda: rrd_last(rrd_dir, daemon=cached.address), 20, "a first value")
        wait_for(lambda: rrd_last(rrd_dir, daemon=cached.address) >= first + 2, 20, "history")
        flush(rrd_dir, cached.address)
        flushed = rrd_last(rrd_dir) - 1  # the last row is completed by the next value
        history = values_between(rrd_dir, first, flushed)
        assert history and disk()["state"] == "ok"

        small_disk.read_only()
        wait_for(lambda: error_lines(rrd), 20, "kwapi-rrd to report the read-only disk")
        [line] = error_lines(rrd)
        assert f"rrd_dir {rrd_dir} is read-only" in line
        assert "rrdcached cannot write" in line
        assert disk()["state"] == "read-only"
        # Pages and series are still served from the files as they were.
        assert get(base + "/probe/node-1/")[0] == 200
        status, body = get(f"{base}/data/minute/node-1/")
        assert status == 200, body
        assert get(f"{base}/graph/minute/node-1/")[0] == 200
        assert values_between(rrd_dir, first, flushed) == history

        small_disk.read_only(False)
        writable_at = time.time()
        rrd.wait_output(f"rrd_dir {rrd_dir} is writable again", 20)
        assert disk()["state"] == "ok"

        def written_since() -> bool:
            flush(rrd_dir, cached.address)
            return rrd_last(rrd_dir) > writable_at + 1

        wait_for(written_since, 20, "rrdcached to write the files again")
        assert assert_rrd_files_sound(rrd_dir) == 2
        assert values_between(rrd_dir, first, flushed) == history
        assert len(error_lines(rrd)) == 1  # one line for the whole outage
        assert rrd.process.poll() is None
        no_traceback(rrd)
    finally:
        cached.stop()


def test_rrd_dir_full_under_rrdcached_is_reported_by_kwapi_rrd(daemon, tmpdir_short, small_disk):
    """On a filled mount, rrdcached goes on updating the existing files in place;
    kwapi-rrd says the disk is full, refuses new probes' files, and recovers."""
    endpoint = f"ipc://{tmpdir_short}/drv"
    late_endpoint = f"ipc://{tmpdir_short}/late"
    rrd_dir = small_disk.path / "rrd"
    rrd_dir.mkdir()
    cached = Rrdcached(rrd_dir)
    late = bus_publisher(late_endpoint)
    try:
        start_dummy_drivers(daemon, tmpdir_short, endpoint)
        extra = f"rrdcached_address = {cached.address}\nrrd_disk_check_interval = 0.2"
        rrd, base = start_rrd(
            daemon, tmpdir_short, f"{endpoint}, {late_endpoint}", rrd_dir, free_tcp_port(), extra
        )

        def disk() -> dict:
            return json.loads(get(base + "/stats/")[1])["disk"]

        def last_flushed(probe: str = "node-1") -> int:
            flush(rrd_dir, cached.address)
            return rrd_last(rrd_dir, probe)

        wait_for(lambda: last_flushed() and last_flushed("node-2"), 20, "both files")
        assert disk()["state"] == "ok"

        small_disk.fill()
        filled_at = int(time.time())
        wait_for(lambda: disk()["state"] == "full", 20, "/stats/ to say the disk is full")
        [line] = error_lines(rrd)
        assert f"rrd_dir {rrd_dir} is full" in line
        assert "new probes cannot get an RRD file" in line
        assert disk()["free_bytes"] < 4096

        publish_late = wait_until_late_probe_refused(late, rrd)
        # rrdcached still writes the existing files: they are updated in place.
        wait_for(lambda: last_flushed() > filled_at + 1, 20, "node-1 still recorded")
        assert get(base + "/probe/node-1/")[0] == 200
        assert get(base + "/probe/late-1/")[0] == 404
        assert assert_rrd_files_sound(rrd_dir) == 2

        small_disk.free()
        rrd.wait_output(f"rrd_dir {rrd_dir} is writable again (was full", 20)
        assert disk()["state"] == "ok"
        wait_for(
            lambda: publish_late() or get(base + "/probe/late-1/")[0] == 200,
            20,
            "late-1 recorded once there is space",
        )
        flush(rrd_dir, cached.address)
        assert assert_rrd_files_sound(rrd_dir) == 3
        assert rrd.process.poll() is None
        no_traceback(rrd)
    finally:
        late.close()
        cached.stop()
