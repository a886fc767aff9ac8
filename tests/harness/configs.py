"""Configuration files of each daemon, signed with the tests' secret."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from tests.harness.bus import SECRET
from tests.harness.processes import free_tcp_port


def write_config(directory: str | Path, name: str, text: str) -> Path:
    """Write a configuration file (dedented) and return its path."""
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def drivers_conf(
    directory: str | Path,
    endpoint: str,
    sections: str,
    defaults: str = "",
    *,
    name: str = "drivers",
    secret: str = SECRET,
) -> Path:
    """Write *directory*/*name*.conf for kwapi-drivers: publishing on *endpoint*,
    signed with *secret*, then *sections*.

    *sections* (dedented) holds the wattmeter sections; *defaults* (dedented)
    adds lines to [DEFAULT].
    """
    header = f"[DEFAULT]\nprobes_endpoint = {endpoint}\nmetering_secret = {secret}\n"
    text = header + textwrap.dedent(defaults).lstrip() + "\n" + textwrap.dedent(sections).lstrip()
    return write_config(directory, f"{name}.conf", text)


def forwarder_conf(
    directory: str | Path,
    upstream: Sequence[str],
    bind: str,
    name: str = "forwarder",
    extra: str = "",
) -> Path:
    """Write *directory*/*name*.conf for kwapi-forwarder: from *upstream* to *bind*;
    *extra* holds more [DEFAULT] lines."""
    text = (
        f"[DEFAULT]\nprobes_endpoint = {', '.join(upstream)}\nforwarder_endpoint = {bind}\n"
        + textwrap.dedent(extra).lstrip()
    )
    return write_config(directory, f"{name}.conf", text)


def api_config(directory: str | Path, port: int | None = None, **options: object) -> Path:
    """Write an api.conf in *directory* listening on 127.0.0.1 and an ipc:// bus;
    *options* are more [DEFAULT] options, or replace these."""
    directory = Path(directory)
    values = {
        "probes_endpoint": f"ipc://{directory}/bus",
        "driver_metering_secret": SECRET,
        "api_host": "127.0.0.1",
        "api_port": port or free_tcp_port(),
        "state_file": directory / "state.json",
        "state_save_interval": 10,
        **options,
    }
    lines = ["[DEFAULT]"] + [f"{key} = {value}" for key, value in values.items()]
    return write_config(directory, "api.conf", "\n".join(lines) + "\n")


def rrd_conf(
    directory: str | Path, endpoint: str, port: int, rrd_dir: str | Path, extra: str = ""
) -> Path:
    """Write *directory*/rrd.conf for kwapi-rrd; *extra* holds more [DEFAULT] lines."""
    lines = [
        "[DEFAULT]",
        f"probes_endpoint = {endpoint}",
        f"driver_metering_secret = {SECRET}",
        f"rrd_dir = {rrd_dir}",
        "rrd_host = 127.0.0.1",
        f"rrd_port = {port}",
        "refresh_interval = 2",
        extra,
    ]
    return write_config(directory, "rrd.conf", "\n".join(lines) + "\n")
