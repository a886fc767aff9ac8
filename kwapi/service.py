"""Start-up and shutdown shared by every kwapi daemon.

:func:`prepare` parses the command line and configuration files and sets up
logging; :func:`run` wraps a daemon's main so that a configuration problem
ends it with one line on stderr and exit status 2, never a traceback;
:func:`stop_event_on_signals` turns SIGTERM and SIGINT into a clean stop
(telling systemd ``STOPPING=1``) and SIGHUP into a reopening of the log files
(logrotate's ``postrotate``), which a :class:`Heartbeat` does from the
daemon's main loop, where it also feeds systemd's watchdog.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from oslo_config import cfg
from oslo_log import log as oslo_log

from kwapi import __version__, systemd
from kwapi.config import ConfigError, OptGroups, check_options, config_files, locate

LOG = logging.getLogger(__name__)

# Files read by the last prepare(), to name the file of errors found later.
_files: list[str] = []

# Set by SIGHUP; the next Heartbeat turn of the main loop reopens the log files.
_reopen_logs = threading.Event()

#: The longest a main loop waits between two :meth:`Heartbeat.turn` calls, in
#: seconds: how late a SIGHUP's reopening of the log files may come.
LONGEST_TURN = 1.0

#: Options of every daemon: kwapi.opts puts them first in each daemon's list.
common_opts = [
    cfg.BoolOpt(
        "verbose",
        default=False,
        help="Log at DEBUG level: retries, skipped readings and other details "
        "(kept from Kwapi; same as 'debug').",
    ),
]


def prepare(
    prog: str,
    argv: Sequence[str] | None,
    groups: Sequence[tuple[str | None, Sequence[cfg.Opt]]],
    summary: str = "",
) -> cfg.ConfigOpts:
    """Register *groups*, parse *argv* and the files, check every option, set up logging.

    *groups* is the daemon's list from :mod:`kwapi.opts` (group "DEFAULT" or
    None for [DEFAULT]); it holds :data:`common_opts`, and oslo.log's options
    are added here. Without ``--config-file``, /etc/kwapi/kwapi.conf and
    /etc/kwapi/<name>.conf are read when they exist, where <name> is *prog*
    without ``kwapi-``. Raises :class:`ConfigError` on any configuration problem.
    *summary*, one line on what the daemon does, heads ``--help`` (see
    :func:`help_header`).
    """
    conf = cfg.ConfigOpts()
    oslo_log.register_options(conf)
    all_groups: OptGroups = [
        (None if group in (None, "DEFAULT") else group, list(opts)) for group, opts in groups
    ]
    for group, opts in all_groups:
        conf.register_opts(opts, group=group)
    short_name = prog.removeprefix("kwapi-")
    defaults = [
        path
        for path in ("/etc/kwapi/kwapi.conf", f"/etc/kwapi/{short_name}.conf")
        if os.path.exists(path)
    ]
    args = list(sys.argv[1:] if argv is None else argv)
    if summary and asks_for_help(args):
        print(help_header(prog, summary), end="\n\n", flush=True)
    try:
        conf(
            args,
            project="kwapi",
            prog=prog,
            version=__version__,
            default_config_files=defaults,
        )
    except cfg.ConfigFilesNotFoundError as exc:
        raise ConfigError(
            f"cannot read configuration file(s): {', '.join(exc.config_files)}"
        ) from None
    except cfg.ConfigDirNotFoundError as exc:
        raise ConfigError(f"configuration directory not found: {exc.config_dir}") from None
    except cfg.ConfigFileParseError as exc:
        raise ConfigError(f"cannot parse: {exc.msg}", file=exc.config_file) from None
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from None
    _files[:] = config_files(conf)
    check_options(conf, all_groups)
    if conf.verbose:
        conf.set_override("debug", True)
    oslo_log.setup(conf, "kwapi", version=__version__)
    return conf


def asks_for_help(args: Sequence[str]) -> bool:
    """Whether the command line *args* asks for ``--help`` (``-h``) before any ``--``."""
    options = args[: args.index("--")] if "--" in args else args
    return any(arg in ("-h", "--help") for arg in options)


def help_header(prog: str, summary: str) -> str:
    """The lines printed before the usage of *prog*'s ``--help``.

    The first line says what the daemon does (*summary*); the next ones name
    its configuration files and the sample file that lists every option.
    """
    short_name = prog.removeprefix("kwapi-")
    return (
        f"{prog}: {summary}\n"
        f"Sample configuration, every option with its default and help: "
        f"etc/kwapi/{short_name}.conf.sample\n"
        f"Read by default: /etc/kwapi/kwapi.conf and /etc/kwapi/{short_name}.conf "
        f"(when they exist), or the --config-file given."
    )


def run(prog: str, main: Callable[[], int | None]) -> None:
    """Run a daemon's *main*; a :class:`ConfigError` exits 2 with one line."""
    try:
        status = main()
    except ConfigError as exc:
        if exc.file is None and exc.section and exc.key:
            exc.file = locate(_files, exc.section, exc.key)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)


def wait_for_stop(
    stop: threading.Event, poll: float = 0.5, heartbeat: Heartbeat | None = None
) -> None:
    """Block the main thread until *stop* is set; *heartbeat* takes a turn at each wake-up.

    Waits in short slices: a signal delivered to another thread (ZeroMQ's I/O
    threads, say) only runs its Python handler once the main thread returns
    to the interpreter, which an endless wait would never do.
    """
    wait = poll if heartbeat is None else heartbeat.longest_wait(poll)
    while not stop.wait(wait):
        if heartbeat is not None:
            heartbeat.turn()


def stop_event_on_signals() -> threading.Event:
    """Return an event set by SIGTERM or SIGINT (call from the main thread).

    The first of them also tells systemd ``STOPPING=1``. SIGHUP stops
    nothing: it asks the next :meth:`Heartbeat.turn` to reopen the log files.
    """
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        LOG.info("received %s, stopping", signal.Signals(signum).name)
        if not stop.is_set():
            systemd.stopping()
        stop.set()

    def reopen_logs(_signum: int, _frame: object) -> None:
        # Nothing that takes a lock here: the main loop does the reopening.
        _reopen_logs.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGHUP, reopen_logs)
    return stop


def file_handlers() -> list[logging.FileHandler]:
    """The file handlers of every logger (oslo.log's ``log_file`` handler among them)."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            loggers.append(logger)
    handlers = [h for lg in loggers for h in lg.handlers if isinstance(h, logging.FileHandler)]
    return list({id(handler): handler for handler in handlers}.values())


def reopen_log_files() -> list[str]:
    """Close and reopen every log file, as after logrotate moved them; return their paths.

    A :class:`logging.handlers.WatchedFileHandler` (oslo.log's, by default)
    reopens when its file was moved or removed; any other file handler
    reopens its file in any case. A file that cannot be opened keeps its
    handler on the old file, and says why on stderr.
    """
    reopened = []
    for handler in file_handlers():
        try:
            _reopen(handler)
        except OSError as exc:
            print(f"cannot reopen log file {handler.baseFilename}: {exc}", file=sys.stderr)
            continue
        reopened.append(handler.baseFilename)
    return reopened


def _reopen(handler: logging.FileHandler) -> None:
    """Point *handler* at its file's path anew."""
    if isinstance(handler, logging.handlers.WatchedFileHandler):
        handler.reopenIfNeeded()
        return
    if handler.stream is None:  # opened on first use (delay=True): nothing to do
        return
    # Appending, whatever the handler's mode: a reopened log is never truncated.
    stream = open(handler.baseFilename, "a", encoding=handler.encoding, errors=handler.errors)  # noqa: SIM115
    old = handler.setStream(stream)
    if old is not None:
        old.close()


class Heartbeat:
    """What a daemon's main loop does on each turn, at most :meth:`longest_wait` apart.

    After SIGHUP (see :func:`stop_event_on_signals`) it reopens the log files;
    when systemd watches the process (``WatchdogSec=``) it feeds the watchdog,
    provided *healthy* says the daemon's work goes on (see
    :class:`kwapi.systemd.Watchdog`). A *watchdog* given (tests) replaces the
    one systemd's environment describes, *healthy* then unused.
    """

    def __init__(
        self,
        healthy: Callable[[], bool] = lambda: True,
        watchdog: systemd.Watchdog | None = None,
    ) -> None:
        self.watchdog = watchdog or systemd.Watchdog.from_environment(healthy)

    def longest_wait(self, wanted: float) -> float:
        """How long the main loop may wait before its next turn, at most *wanted* seconds."""
        period = self.watchdog.period
        return min(wanted, LONGEST_TURN, period if period is not None else wanted)

    def turn(self) -> None:
        """Reopen the log files if SIGHUP asked for it, then feed the watchdog if due."""
        if _reopen_logs.is_set():
            _reopen_logs.clear()
            paths = reopen_log_files()
            LOG.info("received SIGHUP: log file(s) reopened: %s", ", ".join(paths) or "none")
        self.watchdog.feed()
