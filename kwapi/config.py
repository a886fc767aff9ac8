"""Configuration helpers shared by every daemon.

oslo.config parses options; this module adds what it lacks for kwapi: a
:class:`ConfigError` that names the file, section and key at fault, and
access to the raw sections of the configuration files (drivers.conf keeps
one wattmeter per section).
"""

from __future__ import annotations

import configparser
import glob
import os
from dataclasses import dataclass

from oslo_config import cfg


class ConfigError(Exception):
    """A configuration problem, reported as one line and exit status 2."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.section = section
        self.key = key

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:")
        if self.section:
            where.append(f"[{self.section}]")
        if self.key:
            where.append(f"{self.key}:")
        return " ".join([*where, self.message])


def config_files(conf: cfg.ConfigOpts) -> list[str]:
    """Return the files oslo.config read, in the order it read them."""
    files = list(conf.config_file or conf.default_config_files or [])
    for directory in [conf.config_dir] if conf.config_dir else []:
        files.extend(sorted(glob.glob(os.path.join(directory, "*.conf"))))
    return files


@dataclass(frozen=True)
class Section:
    """One section of one configuration file."""

    file: str
    name: str
    values: dict[str, str]


class _CaseKeepingParser(configparser.RawConfigParser):
    """A RawConfigParser that keeps keys as written (it lowercases them by default)."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def read_sections(files: list[str]) -> list[Section]:
    """Return every section but DEFAULT of *files*, in file order.

    A section that appears in several files is returned once per file; the
    caller decides how to merge.  Raises :class:`ConfigError` if a file
    cannot be read.
    """
    sections = []
    for path in files:
        # strict=False: like oslo.config, accept a section written twice.
        parser = _CaseKeepingParser(default_section="\0none", strict=False)
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise ConfigError(f"cannot read: {exc}", file=path) from None
        for name in parser.sections():
            if name != "DEFAULT":
                sections.append(Section(path, name, dict(parser.items(name))))
    return sections


def locate(files: list[str], section: str, key: str) -> str | None:
    """Return the last of *files* that sets *key* in *section*, if any."""
    found = None
    for path in files:
        # strict=False: a multi-valued option (MultiStrOpt) repeats its key.
        parser = configparser.RawConfigParser(default_section="\0none", strict=False)
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except (OSError, configparser.Error):
            continue
        if parser.has_option(section, key):
            found = path
    return found


OptGroups = list[tuple[str | None, list[cfg.Opt]]]


def check_options(conf: cfg.ConfigOpts, groups: OptGroups) -> None:
    """Convert every option of *groups* now, so a bad value fails at start."""
    files = config_files(conf)
    for group_name, opts in groups:
        namespace = conf if group_name is None else conf[group_name]
        section = group_name or "DEFAULT"
        for opt in opts:
            try:
                getattr(namespace, opt.dest)
            except (cfg.ConfigFileValueError, cfg.RequiredOptError, ValueError) as exc:
                message = _short(exc)
            except (cfg.NoSuchOptError, cfg.TemplateSubstitutionError):
                message = (
                    "the value refers to an unknown option (oslo.config reads $name as the "
                    "value of option name); write a literal $ as $$"
                )
            else:
                continue
            raise ConfigError(
                message, file=locate(files, section, opt.name), section=section, key=opt.name
            )


def _short(exc: Exception) -> str:
    text = str(exc)
    marker = " is not valid: "
    if marker in text:
        return "invalid value: " + text.split(marker, 1)[1]
    return text
