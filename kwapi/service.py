"""Start-up and shutdown shared by every kwapi daemon.

:func:`prepare` parses the command line and configuration files and sets up
logging; :func:`run` wraps a daemon's main so that a configuration problem
ends it with one line on stderr and exit status 2, never a traceback;
:func:`stop_event_on_signals` turns SIGTERM and SIGINT into a clean stop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from oslo_config import cfg
from oslo_log import log as oslo_log

from kwapi import __version__
from kwapi.config import ConfigError, OptGroups, check_options, config_files, locate

LOG = logging.getLogger(__name__)

# Files read by the last prepare(), to name the file of errors found later.
_files: list[str] = []

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
    groups: OptGroups,
) -> cfg.ConfigOpts:
    """Parse *argv* and the configuration files, check every option, set up logging.

    Without ``--config-file``, /etc/kwapi/kwapi.conf and /etc/kwapi/<name>.conf
    are read when they exist, where <name> is *prog* without ``kwapi-``.
    Raises :class:`ConfigError` on any configuration problem.
    """
    conf = cfg.ConfigOpts()
    oslo_log.register_options(conf)
    all_groups: OptGroups = [(None, common_opts), *groups]
    for group, opts in all_groups:
        conf.register_opts(opts, group=group)
    short_name = prog.removeprefix("kwapi-")
    defaults = [
        path
        for path in ("/etc/kwapi/kwapi.conf", f"/etc/kwapi/{short_name}.conf")
        if os.path.exists(path)
    ]
    try:
        conf(
            list(sys.argv[1:] if argv is None else argv),
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


def wait_for_stop(stop: threading.Event, poll: float = 0.5) -> None:
    """Block the main thread until *stop* is set.

    Waits in short slices: a signal delivered to another thread (ZeroMQ's I/O
    threads, say) only runs its Python handler once the main thread returns
    to the interpreter, which an endless wait would never do.
    """
    while not stop.wait(poll):
        pass


def stop_event_on_signals() -> threading.Event:
    """Return an event set by SIGTERM or SIGINT (call from the main thread)."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        LOG.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
