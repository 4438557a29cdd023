"""QC figures of the pipeline's steps, drawn from plain arrays.

Every helper takes numpy arrays (or small dicts/lists), does no file I/O and
returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, Agg rendering), ready for :func:`linumpy.qc.records.write_qc_record`.
Callers pass small summaries (an AIP, per-pair residuals, a depth profile, a
histogram), never whole volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

#: Percentiles used to set the grey-level window of image panels.
DISPLAY_PERCENTILES = (1.0, 99.5)

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


def mosaic_grid_figure(
    aip: np.ndarray,
    grid_shape: TileIndex,
    tiles_present: Sequence[TileIndex] | None = None,
    title: str | None = None,
    pixel_um: float | None = None,
) -> Figure:
    """Average intensity projection of a mosaic grid with its tile grid drawn on top.

    The mosaic grid holds its tiles side by side, so tile ``(r, c)`` covers
    rows ``r * h / rows`` to ``(r + 1) * h / rows`` of the AIP (any pyramid
    level works). Tiles missing from ``tiles_present`` are crossed out in red.

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
        Pixel size of ``aip``; the axes are then in micrometres (else pixels).
    """
    rows, cols = grid_shape
    height, width = np.shape(aip)
    size = pixel_um or 1.0  # axes unit per pixel
    tile_h, tile_w = size * height / rows, size * width / cols
    figure = Figure(figsize=(6, 6 * height / max(width, 1) + 0.6))
    axes = figure.add_subplot()
    vmin, vmax = display_range(aip)
    extent = (-0.5 * size, (width - 0.5) * size, (height - 0.5) * size, -0.5 * size)
    axes.imshow(aip, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest", extent=extent)
    present = {tuple(tile) for tile in tiles_present} if tiles_present is not None else None
    for row in range(rows):
        for col in range(cols):
            origin = (col * tile_w - 0.5 * size, row * tile_h - 0.5 * size)
            axes.add_patch(Rectangle(origin, tile_w, tile_h, fill=False, edgecolor="yellow", lw=0.6))
            if present is not None and (row, col) not in present:
                x0, y0 = origin
                axes.plot([x0, x0 + tile_w], [y0, y0 + tile_h], color="red", lw=1)
                axes.plot([x0, x0 + tile_w], [y0 + tile_h, y0], color="red", lw=1)
    axes.set_title(title or f"mosaic grid AIP, {rows} x {cols} tiles", fontsize="medium")
    unit = "µm" if pixel_um else "px"
    axes.set_xlabel(f"x ({unit})")
    axes.set_ylabel(f"y ({unit})")
    figure.tight_layout()
    return figure


def stitching_residuals_figure(
    pairs: Sequence[tuple[TileIndex, TileIndex]],
    residuals_px: np.ndarray,
    fallback: Sequence[bool],
    grid_shape: TileIndex,
    title: str | None = None,
) -> Figure:
    """Residual of each neighbouring tile pair after the global fit, on the tile grid.

    Each pair is an edge between the two tile centres, coloured by the length
    of its residual vector; an arrow from the edge's midpoint shows the
    residual's direction. Pairs whose registration was rejected and replaced
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
    vmax = float(np.max(lengths[finite])) if finite.any() else 1.0
    norm = Normalize(vmin=0.0, vmax=max(vmax, 1e-6))
    cmap = colormaps["viridis"]
    rows, cols = grid_shape
    figure = Figure(figsize=(6, 6 * rows / max(cols, 1) + 0.8))
    axes = figure.add_subplot()
    centres = np.array([(r, c) for r in range(rows) for c in range(cols)], dtype=float)
    axes.scatter(centres[:, 1], centres[:, 0], s=12, color="black", zorder=3)
    scale = 0.4 / max(vmax, 1e-6)  # longest arrow spans 40% of a tile
    for (a, b), residual, length, is_fallback in zip(pairs, residuals, lengths, fallback, strict=True):
        (ya, xa), (yb, xb) = a, b
        if is_fallback:
            axes.plot([xa, xb], [ya, yb], ls="--", color="red", lw=1.5, zorder=2)
            continue
        colour = cmap(norm(length)) if np.isfinite(length) else "grey"
        axes.plot([xa, xb], [ya, yb], color=colour, lw=3, zorder=1)
        if np.isfinite(length) and length > 0:
            axes.annotate(
                "",
                xy=((xa + xb) / 2 + residual[1] * scale, (ya + yb) / 2 + residual[0] * scale),
                xytext=((xa + xb) / 2, (ya + yb) / 2),
                arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.8},
            )
    figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="residual (px)")
    axes.set_xlim(-0.5, cols - 0.5)
    axes.set_ylim(rows - 0.5, -0.5)
    axes.set_aspect("equal")
    axes.set_xlabel("tile column")
    axes.set_ylabel("tile row")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    n_fallback = int(fallback.sum())
    axes.set_title(title or f"tile-pair residuals after the fit\n{n_fallback}/{len(fallback)} pairs on the stage "
                   "model (red dashed)", fontsize="medium")
    figure.tight_layout()
    return figure


def depth_profiles_figure(
    depth_um: np.ndarray,
    profiles: dict[str, np.ndarray],
    surface_depth_um: float | None = None,
    title: str | None = None,
) -> Figure:
    """Mean intensity against depth, one curve per label (e.g. before/after correction).

    Parameters
    ----------
    depth_um : ndarray, shape (z,)
        Depth of each plane, micrometres.
    profiles : dict of str to ndarray, shape (z,)
        Label to mean intensity per plane, e.g. ``{"before": ..., "after": ...}``.
    surface_depth_um : float, optional
        Tissue surface depth, drawn as a vertical line.
    """
    figure = Figure(figsize=(6, 3.5))
    axes = figure.add_subplot()
    for label in profiles:
        axes.plot(depth_um, np.asarray(profiles[label], dtype=np.float64), label=label)
    if surface_depth_um is not None:
        axes.axvline(surface_depth_um, color="grey", ls=":", label="surface")
    axes.set_xlabel("depth (µm)")
    axes.set_ylabel("mean intensity")
    axes.legend()
    axes.set_title(title or "depth profile")
    figure.tight_layout()
    return figure


def intensity_histograms_figure(
    histograms: dict[str, tuple[np.ndarray, np.ndarray]],
    markers: dict[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Intensity histograms (e.g. before/after normalization), log counts.

    Each histogram gets its own panel, since normalization changes the
    intensity scale.

    Parameters
    ----------
    histograms : dict of str to (counts, bin_edges)
        As returned by ``numpy.histogram`` or ``dask.array.histogram``.
    markers : dict of str to float, optional
        Values drawn as vertical lines on every panel whose range contains
        them, e.g. the percentiles used for normalization.
    """
    figure = Figure(figsize=(6, 2.5 * len(histograms) + 0.3))
    for index, (label, (counts, edges)) in enumerate(histograms.items()):
        axes = figure.add_subplot(len(histograms), 1, index + 1)
        counts = np.asarray(counts, dtype=np.float64)
        edges = np.asarray(edges, dtype=np.float64)
        axes.stairs(np.maximum(counts, 0.5), edges, fill=True, baseline=0.5)
        axes.set_yscale("log")
        # Plain tick labels: the default log labels are mathtext, whose fonts
        # distribution-packaged matplotlib often lacks (a findfont warning per font).
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
        for name, value in (markers or {}).items():
            if edges[0] <= value <= edges[-1]:
                axes.axvline(value, color="red", ls="--", lw=1)
                axes.annotate(name, (value, 1), textcoords="offset points", xytext=(2, 2), color="red")
        axes.set_ylabel("voxels")
        axes.set_title(label, fontsize="medium")
    figure.axes[-1].set_xlabel("intensity")
    figure.suptitle(title or "intensity histograms")
    figure.tight_layout()
    return figure


def continuity_figure(
    slice_ids: Sequence[int],
    shift_um: Sequence[float | None],
    overlap_ncc: Sequence[float | None],
    missing_ids: Sequence[int] = (),
    title: str | None = None,
) -> Figure:
    """Slice-to-slice continuity: lateral jump (um) and overlap match (NCC) along the stack.

    Parameters
    ----------
    slice_ids : sequence of int
        Slice id of each value.
    shift_um : sequence of float or None
        Length of each slice's lateral correction relative to the previous
        slice, micrometres (None: unknown).
    overlap_ncc : sequence of float or None
        Match of each slice's overlap with the previous one (None: not registered).
    missing_ids : sequence of int
        Slices absent from the stack, shaded in grey.
    """
    ids = np.asarray(slice_ids, dtype=np.float64)
    shift = np.array([np.nan if v is None else v for v in shift_um], dtype=np.float64)
    ncc = np.array([np.nan if v is None else v for v in overlap_ncc], dtype=np.float64)
    breaks = np.flatnonzero(np.diff(ids) > 1) + 1  # no line across a missing slice
    ids, shift, ncc = (np.insert(a, breaks, np.nan) for a in (ids, shift, ncc))
    figure = Figure(figsize=(7, 3.6))
    top = figure.add_subplot(2, 1, 1)
    bottom = figure.add_subplot(2, 1, 2, sharex=top)
    top.plot(ids, shift, marker="o", ms=3, color="C0")
    top.set_ylabel("lateral jump (µm)")
    bottom.plot(ids, ncc, marker="o", ms=3, color="C2")
    bottom.axhline(0.2, color="red", ls=":", lw=1)
    bottom.set_ylabel("match (NCC)")
    bottom.set_ylim(min(-0.05, float(np.nanmin(ncc, initial=0.0))), 1.05)
    for missing in missing_ids:
        for axes in (top, bottom):
            axes.axvspan(missing - 0.5, missing + 0.5, color="0.85", lw=0)
    bottom.set_xlabel("slice id (grey: missing slice; red dotted: flag threshold)")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(title or "slice-to-slice continuity", fontsize="medium")
    figure.tight_layout()
    return figure
