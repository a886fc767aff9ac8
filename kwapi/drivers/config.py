"""Wattmeter sections of drivers.conf: parsing and validation.

Each section other than DEFAULT is one wattmeter::

    [Rack 1 PDU]
    driver = Snmp
    probes = ['node-1', 'node-2', None, 'switch-1']
    parameters = {'host': '192.0.2.10', 'community': 'public'}

Values are Python literals read with :func:`ast.literal_eval`, never eval.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pydantic
import stevedore

from kwapi.bus.protocol import is_valid_probe_id
from kwapi.config import ConfigError, Section
from kwapi.drivers.base import DriverBase, DriverParameters, PublishFunc, SectionError

NAMESPACE = "kwapi.drivers"
KNOWN_KEYS = ("driver", "probes", "parameters")
# Sections that belong to libraries, not to wattmeters.
LIBRARY_SECTIONS = frozenset({"keystone_authtoken", "oslo_log"})


@dataclass(frozen=True)
class Wattmeter:
    """A validated wattmeter section, ready to build its driver thread."""

    name: str
    driver_name: str
    driver_class: type[DriverBase]
    probe_ids: tuple[str | None, ...]
    parameters: DriverParameters
    file: str

    def build(self, publish: PublishFunc) -> DriverBase:
        """Return a new, not yet started, driver for this wattmeter."""
        return self.driver_class(self.name, self.probe_ids, self.parameters, publish)


def _named_drivers(
    names: Sequence[str], failures: list[str]
) -> stevedore.NamedExtensionManager[type[DriverBase]]:
    """A stevedore manager of the drivers *names*; load failures go to *failures*, unlogged."""

    def failed(_manager: object, _entry_point: object, exc: BaseException) -> None:
        failures.append(f"{type(exc).__name__}: {exc}")

    return stevedore.NamedExtensionManager(
        NAMESPACE,
        names,
        on_load_failure_callback=failed,
        on_missing_entrypoints_callback=None,
    )


def available_drivers() -> list[str]:
    """Return the names of the installed drivers, without importing any of them."""
    return sorted(set(_named_drivers([], []).entry_points_names()))


def load_driver_class(name: str) -> type[DriverBase]:
    """Return the driver class registered under *name*; raise LookupError.

    An unknown name, a module that fails to import, a name registered by
    several packages and an entry point that is not a :class:`Driver`
    subclass are LookupErrors with a one-line message; nothing is logged.
    """
    failures: list[str] = []
    plugins = {extension.plugin for extension in _named_drivers([name], failures).extensions}
    if failures:
        raise LookupError(f"driver {name!r} cannot be loaded: {failures[0]}")
    if not plugins:
        installed = ", ".join(available_drivers()) or "none"
        raise LookupError(f"unknown driver {name!r} (installed: {installed})")
    if len(plugins) > 1:
        found = ", ".join(sorted(f"{p.__module__}.{p.__qualname__}" for p in plugins))
        raise LookupError(f"driver {name!r} is registered several times ({found})")
    driver_class = plugins.pop()
    if not (isinstance(driver_class, type) and issubclass(driver_class, DriverBase)):
        raise LookupError(f"driver {name!r} ({driver_class!r}) is not a kwapi.drivers.base.Driver")
    return driver_class


def parse_wattmeters(sections: Sequence[Section]) -> list[Wattmeter]:
    """Validate every wattmeter section; raise ConfigError on the first problem.

    Each driver class is loaded once per call, however many sections use it:
    a machine room has a thousand sections of two or three drivers.
    """
    wattmeters: list[Wattmeter] = []
    owners: dict[str, str] = {}
    seen: dict[str, str] = {}
    classes: dict[str, type[DriverBase]] = {}
    for section in sections:
        if section.name in LIBRARY_SECTIONS:
            continue
        if section.name in seen:
            raise ConfigError(
                f"wattmeter section defined twice (also in {seen[section.name]}): "
                "define each wattmeter in one file",
                file=section.file,
                section=section.name,
            )
        seen[section.name] = section.file
        wattmeter = _parse_section(section, classes)
        for probe_id in wattmeter.probe_ids:
            if probe_id is None:
                continue
            if probe_id in owners:
                raise ConfigError(
                    f"probe id {probe_id!r} is already used by wattmeter [{owners[probe_id]}]",
                    file=section.file,
                    section=section.name,
                    key="probes",
                )
            owners[probe_id] = section.name
        wattmeters.append(wattmeter)
    return wattmeters


def _parse_section(section: Section, classes: dict[str, type[DriverBase]]) -> Wattmeter:
    """Validate one wattmeter *section*; *classes* caches the driver classes by name."""

    def error(key: str, message: str) -> ConfigError:
        return ConfigError(message, file=section.file, section=section.name, key=key)

    for key in section.values:
        if key not in KNOWN_KEYS:
            raise error(key, f"unknown key (expected {', '.join(KNOWN_KEYS)})")
    for key in ("driver", "probes"):
        if not section.values.get(key, "").strip():
            raise error(key, "missing")

    driver_name = section.values["driver"].strip()
    try:
        driver_class = _cached_driver_class(driver_name, classes)
    except LookupError as exc:
        raise error("driver", str(exc)) from None

    probes = _literal(section.values["probes"], error, "probes")
    if not isinstance(probes, list | tuple) or not probes:
        raise error("probes", "must be a non-empty list such as ['A', 'B']")
    for probe_id in probes:
        if probe_id is not None and not is_valid_probe_id(probe_id):
            raise error(
                "probes",
                f"invalid probe id {probe_id!r}: use 1 to 255 of A-Z a-z 0-9 . _ : @ -",
            )
    if all(probe_id is None for probe_id in probes):
        raise error("probes", "every probe is None")
    counts = Counter(p for p in probes if p is not None)
    duplicates = sorted(p for p, count in counts.items() if count > 1)
    if duplicates:
        raise error("probes", f"probe id {duplicates[0]!r} appears twice")

    raw_parameters = _literal(section.values.get("parameters", "{}"), error, "parameters")
    if not isinstance(raw_parameters, dict) or not all(
        isinstance(key, str) for key in raw_parameters
    ):
        raise error("parameters", "must be a dict with string keys such as {'interval': 1}")
    try:
        parameters = driver_class.Parameters.model_validate(raw_parameters)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        key = f"parameters[{where!r}]" if where else "parameters"
        raise error(key, first["msg"].removeprefix("Value error, ")) from None
    try:
        driver_class.validate(tuple(probes), parameters)
    except SectionError as exc:
        key = exc.key if exc.key in KNOWN_KEYS else "parameters"
        raise error(key, f"driver {driver_name}: {exc}") from None
    except ValueError as exc:
        raise error("parameters", f"driver {driver_name}: {exc}") from None
    return Wattmeter(
        section.name, driver_name, driver_class, tuple(probes), parameters, section.file
    )


def _cached_driver_class(name: str, classes: dict[str, type[DriverBase]]) -> type[DriverBase]:
    """:func:`load_driver_class` for *name*, remembered in *classes*; raise LookupError."""
    if name not in classes:
        classes[name] = load_driver_class(name)
    return classes[name]


def _literal(text: str, error: Callable[[str, str], ConfigError], key: str) -> object:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise error(key, f"not a Python literal: {text.strip()[:80]!r}") from None
