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


def list_receiver_opts():
    """Options every plugin shares: where and how to receive measurements."""
    return [("DEFAULT", service.common_opts + bus_options.receiver_opts)]
