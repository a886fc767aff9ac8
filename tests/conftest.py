"""Fixtures shared by every test module, built on the harness (tests/harness/)."""

from __future__ import annotations

import shutil

import pytest

from tests.harness.bus import BusClient, Feed
from tests.harness.daemons import start_drivers
from tests.harness.processes import Daemons, closing_all, short_tmpdir


@pytest.fixture
def tmpdir_short():
    """A short temporary directory, removed afterwards (for ipc:// endpoints)."""
    path = short_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon():
    """Factory starting kwapi daemons as subprocesses; all are killed at teardown."""
    daemons = Daemons()
    yield daemons
    daemons.close()


@pytest.fixture
def bus_client():
    """Factory of BusClient subscribers, closed at teardown."""
    with closing_all(BusClient) as connect:
        yield connect


@pytest.fixture
def feeds():
    """Factory of Feed publishers (endpoint, probes), closed at teardown."""
    with closing_all(Feed) as make:
        yield make


@pytest.fixture
def kwapi_drivers(daemon, bus_client, tmpdir_short):
    """Start kwapi-drivers on wattmeter sections; return (daemon, bus client).

    The daemon publishes, signed, on ipc:// in a short temporary directory,
    and the client subscribes there before the daemon starts; *env* adds
    variables to the daemon's environment, *defaults* lines to [DEFAULT].
    """

    def start(sections: str, env: dict[str, str] | None = None, defaults: str = ""):
        endpoint = f"ipc://{tmpdir_short}/drivers"
        client = bus_client(endpoint)
        return start_drivers(daemon, tmpdir_short, endpoint, sections, defaults, env), client

    return start


@pytest.fixture(scope="session")
def keystone():
    """A real Keystone (sqlite, fernet tokens, gunicorn on 127.0.0.1) for the whole session."""
    from tests.harness.keystone import running_keystone

    with running_keystone() as server:
        yield server
