"""The OpenAPI description a plugin ships, served at /openapi.json and /openapi.yaml.

Each plugin package holds an ``openapi.yaml`` describing its routes; it is
read once, given kwapi's version, and served as is (YAML) or converted (JSON).
It is read strictly: a key written twice in one mapping (a path described
twice, say) is an error, where ``yaml.safe_load`` would silently keep the last.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Flask, Response, current_app

import kwapi

FILE_NAME = "openapi.yaml"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping names the same key twice."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping naming a key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """Check *node*'s own keys for duplicates, then build it as SafeLoader does."""
        first_seen: dict[object, yaml.Mark] = {}
        for key_node, _value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # "<<: *anchor" may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = first_seen.setdefault(key, key_node.start_mark)
            except TypeError:  # unhashable: SafeLoader reports it
                continue
            if first is not key_node.start_mark:
                raise DuplicateKeyError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def parse(text: str, source: str = "<string>") -> object:
    """The YAML document *text* (named *source* in errors), refusing duplicate keys.

    Raises :class:`DuplicateKeyError` for a key written twice in one mapping,
    and ``yaml.YAMLError`` for any other error.
    """
    loader = StrictLoader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@functools.cache
def load(package: str) -> dict[str, Any]:
    """The OpenAPI document of *package* (e.g. ``kwapi.plugins.api``) as a dict."""
    path = resources.files(package).joinpath(FILE_NAME)
    document = parse(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: an OpenAPI document is a mapping")
    document["info"]["version"] = kwapi.__version__
    return document


#: Key of the package whose document an application serves, in ``app.extensions``.
EXTENSION = "kwapi.openapi"

blueprint = Blueprint("openapi", __name__)


@functools.cache
def texts(package: str) -> tuple[str, str]:
    """*package*'s OpenAPI document written as JSON and as YAML, once."""
    document = load(package)
    as_json = json.dumps(document, ensure_ascii=False, indent=1)
    as_yaml = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    return as_json, as_yaml


def add_routes(app: Flask, package: str) -> None:
    """Serve *package*'s OpenAPI document on *app* at /openapi.json and /openapi.yaml."""
    texts(package)  # a broken document fails at start, not at the first request
    app.extensions[EXTENSION] = package
    app.register_blueprint(blueprint)


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    """The application's OpenAPI document, as JSON."""
    as_json, _ = texts(current_app.extensions[EXTENSION])
    return Response(as_json, mimetype="application/json")


@blueprint.get("/openapi.yaml")
def openapi_yaml() -> Response:
    """The application's OpenAPI document, as YAML."""
    _, as_yaml = texts(current_app.extensions[EXTENSION])
    return Response(as_yaml, mimetype="application/yaml")
