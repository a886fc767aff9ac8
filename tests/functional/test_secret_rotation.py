"""Rotating the signing secret as doc/security.rst says, on real daemons.

kwapi-api lists the new secret beside the old one; kwapi-drivers is
restarted from the old secret to the new one without kwapi-api losing or
refusing a measurement; then kwapi-api, left with the new secret only,
refuses what is still signed with the old one.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.harness.daemons import ApiProcess, start_api, start_drivers
from tests.harness.http import get_json
from tests.harness.processes import wait_for

OLD_SECRET = "old-secret"
NEW_SECRET = "new-secret"


def start_dummy_drivers(daemon, directory, name: str, endpoint: str, secret: str, probe: str):
    """kwapi-drivers with one Dummy probe, ten readings a second, signing with *secret*."""
    sections = (
        f"[Rack]\ndriver = Dummy\nprobes = ['{probe}']\n"
        "parameters = {'min': 10, 'max': 20, 'interval': 0.1}\n"
    )
    process = start_drivers(daemon, directory, endpoint, sections, name=name, secret=secret)
    process.wait_output("started 1 driver", 15)
    return process


def probe_record(api: ApiProcess, probe: str = "node-1") -> dict:
    """kwapi-api's record of *probe* ({} while it has none)."""
    return get_json(api.url + "/v1/probes/")["probes"].get(probe, {})


def rejected(api: ApiProcess) -> dict[str, int]:
    """kwapi-api's count of rejected messages per reason."""
    return api.healthz()["receiver"]["rejected"]


def test_rotation_loses_nothing_then_the_old_secret_is_refused(daemon, tmpdir_short):
    endpoint = f"ipc://{tmpdir_short}/drivers"
    api_dir = Path(tmpdir_short, "api")
    api_dir.mkdir()
    # Step 1: the plugin takes the new secret and still the old one.
    api = start_api(
        daemon,
        api_dir,
        probes_endpoint=endpoint,
        driver_metering_secret=f"{NEW_SECRET}, {OLD_SECRET}",
    )

    drivers = start_dummy_drivers(daemon, tmpdir_short, "old", endpoint, OLD_SECRET, "node-1")
    wait_for(lambda: api.accepted() >= 10, 20, "kwapi-api to accept the old secret")
    assert drivers.stop() == 0
    signed_old = probe_record(api)
    accepted_old = api.accepted()
    assert signed_old["kwh"] > 0

    # Step 2: the drivers sign with the new secret.
    restarted_at = time.time()
    start_dummy_drivers(daemon, tmpdir_short, "new", endpoint, NEW_SECRET, "node-1")
    wait_for(
        lambda: (
            api.accepted() >= accepted_old + 10 and probe_record(api)["timestamp"] > restarted_at
        ),
        20,
        "kwapi-api to accept the new secret",
    )
    signed_new = probe_record(api)
    assert signed_new["kwh"] > signed_old["kwh"]
    assert set(rejected(api).values()) == {0}, rejected(api)
    assert api.process.stop() == 0

    # Step 3: the old secret is removed from the plugin.  A drivers host still
    # signing with it (a second daemon, probe legacy-1) is refused, while the
    # one on the new secret is accepted.
    legacy = f"ipc://{tmpdir_short}/legacy"
    start_dummy_drivers(daemon, tmpdir_short, "legacy", legacy, OLD_SECRET, "legacy-1")
    api = start_api(
        daemon,
        api_dir,
        probes_endpoint=f"{endpoint}, {legacy}",
        driver_metering_secret=NEW_SECRET,
    )
    wait_for(lambda: rejected(api)["bad_signature"] >= 10, 20, "old-secret messages refused")
    wait_for(lambda: api.accepted() >= 10, 20, "new-secret messages accepted")
    assert probe_record(api, "legacy-1") == {}
    # The state file carried node-1's energy over the restart, and it goes on.
    wait_for(lambda: probe_record(api)["kwh"] > signed_new["kwh"], 20, "node-1's energy to go on")
