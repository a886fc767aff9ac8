"""HTTP fuzzing of the real kwapi-api and kwapi-rrd daemons from their OpenAPI documents.

Both daemons run as subprocesses on one signed bus, fed a power probe and a
stream probe.  schemathesis draws requests from each documented operation
(valid and invalid parameters) and checks every answer: no 5xx, status,
content type, headers and body as documented; and no body may carry a
Python traceback.
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
from tests.helpers import Daemon, free_tcp_port, short_tmpdir, wait_for
from tests.plugins.api.running import bus_publisher, get_json, publish_first, start_api
from tests.plugins.rrd.test_daemon import get, rrd_conf

pytestmark = pytest.mark.slow

# Examples drawn per operation: about 30 operations in all, a few seconds each.
MAX_EXAMPLES = 25
#: A host and its stream (the examples of the documents), so the stream routes have one.
STREAMS = "stream-host = live-main"


@pytest.fixture(scope="module")
def stack():
    """kwapi-api and kwapi-rrd listening to one publisher that sent two probes."""
    directory = short_tmpdir()
    started: list[Daemon] = []

    def start(command: str, *args: str) -> Daemon:
        process = Daemon(command, *args)
        started.append(process)
        return process

    publisher = None
    try:
        api = start_api(start, directory, state_save_interval=3600, stream_power=STREAMS)
        publisher = bus_publisher(api.bus)
        rrd_port = free_tcp_port()
        rrd_dir = Path(directory) / "rrd"
        rrd_config = rrd_conf(directory, api.bus, rrd_port, rrd_dir, f"stream_power = {STREAMS}")
        start("kwapi-rrd", "--config-file", str(rrd_config))
        rrd_url = f"http://127.0.0.1:{rrd_port}"
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
        yield {"api": api.url, "rrd": rrd_url, "daemons": started}
    finally:
        if publisher is not None:
            publisher.close()
        for process in started:
            process.kill()
            print(f"----- output of {process.command} -----\n{process.output()}")
            process.close()
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
    case.call_and_validate(stack["api"], additional_checks=[no_traceback], timeout=20)


@rrd_fuzz.parametrize()
@FUZZ_SETTINGS
def test_kwapi_rrd_answers_every_request_as_documented(case, stack):
    case.call_and_validate(stack["rrd"], additional_checks=[no_traceback], timeout=20)


def test_daemons_survived_the_fuzzing(stack):
    """Run last in this module: neither daemon logged a traceback or died."""
    for process in stack["daemons"]:
        assert process.process.poll() is None, f"{process.command} died"
        assert "Traceback" not in process.output(), process.output()
