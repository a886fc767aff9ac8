"""kwapi-rrd's streams of ``stream_power``: a page per stream and its energy graphs."""

from __future__ import annotations

from http import HTTPStatus

from flask import Blueprint, Response, abort, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from kwapi.plugins.rrd.context import context
from kwapi.plugins.rrd.lookups import find_period, find_stream
from kwapi.plugins.rrd.responses import png_response
from kwapi.plugins.rrd.stream_graphs import KINDS

blueprint = Blueprint("streams", __name__)


@blueprint.get("/stream/<stream>/")
def stream_index(stream: str) -> BaseResponse:
    """Redirect to the stream's page over the last 5 minutes."""
    return redirect(url_for("streams.stream_page", stream=find_stream(stream), period="minute"))


@blueprint.get("/stream/<stream>/<period>/")
def stream_page(stream: str, period: str) -> str:
    """One stream over *period*: its share of its host's power, bitrate, fps, efficiency."""
    find_stream(stream)
    chosen = find_period(period)
    served = context()
    meters = [m for m in ("bitrate", "fps") if served.storage.has(stream, m)]
    return render_template(
        "stream.html",
        stream=stream,
        host=served.streams.streams[stream],
        period=chosen,
        meters=meters,
        energy=served.stream_grapher.can_draw(stream),
        kinds=KINDS,
        share=served.streams.share,
    )


@blueprint.get("/stream-graph/<period>/<stream>/<kind>/")
def stream_graph(period: str, stream: str, kind: str) -> Response:
    """One energy graph (*kind*: power, bits or pixels per joule...) of one stream."""
    chosen = find_period(period)
    find_stream(stream)
    if kind not in KINDS:
        abort(
            HTTPStatus.NOT_FOUND,
            f"There is no stream graph called “{kind}”. Choose one of: {', '.join(KINDS)}.",
        )
    served = context()
    if not served.stream_grapher.can_draw(stream):
        abort(
            HTTPStatus.NOT_FOUND,
            f"Stream “{stream}” or its host “{served.streams.streams[stream]}” "
            "has not sent a measurement yet.",
        )
    return png_response(served.stream_grapher.graph(chosen, stream, kind), chosen)
