"""Option lists for oslo-config-generator, one function per daemon."""

from __future__ import annotations

from kwapi import service
from kwapi.bus import options as bus_options
from kwapi.cmd import forwarder
from kwapi.drivers import options as driver_options


def list_drivers_opts():
    """Options of kwapi-drivers."""
    return [
        (
            "DEFAULT",
            service.common_opts + bus_options.publisher_opts + driver_options.manager_opts,
        )
    ]


def list_forwarder_opts():
    """Options of kwapi-forwarder."""
    return [("DEFAULT", service.common_opts + forwarder.forwarder_opts)]


def list_api_opts():
    """Options of kwapi-api: receiver, collector, REST API and authentication."""
    from kwapi.plugins import streams
    from kwapi.plugins.api import auth
    from kwapi.plugins.api import options as api_options

    return [
        (
            "DEFAULT",
            service.common_opts
            + bus_options.receiver_opts
            + api_options.api_opts
            + auth.auth_opts
            + streams.stream_opts
            + streams.price_opts,
        )
    ]


def list_rrd_opts():
    """Options of kwapi-rrd."""
    from kwapi.plugins.rrd.options import rrd_opts
    from kwapi.plugins.streams import stream_opts

    return [("DEFAULT", service.common_opts + bus_options.receiver_opts + rrd_opts + stream_opts)]


def list_ceilometer_opts():
    """Options the kwapi pollsters add to ceilometer.conf."""
    from kwapi.ceilometer.options import list_opts

    return list_opts()
