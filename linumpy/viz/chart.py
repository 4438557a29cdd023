"""Line charts drawn with Pillow: a QC figure without matplotlib's import and layout passes.

:func:`line_chart` draws panels stacked over one shared x axis, each with its
series (lines through finite values, a marker on each), red circles on
chosen points, tick labels at round values and a legend: what the stack's
``shifts`` figure needs (:func:`linumpy.stack.quality.shifts_png`). The
stack's QC draws it while the volume is written; matplotlib's import and
its two drawing passes (``tight_layout`` draws the figure once more) cost
about as much CPU as the stack's whole write, Pillow's a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
#: matplotlib's first default colours (``C0``, ``C1``, ``C2``) and its red, so the charts read as the other figures.
BLUE, ORANGE, GREEN, RED = (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)
_BLACK, _GREY, _WHITE = (0, 0, 0), (225, 225, 225), (255, 255, 255)
#: Chart width and each panel's height, pixels; the title's and the x axis' bands; the tick labels' font size.
CHART_WIDTH, PANEL_HEIGHT, TITLE_HEIGHT, X_AXIS_HEIGHT, FONT_SIZE = 600, 230, 30, 44, 12
_LEFT, _RIGHT, _GAP, _MARKER, _CIRCLE, _LINE_SAMPLES = 72, 16, 14, 3, 8, 16


@dataclass(frozen=True)
class Series:
    """A line with a marker on each finite value (``"o"`` a disc, ``"s"`` a square)."""

    label: str
    values: np.ndarray
    colour: Colour
    marker: str = "o"


@dataclass(frozen=True)
class Panel:
    """One panel: its series, its y label, optional y limits, points circled in red (``circled_label``)."""

    ylabel: str
    series: Sequence[Series]
    ylim: tuple[float, float] | None = None
    circled: Sequence[tuple[float, float]] = field(default_factory=tuple)
    circled_label: str = ""


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 x 10^k apart) inside ``[low, high]``, the finest step giving at most
    ``most`` intervals.

    Examples
    --------
    >>> nice_ticks(-0.05, 1.05)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(-5.45, 4.45)
    [-4.0, -2.0, 0.0, 2.0, 4.0]
    """
    span = high - low if high > low else 1.0
    exponent = math.floor(math.log10(span / most))
    step = next(m * 10.0 ** e for e in (exponent, exponent + 1) for m in (1, 2, 5, 10)
                if span / (m * 10.0 ** e) <= most + 1e-9)
    first = math.ceil(low / step - 1e-9)
    return [round(k * step, 12) + 0.0 for k in range(first, math.floor(high / step + 1e-9) + 1)]


def integer_ticks(low: float, high: float, most: int = 12) -> list[int]:
    """Whole-number ticks inside ``[low, high]`` (slice ids), at most ``most`` intervals apart.

    Examples
    --------
    >>> integer_ticks(0, 4), integer_ticks(0, 40)
    ([0, 1, 2, 3, 4], [0, 5, 10, 15, 20, 25, 30, 35, 40])
    """
    return sorted({int(t) for t in nice_ticks(low, high, most) if float(t).is_integer()})


def line_chart(x: Sequence[float], panels: Sequence[Panel], xlabel: str, title: str) -> Image.Image:
    """RGB chart of ``panels`` stacked over one shared x axis.

    Parameters
    ----------
    x : sequence of float
        The x value of every series' points (whole numbers are ticked: slice ids); padded by 5 % of their span.
    panels : sequence of Panel
        One or more panels, top to bottom, each :data:`PANEL_HEIGHT` pixels high; a panel without ``ylim``
        spans its finite values (and circled points) padded by 5 %.
    xlabel, title : str
        Below the x axis, above the first panel.

    Returns
    -------
    PIL.Image.Image
        :data:`CHART_WIDTH` pixels wide; :func:`linumpy.qc.records.render_png` writes it.
    """
    x = np.asarray(x, dtype=np.float64)
    font = ImageFont.load_default(size=FONT_SIZE)
    height = TITLE_HEIGHT + len(panels) * PANEL_HEIGHT + (len(panels) - 1) * _GAP + X_AXIS_HEIGHT
    image = Image.new("RGB", (CHART_WIDTH, height), _WHITE)
    draw = ImageDraw.Draw(image)
    draw.text((CHART_WIDTH / 2, TITLE_HEIGHT / 2), title, fill=_BLACK, font=ImageFont.load_default(size=15),
              anchor="mm")
    x_low, x_high = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
    pad = 0.05 * (x_high - x_low) if x_high > x_low else 0.5
    x_range = (x_low - pad, x_high + pad)
    for index, panel in enumerate(panels):
        top = TITLE_HEIGHT + index * (PANEL_HEIGHT + _GAP)
        box = (_LEFT, top, CHART_WIDTH - _RIGHT, top + PANEL_HEIGHT)
        _draw_panel(image, draw, font, box, x, x_range, panel)
    bottom = box[3]
    for tick in integer_ticks(*x_range):
        column = _to_pixel(tick, x_range, box[0], box[2])
        draw.line([(column, bottom + 1), (column, bottom + 4)], fill=_BLACK)
        draw.text((column, bottom + 6), str(tick), fill=_BLACK, font=font, anchor="mt")
    draw.text(((box[0] + box[2]) / 2, height - 4), xlabel, fill=_BLACK, font=font, anchor="mb")
    return image


def _draw_panel(image: Image.Image, draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont,
                box: tuple[int, int, int, int], x: np.ndarray, x_range: tuple[float, float], panel: Panel) -> None:
    left, top, right, bottom = box
    y_range = panel.ylim or _data_range([s.values for s in panel.series] + [[y for _, y in panel.circled]])
    for tick in nice_ticks(*y_range):
        row = _to_pixel(tick, y_range, bottom, top)
        draw.line([(left, row), (right, row)], fill=_GREY)
        draw.line([(left - 4, row), (left - 1, row)], fill=_BLACK)
        draw.text((left - 6, row), f"{tick:g}", fill=_BLACK, font=font, anchor="rm")
    for column in integer_ticks(*x_range):
        draw.line([(_to_pixel(column, x_range, left, right), top), (_to_pixel(column, x_range, left, right), bottom)],
                  fill=_GREY)
    draw.rectangle(box, outline=_BLACK)  # before the data: a value on the limits stays visible
    drawn = []  # pixels on the lines, the markers and the circles, which the legend avoids
    for series in panel.series:
        points = [(_to_pixel(a, x_range, left, right), _to_pixel(b, y_range, bottom, top))
                  for a, b in zip(x, np.asarray(series.values, dtype=np.float64), strict=True)]
        finite = [p if math.isfinite(p[1]) else None for p in points]
        for start, end in zip(finite[:-1], finite[1:], strict=True):
            if start is not None and end is not None:
                draw.line([start, end], fill=series.colour, width=2)
                drawn += np.linspace(start, end, _LINE_SAMPLES).tolist()
        for point in filter(None, finite):
            _marker(draw, point, series.marker, series.colour)
            drawn.append(point)
    for a, b in panel.circled:
        centre = (_to_pixel(a, x_range, left, right), _to_pixel(b, y_range, bottom, top))
        draw.ellipse(_around(centre, _CIRCLE), outline=RED, width=2)
        drawn.append(centre)
    label = Image.new("RGB", (bottom - top, FONT_SIZE + 6), _WHITE)
    ImageDraw.Draw(label).text((label.width / 2, label.height / 2), panel.ylabel, fill=_BLACK, font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), (4, top))
    _legend(draw, font, box, panel, np.reshape(drawn, (-1, 2)))


def _legend(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, box: tuple[int, int, int, int], panel: Panel,
            drawn: np.ndarray) -> None:
    """The panel's labelled series (and circled points), in the corner of ``box`` whose legend covers the
    fewest ``drawn`` pixels (matplotlib's ``loc="best"``; top right, top left, bottom left, bottom right on a tie)."""
    entries = [(s.label, s.colour, s.marker) for s in panel.series if s.label]
    entries += [(panel.circled_label, RED, "circle")] if panel.circled and panel.circled_label else []
    if not entries:
        return
    width, height = max(draw.textlength(label, font=font) for label, _, _ in entries) + 34, 6 + 18 * len(entries)
    left, top, right, bottom = box
    corners = [(right - 8 - width, top + 8), (left + 8, top + 8), (left + 8, bottom - 8 - height),
               (right - 8 - width, bottom - 8 - height)]

    def covered(corner: tuple[float, float]) -> int:
        inside = (drawn >= np.subtract(corner, _CIRCLE)) & (drawn <= np.add(corner, (width + _CIRCLE, height + _CIRCLE)))
        return int(np.count_nonzero(inside.all(axis=1)))

    x0, y0 = min(corners, key=covered)
    draw.rectangle([x0, y0, x0 + width, y0 + height], fill=_WHITE, outline=_GREY)
    for row, (label, colour, marker) in enumerate(entries):
        middle = y0 + 12 + 18 * row
        sample = (x0 + 6, x0 + 24)
        if marker == "circle":
            draw.ellipse(_around(((sample[0] + sample[1]) / 2, middle), _CIRCLE - 2), outline=colour, width=2)
        else:
            draw.line([(sample[0], middle), (sample[1], middle)], fill=colour, width=2)
            _marker(draw, ((sample[0] + sample[1]) / 2, middle), marker, colour)
        draw.text((sample[1] + 4, middle), label, fill=_BLACK, font=font, anchor="lm")


def _marker(draw: ImageDraw.ImageDraw, centre: tuple[float, float], marker: str, colour: Colour) -> None:
    if marker == "s":
        draw.rectangle(_around(centre, _MARKER), fill=colour)
    else:
        draw.ellipse(_around(centre, _MARKER), fill=colour)


def _around(centre: tuple[float, float], radius: float) -> list[float]:
    return [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]


def _to_pixel(value: float, data_range: tuple[float, float], start: int, end: int) -> float:
    """Pixel of ``value`` in ``data_range`` mapped onto ``start`` (low) to ``end`` (high)."""
    low, high = data_range
    return start + (value - low) / (high - low) * (end - start)


def _data_range(values: Sequence[Sequence[float]]) -> tuple[float, float]:
    """The finite values' range padded by 5 % (a flat or empty set: +-1 around it).

    Examples
    --------
    >>> _data_range([[0.0, 2.0, np.nan], []]), _data_range([[0.0, 0.0]])
    ((-0.1, 2.1), (-1.0, 1.0))
    """
    finite = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values])
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if high <= low:
        return low - 1.0, high + 1.0
    pad = 0.05 * (high - low)
    return round(low - pad, 12), round(high + pad, 12)
