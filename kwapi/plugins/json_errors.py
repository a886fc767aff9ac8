"""Errors and redirects of the plugins' JSON APIs (kwapi-api, kwapi-history).

Register :data:`blueprint` on an application to answer its errors this way.

Every error, including unknown routes and wrong methods, is answered with a
JSON body ``{"error": {"code", "title", "message"}}``; a path missing its
trailing slash is redirected (308) to the one with it, with a JSON body
``{"redirect": {"code", "title", "location"}}``, and a wrong method on it
is a 405 as on the path with the slash.
"""

from __future__ import annotations

import contextlib
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import RequestRedirect

LOG = logging.getLogger(__name__)

blueprint = Blueprint("errors", __name__)


def error_body(code: int, title: str, message: str) -> dict[str, dict[str, object]]:
    """The JSON document of an error response."""
    return {"error": {"code": code, "title": title, "message": message}}


def redirect_response(redirect: RequestRedirect) -> Response:
    """*redirect* (a 308 to the path with its trailing slash) with a JSON body."""
    title = HTTP_STATUS_CODES.get(redirect.code, "Redirect")
    body = {"redirect": {"code": redirect.code, "title": title, "location": redirect.new_url}}
    response = jsonify(body)
    response.status_code = redirect.code
    response.headers["Location"] = redirect.new_url
    return response


@blueprint.before_app_request
def routing_in_json() -> Response | None:
    """Answer a redirect in JSON, and a wrong method on a slashless path with a 405."""
    # Flask answers a redirect with werkzeug's HTML page, past the error
    # handlers, and a wrong method on a path missing its slash with a 404.
    routed = request.routing_exception
    if isinstance(routed, RequestRedirect):
        return redirect_response(routed)
    if isinstance(routed, NotFound) and not request.path.endswith("/"):
        # MethodNotAllowed propagates: the slashed path is a route, not for this method.
        with contextlib.suppress(NotFound, RequestRedirect):
            adapter = current_app.create_url_adapter(request)
            if adapter is not None:
                adapter.match(request.path + "/", method=request.method)
    return None


@blueprint.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    """An HTTP error as a JSON error document, with its headers (Allow on a 405...)."""
    code = exc.code or 500
    response = jsonify(error_body(code, exc.name, exc.description or ""))
    response.status_code = code
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@blueprint.app_errorhandler(Exception)
def unexpected_error(exc: Exception) -> tuple[Response, int]:
    """A bug: logged with its traceback, answered with a JSON 500 that hides it."""
    LOG.exception("error while serving a request")
    body = error_body(500, "Internal Server Error", "the server failed to answer; see its log")
    return jsonify(body), 500
