"""Ffprobe driver against real ffmpeg streams served on 127.0.0.1.

Sources: ffmpeg encoding a test pattern to MPEG-TS over UDP (connectionless,
so it can be probed again and again, stopped and restarted), ffmpeg as a
one-client RTMP server, and two hung servers: a TCP socket that accepts and
never answers, and an HTTP server that trickles a byte now and then.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kwapi.config import ConfigError, Section
from kwapi.drivers.config import parse_wattmeters
from kwapi.drivers.ffprobe import (
    FfprobeDriver,
    ffprobe_command,
    parse_ffprobe_output,
    read_timeout,
    redact,
    with_read_timeout,
)
from tests.harness.daemons import expect_config_error
from tests.harness.drivers import RunningDriver
from tests.harness.processes import free_tcp_port, free_udp_port, stop_process, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg is installed by `make test` (Debian package ffmpeg)",
)


def encoder_args(size: str, rate: int, kbps: int, audio: bool = False) -> list[str]:
    """ffmpeg arguments for a real-time test pattern in constant-bitrate H.264."""
    args = ["-re", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    if audio:
        args += ["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    args += [
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(rate), "-b:v", f"{kbps}k", "-minrate", f"{kbps}k", "-maxrate", f"{kbps}k",
        "-bufsize", f"{kbps}k", "-x264-params", "nal-hrd=cbr",
    ]  # fmt: skip
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    return args


class Source:
    """An ffmpeg process serving a stream; stopped (and reaped) on demand."""

    def __init__(self, args: list[str]) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the process life
        self.process = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


@pytest.fixture
def source():
    """Factory of ffmpeg sources, all stopped at teardown."""
    started: list[Source] = []

    def start(*args: str) -> Source:
        process = Source(list(args))
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def udp_source(start, port: int, size: str, rate: int, kbps: int) -> Source:
    return start(*encoder_args(size, rate, kbps), "-f", "mpegts", f"udp://127.0.0.1:{port}")


def ffprobe_children() -> dict[int, str]:
    """ffprobe processes (zombies included) whose parent is this test process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == "ffprobe" and ppid == os.getpid():
            found[int(entry.name)] = cmdline
    return found


def ups(running: RunningDriver, probe_id: str, after: float = 0.0, up: int | None = None):
    return [
        m
        for m in running.measurements
        if m.probe_id == probe_id and m.timestamp > after and (up is None or m.meters["up"] == up)
    ]


def test_measures_bitrate_fps_and_size_of_each_stream_in_probe_order(source):
    port_a, port_b = free_udp_port(), free_udp_port()
    udp_source(source, port_a, "320x240", 25, 300)
    udp_source(source, port_b, "160x120", 10, 100)
    with RunningDriver(
        FfprobeDriver,
        ["cam-a", None, "cam-b"],
        urls=[f"udp://127.0.0.1:{port_a}", "udp://127.0.0.1:9", f"udp://127.0.0.1:{port_b}"],
        interval=1,
        window=2,
        timeout=8,
    ) as running:
        wait_for(
            lambda: len(ups(running, "cam-a", up=1)) >= 2 and len(ups(running, "cam-b", up=1)) >= 2,
            30,
            "two measurements of each stream",
        )
    # The second window: the first may hold the encoder's rate-control ramp-up.
    a = ups(running, "cam-a", up=1)[1].meters
    b = ups(running, "cam-b", up=1)[1].meters
    assert {m.probe_id for m in running.measurements} <= {"cam-a", "cam-b"}
    assert set(a) == set(b) == {"up", "bitrate", "fps", "width", "height"}
    assert (a["width"], a["height"]) == (320, 240)
    assert (b["width"], b["height"]) == (160, 120)
    assert a["fps"] == pytest.approx(25, rel=0.02)
    assert b["fps"] == pytest.approx(10, rel=0.02)
    assert a["bitrate"] == pytest.approx(300_000, rel=0.2)
    assert b["bitrate"] == pytest.approx(100_000, rel=0.2)


#: Allowance for one ffprobe run beyond its reads: start, stream analysis and
#: exit (a silent UDP port takes the read timeout plus about 0.7 s here).
FFPROBE_OVERHEAD = 1.0


def test_up_turns_0_at_the_next_probe_after_the_source_stops_and_1_when_it_restarts(source, caplog):
    caplog.set_level(logging.WARNING, logger="kwapi")
    port = free_udp_port()
    interval, window, timeout = 1.0, 1.0, 8.0
    stall = read_timeout(window, timeout)
    assert stall == 1.0
    # The probe in flight at the stop ends one read timeout after the last
    # packet; the next one starts an interval after it began (or at once, when
    # it ran longer), finds nothing and ends one read timeout later.  Far less
    # than the kill at `timeout`, which is what reported a UDP stream down before.
    probe = stall + FFPROBE_OVERHEAD
    down_bound = max(interval, probe) + probe
    # The first probe that starts once packets flow again (the source needs
    # about a second to start and send a key frame) reads one window.
    up_bound = max(interval, probe) + window + FFPROBE_OVERHEAD + 1.0
    assert down_bound < timeout and up_bound < timeout
    first = udp_source(source, port, "160x120", 10, 100)
    with RunningDriver(
        FfprobeDriver,
        ["live"],
        urls=[f"udp://127.0.0.1:{port}"],
        interval=interval,
        window=window,
        timeout=timeout,
    ) as running:
        wait_for(lambda: ups(running, "live", up=1), 15, "stream up")
        first.stop()
        stopped = time.time()
        down = wait_for(lambda: ups(running, "live", after=stopped, up=0), 15, "stream down")[0]
        assert down.meters == {"up": 0}
        assert down.timestamp - stopped <= down_bound
        # Only the probe in flight at the stop may still report what it read.
        assert len(ups(running, "live", after=stopped)) <= 2
        assert "is down: udp://127.0.0.1:" in caplog.text
        assert "ffprobe killed" not in caplog.text

        udp_source(source, port, "160x120", 10, 100)
        restarted = time.time()
        back = wait_for(lambda: ups(running, "live", after=restarted, up=1), 15, "back up")[0]
        assert back.timestamp - restarted <= up_bound
        assert (back.meters["width"], back.meters["height"]) == (160, 120)


def test_rtmp_stream_with_audio_counts_every_packet(source):
    # ffmpeg's RTMP listen mode serves one client and then exits, so only the
    # first probe that connects sees the stream; earlier ones find no server.
    port = free_tcp_port()
    source(
        *encoder_args("320x240", 25, 300, audio=True),
        "-f", "flv", "-listen", "1", f"rtmp://127.0.0.1:{port}/live/secret-key",
    )  # fmt: skip
    with RunningDriver(
        FfprobeDriver,
        ["rtmp-live"],
        urls=[f"rtmp://127.0.0.1:{port}/live/secret-key"],
        interval=0.5,
        window=2,
        timeout=8,
    ) as running:
        up = wait_for(lambda: ups(running, "rtmp-live", up=1), 20, "RTMP stream up")[0].meters
    assert (up["width"], up["height"]) == (320, 240)
    assert up["fps"] == pytest.approx(25, rel=0.02)
    assert up["bitrate"] == pytest.approx(300_000 + 64_000, rel=0.2)


class TrickleHandler(socketserver.BaseRequestHandler):
    """Answers like an MPEG-TS server, then sends one byte every 0.2 s, forever."""

    def handle(self) -> None:
        self.request.settimeout(5)
        try:
            self.request.recv(4096)
            self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n")
            while not self.server.halt.wait(0.2):
                self.request.sendall(b"\x47")
        except OSError:
            pass


class TrickleServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), TrickleHandler)
        self.halt = threading.Event()


def test_hung_servers_give_up_or_are_killed_without_delaying_other_streams(source):
    # The silent server trips ffprobe's own read timeout; the trickling one
    # never lets a read stall, so only the kill at `timeout` stops it.
    timeout = 4.0
    stall = read_timeout(1, timeout)
    ends = {"silent": (stall, stall + FFPROBE_OVERHEAD), "trickle": (timeout, timeout + 2)}
    silent = socket.socket()  # accepts (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    trickle = TrickleServer()
    server = threading.Thread(target=trickle.serve_forever, kwargs={"poll_interval": 0.1})
    server.start()
    port = free_udp_port()
    udp_source(source, port, "160x120", 10, 100)
    hung = {
        "silent": f"http://127.0.0.1:{silent.getsockname()[1]}/live.ts",
        "trickle": f"http://127.0.0.1:{trickle.server_address[1]}/live.ts",
    }
    most_in_flight = {name: 0 for name in hung}

    def both_hung_reported_twice() -> bool:
        children = ffprobe_children().values()
        for name, url in hung.items():
            count = sum(url in cmdline for cmdline in children)
            most_in_flight[name] = max(most_in_flight[name], count)
        reported = all(len(ups(running, name)) >= 2 for name in hung)
        return reported and len(ups(running, "healthy")) >= 3

    try:
        with RunningDriver(
            FfprobeDriver,
            ["silent", "healthy", "trickle"],
            urls=[hung["silent"], f"udp://127.0.0.1:{port}", hung["trickle"]],
            interval=1,
            window=1,
            timeout=timeout,
        ) as running:
            started = time.time()
            wait_for(both_hung_reported_twice, 30, "two reports of each hung stream")
            for name, (shortest, longest) in ends.items():
                first, second = ups(running, name)[:2]
                assert first.meters == second.meters == {"up": 0}
                assert shortest - 0.5 <= first.timestamp - started <= longest
                assert shortest - 0.5 <= second.timestamp - first.timestamp <= longest
            healthy = ups(running, "healthy")
            assert len(healthy) >= 3
            assert all(m.meters["up"] == 1 for m in healthy)
            gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(healthy)]
            assert max(gaps) < timeout
        # One ffprobe per stream at a time, and none left once the driver stopped.
        assert most_in_flight == {"silent": 1, "trickle": 1}
        wait_for(lambda: not ffprobe_children(), 5, "no ffprobe process left")
    finally:
        trickle.halt.set()
        trickle.shutdown()
        trickle.server_close()
        server.join(5)
        silent.close()


def test_stopping_the_driver_kills_the_probe_in_flight():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        running = RunningDriver(
            FfprobeDriver,
            ["stuck"],
            urls=[f"http://127.0.0.1:{silent.getsockname()[1]}/s"],
            timeout=60,
        )
        with running:
            wait_for(ffprobe_children, 10, "ffprobe started")
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 3
        wait_for(lambda: not ffprobe_children(), 5, "no ffprobe process left")
        assert running.measurements == []
    finally:
        silent.close()


def test_probes_a_file_and_retries_while_ffprobe_cannot_be_run(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kwapi")
    video = tmp_path / "clip.ts"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc=size=64x48:rate=12", "-t", "3", "-c:v", "libx264", str(video)],
        check=True, timeout=60,
    )  # fmt: skip
    link = tmp_path / "ffprobe"
    link.symlink_to(shutil.which("ffprobe"))
    with RunningDriver(
        FfprobeDriver,
        ["clip"],
        urls=[str(video)],
        ffprobe=str(link),
        interval=0.2,
        window=1,
        timeout=5,
        max_backoff=0.5,
    ) as running:
        first = running.wait_more(1)[0]
        assert first.meters["up"] == 1
        assert (first.meters["width"], first.meters["height"], first.meters["fps"]) == (64, 48, 12)
        link.unlink()  # ffprobe vanishes: the wattmeter fails, tears down, retries
        wait_for(lambda: "retrying every" in caplog.text, 10, "the wattmeter to fail and retry")
        before = len(running.measurements)
        link.symlink_to(shutil.which("ffprobe"))
        back = running.wait_more(1)[0]
        assert back.meters["up"] == 1
        assert len(running.measurements) > before
        assert running.driver.is_alive()


def section(parameters: str, probes: str = "['s1', 's2']") -> Section:
    values = {"driver": "Ffprobe", "probes": probes, "parameters": parameters}
    return Section("drivers.conf", "Streams", values)


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ("{'urls': ['udp://127.0.0.1:1']}", "2 probe(s) but 1 URL(s) in parameters['urls']"),
        ("{}", "parameters['urls']: Field required"),
        ("{'urls': ['a', ' ']}", "a URL is empty"),
        ("{'urls': ['a', 'b'], 'window': 5, 'timeout': 5}", "must be longer than window"),
        ("{'urls': ['a', 'b'], 'window': 0}", "parameters['window']"),
        ("{'urls': ['a', 'b'], 'speed': 2}", "parameters['speed']: Extra inputs"),
        (
            "{'urls': ['a', 'b'], 'ffprobe': '/nonexistent/ffprobe'}",
            "ffprobe command '/nonexistent/ffprobe' not found: install ffmpeg",
        ),
    ],
)
def test_bad_sections_are_refused_with_one_clear_message(parameters, expected):
    with pytest.raises(ConfigError) as caught:
        parse_wattmeters([section(parameters)])
    assert expected in str(caught.value)
    assert str(caught.value).startswith("drivers.conf: [Streams]")


def test_daemon_without_ffprobe_exits_2_with_one_line(tmpdir_short):
    parameters = "{'urls': ['udp://127.0.0.1:9'], 'ffprobe': 'no-such-ffprobe'}"
    line = expect_config_error(tmpdir_short, "Streams", "Ffprobe", "['s1']", parameters)
    assert (
        "[Streams] parameters: driver Ffprobe: ffprobe command 'no-such-ffprobe' not found" in line
    )


def test_daemon_publishes_signed_stream_measurements(kwapi_drivers, source):
    port = free_udp_port()
    udp_source(source, port, "160x120", 10, 100)
    process, client = kwapi_drivers(
        f"""
        [Streams]
        driver = Ffprobe
        probes = ['demo-stream']
        parameters = {{'urls': ['udp://127.0.0.1:{port}'], 'interval': 1, 'window': 1}}
        """
    )
    deadline = time.monotonic() + 20
    while True:
        measurement = client.receive(max(0.1, deadline - time.monotonic()))
        if measurement.meters["up"] == 1:
            break
    assert measurement.probe_id == "demo-stream"
    assert (measurement.meters["width"], measurement.meters["height"]) == (160, 120)
    assert process.stop(timeout=10) == 0
    assert "stream demo-stream (udp://127.0.0.1:" in process.output()
    assert "Traceback" not in process.output()


def test_parser_and_redaction_edge_cases():
    assert parse_ffprobe_output("") is None
    assert parse_ffprobe_output('{"packets": [], "streams": []}') is None
    # Audio only: no fps, no size; the window is timed by the audio packets.
    audio = parse_ffprobe_output(
        textwrap.dedent("""
        {"streams": [{"index": 0, "codec_type": "audio"}],
         "packets": [{"stream_index": 0, "pts_time": "0.0", "size": "1000"},
                     {"stream_index": 0, "pts_time": "0.5", "size": "1000"}]}
        """)
    )
    assert audio.meters() == {"up": 1, "bitrate": 16000.0}
    assert redact("rtmp://user:pw@host:1935/live/key?token=x") == "rtmp://host:1935/live/key"
    assert redact("/srv/video.ts?x") == "/srv/video.ts"


def test_read_timeout_and_the_udp_timeout_option():
    assert read_timeout(2, 10) == 2  # the window
    assert read_timeout(2, 4) == 1  # half of what the timeout leaves beyond the window
    assert read_timeout(5, 6) == 1  # never under 1 s
    command = ffprobe_command("ffprobe", "rtmp://h/live/k?t=1", 2, 10)
    assert command[command.index("-rw_timeout") + 1] == "2000000"
    assert command[-1] == "rtmp://h/live/k?t=1"  # rw_timeout applies: URL untouched
    assert (
        ffprobe_command("ffprobe", "udp://1.2.3.4:5", 1, 8)[-1] == "udp://1.2.3.4:5?timeout=1000000"
    )
    assert with_read_timeout("UDP://@239.0.0.1:5?fifo_size=9", 1.5) == (
        "UDP://@239.0.0.1:5?fifo_size=9&timeout=1500000"
    )
    assert with_read_timeout("udp://h:5?", 1) == "udp://h:5?timeout=1000000"
    assert with_read_timeout("udp://h:5?timeout=7&x=1", 1) == "udp://h:5?timeout=7&x=1"
    assert with_read_timeout("/srv/udp.ts", 1) == "/srv/udp.ts"
