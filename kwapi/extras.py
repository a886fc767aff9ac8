"""kwapi's optional extras, and the one line that says which one to install.

A daemon or driver that needs an optional dependency checks it before use;
when it is missing, the operator reads one line ending in
``pip install 'kwapi[rrd]'``, never a traceback. The drivers do it in their
``validate()``, kwapi-api when ``auth_strategy = keystone`` is configured
(:mod:`kwapi.plugins.keystone`), kwapi-rrd before anything else, in
:func:`kwapi_rrd`, its console script.
"""

from __future__ import annotations

import importlib
import sys

#: The modules each extra brings, as imported by kwapi (see setup.cfg's extras_require).
EXTRAS: dict[str, tuple[str, ...]] = {
    "rrd": ("rrdtool",),
    "keystone": ("keystonemiddleware", "keystoneauth1"),
    "ceilometer": ("ceilometer", "keystoneauth1"),
    "serial": ("serial",),
    "gpu": ("pynvml",),
    "ipmi": ("cryptography",),
    "snmp": ("pysnmp",),
}


def install_hint(extra: str) -> str:
    """The command that installs *extra*: ``pip install 'kwapi[rrd]'``."""
    return f"pip install 'kwapi[{extra}]'"


def missing(extra: str) -> str | None:
    """Why *extra* cannot be used here (``"no module named 'rrdtool'"``), or None if it can."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return str(exc) or f"{module} cannot be imported"
    return None


def require(prog: str, extra: str) -> None:
    """Exit with status 2 and one line naming *extra* if it is not installed."""
    reason = missing(extra)
    if reason is not None:
        print(
            f"{prog}: error: {prog} needs the {extra} extra ({reason}): {install_hint(extra)}",
            file=sys.stderr,
        )
        sys.exit(2)


def kwapi_rrd() -> None:
    """Console script of kwapi-rrd: check the ``rrd`` extra, then run the daemon.

    kwapi.cmd.rrd imports rrdtool as it loads, so the check comes before it.
    """
    require("kwapi-rrd", "rrd")
    from kwapi.cmd import rrd

    rrd.main()
