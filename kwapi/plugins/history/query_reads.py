"""What both query routes share: reading the store, its failures as HTTP errors, timing.

Each query is counted by route and status code and timed in /metrics.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable

from flask import Response
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from kwapi.plugins.history import query_formats as q
from kwapi.plugins.history.export_lines import StoreError
from kwapi.plugins.history.query_context import context
from kwapi.plugins.history.store_reader import StoreUnavailable, TooManySamples

LOG = logging.getLogger(__name__)


class BadGateway(HTTPException):
    """The store answered something a query cannot use."""

    code = 502
    description = "the store's answer could not be read"


def timed(route: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Count the decorated view's answers by status code and time them, as *route*."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def counted(*args: object, **kwargs: object) -> Response:
            stats = context().stats
            began = time.perf_counter()
            code = 500
            try:
                response = view(*args, **kwargs)
                code = response.status_code
                return response
            except HTTPException as exc:
                code = exc.code or 500
                raise
            finally:
                stats.queries.labels(route, str(code)).inc()
                stats.seconds.labels(route).observe(time.perf_counter() - began)

        return counted

    return decorate


def read_or_fail(
    probes: Iterable[str],
    meter: str,
    start: float,
    end: float,
    fold: Callable[[str, list[bytes], int], None],
) -> None:
    """Read the store for the current query (see StoreReader.read); errors as HTTP ones."""
    served = context()
    counted = 0

    def counting(probe: str, lines: list[bytes], count: int) -> None:
        nonlocal counted
        counted += count
        fold(probe, lines, count)

    try:
        served.reader.read(probes, meter, start, end, served.max_samples, counting)
    except TooManySamples as exc:
        raise q.BadParameter(
            "end", f"{exc}; ask for a shorter range or fewer probes", code=413
        ) from None
    except StoreUnavailable as exc:
        LOG.warning("query failed: %s", exc)
        raise ServiceUnavailable(f"the store cannot be read: {exc}") from None
    except StoreError as exc:
        LOG.error("query failed: %s", exc)
        raise BadGateway(str(exc)) from None
    finally:
        served.stats.samples.inc(counted)


def check_known(probes: list[str], meter: str | None = None) -> None:
    """A 400 for the first of *probes* the store has no series of at all (or of *meter*)."""
    try:
        known = context().reader.series(probes)
    except StoreUnavailable as exc:
        raise ServiceUnavailable(f"the store cannot be read: {exc}") from None
    except StoreError as exc:
        raise BadGateway(str(exc)) from None
    unknown = [probe for probe in probes if probe not in known]
    if unknown:
        raise q.BadParameter("probe", "unknown probe, never stored: " + ", ".join(unknown[:20]))
    if meter is not None and meter not in known[probes[0]]:
        meters = ", ".join(sorted(known[probes[0]]))
        raise q.BadParameter("meter", f"{probes[0]} has no meter {meter} stored (it has {meters})")
