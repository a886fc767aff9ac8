"""Fixtures shared by every test module."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import BusClient, Daemon, short_tmpdir


@pytest.fixture
def tmpdir_short():
    """A short temporary directory, removed afterwards (for ipc:// endpoints)."""
    path = short_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon():
    """Factory starting kwapi daemons as subprocesses; all are killed at teardown."""
    started: list[Daemon] = []

    def start(command: str, *args: str, **kwargs) -> Daemon:
        process = Daemon(command, *args, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        # Shown by pytest when the test failed.
        print(f"----- output of {process.command} -----\n{process.output()}")
        process.close()


@pytest.fixture
def bus_client():
    """Factory of BusClient subscribers, closed at teardown."""
    clients: list[BusClient] = []

    def connect(*args, **kwargs) -> BusClient:
        client = BusClient(*args, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def keystone():
    """A real Keystone (sqlite, fernet tokens, gunicorn on 127.0.0.1) for the whole session."""
    from tests.keystone_server import running_keystone

    with running_keystone() as server:
        yield server
