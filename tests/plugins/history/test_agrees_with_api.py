"""/v1/energy/ agrees with kwapi-api's own kwh for the same stream of readings.

One stream (jittered intervals, negative readings, a gap longer than
max_gap, readings to the millisecond) is published on a real signed bus to
a real kwapi-api daemon and written, the same, to a real VictoriaMetrics
through its /write endpoint; kwapi-history's query then reads the store.
"""

from __future__ import annotations

import random
import time

import pytest

from kwapi.bus.protocol import Measurement
from tests.harness.bus import bus_publisher, publish_all, publish_first
from tests.harness.daemons import start_api
from tests.harness.http import get_json
from tests.harness.stores import VictoriaMetrics
from tests.plugins.history.query_helpers import line, make_app, write

MAX_GAP = 10.0
PROBES = ("agree-1", "agree-2")


def stream(rng: random.Random, probe: str, count: int) -> list[Measurement]:
    """*count* readings of *probe* ending about now, in whole milliseconds."""
    stamps, millis = [], 0
    for index in range(count):
        millis += 15_000 if index == count // 3 else rng.randint(100, 1500)
        stamps.append(millis)
    base = int(time.time() * 1000) - stamps[-1] - 2000
    return [
        Measurement(probe, (base + millis) / 1000.0, {"w": round(rng.uniform(-20.0, 300.0), 3)})
        for millis in stamps
    ]


@pytest.fixture
def store():
    server = VictoriaMetrics()
    server.start()
    yield server
    server.close()


def test_energy_equals_kwapi_api_kwh(daemon, tmpdir_short, store):
    api = start_api(daemon, tmpdir_short, max_gap=MAX_GAP)
    rng = random.Random(12)
    streams = {probe: stream(rng, probe, 150) for probe in PROBES}
    publisher = bus_publisher(api.bus)
    try:
        halves = {probe: len(readings) // 2 for probe, readings in streams.items()}
        for probe, readings in streams.items():
            publish_first(api, publisher, readings[0])
            publish_all(api, publisher, readings[1 : halves[probe]])
        middle = get_json(api.url + "/v1/probes/")["probes"]
        for probe, readings in streams.items():
            publish_all(api, publisher, readings[halves[probe] :])
        final = get_json(api.url + "/v1/probes/")["probes"]
    finally:
        publisher.close()
    write(
        store,
        (
            line(m.probe_id, round(m.timestamp * 1000), w=m.meters["w"])
            for readings in streams.values()
            for m in readings
        ),
    )

    client = make_app(store.root, max_gap=MAX_GAP).test_client()
    for probe, readings in streams.items():
        assert final[probe]["timestamp"] == readings[-1].timestamp  # all of them counted
        first, middle_at, last = (readings[i].timestamp for i in (0, halves[probe] - 1, -1))
        whole = client.get(f"/v1/energy/?probe={probe}&start={first:.3f}&end={last:.3f}")
        assert whole.status_code == 200, whole.get_data(as_text=True)
        figures = whole.get_json()["probes"][probe]
        assert figures["kwh"] > 0
        assert figures["kwh"] == pytest.approx(final[probe]["kwh"], rel=1e-9)
        assert (figures["samples"], figures["gaps"]) == (len(readings), 1)
        # From the last reading of the first half: the energy kwapi-api added since.
        since = client.get(f"/v1/energy/?probe={probe}&start={middle_at:.3f}&end={last:.3f}")
        added = final[probe]["kwh"] - middle[probe]["kwh"]
        assert since.get_json()["probes"][probe]["kwh"] == pytest.approx(added, rel=1e-9)
