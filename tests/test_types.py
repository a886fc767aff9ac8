"""kwapi/ type-checks with mypy in strict mode (settings in pyproject.toml's [tool.mypy])."""

import subprocess
from pathlib import Path

from tests.harness.processes import VENV_BIN

ROOT = Path(__file__).parent.parent


def test_mypy_strict_passes():
    # No path argument: mypy checks the `files` of pyproject.toml, as `tox -e mypy` does.
    result = subprocess.run(
        [str(VENV_BIN / "mypy")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
