"""kwapi-rrd's error responses: an HTML page, or JSON under /data/."""

from __future__ import annotations

import logging
from http import HTTPStatus

import rrdtool
from flask import Blueprint, Response, render_template, request
from werkzeug.exceptions import HTTPException, NotFound

from kwapi.plugins.rrd.context import context
from kwapi.plugins.rrd.responses import json_response

LOG = logging.getLogger(__name__)

blueprint = Blueprint("errors", __name__)


def _wants_json() -> bool:
    """Whether the request is for JSON (the series under /data/)."""
    return request.path.startswith("/data/")


def error_page(code: int, title: str, message: str) -> Response:
    """The HTML page of an error."""
    page = render_template("error.html", code=code, title=title, message=message, path=request.path)
    return Response(page, status=code, mimetype="text/html")


@blueprint.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response:
    """An HTTP error as a page (or JSON), keeping its headers (Allow on a 405...)."""
    code = error.code or HTTPStatus.INTERNAL_SERVER_ERROR
    if _wants_json():
        response = json_response({"error": error.description, "status": code}, code)
    else:
        message = error.description or ""
        if message == NotFound.description:
            message = "There is no page at this address."
        response = error_page(code, error.name, message)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@blueprint.app_errorhandler(rrdtool.OperationalError)
def rrd_error(error: rrdtool.OperationalError) -> Response:
    """rrdtool failed: 503 while rrdcached is unreachable (a passing outage), else 500."""
    LOG.error("rrdtool failed on %s: %s", request.path, error)
    daemon = context().storage.daemon
    # librrd's words when rrdcached is down or restarting: a passing outage, not a bug.
    unreachable = daemon is not None and "rrdcached" in str(error)
    if unreachable:
        code, title = HTTPStatus.SERVICE_UNAVAILABLE, "rrdcached unavailable"
        message = (
            f"rrdcached at {daemon} does not answer ({error}); "
            "graphs and data come back when it does."
        )
    else:
        code, title = HTTPStatus.INTERNAL_SERVER_ERROR, "Graph unavailable"
        message = f"The RRD files could not be read: {error}"
    if _wants_json():
        response = json_response({"error": message, "status": code}, code)
    else:
        response = error_page(code, title, message)
    if unreachable:
        response.headers["Retry-After"] = "10"
    return response
