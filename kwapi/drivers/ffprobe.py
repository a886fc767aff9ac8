"""Ffprobe: is each live stream up, and what does it deliver?

One wattmeter section watches a set of streams: its probes map, in order, to
the URLs of parameter ``urls`` (anything the installed ffprobe reads: RTMP,
HLS, SRT, UDP or HTTP MPEG-TS, files).  Every ``interval`` each stream is
probed by its own worker thread, so a slow or hung stream never delays the
others.  A probe runs ffprobe for ``window`` seconds of packets and publishes

* ``up`` (1), ``bitrate`` (bits/s, from packet sizes over the window),
  ``fps`` (from the video packet timestamps), ``width`` and ``height``;
* or ``up`` = 0 alone when the stream cannot be read: a read stalled for
  :func:`read_timeout` seconds, or no answer within ``timeout``.

ffprobe runs from an argument list (never a shell) in its own process group.
It gives up by itself when a read stalls for :func:`read_timeout` seconds
(``-rw_timeout``; for UDP, which ignores it, the udp protocol's own
``timeout`` in the URL), so a stream that stops is reported down by the next
probe, well before ``timeout``; the SIGKILL of the group at ``timeout`` stays
as the backstop (a server that trickles bytes); every process is reaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic

from kwapi.drivers.base import DeviceError, Driver, DriverParameters, Readings, SectionError

# What ffprobe prints per packet and per stream: just enough to measure.
T = TypeVar("T", int, float)

SHOW_ENTRIES = "packet=stream_index,pts_time,dts_time,size:stream=index,codec_type,width,height"


class FfprobeParameters(DriverParameters):
    """Parameters of the Ffprobe driver."""

    interval: float = pydantic.Field(10.0, gt=0, description="Seconds between probes of a stream.")
    urls: tuple[str, ...] = pydantic.Field(
        ..., min_length=1, description="One stream URL (or file) per probe, in probe order."
    )
    timeout: float = pydantic.Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds after which a probe is killed and its stream reported down.",
    )
    window: float = pydantic.Field(
        2.0, gt=0, le=600, description="Seconds of packets to measure bitrate and fps over."
    )
    ffprobe: str = pydantic.Field(
        "ffprobe", min_length=1, description="ffprobe command: a name found in PATH, or a path."
    )

    @pydantic.field_validator("urls")
    @classmethod
    def _urls_are_plain(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.strip():
                raise ValueError("a URL is empty")
            if any(ord(char) < 32 for char in url):
                raise ValueError(f"URL {redact(url)!r} contains a control character")
        return urls

    @pydantic.model_validator(mode="after")
    def _timeout_covers_window(self) -> FfprobeParameters:
        if self.timeout <= self.window:
            raise ValueError(
                f"timeout ({self.timeout:g} s) must be longer than window ({self.window:g} s): "
                "a probe reads a whole window of packets"
            )
        return self


@dataclass(frozen=True)
class StreamStats:
    """What one probe measured; None where the window did not allow a measure."""

    bitrate: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None

    def meters(self) -> dict[str, float]:
        """The meters to publish for a stream that is up."""
        meters: dict[str, float] = {"up": 1}
        for name in ("bitrate", "fps", "width", "height"):
            value = getattr(self, name)
            if value is not None:
                meters[name] = round(value, 3) if isinstance(value, float) else value
        return meters

    def describe(self) -> str:
        """A short human summary, for logs."""
        parts = []
        if self.width and self.height:
            parts.append(f"{self.width}x{self.height}")
        if self.fps is not None:
            parts.append(f"{self.fps:.3g} fps")
        if self.bitrate is not None:
            parts.append(f"{self.bitrate / 1000:.0f} kb/s")
        return ", ".join(parts) or "no measure in the window"


def redact(url: str) -> str:
    """*url* without credentials or query string (stream keys often hide there)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url.split("?", 1)[0]
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def read_timeout(window: float, timeout: float) -> float:
    """Seconds a read may stall before ffprobe gives up on the stream by itself.

    max(1 s, min(window, (timeout - window) / 2)): at most a window, since a
    live stream that delivers nothing for a window cannot be measured over
    one; at most half of what ``timeout`` leaves beyond the window, so a
    probe that stalls once while connecting and once in its window still
    ends by itself (with ffprobe's own reason) before the kill at
    ``timeout``; at least 1 s, so that network and scheduling hiccups do not
    report a healthy stream down.
    """
    return max(1.0, min(window, (timeout - window) / 2))


def with_read_timeout(url: str, seconds: float) -> str:
    """*url* as given to ffprobe: a ``udp://`` URL gains the udp protocol's
    ``timeout`` (it ignores ``-rw_timeout``), unless its query sets one."""
    if urllib.parse.urlsplit(url).scheme.lower() != "udp":
        return url
    query = url.split("?", 1)[1] if "?" in url else None
    if query is not None:
        names = {name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
        if "timeout" in names:
            return url
    separator = "?" if query is None else "" if url.endswith(("?", "&")) else "&"
    return f"{url}{separator}timeout={int(seconds * 1_000_000)}"


def ffprobe_command(executable: str, url: str, window: float, timeout: float) -> list[str]:
    """The ffprobe argument list that measures *window* seconds of *url*."""
    window_us = str(int(window * 1_000_000))
    stall = read_timeout(window, timeout)
    return [
        executable,
        "-hide_banner",
        "-loglevel",
        "error",
        # Give up on a read that stalls for the read timeout: TCP, HTTP,
        # RTMP, SRT, files; UDP by its URL option (see with_read_timeout).
        "-rw_timeout",
        str(int(stall * 1_000_000)),
        # Stream analysis reads packets that count towards the window, so
        # analysing for longer than the window only wastes time.
        "-analyzeduration",
        window_us,
        "-read_intervals",
        f"%+{window:g}",
        "-show_entries",
        SHOW_ENTRIES,
        "-print_format",
        "json",
        "-i",
        with_read_timeout(url, stall),
    ]


def parse_ffprobe_output(text: str) -> StreamStats | None:
    """Measure a stream from ffprobe's JSON; None when it delivered no packet.

    The clock is the first video stream (or, without video, the stream with
    the most packets): over its *n* packet timestamps spanning *s* seconds,
    fps = (n - 1) / s and the window lasts s * n / (n - 1) seconds, one frame
    more than the span; bitrate is the size of every packet over that time.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    packets = [p for p in data.get("packets") or [] if isinstance(p, dict)]
    if not packets:
        return None
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    video = next((s for s in streams if s.get("codec_type") == "video"), None)

    total_bytes = 0
    timestamps: dict[object, list[float]] = {}
    for packet in packets:
        total_bytes += _number(packet.get("size"), int) or 0
        stamp = _number(packet.get("pts_time"), float)
        if stamp is None:
            stamp = _number(packet.get("dts_time"), float)
        if stamp is not None:
            timestamps.setdefault(packet.get("stream_index"), []).append(stamp)

    video_stamps = timestamps.get(video.get("index"), []) if video else []
    clock = video_stamps
    if len(clock) < 2:  # no video: time the window by the busiest stream
        clock = max(timestamps.values(), key=len, default=[])
    bitrate = fps = None
    span = max(clock) - min(clock) if len(clock) >= 2 else 0.0
    if span > 0:
        count = len(clock)
        bitrate = 8.0 * total_bytes * (count - 1) / (span * count)
        if clock is video_stamps:
            fps = (count - 1) / span
    width = _number(video.get("width"), int) if video else None
    height = _number(video.get("height"), int) if video else None
    return StreamStats(
        bitrate=bitrate,
        fps=fps,
        width=width if width and width > 0 else None,
        height=height if height and height > 0 else None,
    )


def _number(value: object, kind: Callable[[Any], T]) -> T | None:
    """*value* converted by *kind* (int or float); None if it is missing or not a number."""
    try:
        return kind(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class ProbeProcess:
    """One ffprobe run, killable from any thread, always reaped."""

    def __init__(self, command: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._killed = False
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as a whole
            close_fds=True,
        )

    def wait(self, timeout: float) -> tuple[int | None, str, str]:
        """Return (exit status, stdout, stderr); status None when killed at *timeout*."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.process.communicate()
            return None, _text(out), _text(err)
        with self._lock:
            killed = self._killed
        return (None if killed else self.process.returncode), _text(out), _text(err)

    def kill(self) -> None:
        """SIGKILL the process group if the process has not been reaped yet."""
        with self._lock:
            self._killed = True
            if self.process.returncode is not None:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def last_line(text: str) -> str:
    """The last non-empty line of *text*, trimmed for a log."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class StreamWorker(threading.Thread):
    """Probes one stream every interval and publishes what it finds."""

    def __init__(self, driver: FfprobeDriver, probe_id: str, url: str) -> None:
        super().__init__(name=f"ffprobe:{probe_id}", daemon=True)
        self.driver = driver
        self.probe_id = probe_id
        self.url = url
        self.halt = threading.Event()
        self.failure: BaseException | None = None
        self._current: ProbeProcess | None = None
        self._lock = threading.Lock()
        self._was_up: bool | None = None

    def run(self) -> None:
        params = self.driver.params
        try:
            next_start = time.monotonic()
            while not self.halt.is_set():
                stats, reason = self.probe_once()
                if self.halt.is_set():
                    break
                meters = stats.meters() if stats else {"up": 0}
                self.driver.publish(self.probe_id, meters, time.time())
                self._log_state(stats, reason)
                next_start += params.interval
                now = time.monotonic()
                if next_start < now:  # the probe outlasted the interval
                    next_start = now
                self.halt.wait(next_start - now)
        except BaseException as exc:
            self.failure = exc

    def probe_once(self) -> tuple[StreamStats | None, str]:
        """Run ffprobe once; return the stats (None when down) and why it is down."""
        params = self.driver.params
        command = ffprobe_command(params.ffprobe, self.url, params.window, params.timeout)
        with self._lock:
            if self.halt.is_set():
                return None, "stopping"
            try:
                process = self._current = ProbeProcess(command)
            except OSError as exc:
                raise DeviceError(f"cannot run {params.ffprobe}: {exc}") from exc
        try:
            status, out, err = process.wait(params.timeout)
        finally:
            with self._lock:
                self._current = None
        if status is None:
            return None, f"no answer within {params.timeout:g} s; ffprobe killed"
        stats = parse_ffprobe_output(out)
        if stats is None:
            reason = last_line(err) or f"ffprobe exited with status {status} and no packet"
            given = with_read_timeout(self.url, read_timeout(params.window, params.timeout))
            return None, reason.replace(given, self.url).replace(self.url, redact(self.url))
        return stats, ""

    def cancel(self) -> None:
        """Stop the loop and kill the ffprobe in flight, if any."""
        with self._lock:
            self.halt.set()
            if self._current is not None:
                self._current.kill()

    def _log_state(self, stats: StreamStats | None, reason: str) -> None:
        up = stats is not None
        if up == self._was_up:
            return
        self._was_up = up
        log = self.driver.log
        where = f"stream {self.probe_id} ({redact(self.url)})"
        if stats is not None:
            log.info("%s is up: %s", where, stats.describe())
        else:
            log.warning("%s is down: %s", where, reason)


class FfprobeDriver(Driver):
    """Live streams as probes: one worker thread per stream runs ffprobe.

    The workers publish their own measurements as each probe ends; the base
    loop's :meth:`read` only checks that they are alive and turns a worker's
    failure into this thread's (DeviceError: torn down and set up again).
    """

    Parameters = FfprobeParameters
    params: FfprobeParameters

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._workers: list[StreamWorker] = []
        self._publish_lock = threading.Lock()

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        if not isinstance(parameters, FfprobeParameters):
            raise TypeError(f"expected FfprobeParameters, got {type(parameters).__name__}")
        if len(parameters.urls) != len(probe_ids):
            raise SectionError(
                "probes",
                f"{len(probe_ids)} probe(s) but {len(parameters.urls)} URL(s) in "
                "parameters['urls']: give one URL per probe, in the same order",
            )
        if shutil.which(parameters.ffprobe) is None:
            raise ValueError(
                f"ffprobe command {parameters.ffprobe!r} not found: install ffmpeg "
                "(Debian: apt-get install ffmpeg) or set parameters['ffprobe'] to its path"
            )

    def setup(self) -> None:
        if shutil.which(self.params.ffprobe) is None:
            raise DeviceError(f"ffprobe command {self.params.ffprobe!r} not found")
        self._workers = [
            StreamWorker(self, probe_id, url)
            for probe_id, url in zip(self.probe_ids, self.params.urls, strict=True)
            if probe_id is not None
        ]
        for worker in self._workers:
            worker.start()

    def read(self) -> Readings:
        for worker in self._workers:
            if worker.failure is not None:
                failure = worker.failure
                if isinstance(failure, OSError | TimeoutError):
                    raise DeviceError(f"stream {worker.probe_id}: {failure}") from failure
                raise failure
            if not worker.is_alive():
                raise DeviceError(f"stream {worker.probe_id}: worker stopped")
        return {}

    def publish(self, probe_id: str, meters: Mapping[str, float], timestamp: float) -> None:
        """Publish one stream's meters; called from the worker threads."""
        with self._publish_lock:
            super().publish(probe_id, meters, timestamp)

    def teardown(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        deadline = time.monotonic() + 5.0
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                self.log.warning("stream %s: worker did not stop in time", worker.probe_id)
