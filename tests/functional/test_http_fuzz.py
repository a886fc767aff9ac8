"""HTTP fuzzing of the real kwapi-api and kwapi-rrd daemons from their OpenAPI documents.

Both daemons run as subprocesses on one signed bus, fed a power probe and a
stream probe.  schemathesis draws requests from each documented operation
(valid and invalid parameters) and checks every answer: no 5xx, status,
content type, headers and body as documented; no body may carry a
Python traceback; and after each request, both daemons still run and
logged no traceback.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from kwapi.bus.protocol import Measurement
from kwapi.plugins import openapi
from tests.harness.bus import bus_publisher, publish_first
from tests.harness.daemons import start_api, start_rrd
from tests.harness.http import get, get_json
from tests.harness.processes import Daemon, Daemons, short_tmpdir, wait_for

pytestmark = pytest.mark.slow

# Examples drawn per operation: about 30 operations in all, a few seconds each.
MAX_EXAMPLES = 25
#: A host and its stream (the examples of the documents), so the stream routes have one.
STREAMS = "stream-host = live-main"


class Stack:
    """kwapi-api and kwapi-rrd on one bus, and how much of their output was checked."""

    def __init__(self, api: str, rrd: str, daemons: list[Daemon]) -> None:
        self.api = api
        self.rrd = rrd
        self.daemons = daemons
        self.checked = {process.command: 0 for process in daemons}

    def assert_survived(self) -> None:
        """Neither daemon died, nor logged a traceback since the last check."""
        for process in self.daemons:
            assert process.process.poll() is None, f"{process.command} died"
            output = process.output()
            new = output[self.checked[process.command] :]
            assert "Traceback" not in new, new
            self.checked[process.command] = len(output)


@pytest.fixture(scope="module")
def stack():
    """kwapi-api and kwapi-rrd listening to one publisher that sent two probes."""
    directory = short_tmpdir()
    daemons = Daemons()
    publisher = None
    try:
        api = start_api(daemons, directory, state_save_interval=3600, stream_power=STREAMS)
        publisher = bus_publisher(api.bus)
        rrd_dir = Path(directory) / "rrd"
        _, rrd_url = start_rrd(
            daemons, directory, api.bus, rrd_dir, extra=f"stream_power = {STREAMS}"
        )
        now = time.time()
        publish_first(api, publisher, Measurement("node-1", now - 5, {"w": 100.0}))

        def recorded(offset=[4.0]) -> bool:  # noqa: B006 - a counter kept across calls
            offset[0] = max(0.0, offset[0] - 0.01)
            stamp = time.time() - offset[0]
            publisher.publish(Measurement("node-1", stamp, {"w": 120.0}))
            publisher.publish(Measurement("stream-host", stamp, {"w": 80.0}))
            publisher.publish(
                Measurement(
                    "live-main",
                    stamp,
                    {"up": 1.0, "bitrate": 2.5e6, "fps": 25.0, "width": 1280.0, "height": 720.0},
                )
            )
            return (
                get(f"{rrd_url}/probe/node-1/")[0] == 200
                and get(f"{rrd_url}/probe/live-main/")[0] == 200
                and get(f"{rrd_url}/probe/stream-host/")[0] == 200
            )

        wait_for(recorded, 30, "kwapi-rrd to record both probes")
        wait_for(
            lambda: "live-main" in get_json(api.url + "/v1/probe-ids/")["probe_ids"],
            20,
            "kwapi-api to know the stream",
        )
        yield Stack(api.url, rrd_url, daemons.started)
    finally:
        if publisher is not None:
            publisher.close()
        daemons.close()
        shutil.rmtree(directory, ignore_errors=True)


@schemathesis.check
def no_traceback(ctx, response, case) -> None:
    """No answer may show a Python traceback or a path into the code."""
    text = response.content.decode("utf-8", errors="replace")
    for marker in ("Traceback (most recent call last)", 'File "/', "site-packages"):
        if marker in text:
            raise AssertionError(f"the body shows internals ({marker!r}): {text[:300]!r}")


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

# The documents the packages ship (served at /openapi.json, see tests/plugins/test_openapi.py).
api_fuzz = schemathesis.openapi.from_dict(openapi.load("kwapi.plugins.api"))
rrd_fuzz = schemathesis.openapi.from_dict(openapi.load("kwapi.plugins.rrd"))


@api_fuzz.parametrize()
@FUZZ_SETTINGS
def test_kwapi_api_answers_every_request_as_documented(case, stack):
    case.call_and_validate(stack.api, additional_checks=[no_traceback], timeout=20)
    stack.assert_survived()


@rrd_fuzz.parametrize()
@FUZZ_SETTINGS
def test_kwapi_rrd_answers_every_request_as_documented(case, stack):
    case.call_and_validate(stack.rrd, additional_checks=[no_traceback], timeout=20)
    stack.assert_survived()
