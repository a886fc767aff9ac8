"""The code base stays ruff clean (lint rules and formatting in pyproject.toml)."""

import subprocess
from pathlib import Path

from tests.harness.processes import VENV_BIN

ROOT = Path(__file__).parent.parent
PATHS = [
    "kwapi",
    "tests",
    "bench",
    "doc/conf.py",
    "bin/kwapi-demo",
    "bin/kwapi-drivers-conf-from-csv",
]


def ruff(*args):
    return subprocess.run(
        [str(VENV_BIN / "ruff"), *args, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ruff_check_passes():
    result = ruff("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_has_nothing_to_change():
    result = ruff("format", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
