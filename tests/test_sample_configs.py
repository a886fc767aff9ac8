"""The shipped sample configuration files match the options in the code."""

import configparser
import subprocess
from pathlib import Path

import pytest

from tests.harness.processes import VENV_BIN

ETC = Path(__file__).parent.parent / "etc" / "kwapi"
GENERATORS = sorted(ETC.glob("*-config-generator.conf"))


def test_there_is_a_sample_per_daemon():
    assert {path.name.split("-config")[0] for path in GENERATORS} >= {
        "drivers",
        "forwarder",
        "api",
        "rrd",
        "history",
    }


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda path: path.name)
def test_sample_is_up_to_date(generator, tmp_path):
    parser = configparser.ConfigParser(strict=False)  # "namespace" repeats
    parser.read(generator)
    committed = generator.parent.parent.parent / parser["DEFAULT"]["output_file"]
    fresh = tmp_path / committed.name
    result = subprocess.run(
        [
            str(VENV_BIN / "oslo-config-generator"),
            "--config-file",
            str(generator),
            "--output-file",
            str(fresh),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert fresh.read_text() == committed.read_text(), (
        f"{committed.name} is out of date: run `make genconfig`"
    )
