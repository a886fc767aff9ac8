"""doc/ builds with Sphinx without a single warning, as ``make docs`` builds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_documentation_builds_without_warnings(tmp_path):
    """The build of ``make docs`` (-W --keep-going), from scratch, in a temporary folder."""
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-E"),
            *("-d", str(tmp_path / "doctrees")),
            str(ROOT / "doc"),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # -q: warnings are all it would print
    assert (tmp_path / "html" / "index.html").is_file()
    built = {path.stem for path in (tmp_path / "html").rglob("*.html")}
    sources = {path.stem for path in (ROOT / "doc").rglob("*.rst")}
    assert sources <= built, f"pages not built: {sorted(sources - built)}"
