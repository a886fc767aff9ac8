"""Drivers that run as tasks of one shared event loop instead of a thread each.

A machine room is a thousand BMCs: a thread each would be a thousand
threads, each blocked while its device is silent.  An :class:`AsyncDriver`
is a coroutine on the process' one :class:`EventLoopThread`: a silent device
costs a pending future, and a failing one never delays the others.  The
contract is a thread driver's: ``setup``, ``read`` and ``teardown`` (here
coroutines), the same pacing, backoff, publishing and one log line per
outage.  Driver code must not block the loop: I/O goes through asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from kwapi.backoff import Backoff
from kwapi.drivers.base import DEVICE_FAILURES, DriverBase, Pacer, Readings, Round


class EventLoopThread:
    """An asyncio event loop running in a daemon thread; :meth:`shared` is the process'."""

    _shared: ClassVar[EventLoopThread | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "drivers-event-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._ping: threading.Event | None = None
        self.thread.start()

    @classmethod
    def shared(cls) -> EventLoopThread:
        """The event loop every async driver of this process runs on, started on first use."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @classmethod
    def shared_if_started(cls) -> EventLoopThread | None:
        """The shared event loop if an async driver started it, else None (never starts it)."""
        with cls._lock:
            return cls._shared

    def responds(self) -> bool:
        """Whether the loop still runs callbacks: it ran the ping the previous call sent.

        Each call that finds the previous ping done (or none sent yet) sends a
        new one (a cheap ``call_soon_threadsafe``) and returns True; a ping
        still pending means the loop has been blocked or busy ever since, and
        returns False without piling up another. Called at a steady pace (the
        watchdog's), it is False once the loop is stuck for longer than that.
        """
        if not self.thread.is_alive() or self.loop.is_closed():
            return False
        if self._ping is not None and not self._ping.is_set():
            return False
        ping = threading.Event()
        try:
            self.loop.call_soon_threadsafe(ping.set)
        except RuntimeError:  # closed meanwhile
            return False
        self._ping = ping
        return True


class AsyncDriver(DriverBase):
    """One wattmeter as a task of the shared event loop: set up, read every interval, publish."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: concurrent.futures.Future[None] | None = None
        self._inner: asyncio.Task[None] | None = None

    # -- what subclasses implement -------------------------------------------

    async def setup(self) -> None:
        """Open the device; raise DeviceError if it cannot be reached."""

    async def read(self) -> Readings:
        """Return one reading per probe read, keyed by probe id."""
        raise NotImplementedError

    async def read_rounds(self) -> Sequence[Round]:
        """Return rounds of readings with their Unix times: :meth:`read`'s, stamped now."""
        readings = await self.read()
        return [(time.time(), readings)]

    async def teardown(self) -> None:
        """Release what setup opened; must not raise."""

    # -- what the driver manager calls ---------------------------------------

    def start(self) -> None:
        self._loop = EventLoopThread.shared().loop
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    def stop(self) -> None:
        """Stop now: a wait or a request in flight is cancelled, a reading taken is published."""
        super().stop()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel)

    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def join(self, timeout: float | None = None) -> None:
        if self._task is not None:
            concurrent.futures.wait([self._task], timeout)

    # -- the task -------------------------------------------------------------

    def _cancel(self) -> None:
        if self._inner is not None:
            self._inner.cancel()

    async def _run(self) -> None:
        self._inner = asyncio.current_task()
        try:
            await self._run_with_retries()
        except asyncio.CancelledError as exc:
            if not self.stop_event.is_set():  # cancelled by someone else: a crash
                self.failure = exc
                self.log.error("wattmeter %s: driver cancelled", self.wattmeter)
        except BaseException as exc:
            self.failure = exc
            self.log.error("wattmeter %s: driver crashed: %r", self.wattmeter, exc, exc_info=True)
        finally:
            await self._safe_teardown()
            self.final_flush()

    async def _run_with_retries(self) -> None:
        backoff = self.new_backoff()
        while not self.stop_event.is_set():
            try:
                self.set_up = False
                await self.setup()
                self.set_up = True
                await self._read_loop(backoff)
                return
            except DEVICE_FAILURES as exc:
                failure: BaseException = exc
            delay = backoff.next_delay()
            self.report_failure(failure, delay)
            await self._safe_teardown()
            self.flush()
            await self._sleep(delay)

    async def _read_loop(self, backoff: Backoff) -> None:
        pacer = Pacer(self.params.interval, self.wattmeter)
        while not self.stop_event.is_set():
            self.publish_rounds(await self.read_rounds())
            backoff.reset()
            await self._pause(pacer.delay())

    async def _pause(self, seconds: float) -> None:
        """Wait *seconds* unless stopped, publishing the buffered samples when due."""
        end = time.monotonic() + seconds
        while not self.stop_event.is_set():
            due = self.flush_due()
            if due is None or due > end:
                await self._sleep(max(0.0, end - time.monotonic()))
                return
            await self._sleep(max(0.0, due - time.monotonic()))
            self.flush(only_due=True)

    async def _sleep(self, seconds: float) -> None:
        """Wait *seconds* unless the driver was asked to stop (stop() cancels the wait)."""
        if not self.stop_event.is_set():
            await asyncio.sleep(seconds)

    async def _safe_teardown(self) -> None:
        try:
            await self.teardown()
        except Exception as exc:
            self.log.warning("wattmeter %s: teardown failed: %r", self.wattmeter, exc)
