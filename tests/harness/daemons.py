"""Each kwapi daemon started on a fresh configuration, or refusing a bad one.

The *daemons* argument of the ``start_*`` functions starts a :class:`Daemon`
(the ``daemon`` fixture, or a :class:`~tests.harness.processes.Daemons`).
"""

from __future__ import annotations

import subprocess
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.configs import api_config, drivers_conf, forwarder_conf, rrd_conf
from tests.harness.http import get, get_json
from tests.harness.processes import VENV_BIN, Daemon, free_tcp_port, wait_for

StartDaemon = Callable[..., Daemon]


def no_traceback(*processes: Daemon) -> None:
    """None of *processes* printed a traceback."""
    for process in processes:
        assert "Traceback" not in process.output(), process.output()


def error_lines(process: Daemon) -> list[str]:
    """The ERROR lines *process* logged so far."""
    return [line for line in process.output().splitlines() if " ERROR " in line]


# -- kwapi-drivers -----------------------------------------------------------------

#: A Dummy wattmeter: two probes, ten readings a second, 10 to 20 W.
DUMMY = """
[Rack]
driver = Dummy
probes = ['node-1', 'node-2']
parameters = {'min': 10, 'max': 20, 'interval': 0.1}
"""
#: [DEFAULT] lines of kwapi-drivers: a driver that died is restarted within 0.2 s.
QUICK_RESTARTS = "check_drivers_interval = 0.2\n"


def start_drivers(
    daemons: StartDaemon,
    directory: str | Path,
    endpoint: str,
    sections: str,
    defaults: str = "",
    env: dict[str, str] | None = None,
    **options: str,
) -> Daemon:
    """kwapi-drivers publishing *sections* on *endpoint*; *env* adds to its
    environment; *options* (``name``, ``secret``) go to :func:`drivers_conf`."""
    config = drivers_conf(directory, endpoint, sections, defaults, **options)
    return daemons("kwapi-drivers", "--config-file", str(config), env=env)


def start_dummy_drivers(
    daemons: StartDaemon, directory: str | Path, endpoint: str, sections: str = DUMMY
) -> Daemon:
    """kwapi-drivers on *sections* (default: :data:`DUMMY`), with :data:`QUICK_RESTARTS`."""
    return start_drivers(daemons, directory, endpoint, sections, QUICK_RESTARTS)


def config_error_line(config: str | Path, env: dict[str, str] | None = None) -> str:
    """Run kwapi-drivers on *config*; assert it stops at once with exit status 2
    and one ``kwapi-drivers: error: `` line on stderr, no traceback; return that line.

    *env* is the whole environment of the command (default: this process's).
    """
    result = subprocess.run(
        [str(VENV_BIN / "kwapi-drivers"), "--config-file", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kwapi-drivers: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def expect_config_error(
    directory: str | Path,
    section_name: str,
    driver: str,
    probes: str,
    parameters: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Write a drivers.conf with one wattmeter section, check that kwapi-drivers
    refuses it (see :func:`config_error_line`) naming the file and the section;
    return the error line.

    *probes* and *parameters* are the options' text as written in the file;
    no ``parameters`` line is written when it is None.
    """
    section = f"[{section_name}]\ndriver = {driver}\nprobes = {probes}\n"
    if parameters is not None:
        section += f"parameters = {parameters}\n"
    config = drivers_conf(directory, f"ipc://{directory}/drivers", section)
    line = config_error_line(config, env)
    assert str(config) in line and f"[{section_name}]" in line, line
    return line


# -- kwapi-forwarder ---------------------------------------------------------------


def start_forwarder(
    daemons: StartDaemon, directory: str | Path, name: str, upstream: Sequence[str], bind: str
) -> Daemon:
    """kwapi-forwarder relaying *upstream* to *bind*; returns once it relays."""
    config = forwarder_conf(directory, upstream, bind, name=name)
    process = daemons("kwapi-forwarder", "--config-file", str(config))
    process.wait_output("relaying", 15)
    return process


# -- kwapi-api ---------------------------------------------------------------------


@dataclass
class ApiProcess:
    """A kwapi-api subprocess and where to reach it."""

    process: Daemon
    directory: Path
    config: Path
    port: int
    bus: str
    state_file: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> dict | None:
        try:
            return get_json(self.url + "/healthz", timeout=2)
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def wait_healthy(self, timeout: float = 20.0) -> dict:
        def ready():
            if self.process.process.poll() is not None:
                raise AssertionError(f"kwapi-api exited early:\n{self.process.output()}")
            return self.healthz()

        return wait_for(ready, timeout, "kwapi-api /healthz")

    def accepted(self) -> int:
        health = self.healthz()
        return health["receiver"]["accepted"] if health else -1

    def timestamp(self, probe: str = "node-1") -> float:
        """The driver timestamp kwapi-api last saw for *probe* (0 if none)."""
        probes = get_json(self.url + "/v1/probes/")["probes"]
        return probes.get(probe, {}).get("timestamp", 0.0)


def start_api(daemons: StartDaemon, directory: str | Path, **options: object) -> ApiProcess:
    """Start kwapi-api on a fresh config in *directory*; wait until /healthz answers.

    Extra *options* go to [DEFAULT] (see :func:`api_config`; a ``sections``
    option, if given, is raw text appended to the file).
    """
    sections = options.pop("sections", "")
    config = api_config(directory, **options)
    if sections:
        config.write_text(config.read_text() + "\n" + sections)
    values = dict(line.split(" = ", 1) for line in config.read_text().splitlines() if " = " in line)
    process = daemons("kwapi-api", "--config-file", str(config))
    api = ApiProcess(
        process,
        Path(directory),
        config,
        int(values["api_port"]),
        values["probes_endpoint"],
        Path(values["state_file"]),
        options,
    )
    api.wait_healthy()
    return api


# -- kwapi-rrd ---------------------------------------------------------------------


def start_rrd(
    daemons: StartDaemon,
    directory: str | Path,
    endpoint: str,
    rrd_dir: str | Path,
    port: int | None = None,
    extra: str = "",
) -> tuple[Daemon, str]:
    """kwapi-rrd on *rrd_dir* (see :func:`rrd_conf`), once it serves; returns
    (process, base URL)."""
    port = port or free_tcp_port()
    conf = rrd_conf(directory, endpoint, port, rrd_dir, extra)
    process = daemons("kwapi-rrd", "--config-file", str(conf))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get(base + "/openapi.json")[0] == 200, 20, "kwapi-rrd to serve")
    return process, base
