"""Each daemon's options, listed once: one function per daemon.

The daemon registers what its function returns at start (``serve()`` hands
it to :func:`kwapi.service.prepare`), and oslo-config-generator lists the
same options in the daemon's sample file (setup.cfg's ``oslo.config.opts``
entry points name these functions; ``make genconfig`` runs it). The
libraries' own options (oslo.log's, keystonemiddleware's) come from the
libraries, named in ``etc/kwapi/<daemon>-config-generator.conf``.
tests/test_options_registry.py checks that the three agree.

The plugin daemons' option modules are imported when asked for, so that
kwapi-drivers and kwapi-forwarder load no plugin code.
"""

from __future__ import annotations

from oslo_config import cfg

from kwapi import service
from kwapi.bus import options as bus_options
from kwapi.drivers import options as driver_options

#: Options of a daemon, by group ("DEFAULT" for the [DEFAULT] section).
OptList = list[tuple[str, list[cfg.Opt]]]


def _default_group(*lists: list[cfg.Opt]) -> OptList:
    """One [DEFAULT] group: the options of every daemon, then those of *lists*, in order."""
    return [("DEFAULT", [*service.common_opts, *(opt for opts in lists for opt in opts)])]


def list_drivers_opts() -> OptList:
    """Options of kwapi-drivers: the bus publisher and the driver manager."""
    return _default_group(bus_options.publisher_opts, driver_options.manager_opts)


def list_forwarder_opts() -> OptList:
    """Options of kwapi-forwarder."""
    return _default_group(bus_options.forwarder_opts)


def list_api_opts() -> OptList:
    """Options of kwapi-api: receiver, collector, REST API, authentication, streams, price.

    ``[keystone_authtoken]`` is keystonemiddleware's, registered only with
    ``auth_strategy = keystone`` (:mod:`kwapi.plugins.keystone`).
    """
    from kwapi.plugins import auth, streams
    from kwapi.plugins.api import options as api_options

    return _default_group(
        bus_options.receiver_opts,
        api_options.api_opts,
        auth.auth_opts,
        streams.stream_opts,
        streams.price_opts,
    )


def list_rrd_opts() -> OptList:
    """Options of kwapi-rrd: receiver, storage, graphs, web server, streams."""
    from kwapi.plugins.rrd.options import rrd_opts
    from kwapi.plugins.streams import stream_opts

    return _default_group(bus_options.receiver_opts, rrd_opts, stream_opts)


def list_history_opts() -> OptList:
    """Options of kwapi-history: receiver, web server, store, batches, spool, queries, auth.

    ``[keystone_authtoken]`` is keystonemiddleware's, registered only with
    ``auth_strategy = keystone`` (:mod:`kwapi.plugins.keystone`).
    """
    from kwapi.plugins import auth
    from kwapi.plugins.history.options import history_opts
    from kwapi.plugins.history.query_options import query_opts

    return _default_group(bus_options.receiver_opts, history_opts, query_opts, auth.auth_opts)


def list_ceilometer_opts() -> OptList:
    """Options the kwapi pollsters add to ceilometer.conf."""
    from kwapi.ceilometer.options import list_opts

    return list_opts()
