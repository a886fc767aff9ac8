"""PNG graphs drawn with rrdtool.graph, and a cache that draws each one once per resolution.

The summary graph stacks the power of every probe, with the total on top.
Probes take the colours of a qualitative palette (Okabe and Ito's, safe for
colour-blind eyes) in the order of their ids, so neighbours in the stack
and in the page's list always differ; the ``hue`` option turns every colour
of the palette round the colour wheel by ``hue - 100`` degrees (none at the
default 100).  A probe graph shows one meter of one probe: its average with
the band between its minimum and maximum.  Power legends give average,
minimum, maximum and last watts, the energy over the period (in Wh with the
SI prefix that fits: ``1.23 kWh``, ``450.00 mWh``) and its cost; a probe's
minimum and maximum come from its MIN and MAX archives, the total's from
the total line (the sum of the probes' averages at the graph's resolution).
The y axis always scales to the data.  Graphs are drawn for a period ending
now or for any :class:`~kwapi.plugins.rrd.periods.TimeRange`.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import rrdtool

from kwapi.bus.protocol import POWER_METER, finite_number
from kwapi.plugins.energy import JOULES_PER_KWH
from kwapi.plugins.rrd.periods import Period, TimeRange, meter_info
from kwapi.plugins.rrd.storage import DS_NAME, RrdStorage

WIDTH = 640
HEIGHT = 200

# librrd's graph code shares font and layout state; one drawing (or export) at a time.
DRAW_LOCK = threading.Lock()

#: Okabe and Ito's colour-blind-safe palette (black left out: it draws the total),
#: ordered so that each colour differs from the next in hue and in lightness.
PALETTE = ("0072B2", "E69F00", "009E73", "D55E00", "56B4E9", "CC79A7", "F0E442")
#: The ``hue`` at which the palette is used as it is.
PALETTE_HUE = 100
JOULES_PER_WH = 3600.0


def rrd_text(text: str) -> str:
    """Escape *text* for an rrdtool legend or DEF path (``\\`` and ``:``)."""
    return text.replace("\\", "\\\\").replace(":", "\\:")


def rrd_format(text: str) -> str:
    """Escape *text* for the literal part of a GPRINT format (also ``%``)."""
    return rrd_text(text).replace("%", "%%")


def palette(hue: int = PALETTE_HUE) -> tuple[str, ...]:
    """:data:`PALETTE` (``RRGGBB``) turned by ``hue - 100`` degrees, lightness kept."""
    turn = ((hue - PALETTE_HUE) % 360) / 360.0
    if not turn:
        return PALETTE
    turned = []
    for colour in PALETTE:
        red, green, blue = (int(colour[i : i + 2], 16) / 255.0 for i in (0, 2, 4))
        shade, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
        red, green, blue = colorsys.hls_to_rgb((shade + turn) % 1.0, lightness, saturation)
        turned.append(f"{round(red * 255):02X}{round(green * 255):02X}{round(blue * 255):02X}")
    return tuple(turned)


def probe_colours(probes: Sequence[str], hue: int = PALETTE_HUE) -> dict[str, str]:
    """``RRGGBB`` of each of *probes*: the palette's colours in the order of their ids.

    Neighbours (in sorted order, as the page lists and the summary stacks
    them) always differ, and the first ``len(PALETTE)`` probes all do.
    """
    return dict(_colours_of(tuple(sorted(probes)), hue))


@functools.lru_cache(maxsize=8)
def _colours_of(probes: tuple[str, ...], hue: int) -> tuple[tuple[str, str], ...]:
    """:func:`probe_colours` of sorted *probes*, kept for the next graphs of the same probes."""
    colours = palette(hue)
    return tuple((probe, colours[index % len(colours)]) for index, probe in enumerate(probes))


def probe_colour(probe_id: str, hue: int, probes: Sequence[str] | None = None) -> str:
    """``RRGGBB`` of *probe_id* among *probes* (:func:`probe_colours`).

    Without *probes* (or if it is not among them), a palette colour chosen
    from a hash of the id: fixed, but a neighbour may share it.
    """
    if probes is not None:
        found = probe_colours(probes, hue).get(probe_id)
        if found is not None:
            return found
    digest = hashlib.sha256(probe_id.encode("utf-8")).digest()
    colours = palette(hue)
    return colours[digest[0] % len(colours)]


@dataclass(frozen=True)
class Graph:
    """A drawn PNG and what rrdtool reported about it."""

    png: bytes
    width: int
    height: int
    value_min: float | None
    value_max: float | None
    drawn_at: float  # time.time() when drawn
    legend: tuple[str, ...] = ()  # rrdtool's legend texts (labels, GPRINTs), in order
    vertical_label: str = ""  # the unit written along the y axis


class GraphCache:
    """Keeps drawn graphs; a graph is redrawn only once its resolution has passed.

    Concurrent requests for the same key wait for one drawing and share it.
    ``draws`` counts the drawings made.
    """

    def __init__(self, size: int = 512, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.draws = 0
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Graph]] = OrderedDict()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def _fresh(self, key: Hashable, resolution: float) -> Graph | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() - entry[0] >= resolution:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def get(self, key: Hashable, resolution: float, draw: Callable[[], Graph]) -> Graph:
        """Return the cached graph for *key*, or draw it (once) if stale or missing."""
        graph = self._fresh(key, resolution)
        if graph is not None:
            return graph
        with self._lock:
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:
            graph = self._fresh(key, resolution)  # drawn while we waited?
            if graph is not None:
                return graph
            graph = draw()
            with self._lock:
                self.draws += 1
                self._entries[key] = (self._clock(), graph)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    old_key, _ = self._entries.popitem(last=False)
                    self._locks.pop(old_key, None)
            return graph


class Grapher:
    """Draws summary and probe graphs from an :class:`RrdStorage`, through a cache."""

    def __init__(
        self,
        storage: RrdStorage,
        *,
        hue: int = 100,
        kwh_price: float = 0.125,
        currency: str = "€",
        cache_size: int = 512,
    ) -> None:
        self.storage = storage
        self.hue = hue
        self.kwh_price = kwh_price
        self.currency = currency
        self.cache = GraphCache(cache_size)

    # -- cached entry points ---------------------------------------------

    def summary(self, period: Period) -> Graph:
        """The summary graph of *period* (cached)."""
        every = tuple(self.storage.probes())
        probes = tuple(p for p in every if self.storage.has(p, POWER_METER))
        return self.cache.get(
            ("summary", period.name, every, probes),
            period.resolution,
            lambda: self.draw_summary(period, probes),
        )

    def probe(self, period: Period, probe_id: str, meter: str = POWER_METER) -> Graph:
        """The graph of one meter of one probe over *period* (cached)."""
        return self.cache.get(
            ("probe", period.name, probe_id, meter, self.colour(probe_id)),
            period.resolution,
            lambda: self.draw_probe(period, probe_id, meter),
        )

    def summary_between(self, span: TimeRange) -> Graph:
        """The summary graph over *span* (cached, redrawn as a period of its archive's rows)."""
        period = span.period()
        every = tuple(self.storage.probes())
        probes = tuple(p for p in every if self.storage.has(p, POWER_METER))
        return self.cache.get(
            ("summary-range", span, every, probes),
            period.resolution,
            lambda: self.draw_summary(period, probes, span.end),
        )

    def probe_between(self, span: TimeRange, probe_id: str, meter: str = POWER_METER) -> Graph:
        """The graph of one meter of one probe over *span* (cached)."""
        period = span.period()
        return self.cache.get(
            ("probe-range", span, probe_id, meter, self.colour(probe_id)),
            period.resolution,
            lambda: self.draw_probe(period, probe_id, meter, span.end),
        )

    # -- colours ----------------------------------------------------------

    def colours(self) -> dict[str, str]:
        """``RRGGBB`` of every probe (see :func:`probe_colours`)."""
        return probe_colours(self.storage.probes(), self.hue)

    def colour(self, probe_id: str) -> str:
        """``RRGGBB`` of one probe, as in :meth:`colours`."""
        return probe_colour(probe_id, self.hue, self.storage.probes())

    # -- graph arguments --------------------------------------------------

    def common_args(self, period: Period, title: str, unit: str, end: int) -> list[str]:
        """The arguments every graph starts with, for *period* ending at *end*.

        PNG to standard output, the time span, the size, *title*, *unit*
        along the y axis (from 0, scaled to the data), fonts, white
        background, and ``--daemon`` when rrdcached is used.
        """
        return [
            "-",
            "--imgformat",
            "PNG",
            "--start",
            str(end - period.seconds),
            "--end",
            str(end),
            "--width",
            str(WIDTH),
            "--height",
            str(HEIGHT),
            "--title",
            title,
            "--vertical-label",
            unit or " ",
            "--lower-limit",
            "0",
            "--slope-mode",
            "--font",
            "DEFAULT:8:DejaVu Sans",
            "--font",
            "LEGEND:8:DejaVu Sans Mono",
            "--color",
            "BACK#FFFFFF",
            "--color",
            "CANVAS#FFFFFF",
            "--color",
            "SHADEA#FFFFFF",
            "--color",
            "SHADEB#FFFFFF",
            "--border",
            "0",
            *self.storage.daemon_args(),
        ]

    def power_legend(
        self, name: str, unit_format: str, low: str | None = None, high: str | None = None
    ) -> list[str]:
        """VDEFs and GPRINTs of average, min, max, last, energy and cost of series *name*.

        *name* is a DEF or CDEF of watts; the minimum is taken over series
        *low* (default ``<name>_lo``, its MIN) and the maximum over *high*
        (default ``<name>_hi``, its MAX).  The VDEFs and CDEFs it adds are
        named ``<name>_avg``, ``_min``, ``_max``, ``_last``, ``_whs``,
        ``_wh``, ``_money`` and ``_cost``; *unit_format* formats watts
        (e.g. ``%8.1lf W``), one line per series, in the columns of
        :meth:`legend_header`.  The energy is written in Wh with rrdtool's
        SI prefix (``%s``): ``1.23 kWh``, ``12.00  Wh`` (a space for none).
        """
        currency = rrd_format(self.currency)
        low = low or f"{name}_lo"
        high = high or f"{name}_hi"
        return [
            f"VDEF:{name}_avg={name},AVERAGE",
            f"VDEF:{name}_min={low},MINIMUM",
            f"VDEF:{name}_max={high},MAXIMUM",
            f"VDEF:{name}_last={name},LAST",
            f"CDEF:{name}_whs={name},{JOULES_PER_WH},/",
            f"VDEF:{name}_wh={name}_whs,TOTAL",
            f"CDEF:{name}_money={name},{self.kwh_price / JOULES_PER_KWH!r},*",
            f"VDEF:{name}_cost={name}_money,TOTAL",
            f"GPRINT:{name}_avg:{unit_format}",
            f"GPRINT:{name}_min:{unit_format}",
            f"GPRINT:{name}_max:{unit_format}",
            f"GPRINT:{name}_last:{unit_format}",
            f"GPRINT:{name}_wh:%9.2lf %sWh",
            f"GPRINT:{name}_cost:%9.3lf {currency}\\l",
        ]

    def legend_header(self, label_width: int) -> list[str]:
        """Titles of the :meth:`power_legend` columns after labels of *label_width* characters.

        One COMMENT each, so that rrdtool spaces them like the GPRINTs below.
        """
        columns = ["average", "minimum", "maximum", "last", "energy", "cost"]
        widths = [10, 10, 10, 10, 13, 10 + len(self.currency)]
        cells = [
            "COMMENT:" + rrd_text(column.rjust(width))
            for column, width in zip(columns, widths, strict=True)
        ]
        # The legend's colour box takes about three characters before each label.
        return ["COMMENT:" + rrd_text(" " * (label_width + 3)), *cells[:-1], cells[-1] + "\\l"]

    # -- drawing ----------------------------------------------------------

    def draw_summary(
        self, period: Period, probes: tuple[str, ...] | None = None, end: int | None = None
    ) -> Graph:
        """Draw every probe's power stacked, with a total line (not cached)."""
        if probes is None:
            probes = tuple(p for p in self.storage.probes() if self.storage.has(p, POWER_METER))
        end = int(time.time()) if end is None else end
        args = self.common_args(period, f"Power of every probe, {period.title}", "W", end)
        if not probes:
            args += [
                "--upper-limit",
                "1",
                "HRULE:0#CCCCCC",
                "COMMENT:" + rrd_text("No probe has reported power yet.") + "\\c",
            ]
            return render(args)
        label_width = min(max(len(p) for p in (*probes, "Total")), 32)
        args += self.legend_header(label_width)
        colours = self.colours()
        total = []
        for index, probe_id in enumerate(probes):
            path = rrd_text(str(self.storage.path(probe_id, POWER_METER)))
            low, high = self.storage.extremes(probe_id, POWER_METER)
            name = f"probe{index}"
            args += [
                f"DEF:{name}={path}:{DS_NAME}:AVERAGE",
                f"DEF:{name}_lo={path}:{low}:MIN",
                f"DEF:{name}_hi={path}:{high}:MAX",
                f"CDEF:{name}_or_zero={name},UN,0,{name},IF",  # stacks over unknown rows
                f"AREA:{name}_or_zero#{colours.get(probe_id) or self.colour(probe_id)}:"
                + rrd_text(legend_label(probe_id, label_width))
                + ("" if index == 0 else ":STACK"),
                *self.power_legend(name, "%8.1lf W"),
            ]
            total.append(name)
        rpn = total[0] + "".join(f",{name},ADDNAN" for name in total[1:])
        # The total's minimum and maximum are those of the total line itself (sums
        # of the probes' MIN or MAX would only bound them: the probes' extremes
        # need not fall in the same row).
        args += [
            f"CDEF:total={rpn}",
            "LINE2:total#000000:" + rrd_text(legend_label("Total", label_width)),
            *self.power_legend("total", "%8.1lf W", low="total", high="total"),
        ]
        return render(args)

    def draw_probe(
        self, period: Period, probe_id: str, meter: str = POWER_METER, end: int | None = None
    ) -> Graph:
        """Draw one meter of one probe: average line over its min-max band (not cached)."""
        info = meter_info(meter)
        end = int(time.time()) if end is None else end
        colour = self.colour(probe_id)
        path = rrd_text(str(self.storage.path(probe_id, meter)))
        low, high = self.storage.extremes(probe_id, meter)
        title = f"{probe_id}: {info.label.lower()}, {period.title}"
        args = self.common_args(period, title, info.unit, end)
        label_width = min(max(len(probe_id), 7), 32)
        args += [
            f"DEF:value={path}:{DS_NAME}:AVERAGE",
            f"DEF:value_lo={path}:{low}:MIN",
            f"DEF:value_hi={path}:{high}:MAX",
            "CDEF:value_band=value_hi,value_lo,-",
            "LINE:value_lo",
            f"AREA:value_band#{colour}55:" + rrd_text("minimum to maximum") + ":STACK",
            "COMMENT:\\l",
        ]
        if info.energy:
            args += [
                *self.legend_header(label_width),
                f"LINE2:value#{colour}:" + rrd_text(legend_label(probe_id, label_width)),
                *self.power_legend("value", "%8.1lf W"),
            ]
        else:
            args += [
                f"LINE2:value#{colour}:average",
                *value_legend("value", info.unit, low="value_lo", high="value_hi"),
            ]
        return render(args)


def legend_label(text: str, width: int) -> str:
    """*text* cut (with an ellipsis) or padded to *width* characters, for aligned legends.

    Escape the result with :func:`rrd_text` before putting it in an argument.
    """
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.ljust(width)


def value_legend(name: str, unit: str, *, low: str, high: str, average: str = "") -> list[str]:
    """VDEFs and GPRINTs of average, minimum, maximum and last of series *name*, in *unit*.

    The minimum is taken over series *low* and the maximum over *high*; the
    VDEFs are named ``<name>_avg``, ``_min``, ``_max`` and ``_last``.  The
    average is printed after *average* (a label, or nothing when the line's
    own label says it), all on one line.
    """
    unit = rrd_format(unit)
    return [
        f"VDEF:{name}_avg={name},AVERAGE",
        f"VDEF:{name}_min={low},MINIMUM",
        f"VDEF:{name}_max={high},MAXIMUM",
        f"VDEF:{name}_last={name},LAST",
        f"GPRINT:{name}_avg:{average}%6.2lf %s{unit}",
        f"GPRINT:{name}_min:  minimum %6.2lf %s{unit}",
        f"GPRINT:{name}_max:  maximum %6.2lf %s{unit}",
        f"GPRINT:{name}_last:  last %6.2lf %s{unit}\\l",
    ]


def render(args: list[str]) -> Graph:
    """Draw the graph of rrdtool arguments *args* (one drawing at a time), with what rrdtool says.

    *args* start with :meth:`Grapher.common_args` (the PNG goes to ``-``,
    and ``--vertical-label`` is read back as the graph's unit).
    """
    with DRAW_LOCK:
        result = rrdtool.graphv(*args)
    return Graph(
        png=result["image"],
        width=int(result["image_width"]),
        height=int(result["image_height"]),
        value_min=finite_number(result.get("value_min")),
        value_max=finite_number(result.get("value_max")),
        drawn_at=time.time(),
        legend=tuple(_legends(result)),
        vertical_label=args[args.index("--vertical-label") + 1].strip(),
    )


def _legends(result: Mapping[str, object]) -> list[str]:
    """The ``legend[N]`` texts of an rrdtool.graphv result, in order of N."""
    found = {}
    for key, value in result.items():
        if key.startswith("legend[") and key.endswith("]"):
            found[int(key[len("legend[") : -1])] = str(value)
    return [found[index] for index in sorted(found)]
