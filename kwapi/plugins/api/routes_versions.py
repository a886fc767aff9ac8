"""kwapi-api's version documents: / and /v1/."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, url_for

blueprint = Blueprint("versions", __name__)


def version_v1() -> dict[str, object]:
    """The document of version 1, with links to its collections."""
    return {
        "id": "v1",
        "status": "CURRENT",
        "links": [
            {"rel": "self", "href": url_for("versions.v1", _external=True)},
            {"rel": "probe-ids", "href": url_for("probes.probe_ids", _external=True)},
            {"rel": "probes", "href": url_for("probes.probes", _external=True)},
            {"rel": "streams", "href": url_for("streams.streams_list", _external=True)},
            {"rel": "stream-hosts", "href": url_for("streams.stream_hosts", _external=True)},
        ],
        "media-types": [{"base": "application/json"}],
    }


@blueprint.get("/")
def versions() -> Response:
    """Every version of the API (only v1)."""
    return jsonify({"versions": [version_v1()]})


@blueprint.get("/v1/")
def v1() -> Response:
    """The v1 document."""
    return jsonify({"version": version_v1()})
