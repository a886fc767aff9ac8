"""What each daemon registers at start is what its sample file lists, and what the generator gets.

Three views of a daemon's options, none of them listed here:

* registered: the daemon's own ``serve()``, stopped once its options are
  registered (tests/registered_options.py, in a subprocess);
* generated: what oslo-config-generator is given, by calling the entry points
  of the namespaces that ``etc/kwapi/<daemon>-config-generator.conf`` names
  (kwapi.opts for kwapi's namespace, the libraries' own for oslo.log and
  keystonemiddleware);
* sample: the options ``etc/kwapi/<daemon>.conf.sample`` lists.

tests/test_sample_configs.py checks the sample's text; this checks that the
daemon reads the options the sample documents, no more, no fewer.
"""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from keystoneauth1.loading import get_auth_plugin_conf_options
from oslo_config import cfg

from kwapi.ceilometer import options as ceilometer_options
from tests.harness.processes import VENV_BIN
from tests.registered_options import option_names

ROOT = Path(__file__).parent.parent
ETC = ROOT / "etc" / "kwapi"
DAEMONS = ["drivers", "forwarder", "api", "rrd", "history"]

Names = set[tuple[str, str]]

#: Listed by oslo.log with its options but read from oslo.config's global
#: cfg.CONF (oslo_log.versionutils), which no kwapi daemon uses, so no daemon
#: registers it.
GLOBAL_CONF_ONLY = {("DEFAULT", "fatal_deprecations")}
#: oslo.cache's group, which keystonemiddleware's auth_token registers on the
#: configuration as it starts; kwapi's sample lists only keystonemiddleware's own options.
KEYSTONEMIDDLEWARE_OWN = {"cache"}


def sample_names(name: str) -> Names:
    """(group, option) of every option ``etc/kwapi/<name>.conf.sample`` lists."""
    names = set()
    group = "DEFAULT"
    for line in (ETC / f"{name}.conf.sample").read_text().splitlines():
        if section := re.fullmatch(r"\[(\w+)\]", line):
            group = section[1]
        elif option := re.fullmatch(r"#(\w+) =( .*)?", line):
            names.add((group, option[1]))
    return names


def generated_names(name: str) -> Names:
    """(group, option) of every option oslo-config-generator gets for *name*'s sample."""
    generator = (ETC / f"{name}-config-generator.conf").read_text()
    namespaces = re.findall(r"^namespace = (\S+)$", generator, re.MULTILINE)
    assert namespaces
    names = set()
    for namespace in namespaces:
        (entry_point,) = entry_points(group="oslo.config.opts", name=namespace)
        for group, opts in entry_point.load()():
            group_name = getattr(group, "name", group) or "DEFAULT"
            names.update((group_name, opt.dest) for opt in opts)
    return names


def registered_names(prog: str, config: Path, tmp_path: Path) -> Names:
    """(group, option) of every option *prog* registers when started on *config*."""
    out = tmp_path / "registered.json"
    result = subprocess.run(
        [
            str(VENV_BIN / "python"),
            "-m",
            "tests.registered_options",
            str(out),
            prog,
            "--config-file",
            str(config),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {(group, option) for group, option in json.loads(out.read_text())}


def config(tmp_path: Path, text: str = "") -> Path:
    """A configuration file holding *text* under [DEFAULT]."""
    path = tmp_path / "kwapi.conf"
    path.write_text("[DEFAULT]\n" + text)
    return path


@pytest.mark.parametrize("name", DAEMONS)
def test_generator_gets_what_the_sample_lists(name):
    assert generated_names(name) == sample_names(name)


@pytest.mark.parametrize("name", ["drivers", "forwarder", "rrd"])
def test_daemon_registers_what_its_sample_lists(name, tmp_path):
    registered = registered_names(f"kwapi-{name}", config(tmp_path), tmp_path)
    assert registered == sample_names(name) - GLOBAL_CONF_ONLY
    assert sample_names(name) == generated_names(name)


@pytest.mark.parametrize("name", ["api", "history"])
def test_api_registers_its_sample_but_keystone_authtoken_at_start(name, tmp_path):
    registered = registered_names(f"kwapi-{name}", config(tmp_path), tmp_path)
    sample = sample_names(name) - GLOBAL_CONF_ONLY
    assert {group for group, _ in sample} == {"DEFAULT", "keystone_authtoken"}
    assert registered == {(group, option) for group, option in sample if group == "DEFAULT"}


@pytest.mark.parametrize("name", ["api", "history"])
def test_api_with_keystone_registers_keystone_authtoken_too(name, tmp_path):
    # auth_type none: the middleware starts without a Keystone to ask.
    path = config(tmp_path, "auth_strategy = keystone\n[keystone_authtoken]\nauth_type = none\n")
    registered = registered_names(f"kwapi-{name}", path, tmp_path)
    # The options of the auth_type chosen, which no sample can list.
    plugin = {("keystone_authtoken", opt.dest) for opt in get_auth_plugin_conf_options("none")}
    library_own = {
        (group, option) for group, option in registered if group in KEYSTONEMIDDLEWARE_OWN
    }
    assert plugin <= registered
    assert registered - plugin - library_own == sample_names(name) - GLOBAL_CONF_ONLY
    assert sample_names(name) == generated_names(name)


def test_ceilometer_pollsters_register_what_their_sample_lists():
    conf = cfg.ConfigOpts()
    oslo_config_own = option_names(conf)
    ceilometer_options.register(conf)
    registered = option_names(conf) - oslo_config_own
    assert registered == sample_names("ceilometer-kwapi") == generated_names("ceilometer")
