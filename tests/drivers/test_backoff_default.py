"""The documented default of max_backoff: 10 s, for every installed driver."""

from __future__ import annotations

import logging

import pytest

from kwapi.drivers.base import Backoff, DriverParameters
from kwapi.drivers.config import available_drivers, load_driver_class
from kwapi.drivers.rapl import RaplDriver
from tests.drivers.running import RunningDriver, warnings_about
from tests.helpers import wait_for

DEFAULT_MAX_BACKOFF = 10.0


def test_parameters_default_to_ten_seconds():
    assert DriverParameters().max_backoff == DEFAULT_MAX_BACKOFF


@pytest.mark.parametrize("name", available_drivers())
def test_no_driver_changes_the_default(name):
    field = load_driver_class(name).Parameters.model_fields["max_backoff"]
    assert field.default == DEFAULT_MAX_BACKOFF


@pytest.mark.parametrize("interval", [0.1, 1.0, 60.0])
def test_default_backoff_never_waits_longer_than_ten_seconds(interval):
    """The backoff the base class builds from default parameters, over many failures."""
    params = DriverParameters(interval=interval)
    backoff = Backoff(initial=min(1.0, params.interval), cap=params.max_backoff)
    delays = [backoff.next_delay() for _ in range(100)]
    assert max(delays) == DEFAULT_MAX_BACKOFF
    assert delays[-1] == DEFAULT_MAX_BACKOFF
    assert delays == sorted(delays)


def test_a_failing_driver_says_it_retries_every_ten_seconds(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kwapi.drivers")
    absent = tmp_path / "no-powercap"
    with RunningDriver(RaplDriver, ["cpu"], powercap_path=str(absent)):
        wait_for(lambda: warnings_about(caplog, "no powercap tree"), 10, "the failure logged")
    [line] = warnings_about(caplog, "no powercap tree")
    assert line.endswith("retrying every 10 s at most"), line
