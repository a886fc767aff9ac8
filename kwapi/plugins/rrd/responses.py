"""The kinds of response kwapi-rrd builds besides HTML pages: JSON and PNG."""

from __future__ import annotations

from flask import Response
from jinja2.utils import htmlsafe_json_dumps

from kwapi.plugins.rrd.graphs import Graph
from kwapi.plugins.rrd.periods import Period


def json_response(body: object, status: int = 200) -> Response:
    """JSON with ``<``, ``>``, ``&`` and ``'`` escaped, safe even if sniffed as HTML."""
    response = Response(htmlsafe_json_dumps(body), status=status, mimetype="application/json")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def png_response(graph: Graph, period: Period) -> Response:
    """*graph*'s PNG, cacheable until *period*'s next row."""
    response = Response(graph.png, mimetype="image/png")
    response.headers["Cache-Control"] = f"max-age={period.resolution}"
    return response
