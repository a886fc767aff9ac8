"""Start a daemon until its options are registered, and print them as JSON.

``python -m tests.registered_options OUT kwapi-api --config-file api.conf``
runs kwapi-api's own ``serve()`` with the arguments after its name and stops it as soon as
:func:`kwapi.service.prepare` returns, before it binds or starts anything;
with ``auth_strategy = keystone`` it then wraps an application in Keystone's
middleware, as ``serve()`` does next, which registers ``[keystone_authtoken]``.
It writes to the file OUT ``[[group, option], ...]`` (JSON): every option of
the daemon's configuration ([DEFAULT] as "DEFAULT"), less the few oslo.config registers
on every ConfigOpts (``config_file``...).

A subprocess, because :func:`~kwapi.service.prepare` sets up the process's
logging (on stdout, hence the file).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from oslo_config import cfg

#: The module of each daemon's ``serve()``.
DAEMONS = {
    "kwapi-drivers": "kwapi.cmd.drivers",
    "kwapi-forwarder": "kwapi.cmd.forwarder",
    "kwapi-api": "kwapi.cmd.api",
    "kwapi-rrd": "kwapi.cmd.rrd",
    "kwapi-history": "kwapi.cmd.history",
}


def option_names(conf: cfg.ConfigOpts) -> set[tuple[str, str]]:
    """(group, option) of every option registered on *conf*, [DEFAULT] as "DEFAULT"."""
    names = set()
    for key in conf:
        value = conf[key]
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            names.update((key, option) for option in value)
        else:
            names.add(("DEFAULT", key))
    return names


def oslo_config_own() -> set[tuple[str, str]]:
    """The options oslo.config registers on any ConfigOpts it parses (``config_file``...)."""
    conf = cfg.ConfigOpts()
    conf([], project="kwapi", default_config_files=[], default_config_dirs=[])
    return option_names(conf)


class _Prepared(Exception):
    """Raised by the patched prepare() to stop serve() right after it."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__("prepared")
        self.conf = conf


def registered(prog: str, argv: Sequence[str]) -> set[tuple[str, str]]:
    """The options *prog*'s ``serve(argv)`` registers before it starts working."""
    from kwapi import service

    real_prepare = service.prepare

    def prepare(*args, **kwargs) -> cfg.ConfigOpts:
        raise _Prepared(real_prepare(*args, **kwargs))

    service.prepare = prepare
    try:
        importlib.import_module(DAEMONS[prog]).serve(list(argv))
    except _Prepared as prepared:
        conf = prepared.conf
    else:
        raise AssertionError(f"{prog}: serve() returned without calling service.prepare")
    finally:
        service.prepare = real_prepare
    if prog in ("kwapi-api", "kwapi-history") and conf.auth_strategy == "keystone":
        from kwapi.plugins import auth

        auth.wrap(lambda environ, start_response: [], conf)
    return option_names(conf) - oslo_config_own()


def main(argv: Sequence[str]) -> None:
    """Write to file ``argv[0]`` the options daemon ``argv[1]`` registers with ``argv[2:]``."""
    names = registered(argv[1], argv[2:])
    Path(argv[0]).write_text(json.dumps(sorted(names)))


if __name__ == "__main__":
    main(sys.argv[1:])
