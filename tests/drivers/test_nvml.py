"""Nvml driver: the real pynvml and kwapi-drivers against a fake libnvidia-ml.so.1.

No GPU exists here, so the test compiles tests/drivers/simulators/fake_nvml.c
into a libnvidia-ml.so.1 (the NVIDIA driver's library) whose GPUs are
described by a state file the test rewrites; kwapi-drivers loads it through
LD_LIBRARY_PATH.  Only the device side is fake: pynvml and our driver run
unchanged.
"""

from __future__ import annotations

import ctypes.util
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kwapi.bus.protocol import Batch
from kwapi.drivers.nvml import INSTALL_HINT, NvmlDriver, NvmlParameters
from tests.harness.daemons import expect_config_error
from tests.harness.processes import wait_for

SOURCE = Path(__file__).parent / "simulators" / "fake_nvml.c"


@pytest.fixture(scope="module")
def fake_library(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fake-nvml")
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-o", "libnvidia-ml.so.1", str(SOURCE)],
        cwd=directory,
        check=True,
        timeout=60,
    )
    return directory


class Gpus:
    """The state file of the fake library: one line per GPU."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, *lines: str) -> None:
        temporary = self.path.with_name("state.tmp")
        temporary.write_text("".join(line + "\n" for line in lines))
        os.replace(temporary, self.path)


@pytest.fixture
def gpus(tmp_path):
    return Gpus(tmp_path / "state")


@pytest.fixture
def start_drivers(fake_library, gpus, kwapi_drivers):
    """Start kwapi-drivers on one Nvml section; return (process, bus client)."""

    def start(probes: str, parameters: str = "{'interval': 0.3}"):
        section = f"""
            [GPU server]
            driver = Nvml
            probes = {probes}
            parameters = {parameters}
            """
        env = {"LD_LIBRARY_PATH": str(fake_library), "FAKE_NVML_STATE": str(gpus.path)}
        return kwapi_drivers(section, env=env)

    return start


def by_probe(measurements):
    values = {}
    for measurement in measurements:
        values.setdefault(measurement.probe_id, []).append(measurement.meters["w"])
    return values


def test_energy_counter_where_present_power_reading_elsewhere(gpus, start_drivers):
    # GPU 0: board power 250 W but its energy counter runs at 200 W; GPU 1: no counter
    gpus.set("250000 200000", "75500 -1")
    process, client = start_drivers("['gpu-a', 'gpu-b']")
    values = by_probe(client.collect(10, timeout=20))
    assert values["gpu-b"] == [75.5] * len(values["gpu-b"])
    # The first reading has no previous energy sample: it is the power reading
    # (250 W), if the subscriber was connected in time to get it; every later
    # one is the energy counter's delta over the interval (200 W).
    # (A preempted thread between the library's clock and the driver's can
    # skew one interval a little on a loaded machine: the median is exact.)
    first, *later = values["gpu-a"]
    assert first == 250.0 or first == pytest.approx(200.0, rel=0.2)
    assert len(later) >= 3
    assert later == pytest.approx([200.0] * len(later), rel=0.2)
    assert statistics.median(later) == pytest.approx(200.0, rel=0.02)
    output = process.output()
    assert "gpu-a is GPU 0 (Fake GPU 0, watts from its energy counter)" in output
    assert "gpu-b is GPU 1 (Fake GPU 1, watts from its power reading)" in output
    assert process.stop() == 0


def test_at_fifty_hertz_samples_follow_the_gpus_own_counter_updates(gpus, start_drivers):
    """GPU 0's counter moves every 100 ms (200 W), GPU 1 has none (80 W); read
    at 50 Hz, in batches of half a second."""
    gpus.set("250000 200000 100", "80000 -1")
    process, client = start_drivers("['gpu-a', 'gpu-b']", "{'interval': 0.02, 'batch': 0.5}")
    messages = client.collect(8, timeout=20)
    assert all(isinstance(message, Batch) for message in messages)
    samples = by_probe_samples(messages)
    # A reading that finds the counter unmoved gives no sample: about ten a
    # second, each the energy of one or more whole steps over their time.
    _first, *later = samples["gpu-a"]  # the first: the power reading (no previous energy)
    span = later[-1].timestamp - later[0].timestamp
    assert span > 1.0 and len(later) - 1 <= span / 0.1 * 1.3 + 1
    watts = [sample.meters["w"] for sample in later]
    assert 250.0 not in watts  # never the power reading once the counter runs
    assert statistics.median(watts) == pytest.approx(200.0, rel=0.05)
    assert energy_average(later) == pytest.approx(200.0, rel=0.05)
    # Without a counter, the power reading at every reading: 50 a second.
    b_samples = samples["gpu-b"]
    assert {sample.meters["w"] for sample in b_samples} == {80.0}
    b_span = b_samples[-1].timestamp - b_samples[0].timestamp
    assert len(b_samples) - 1 == pytest.approx(b_span / 0.02, rel=0.1)
    assert process.stop() == 0


def by_probe_samples(messages):
    samples = {}
    for message in messages:
        samples.setdefault(message.probe_id, []).extend(message.measurements())
    return samples


def energy_average(samples) -> float:
    """Watts averaged over the samples' time: each sample covers the time since the previous."""
    pairs = itertools.pairwise(samples)
    joules = sum(b.meters["w"] * (b.timestamp - a.timestamp) for a, b in pairs)
    return joules / (samples[-1].timestamp - samples[0].timestamp)


def test_indices_map_probes_to_chosen_gpus(gpus, start_drivers):
    gpus.set("100000 -1", "120000 -1", "140000 -1")
    process, client = start_drivers("['third', 'first']", "{'indices': [2, 0], 'interval': 0.3}")
    values = by_probe(client.collect(4, timeout=20))
    assert set(values["third"]) == {140.0} and set(values["first"]) == {100.0}
    assert process.stop() == 0


def test_lost_gpu_is_skipped_logged_once_and_read_again(gpus, start_drivers):
    gpus.set("90000 -1", "60000 -1")
    process, client = start_drivers("['gpu-a', 'gpu-b']", "{'interval': 0.2, 'max_backoff': 0.5}")
    client.collect(2, timeout=20)
    gpus.set("lost", "60000 -1")  # GPU 0 falls off the bus
    process.wait_output("GPU 0: NVML error: GPU is lost", timeout=10)
    logged_at = time.time()
    during = []
    while len(during) < 5:  # skip what was queued before the loss
        measurement = client.receive(timeout=10)
        if measurement.timestamp > logged_at:
            during.append(measurement)
    assert {m.probe_id for m in during} == {"gpu-b"}  # the lost GPU is skipped, not the other
    gpus.set("95000 -1", "60000 -1")
    wait_for(lambda: client.receive().probe_id == "gpu-a", 10, "GPU 0 read again")
    process.wait_output("GPU 0 is back")
    assert sum("GPU is lost" in line for line in process.output().splitlines()) == 1
    assert process.stop() == 0


def test_whole_driver_gone_retries_and_recovers(gpus, start_drivers):
    gpus.set("50000 -1")
    process, client = start_drivers("['gpu-a']", "{'interval': 0.2, 'max_backoff': 0.5}")
    assert client.receive(timeout=20).meters == {"w": 50.0}
    gpus.set("lost")
    process.wait_output("GPU 0: NVML error: GPU is lost", timeout=10)
    gpus.set("52000 -1")
    wait_for(lambda: client.receive().meters == {"w": 52.0}, 15, "readings to resume")
    process.wait_output("device is back")
    assert sum("GPU is lost" in line for line in process.output().splitlines()) == 1
    assert process.stop() == 0


@pytest.mark.parametrize(
    ("state", "probes", "parameters", "expected"),
    [
        (None, "['g']", "{}", "the NVIDIA kernel driver is not loaded"),
        ([], "['g']", "{}", "NVML sees no NVIDIA GPU on this machine"),
        (["1000 -1"], "['g', 'h']", "{}", "GPU index 1 (probe 'h') does not exist"),
        (["1000 -1"], "['g']", "{'indices': [0, 0]}", "parameters['indices']"),
        (["1000 -1"], "['g']", "{'indices': [0, 1]}", "1 probe(s) but 2 GPU index(es)"),
    ],
)
def test_bad_start_is_one_line_and_exit_2(
    fake_library, gpus, tmp_path, state, probes, parameters, expected
):
    if state is not None:
        gpus.set(*state)
    env = {**os.environ, "LD_LIBRARY_PATH": str(fake_library), "FAKE_NVML_STATE": str(gpus.path)}
    line = expect_config_error(tmp_path, "GPU server", "Nvml", probes, parameters, env=env)
    assert expected in line


def test_without_the_nvidia_library_start_fails_in_one_line(tmp_path):
    """No libnvidia-ml.so.1 at all (the machines these tests run on have none)."""
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this machine has an NVIDIA driver: the library cannot be made absent")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    line = expect_config_error(tmp_path, "GPU server", "Nvml", "['g']", env=env)
    assert "libnvidia-ml.so.1 not found: is the NVIDIA driver installed?" in line


def test_without_nvidia_ml_py_validation_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if the extra were not installed
    with pytest.raises(ValueError, match="pip install 'kwapi\\[gpu\\]'") as raised:
        NvmlDriver.validate(("g",), NvmlParameters())
    assert str(raised.value) == INSTALL_HINT
