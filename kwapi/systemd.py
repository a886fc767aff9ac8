"""Tell systemd a daemon's state through ``$NOTIFY_SOCKET``: ready, alive, stopping.

The documented ``sd_notify`` datagram protocol, without libsystemd: one
``AF_UNIX``/``SOCK_DGRAM`` datagram of newline-separated ``KEY=VALUE``
assignments sent to the socket named by ``$NOTIFY_SOCKET`` (in the abstract
namespace when the name starts with ``@``). Without ``$NOTIFY_SOCKET`` (a
daemon started by hand, by the demo or by a unit that is not
``Type=notify``) every function here does nothing.

:class:`Watchdog` feeds systemd's watchdog (``WatchdogSec=`` in the unit)
from a daemon's main loop: ``WATCHDOG=1`` at least every half of
``$WATCHDOG_USEC``, and only while the daemon says it is healthy, so that a
daemon whose work is stuck is restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

LOG = logging.getLogger(__name__)

READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"

#: How many feeds fit in the watchdog interval: feeding every quarter of it
#: keeps each gap under half of it even when the main loop wakes up late.
FEEDS_PER_INTERVAL = 4


def socket_address(environ: Mapping[str, str] | None = None) -> str | bytes | None:
    """The address of ``$NOTIFY_SOCKET`` (bytes for the abstract namespace), or None."""
    name = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None  # unset, empty, or a vsock address this module does not speak


def notify(*assignments: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send *assignments* (``"READY=1"``...) to systemd; True if they were sent.

    Without ``$NOTIFY_SOCKET`` nothing is sent. A socket that cannot be
    reached is logged at DEBUG level and never raises: systemd's bookkeeping
    must not stop a daemon.
    """
    address = socket_address(environ)
    if address is None or not assignments:
        return False
    message = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError as exc:
        LOG.debug("cannot notify systemd at %r: %s", address, exc)
        return False
    return True


def ready() -> bool:
    """Say the daemon is ready: its sockets are bound and it serves."""
    return notify(READY)


def stopping() -> bool:
    """Say the daemon has begun a clean stop."""
    return notify(STOPPING)


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """The watchdog interval in seconds, or None when there is no watchdog for us.

    As ``sd_watchdog_enabled``: ``$WATCHDOG_USEC`` is the interval in
    microseconds; ``$WATCHDOG_PID``, when set, must be this process' id
    (another process' watchdog is not ours to feed).
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watched = env.get("WATCHDOG_PID", "")
    if watched:
        with contextlib.suppress(ValueError):
            if int(watched) == (os.getpid() if pid is None else pid):
                return usec / 1e6
        return None
    return usec / 1e6


class Watchdog:
    """Feeds systemd's watchdog from a main loop while the daemon is healthy.

    The main loop calls :meth:`feed` on every turn and waits at most
    :attr:`period` seconds between turns; :meth:`feed` sends ``WATCHDOG=1``
    at most once per period, and only when *healthy* returns True.
    *interval* is the watchdog interval in seconds (None: no watchdog, and
    :meth:`feed` does nothing).
    """

    def __init__(
        self,
        interval: float | None,
        healthy: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.healthy = healthy
        self._clock = clock
        self._last_feed: float | None = None
        self._sick = False

    @classmethod
    def from_environment(cls, healthy: Callable[[], bool] = lambda: True) -> Watchdog:
        """The watchdog systemd set for this process (see :func:`watchdog_interval`)."""
        return cls(watchdog_interval(), healthy)

    @property
    def enabled(self) -> bool:
        """Whether systemd watches this process."""
        return self.interval is not None and socket_address() is not None

    @property
    def period(self) -> float | None:
        """Seconds between feeds, None without a watchdog."""
        if self.interval is None:
            return None
        return self.interval / FEEDS_PER_INTERVAL

    def due(self) -> bool:
        """Whether a period has passed since the last feed."""
        if self.period is None:
            return False
        return self._last_feed is None or self._clock() - self._last_feed >= self.period

    def feed(self) -> bool:
        """Send ``WATCHDOG=1`` if a feed is due and the daemon is healthy; True if sent."""
        if not self.due():
            return False
        if not self._check_health():
            return False
        self._last_feed = self._clock()
        return notify(WATCHDOG)

    def _check_health(self) -> bool:
        """Call *healthy*; log once when it turns false, and when it turns true again."""
        try:
            healthy = bool(self.healthy())
        except Exception:
            LOG.exception("watchdog health check failed")
            healthy = False
        if healthy == self._sick:  # a change
            self._sick = not healthy
            if healthy:
                LOG.warning("main loop healthy again: feeding systemd's watchdog again")
            else:
                LOG.error("main loop unhealthy: no longer feeding systemd's watchdog")
        return healthy
