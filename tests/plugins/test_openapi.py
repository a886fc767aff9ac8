"""The OpenAPI documents of kwapi-api and kwapi-rrd: valid, served, and complete."""

from __future__ import annotations

import re

import pytest
import schemathesis
import yaml
from prometheus_client import CollectorRegistry

import kwapi
from kwapi.plugins import openapi
from kwapi.plugins.api.app import create_app as create_api_app
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.rrd.app import create_app as create_rrd_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.storage import RrdStorage

PACKAGES = ["kwapi.plugins.api", "kwapi.plugins.rrd"]


@pytest.fixture
def apps(tmp_path):
    """Each plugin's Flask application, by package."""
    api = create_api_app(Collector(), lambda: {"alive": True}, CollectorRegistry())
    storage = RrdStorage(tmp_path / "rrd")
    rrd = create_rrd_app(storage, Grapher(storage))
    return {"kwapi.plugins.api": api, "kwapi.plugins.rrd": rrd}


@pytest.mark.parametrize("package", PACKAGES)
def test_document_is_valid_openapi_3(package):
    document = openapi.load(package)
    assert document["openapi"].startswith("3.")
    assert document["info"]["version"] == kwapi.__version__
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI meta-schema


@pytest.mark.parametrize("package", PACKAGES)
def test_served_as_json_and_yaml(apps, package):
    client = apps[package].test_client()
    as_json = client.get("/openapi.json")
    assert as_json.status_code == 200
    assert as_json.mimetype == "application/json"
    assert as_json.get_json() == openapi.load(package)
    as_yaml = client.get("/openapi.yaml")
    assert as_yaml.status_code == 200
    assert as_yaml.mimetype == "application/yaml"
    assert yaml.safe_load(as_yaml.get_data(as_text=True)) == openapi.load(package)


def _documented_path(rule: str) -> str:
    """/v1/probes/<probe>/ -> /v1/probes/{probe}/ (converters dropped)."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_]+)>", r"{\1}", rule)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_route_is_described(apps, package):
    """A route added to a plugin without its description fails here."""
    paths = openapi.load(package)["paths"]
    served = set()
    for rule in apps[package].url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = _documented_path(rule.rule)
        served.add(path)
        assert path in paths, f"{rule.rule} is served but not in {package}'s openapi.yaml"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule} is not described"
    assert set(paths) == served, "described paths that are not served"
