"""kwapi-api's energy per stream: /v1/streams/ and /v1/stream-hosts/."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from kwapi.bus.protocol import finite_number
from kwapi.plugins.api.context import context
from kwapi.plugins.api.stream_views import DEFAULT_PERIOD, MAX_PERIOD

blueprint = Blueprint("streams", __name__)


def period_argument() -> float:
    """The ``period`` query argument, in seconds; 400 unless in (0, MAX_PERIOD]."""
    text = request.args.get("period", str(DEFAULT_PERIOD))
    try:
        period = finite_number(float(text))
    except ValueError:
        period = None
    if period is None or not 0 < period <= MAX_PERIOD:
        raise BadRequest(
            f"period must be a number of seconds above 0 and at most {MAX_PERIOD}, not {text!r:.40}"
        )
    return period


@blueprint.get("/v1/streams/")
def streams_list() -> Response:
    """Every configured stream, with its share of its host's power."""
    streams = context().streams
    return jsonify({"streams": streams.streams() if streams else {}})


@blueprint.get("/v1/streams/<stream>/")
def stream(stream: str) -> Response:
    """One configured stream."""
    streams = context().streams
    body = streams.stream(stream) if streams else None
    if body is None:
        raise NotFound(f"no stream {stream!r} (not named in stream_power)")
    return jsonify({stream: body})


@blueprint.get("/v1/stream-hosts/")
def stream_hosts() -> Response:
    """Every power probe of stream_power, with its streaming energy over ``period``."""
    period = period_argument()
    streams = context().streams
    return jsonify({"hosts": streams.hosts(period) if streams else {}})


@blueprint.get("/v1/stream-hosts/<host>/")
def stream_host(host: str) -> Response:
    """One power probe of stream_power, with its streaming energy over ``period``."""
    period = period_argument()
    streams = context().streams
    body = streams.host(host, period) if streams else None
    if body is None:
        raise NotFound(f"no power probe {host!r} in stream_power")
    return jsonify({host: body})
