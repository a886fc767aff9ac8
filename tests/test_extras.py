"""A missing extra is one line naming ``pip install 'kwapi[...]'``, for every daemon and driver.

Each test runs the real command in a Python where the extra's modules cannot
be imported: a ``sitecustomize`` on PYTHONPATH puts first on ``sys.meta_path``
a finder that raises ModuleNotFoundError for them, as if they were not
installed. Nothing of kwapi is replaced.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kwapi import extras

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
# Extras for the tests only: kwapi/ may not rely on them.
TEST_EXTRAS = {"test", "keystone-test"}
# Top-level modules of this repository (and __future__).
LOCAL = {"kwapi", "tests", "__future__"}
# Imported by tests/fixtures/broken_drivers, a driver that cannot be loaded.
MISSING_ON_PURPOSE = {"kwapi_missing_dependency"}

SITECUSTOMIZE = '''\
"""Make the modules named in KWAPI_TEST_BLOCKED impossible to import."""
import os
import sys

BLOCKED = set(os.environ["KWAPI_TEST_BLOCKED"].split(","))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
'''


def run_without(
    tmp_path: Path, modules: tuple[str, ...], *command: str
) -> subprocess.CompletedProcess[str]:
    """Run *command* (a kwapi console script, or python) with *modules* made unimportable."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    python_path = [str(shim), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path for path in python_path if path),
        "KWAPI_TEST_BLOCKED": ",".join(modules),
    }
    program = sys.executable if command[0] == "python" else str(VENV_BIN / command[0])
    return subprocess.run(
        [program, *command[1:]], capture_output=True, text=True, env=env, timeout=60
    )


def one_error_line(
    result: subprocess.CompletedProcess[str], prog: str, extra: str, logs: bool = False
) -> str:
    """Check *result* is exit status 2 and a single error line naming *extra*; return it.

    With *logs*, the daemon may have logged on stdout before (INFO lines), never a traceback.
    """
    assert result.returncode == 2, result.stderr
    if logs:
        assert "Traceback" not in result.stdout and " ERROR " not in result.stdout, result.stdout
    else:
        assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # no traceback, no log line
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert lines[0].endswith(f"pip install 'kwapi[{extra}]'"), lines[0]
    return lines[0]


def test_the_shim_really_makes_the_import_fail(tmp_path):
    """Without the check, kwapi-rrd's module dies on its rrdtool import."""
    result = run_without(tmp_path, ("rrdtool",), "python", "-c", "import kwapi.cmd.rrd")
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'rrdtool'" in result.stderr


def test_kwapi_rrd_without_the_rrd_extra(tmp_path):
    result = run_without(tmp_path, ("rrdtool",), "kwapi-rrd", "--config-file", os.devnull)
    line = one_error_line(result, "kwapi-rrd", "rrd")
    assert line == (
        "kwapi-rrd: error: kwapi-rrd needs the rrd extra (No module named 'rrdtool'): "
        "pip install 'kwapi[rrd]'"
    )


def test_kwapi_api_with_keystone_auth_without_the_keystone_extra(tmp_path):
    conf = tmp_path / "api.conf"
    conf.write_text(
        textwrap.dedent(f"""\
        [DEFAULT]
        driver_metering_secret = s
        state_file = {tmp_path}/state.json
        api_port = 0
        auth_strategy = keystone
        """)
    )
    result = run_without(tmp_path, ("keystonemiddleware",), "kwapi-api", "--config-file", str(conf))
    # kwapi-api reads its state file (and says so) before it sets up authentication.
    line = one_error_line(result, "kwapi-api", "keystone", logs=True)
    assert f"{conf}: [DEFAULT] auth_strategy: " in line
    assert "keystone extra (No module named 'keystonemiddleware')" in line


def test_kwapi_api_without_keystone_auth_needs_no_keystone_extra(tmp_path):
    """noauth, the default, never imports keystonemiddleware: --help is enough to show it."""
    result = run_without(tmp_path, ("keystonemiddleware", "keystoneauth1"), "kwapi-api", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: kwapi-api" in result.stdout


DRIVERS = [
    ("Snmp", ("pysnmp",), "snmp", "{'host': '127.0.0.1', 'model': 'eaton'}"),
    ("Ipmi", ("cryptography",), "ipmi", "{'host': 'bmc', 'username': 'u', 'password': 'p'}"),
    ("Wattsup", ("serial",), "serial", "{'device': '/dev/ttyUSB0'}"),
    ("Nvml", ("pynvml",), "gpu", "{}"),
]


@pytest.mark.parametrize(("driver", "modules", "extra", "parameters"), DRIVERS)
def test_driver_without_its_extra(tmp_path, driver, modules, extra, parameters):
    conf = tmp_path / "drivers.conf"
    conf.write_text(
        textwrap.dedent(f"""\
        [DEFAULT]
        probes_endpoint = ipc://{tmp_path}/drivers
        metering_secret = s

        [Meter]
        driver = {driver}
        probes = ['probe-1']
        parameters = {parameters}
        """)
    )
    result = run_without(tmp_path, modules, "kwapi-drivers", "--config-file", str(conf))
    line = one_error_line(result, "kwapi-drivers", extra)
    assert f"{conf}: [Meter]" in line
    assert f"the {driver} driver needs " in line


def _name(requirement: str) -> str:
    """The normalised name of a requirement line: ``oslo.config>=9.0`` -> oslo-config."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _requirements() -> dict[str, set[str]]:
    """setup.cfg's requirements: install_requires under "", then each extra."""
    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(ROOT / "setup.cfg")

    def names(value: str) -> set[str]:
        return {_name(line) for line in value.splitlines() if line.strip()}

    declared = {"": names(setup_cfg["options"]["install_requires"])}
    for extra, value in setup_cfg["options.extras_require"].items():
        declared[extra] = names(value)
    return declared


def _distributions(module: str) -> set[str]:
    """The installed distributions providing top-level *module*, normalised."""
    found = importlib.metadata.packages_distributions().get(module, [])
    return {re.sub(r"[-_.]+", "-", name).lower() for name in found}


def _third_party_imports(folder: str) -> dict[str, set[str]]:
    """Every top-level module *folder* imports, bar kwapi, the tests and the standard library."""
    imported: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in LOCAL and top not in sys.stdlib_module_names:
                    imported.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return imported


def test_every_import_of_kwapi_is_declared():
    """Each third-party module kwapi/ imports comes from install_requires or an extra."""
    declared = _requirements()
    runtime = set().union(*(names for extra, names in declared.items() if extra not in TEST_EXTRAS))
    for module, files in _third_party_imports("kwapi").items():
        distributions = _distributions(module)
        assert distributions, f"{module} (imported by {sorted(files)}) is not installed"
        assert distributions & runtime, (
            f"{module} (imported by {sorted(files)}, from {sorted(distributions)}) "
            "is declared neither in install_requires nor in an extra of setup.cfg"
        )


def test_every_import_of_the_tests_is_declared():
    """Each third-party module tests/ imports comes from setup.cfg, extras for tests included."""
    declared = set().union(*_requirements().values())
    for module, files in _third_party_imports("tests").items():
        if module in MISSING_ON_PURPOSE:
            continue
        distributions = _distributions(module)
        assert distributions & declared, (
            f"{module} (imported by {sorted(files)}, from {sorted(distributions)}) "
            "is not declared in setup.cfg"
        )


@pytest.mark.parametrize("extra", sorted(extras.EXTRAS))
def test_extras_modules_come_from_that_extra(extra):
    """kwapi.extras names each extra's modules right, and setup.cfg declares it."""
    declared = _requirements()
    assert extra in declared
    for module in extras.EXTRAS[extra]:
        assert _distributions(module) & declared[extra], f"{module} is not from kwapi[{extra}]"


def test_keystonemiddleware_is_not_a_core_dependency():
    """A drivers-only host does not get keystonemiddleware: it is the keystone extra."""
    declared = _requirements()
    assert "keystonemiddleware" not in declared[""]
    assert "keystonemiddleware" in declared["keystone"]


def test_install_hint():
    assert extras.install_hint("rrd") == "pip install 'kwapi[rrd]'"
