"""Fixtures of the driver tests: a real signed bus."""

from __future__ import annotations

import pytest

from tests.harness.bus import BusClient, bus_publisher


@pytest.fixture
def bus(tmpdir_short):
    """A real signed publisher on ipc:// and a verifying subscriber."""
    endpoint = f"ipc://{tmpdir_short}/drivers"
    publisher = bus_publisher(endpoint)
    client = BusClient(endpoint)
    yield publisher, client
    client.close()
    publisher.close()
