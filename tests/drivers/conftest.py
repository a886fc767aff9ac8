"""Fixtures shared by the driver tests: a real signed bus, kwapi-drivers as a daemon."""

from __future__ import annotations

import pytest

from kwapi.bus.publisher import Publisher
from kwapi.bus.signing import Signer
from tests.drivers.running import drivers_conf
from tests.helpers import SECRET, BusClient


@pytest.fixture
def bus(tmpdir_short):
    """A real signed publisher on ipc:// and a verifying subscriber."""
    endpoint = f"ipc://{tmpdir_short}/drivers"
    publisher = Publisher(endpoint, Signer(SECRET))
    client = BusClient(endpoint)
    yield publisher, client
    client.close()
    publisher.close()


@pytest.fixture
def kwapi_drivers(daemon, bus_client, tmpdir_short):
    """Start kwapi-drivers on wattmeter sections; return (daemon, bus client).

    The daemon publishes, signed, on ipc:// in a short temporary directory,
    and the client subscribes there before the daemon starts; *env* adds
    variables to the daemon's environment.
    """

    def start(sections: str, env: dict[str, str] | None = None):
        endpoint = f"ipc://{tmpdir_short}/drivers"
        config = drivers_conf(tmpdir_short, endpoint, sections)
        client = bus_client(endpoint)
        return daemon("kwapi-drivers", "--config-file", str(config), env=env), client

    return start
