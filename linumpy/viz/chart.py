"""Line charts drawn with Pillow: a QC figure without matplotlib's import and layout passes.

:func:`line_chart` draws panels stacked over one shared x axis, each with its
series (lines through finite values, a marker on each or none, optionally
filled down to the axis), red circles on chosen points, dashed rules at
given values, shaded x spans, linear or log y, tick labels at round values
and a legend: the stack's ``shifts`` figure
(:func:`linumpy.stack.quality.shifts_png`) and the slice steps' depth
profiles and histograms (:mod:`linumpy.qc.figures`); :func:`stacked` puts
charts with x axes of their own under one title. matplotlib's import and its
two drawing passes (``tight_layout`` draws the figure once more) cost about
0.5 CPU s a figure, Pillow's a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
#: matplotlib's first default colours (``C0``, ``C1``, ``C2``) and its red, so the charts read as the other figures.
BLUE, ORANGE, GREEN, RED = (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)
_BLACK, _GREY, _WHITE = (0, 0, 0), (225, 225, 225), (255, 255, 255)
#: A mid grey (matplotlib's ``"grey"``) and the shading of :attr:`Panel.spans` (its ``"0.85"``).
GREY, SHADE = (128, 128, 128), (217, 217, 217)
#: Chart width and each panel's height, pixels; the title's and the x axis' bands; the tick labels' font size.
CHART_WIDTH, PANEL_HEIGHT, TITLE_HEIGHT, X_AXIS_HEIGHT, FONT_SIZE = 600, 230, 30, 44, 12
_LEFT, _RIGHT, _GAP, _MARKER, _CIRCLE, _LINE_SAMPLES, _DASH = 72, 16, 14, 3, 8, 16, (6, 4)


@dataclass(frozen=True)
class Series:
    """A line with a marker on each finite value (``"o"`` a disc, ``"s"`` a square, ``""`` none); ``fill``:
    the area between the line and the panel's bottom filled in its colour."""

    label: str
    values: np.ndarray
    colour: Colour
    marker: str = "o"
    fill: bool = False


@dataclass(frozen=True)
class Rule:
    """A dashed line across a panel, vertical at x = ``value`` (horizontal at y = ``value`` if not
    ``vertical``), its ``label`` written beside it."""

    value: float
    colour: Colour = RED
    label: str = ""
    vertical: bool = True


@dataclass(frozen=True)
class Panel:
    """One panel: its series, its y label, optional y limits (their log10 with ``log_y``), points circled in
    red (``circled_label``), dashed ``rules``, x ``spans`` shaded grey and a log y axis (``log_y``: values <= 0
    not drawn)."""

    ylabel: str
    series: Sequence[Series]
    ylim: tuple[float, float] | None = None
    circled: Sequence[tuple[float, float]] = field(default_factory=tuple)
    circled_label: str = ""
    rules: Sequence[Rule] = field(default_factory=tuple)
    spans: Sequence[tuple[float, float]] = field(default_factory=tuple)
    log_y: bool = False


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


def log_ticks(low: float, high: float) -> list[float]:
    """Ticks of a log axis spanning ``low`` to ``high`` (log10 values): the whole powers of ten inside, or
    round log10 values where fewer than two are.

    Examples
    --------
    >>> log_ticks(-0.4, 3.2)
    [0, 1, 2, 3]
    """
    powers = list(range(math.ceil(low), math.floor(high) + 1))
    return powers if len(powers) >= 2 else nice_ticks(low, high)


def line_chart(x: Sequence[float], panels: Sequence[Panel], xlabel: str, title: str,
               x_ticks: Callable[[float, float], Sequence[float]] = integer_ticks) -> Image.Image:
    """RGB chart of ``panels`` stacked over one shared x axis.

    Parameters
    ----------
    x : sequence of float
        The x value of every series' points; padded by 5 % of their span.
    panels : sequence of Panel
        One or more panels, top to bottom, each :data:`PANEL_HEIGHT` pixels high; a panel without ``ylim``
        spans its finite values (and circled points) padded by 5 %.
    xlabel, title : str
        Below the x axis, above the first panel.
    x_ticks : callable
        The x ticks of a range: :func:`integer_ticks` (whole numbers: slice ids) or :func:`nice_ticks`.

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
    _title(draw, CHART_WIDTH, title)
    x_low, x_high = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
    pad = 0.05 * (x_high - x_low) if x_high > x_low else 0.5
    x_range = (x_low - pad, x_high + pad)
    ticks = x_ticks(*x_range)
    for index, panel in enumerate(panels):
        top = TITLE_HEIGHT + index * (PANEL_HEIGHT + _GAP)
        box = (_LEFT, top, CHART_WIDTH - _RIGHT, top + PANEL_HEIGHT)
        _draw_panel(image, draw, font, box, x, (x_range, ticks), panel)
    bottom = box[3]
    for tick in ticks:
        column = _to_pixel(tick, x_range, box[0], box[2])
        draw.line([(column, bottom + 1), (column, bottom + 4)], fill=_BLACK)
        draw.text((column, bottom + 6), f"{tick:g}", fill=_BLACK, font=font, anchor="mt")
    draw.text(((box[0] + box[2]) / 2, height - 4), xlabel, fill=_BLACK, font=font, anchor="mb")
    return image


def _draw_panel(image: Image.Image, draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont,
                box: tuple[int, int, int, int], x: np.ndarray,
                x_axis: tuple[tuple[float, float], Sequence[float]], panel: Panel) -> None:
    left, top, right, bottom = box
    x_range, x_ticks = x_axis
    values = [_drawn_values(s.values, panel.log_y) for s in panel.series]
    circled = [(a, _drawn_values([b], panel.log_y)[0]) for a, b in panel.circled]
    y_range = panel.ylim or _data_range(values + [[y for _, y in circled]])
    for span in panel.spans:
        low, high = (min(max(_to_pixel(v, x_range, left, right), left), right) for v in span)
        draw.rectangle([low, top, high, bottom], fill=SHADE)
    for tick in log_ticks(*y_range) if panel.log_y else nice_ticks(*y_range):
        row = _to_pixel(tick, y_range, bottom, top)
        draw.line([(left, row), (right, row)], fill=_GREY)
        draw.line([(left - 4, row), (left - 1, row)], fill=_BLACK)
        draw.text((left - 6, row), f"{10.0 ** tick if panel.log_y else tick:g}", fill=_BLACK, font=font, anchor="rm")
    for column in x_ticks:
        draw.line([(_to_pixel(column, x_range, left, right), top), (_to_pixel(column, x_range, left, right), bottom)],
                  fill=_GREY)
    draw.rectangle(box, outline=_BLACK)  # before the data: a value on the limits stays visible
    drawn = []  # pixels on the lines, the markers, the rules and the circles, which the legend avoids
    for series, series_values in zip(panel.series, values, strict=True):
        points = [(_to_pixel(a, x_range, left, right), _to_pixel(b, y_range, bottom, top))
                  for a, b in zip(x, series_values, strict=True)]
        drawn += _draw_series(draw, series, [p if math.isfinite(p[1]) else None for p in points], bottom - 1)
    rules = [(rule, _rule_geometry(rule, box, x_range, y_range)) for rule in panel.rules]
    for rule, geometry in rules:
        drawn += _draw_rule(draw, font, rule, geometry)
    for a, b in circled:
        centre = (_to_pixel(a, x_range, left, right), _to_pixel(b, y_range, bottom, top))
        draw.ellipse(_around(centre, _CIRCLE), outline=RED, width=2)
        drawn.append(centre)
    vertical_label(image, font, panel.ylabel, (4, top), bottom - top)
    _legend(draw, font, box, panel, np.reshape(drawn, (-1, 2)))
    for rule, (_, _, text, anchor) in rules:  # over the legend if it could go nowhere else
        draw.text(text, rule.label, fill=rule.colour, font=font, anchor=anchor)


def _draw_series(draw: ImageDraw.ImageDraw, series: Series, points: list[tuple[float, float] | None],
                 baseline: float) -> list[list[float]]:
    """A series' fill (down to the ``baseline`` row), lines between consecutive finite points (None: not
    finite) and markers; returns the pixels drawn."""
    drawn = []
    if series.fill:
        runs = [[]]
        for point in points:
            if point is None:
                runs.append([])
            else:
                runs[-1].append(point)
        for run in filter(None, runs):
            draw.polygon([*run, (run[-1][0], baseline), (run[0][0], baseline)], fill=series.colour)
    for start, end in zip(points[:-1], points[1:], strict=True):
        if start is not None and end is not None:
            draw.line([start, end], fill=series.colour, width=2)
            drawn += np.linspace(start, end, _LINE_SAMPLES).tolist()
    if series.marker:
        for point in filter(None, points):
            _marker(draw, point, series.marker, series.colour)
            drawn.append(point)
    return drawn


def _rule_geometry(rule: Rule, box: tuple[int, int, int, int], x_range: tuple[float, float],
                   y_range: tuple[float, float]) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float],
                                                          str]:
    """A rule's ends across ``box`` and its label's place and anchor (at its foot, or its right end)."""
    left, top, right, bottom = box
    if rule.vertical:
        column = _to_pixel(rule.value, x_range, left, right)
        return (column, top), (column, bottom), (column + 3, bottom - 3), "lb"
    row = _to_pixel(rule.value, y_range, bottom, top)
    return (left, row), (right, row), (right - 3, row - 2), "rb"


def _draw_rule(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, rule: Rule,
               geometry: tuple[tuple[float, float], tuple[float, float], tuple[float, float], str]) -> list[list[float]]:
    """A dashed rule; returns its pixels and points over its label's box (the label is drawn last)."""
    start, end, text, anchor = geometry
    dashed_line(draw, start, end, rule.colour)
    drawn = np.linspace(start, end, _LINE_SAMPLES).tolist()
    if rule.label:
        x0, y0, x1, y1 = draw.textbbox(text, rule.label, font=font, anchor=anchor)
        drawn += np.stack(np.meshgrid(np.linspace(x0, x1, 4), np.linspace(y0, y1, 3)), axis=-1).reshape(-1, 2).tolist()
    return drawn


def dashed_line(draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float], colour: Colour,
                width: int = 1) -> None:
    """A line from ``start`` to ``end`` drawn as dashes (6 pixels on, 4 off)."""
    length = math.dist(start, end)
    on, off = _DASH
    for offset in np.arange(0.0, length, on + off):
        a, b = offset / length, min(offset + on, length) / length
        draw.line([tuple(np.add(start, a * np.subtract(end, start))), tuple(np.add(start, b * np.subtract(end, start)))],
                  fill=colour, width=width)


def stacked(charts: Sequence[Image.Image], title: str) -> Image.Image:
    """Charts one under the other (each with an x axis of its own), under ``title``."""
    width = max(chart.width for chart in charts)
    image = Image.new("RGB", (width, TITLE_HEIGHT + sum(chart.height for chart in charts)), _WHITE)
    _title(ImageDraw.Draw(image), width, title)
    top = TITLE_HEIGHT
    for chart in charts:
        image.paste(chart, (0, top))
        top += chart.height
    return image


def vertical_label(image: Image.Image, font: ImageFont.FreeTypeFont, text: str, position: tuple[int, int],
                   length: int) -> None:
    """``text`` turned a quarter (reading upwards), centred along ``length`` pixels, pasted at ``position``."""
    label = Image.new("RGB", (length, FONT_SIZE + 6), _WHITE)
    ImageDraw.Draw(label).text((label.width / 2, label.height / 2), text, fill=_BLACK, font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), position)


def _title(draw: ImageDraw.ImageDraw, width: int, title: str) -> None:
    draw.text((width / 2, TITLE_HEIGHT / 2), title, fill=_BLACK, font=ImageFont.load_default(size=15), anchor="mm")


def _drawn_values(values: Sequence[float], log_y: bool) -> np.ndarray:
    """Values as drawn: float64, their log10 on a log axis (NaN where not positive)."""
    values = np.asarray(values, dtype=np.float64)
    if not log_y:
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.where(values > 0, values, np.nan))


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
    elif marker:
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
