"""The OpenAPI documents of kwapi-api, kwapi-rrd and kwapi-history: valid, served, complete."""

from __future__ import annotations

import copy
import re
import textwrap
from importlib import resources

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from prometheus_client import CollectorRegistry

import kwapi
from kwapi.plugins import openapi
from kwapi.plugins.api.app import create_app as create_api_app
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.rrd.app import create_app as create_rrd_app
from kwapi.plugins.rrd.graphs import Grapher
from kwapi.plugins.rrd.storage import RrdStorage
from tests.plugins.history.query_helpers import make_app as make_history_app

PACKAGES = ["kwapi.plugins.api", "kwapi.plugins.rrd", "kwapi.plugins.history"]


@pytest.fixture
def apps(tmp_path):
    """Each plugin's Flask application, by package."""
    api = create_api_app(Collector(), lambda: {"alive": True}, CollectorRegistry())
    storage = RrdStorage(tmp_path / "rrd")
    rrd = create_rrd_app(storage, Grapher(storage))
    # The routes and the document only: no store is asked.
    history = make_history_app("http://127.0.0.1:9")
    return {"kwapi.plugins.api": api, "kwapi.plugins.rrd": rrd, "kwapi.plugins.history": history}


@pytest.mark.parametrize("package", PACKAGES)
def test_document_is_valid_openapi_3(package):
    document = openapi.load(package)
    assert document["openapi"].startswith("3.")
    assert document["info"]["version"] == kwapi.__version__
    validate(document)  # against the OpenAPI 3 schema, $refs resolved


def test_validation_catches_an_invalid_document():
    """The schema check has teeth: an operation without responses is refused."""
    document = copy.deepcopy(openapi.load("kwapi.plugins.rrd"))
    del document["paths"]["/stats/"]["get"]["responses"]
    with pytest.raises(OpenAPIValidationError, match=r"responses.? is a required property"):
        validate(document)


DUPLICATE_PATH = textwrap.dedent(
    """\
    openapi: 3.0.3
    paths:
      /stream/{stream}/:
        get: {}
      /stats/:
        get: {}
      /stream/{stream}/:
        put: {}
    """
)


def test_duplicate_key_is_an_error_naming_it_and_both_lines():
    assert yaml.safe_load(DUPLICATE_PATH)["paths"]["/stream/{stream}/"] == {"put": {}}
    with pytest.raises(openapi.DuplicateKeyError) as raised:
        openapi.parse(DUPLICATE_PATH, "rrd/openapi.yaml")
    message = str(raised.value)
    assert "found duplicate key '/stream/{stream}/' (first at line 3)" in message
    assert 'in "rrd/openapi.yaml", line 7, column 3' in message


def test_duplicate_key_in_a_nested_mapping_is_an_error():
    text = "components:\n  parameters:\n    stream: {}\n    probe: {}\n    stream: {}\n"
    with pytest.raises(openapi.DuplicateKeyError, match="duplicate key 'stream'"):
        openapi.parse(text)


def test_same_key_in_different_mappings_and_merge_keys_are_accepted():
    text = "base: &base {a: 1, b: 2}\nx: {a: 1}\ny:\n  <<: *base\n  a: 3\n"
    assert openapi.parse(text) == {"base": {"a": 1, "b": 2}, "x": {"a": 1}, "y": {"a": 3, "b": 2}}


@pytest.mark.parametrize("package", PACKAGES)
def test_shipped_file_has_no_duplicate_key(package):
    """Each file as shipped parses strictly (load() caches, so parse it afresh here)."""
    path = resources.files(package).joinpath(openapi.FILE_NAME)
    document = openapi.parse(path.read_text(encoding="utf-8"), str(path))
    assert document["paths"]


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
