"""QC figures of the pipeline's steps, drawn with Pillow from plain arrays.

Every helper takes numpy arrays (or small dicts/lists), does no file I/O and
returns an RGB :class:`PIL.Image.Image`, ready for
:func:`linumpy.qc.records.write_qc_record`. Callers pass small summaries (an
AIP, per-pair residuals, a depth profile, a histogram), never whole volumes.
No matplotlib: its import (~0.35 CPU s) and its layout passes (0.15-0.25 s a
figure) cost each slice step about half a CPU second; Pillow draws a figure in
a few milliseconds (:mod:`linumpy.viz.chart`). The built-in font has no micro
sign: lengths read ``um``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from linumpy.viz.chart import (BLUE, CHART_WIDTH, FONT_SIZE, GREEN, GREY, ORANGE, RED, TITLE_HEIGHT, Panel, Rule,
                               Series, dashed_line, integer_ticks, line_chart, nice_ticks, stacked, vertical_label)
from linumpy.viz.screenshot import draw_scale_bar

#: Percentiles used to set the grey-level window of image panels.
DISPLAY_PERCENTILES = (1.0, 99.5)
#: matplotlib's colour cycle, for the curves of one panel.
CYCLE = (BLUE, ORANGE, GREEN, RED)
#: Ten stops of the viridis colour map (dark blue to yellow), interpolated linearly between them.
VIRIDIS = ((68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142), (31, 158, 137),
           (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37))
YELLOW, BLACK, WHITE = (255, 255, 0), (0, 0, 0), (255, 255, 255)
#: Margins of the residual graph (left, top, right, bottom) and the largest cell (pixels per tile).
_GRAPH_MARGINS, _MAX_CELL = (56, 2 * TITLE_HEIGHT, 110, 48), 120

TileIndex = tuple[int, int]


def display_range(image: np.ndarray) -> tuple[float, float]:
    """Return a robust ``(vmin, vmax)`` grey window of an image, ignoring NaN/inf.

    Examples
    --------
    >>> display_range(np.arange(1001.0))
    (10.0, 995.0)
    """
    values = np.asarray(image, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, DISPLAY_PERCENTILES)
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def viridis(fraction: float) -> tuple[int, int, int]:
    """The viridis colour of ``fraction`` in [0, 1] (clipped).

    Examples
    --------
    >>> viridis(0.0), viridis(1.0)
    ((68, 1, 84), (253, 231, 37))
    """
    stops = np.linspace(0.0, 1.0, len(VIRIDIS))
    value = min(max(float(fraction), 0.0), 1.0)
    return tuple(round(float(np.interp(value, stops, channel))) for channel in np.transpose(VIRIDIS))


def grey_image(image: np.ndarray, width: int) -> Image.Image:
    """An image in grey on its :func:`display_range`, resized to ``width`` pixels (box filter) with its aspect."""
    low, high = display_range(image)
    scaled = np.clip((np.nan_to_num(np.asarray(image, dtype=np.float64), nan=low) - low) / (high - low), 0, 1)
    grey = Image.fromarray(np.round(scaled * 255).astype(np.uint8))
    return grey.resize((width, max(1, round(grey.height * width / grey.width))), Image.Resampling.BOX)


def mosaic_grid_figure(
    aip: np.ndarray,
    grid_shape: TileIndex,
    tiles_present: Sequence[TileIndex] | None = None,
    title: str | None = None,
    pixel_um: float | None = None,
) -> Image.Image:
    """Average intensity projection of a mosaic grid with its tile grid drawn on top.

    The mosaic grid holds its tiles side by side, so tile ``(r, c)`` covers
    rows ``r * h / rows`` to ``(r + 1) * h / rows`` of the AIP (any pyramid
    level works). The AIP is drawn :data:`~linumpy.viz.chart.CHART_WIDTH`
    pixels wide, the tiles outlined in yellow, the tiles missing from
    ``tiles_present`` crossed out in red, under the title.

    Parameters
    ----------
    aip : ndarray, shape (y, x)
        Average intensity projection of the mosaic grid.
    grid_shape : (rows, cols)
        Tile grid shape.
    tiles_present : sequence of (row, col), optional
        Acquired tiles; default all.
    title : str, optional
        Figure title.
    pixel_um : float, optional
        Pixel size of ``aip``; a scale bar in micrometres is then drawn in the bottom right corner.
    """
    rows, cols = grid_shape
    grey = grey_image(aip, CHART_WIDTH)
    if pixel_um:
        draw_scale_bar(grey, pixel_um * np.shape(aip)[1] / grey.width / 1000)
    figure = Image.new("RGB", (grey.width, TITLE_HEIGHT + grey.height), WHITE)
    figure.paste(grey.convert("RGB"), (0, TITLE_HEIGHT))
    draw = ImageDraw.Draw(figure)
    draw.text((figure.width / 2, TITLE_HEIGHT / 2), title or f"mosaic grid AIP, {rows} x {cols} tiles", fill=BLACK,
              font=ImageFont.load_default(size=15), anchor="mm")
    present = {tuple(tile) for tile in tiles_present} if tiles_present is not None else None
    tile_w, tile_h = grey.width / cols, grey.height / rows
    for row in range(rows):
        for col in range(cols):
            x0, y0 = round(col * tile_w), TITLE_HEIGHT + round(row * tile_h)
            x1, y1 = round((col + 1) * tile_w) - 1, TITLE_HEIGHT + round((row + 1) * tile_h) - 1
            draw.rectangle([x0, y0, x1, y1], outline=YELLOW)
            if present is not None and (row, col) not in present:
                draw.line([(x0, y0), (x1, y1)], fill=RED, width=2)
                draw.line([(x0, y1), (x1, y0)], fill=RED, width=2)
    return figure


def stitching_residuals_figure(
    pairs: Sequence[tuple[TileIndex, TileIndex]],
    residuals_px: np.ndarray,
    fallback: Sequence[bool],
    grid_shape: TileIndex,
    title: str | None = None,
) -> Image.Image:
    """Residual of each neighbouring tile pair after the global fit, on the tile grid.

    Each pair is an edge between the two tile centres, coloured by the length
    of its residual vector (viridis, the colour bar on the right); an arrow
    from the edge's midpoint shows the residual's direction (the longest
    spans 40 % of a tile). Pairs whose registration was rejected and replaced
    by the stage model are drawn dashed in red.

    Parameters
    ----------
    pairs : sequence of ((row, col), (row, col))
        Neighbouring tiles.
    residuals_px : ndarray, shape (n_pairs, 2)
        ``(dy, dx)`` residual of each pair, pixels (NaN for fallback pairs
        without a measurement).
    fallback : sequence of bool
        Whether each pair fell back to the stage model.
    grid_shape : (rows, cols)
        Tile grid shape.
    """
    residuals = np.asarray(residuals_px, dtype=np.float64).reshape(-1, 2)
    fallback = np.asarray(fallback, dtype=bool)
    lengths = np.hypot(residuals[:, 0], residuals[:, 1])
    finite = np.isfinite(lengths)
    vmax = max(float(np.max(lengths[finite])) if finite.any() else 1.0, 1e-6)
    rows, cols = grid_shape
    left, top, right, bottom = _GRAPH_MARGINS
    cell = max(24, min(_MAX_CELL, (CHART_WIDTH - left - right) // max(cols, 1)))
    figure = Image.new("RGB", (left + cols * cell + right, top + rows * cell + bottom), WHITE)
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default(size=FONT_SIZE)

    def centre(tile: TileIndex, offset: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
        return left + (tile[1] + 0.5 + offset[1]) * cell, top + (tile[0] + 0.5 + offset[0]) * cell

    for (a, b), residual, length, is_fallback in zip(pairs, residuals, lengths, fallback, strict=True):
        if is_fallback:
            dashed_line(draw, centre(a), centre(b), RED, width=2)
            continue
        draw.line([centre(a), centre(b)], fill=viridis(length / vmax) if np.isfinite(length) else GREY, width=3)
    for (a, b), residual, length, is_fallback in zip(pairs, residuals, lengths, fallback, strict=True):
        if not is_fallback and np.isfinite(length) and length > 0:
            middle = tuple((np.add(a, b) / 2).tolist())
            _arrow(draw, centre(middle), centre(middle, tuple(residual * 0.4 / vmax)))
    for tile in np.ndindex(rows, cols):
        x, y = centre(tile)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=BLACK)
    box = (left, top, left + cols * cell, top + rows * cell)
    _tile_axes(draw, font, box, cell)
    _colour_bar(figure, draw, font, (box[2] + 16, top, box[2] + 32, box[3]), vmax)
    heading = title or (f"tile-pair residuals after the fit\n{int(fallback.sum())}/{len(fallback)} pairs on the stage "
                        "model (red dashed)")
    draw.multiline_text((figure.width / 2, top / 2), heading, fill=BLACK, font=ImageFont.load_default(size=15),
                        anchor="mm", align="center")
    return figure


def _arrow(draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A thin black arrow from ``start`` to ``end`` (head 6 pixels long)."""
    draw.line([start, end], fill=BLACK, width=1)
    direction = np.subtract(end, start)
    length = float(np.hypot(*direction))
    if length < 1:
        return
    back = -direction / length * 6
    for angle in (0.45, -0.45):
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        draw.line([end, tuple(np.add(end, turn @ back))], fill=BLACK, width=1)


def _tile_axes(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, box: tuple[int, int, int, int],
               cell: int) -> None:
    """Frame, whole-number tile ticks and the labels ``tile column`` / ``tile row`` around the graph's box."""
    left, top, right, bottom = box
    draw.rectangle(box, outline=BLACK)
    for col in integer_ticks(-0.5, (right - left) / cell - 0.5):
        x = left + (col + 0.5) * cell
        draw.line([(x, bottom), (x, bottom + 4)], fill=BLACK)
        draw.text((x, bottom + 6), str(col), fill=BLACK, font=font, anchor="mt")
    for row in integer_ticks(-0.5, (bottom - top) / cell - 0.5):
        y = top + (row + 0.5) * cell
        draw.line([(left - 4, y), (left, y)], fill=BLACK)
        draw.text((left - 6, y), str(row), fill=BLACK, font=font, anchor="rm")
    draw.text(((left + right) / 2, bottom + 24), "tile column", fill=BLACK, font=font, anchor="mt")
    draw.text((6, (top + bottom) / 2), "tile row", fill=BLACK, font=font, anchor="lm")


def _colour_bar(figure: Image.Image, draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont,
                box: tuple[int, int, int, int], vmax: float) -> None:
    """Viridis from 0 (bottom) to ``vmax`` (top) in ``box``, ticked, labelled ``residual (px)``."""
    left, top, right, bottom = box
    for y in range(top, bottom + 1):
        draw.line([(left, y), (right, y)], fill=viridis((bottom - y) / max(bottom - top, 1)))
    draw.rectangle(box, outline=BLACK)
    for tick in nice_ticks(0.0, vmax):
        y = bottom - tick / vmax * (bottom - top)
        draw.line([(right, y), (right + 3, y)], fill=BLACK)
        draw.text((right + 5, y), f"{tick:g}", fill=BLACK, font=font, anchor="lm")
    vertical_label(figure, font, "residual (px)", (figure.width - FONT_SIZE - 12, top), bottom - top)


def depth_profiles_figure(
    depth_um: np.ndarray,
    profiles: dict[str, np.ndarray],
    surface_depth_um: float | None = None,
    title: str | None = None,
) -> Image.Image:
    """Mean intensity against depth, one curve per label (e.g. before/after correction).

    Parameters
    ----------
    depth_um : ndarray, shape (z,)
        Depth of each plane, micrometres.
    profiles : dict of str to ndarray, shape (z,)
        Label to mean intensity per plane, e.g. ``{"before": ..., "after": ...}`` (at most four).
    surface_depth_um : float, optional
        Tissue surface depth, drawn as a grey dashed vertical line labelled ``surface``.
    """
    series = [Series(label, np.asarray(values, dtype=np.float64), colour, marker="")
              for (label, values), colour in zip(profiles.items(), CYCLE)]
    rules = [Rule(surface_depth_um, GREY, "surface")] if surface_depth_um is not None else []
    return line_chart(depth_um, [Panel("mean intensity", series, rules=rules)], "depth (um)", title or "depth profile",
                      x_ticks=nice_ticks)


def intensity_histograms_figure(
    histograms: dict[str, tuple[np.ndarray, np.ndarray]],
    markers: dict[str, float] | None = None,
    title: str | None = None,
) -> Image.Image:
    """Intensity histograms (e.g. before/after normalization), log counts.

    Each histogram gets its own chart (and x axis), since normalization
    changes the intensity scale; the bins are drawn as filled steps.

    Parameters
    ----------
    histograms : dict of str to (counts, bin_edges)
        As returned by ``numpy.histogram`` or ``dask.array.histogram``.
    markers : dict of str to float, optional
        Values drawn as red dashed vertical lines, labelled, on every chart
        whose range contains them, e.g. the percentiles used for normalization.
    """
    charts = []
    for label, (counts, edges) in histograms.items():
        edges = np.asarray(edges, dtype=np.float64)
        steps = np.maximum(np.asarray(counts, dtype=np.float64), 0.5)  # an empty bin on the axis (log scale)
        rules = [Rule(value, RED, name) for name, value in (markers or {}).items() if edges[0] <= value <= edges[-1]]
        panel = Panel("voxels", [Series("", np.repeat(steps, 2), BLUE, marker="", fill=True)], rules=rules, log_y=True)
        charts.append(line_chart(np.repeat(edges, 2)[1:-1], [panel], "intensity", label, x_ticks=nice_ticks))
    return stacked(charts, title or "intensity histograms")


def continuity_figure(
    slice_ids: Sequence[int],
    shift_um: Sequence[float | None],
    overlap_ncc: Sequence[float | None],
    missing_ids: Sequence[int] = (),
    title: str | None = None,
    shift_unit: str = "um",
) -> Image.Image:
    """Slice-to-slice continuity: lateral jump and overlap match (NCC) along the stack.

    Parameters
    ----------
    slice_ids : sequence of int
        Slice id of each value.
    shift_um : sequence of float or None
        Length of each slice's lateral correction relative to the previous
        slice, in ``shift_unit`` (None: unknown).
    overlap_ncc : sequence of float or None
        Match of each slice's overlap with the previous one (None: not registered).
    missing_ids : sequence of int
        Slices absent from the stack, shaded in grey.
    shift_unit : str
        The shifts' unit (``um``, or ``px`` when the voxel size is unknown).
    """
    ids = np.asarray(slice_ids, dtype=np.float64)
    shift = np.array([np.nan if v is None else v for v in shift_um], dtype=np.float64)
    ncc = np.array([np.nan if v is None else v for v in overlap_ncc], dtype=np.float64)
    breaks = np.flatnonzero(np.diff(ids) > 1) + 1  # no line across a missing slice
    ids = np.insert(ids, breaks, (ids[breaks - 1] + ids[breaks]) / 2)
    shift, ncc = (np.insert(a, breaks, np.nan) for a in (shift, ncc))
    spans = [(missing - 0.5, missing + 0.5) for missing in missing_ids]
    panels = [Panel(f"lateral jump ({shift_unit})", [Series("", shift, BLUE)], spans=spans),
              Panel("match (NCC)", [Series("", ncc, GREEN)], ylim=(min(-0.05, float(np.nanmin(ncc, initial=0.0))), 1.05),
                    rules=[Rule(0.2, RED, vertical=False)], spans=spans)]
    return line_chart(ids, panels, "slice id (grey: missing slice; red dashed: flag threshold)",
                      title or "slice-to-slice continuity")
