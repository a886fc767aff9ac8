"""The OpenAPI description a plugin ships, served at /openapi.json and /openapi.yaml.

Each plugin package holds an ``openapi.yaml`` describing its routes; it is
read once, given kwapi's version, and served as is (YAML) or converted (JSON).
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import yaml
from flask import Flask, Response

import kwapi

FILE_NAME = "openapi.yaml"


@functools.cache
def load(package: str) -> dict:
    """The OpenAPI document of *package* (e.g. ``kwapi.plugins.api``) as a dict."""
    text = resources.files(package).joinpath(FILE_NAME).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    document["info"]["version"] = kwapi.__version__
    return document


def add_routes(app: Flask, package: str) -> None:
    """Serve *package*'s OpenAPI document on *app* at /openapi.json and /openapi.yaml."""
    document = load(package)
    as_json = json.dumps(document, ensure_ascii=False, indent=1)
    as_yaml = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        return Response(as_json, mimetype="application/json")

    @app.get("/openapi.yaml")
    def openapi_yaml() -> Response:
        return Response(as_yaml, mimetype="application/yaml")
