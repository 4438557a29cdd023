"""Quick-look image of an OME-Zarr volume: orthogonal views with scale bars in micrometres.

The views come from the coarsest pyramid level that is still detailed enough
(long side >= ``min_size`` pixels), so a screenshot of a terabyte volume reads
a few megabytes. They cut through the middle of the tissue (found on the
coarsest level, :func:`linumpy.viz.planes.tissue_centre`), not through an
excluded slice's gap, and are laid out as a classic orthogonal view with no
wasted canvas: XY top left, XZ below it (same x), YZ to its right (same y,
z running left to right), all at one physical pixel size, each labelled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from linumpy.errors import InputError
from linumpy.io.zarr import OmeZarrInfo, read_omezarr, read_omezarr_info
from linumpy.viz.planes import tissue_centre

#: Smallest long side (pixels) of the level a screenshot reads, and of the XY view drawn.
MIN_SCREENSHOT_SIZE = 512
_GAP = 6
_MIN_PANEL_SIDE = 24
_BACKGROUND = 0
#: Image formats a screenshot may be saved in, by file suffix.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}


def screenshot_format(path: str | os.PathLike) -> str:
    """The PIL format of an output file, from its suffix.

    Raises
    ------
    InputError
        For a suffix that is not one of :data:`FORMATS`.

    Examples
    --------
    >>> screenshot_format("qc/volume.JPG")
    'JPEG'
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown image suffix {suffix or '(none)'!r}; name the output "
                         f"{' or '.join(sorted(set(FORMATS)))}")
    return FORMATS[suffix]


def choose_level(info: OmeZarrInfo, min_size: int = MIN_SCREENSHOT_SIZE) -> int:
    """The coarsest level whose lateral long side is still >= ``min_size`` (else level 0)."""
    chosen = 0
    for index, level in enumerate(info.levels):
        if max(level.shape[-2:]) >= min_size:
            chosen = index
    return chosen


def contrast_stretch(planes: Sequence[np.ndarray], percentiles: tuple[float, float] = (0.5, 99.5)) -> list[np.ndarray]:
    """Map planes to uint8 with one robust window (percentiles of all finite values)."""
    values = np.concatenate([p[np.isfinite(p)].ravel() for p in planes]).astype(np.float64)
    low, high = np.percentile(values, percentiles) if values.size else (0.0, 1.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    return [
        np.clip((np.nan_to_num(p.astype(np.float64), nan=low) - low) * scale, 0, 255).astype(np.uint8)
        for p in planes
    ]


def nice_length_um(target_um: float) -> float:
    """The 1, 2 or 5 x 10^k micrometre length closest below ``target_um``.

    Examples
    --------
    >>> nice_length_um(730.0)
    500.0
    """
    exponent = math.floor(math.log10(target_um))
    for mantissa in (5, 2, 1):
        if mantissa * 10**exponent <= target_um:
            return float(mantissa * 10**exponent)
    return float(10**exponent)


def _panel(plane: np.ndarray, pixel_mm: tuple[float, float], display_mm: float) -> Image.Image:
    """A plane resized to square display pixels of ``display_mm`` (thin sides kept >= 24 px)."""
    height = max(min(_MIN_PANEL_SIDE, plane.shape[0]), round(plane.shape[0] * pixel_mm[0] / display_mm))
    width = max(min(_MIN_PANEL_SIDE, plane.shape[1]), round(plane.shape[1] * pixel_mm[1] / display_mm))
    return Image.fromarray(plane).resize((width, height), Image.Resampling.BILINEAR)


def _font(image: Image.Image) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(11, min(image.width, image.height * 3) // 40))


def draw_scale_bar(image: Image.Image, display_mm: float) -> None:
    """A white scale bar of a round length in micrometres, about a quarter of the width, labelled, on a black
    box in the bottom right corner of a grey image whose pixels are ``display_mm`` wide."""
    length_um = nice_length_um(0.25 * image.width * display_mm * 1000)
    length_px = max(1, round(length_um / (display_mm * 1000)))
    draw = ImageDraw.Draw(image)
    font = _font(image)
    label = f"{length_um:g} um"  # the built-in font has no micro sign
    margin = max(4, image.width // 60)
    thickness = max(2, image.width // 150)
    x1, y1 = image.width - margin, image.height - margin
    text_box = draw.textbbox((0, 0), label, font=font)
    text_w, text_h = text_box[2] - text_box[0], text_box[3] - text_box[1]
    top = y1 - thickness - 4 - text_h
    text_left = min(x1 - length_px / 2 - text_w / 2, x1 - text_w)  # centred on the bar, never past it
    box_left = min(x1 - length_px, text_left) - 4
    draw.rectangle([box_left, top - 4, x1 + 4, y1 + 4], fill=_BACKGROUND)  # keeps the bar readable
    draw.rectangle([x1 - length_px, y1 - thickness, x1, y1], fill=255)
    draw.text((text_left - text_box[0], top - text_box[1]), label, fill=255, font=font)


def _draw_label(image: Image.Image, label: str) -> None:
    draw = ImageDraw.Draw(image)
    font = _font(image)
    box = draw.textbbox((4, 3), label, font=font)
    draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=_BACKGROUND)
    draw.text((4, 3), label, fill=255, font=font)


def _display_mm(pixels: list[tuple[float, float]], planes: list[np.ndarray], min_size: int) -> float:
    """Display pixel size: the XY pixel, finer if needed so the XY view is >= ``min_size`` px long."""
    extent_mm = max(planes[0].shape[0] * pixels[0][0], planes[0].shape[1] * pixels[0][1])
    return min(pixels[0][-1], extent_mm / min_size)


def render_screenshot(
    path: str | os.PathLike, z: int | None = None, level: int | None = None, min_size: int = MIN_SCREENSHOT_SIZE
) -> Image.Image:
    """Render orthogonal views (or one XY plane) of an OME-Zarr image.

    Parameters
    ----------
    path : path-like
        OME-Zarr image, 3D or 2D.
    z : int, optional
        Level-0 z index of a single XY plane; default: XY, XZ and YZ views
        through the middle of the tissue.
    level : int, optional
        Pyramid level to read; default: :func:`choose_level`.
    min_size : int
        See :func:`choose_level`; the XY view is also drawn at least this
        many pixels on its long side (upsampled from a small volume).

    Returns
    -------
    PIL.Image.Image
        Greyscale image, contrast from the 0.5-99.5 percentiles. All views
        share one square display pixel (physical proportions; a side thinner
        than 24 px is stretched to 24), with a scale bar in micrometres on
        the XY and XZ views.
    """
    info = read_omezarr_info(path)
    level = choose_level(info, min_size) if level is None else level
    image, resolution = read_omezarr(path, level)
    if image.ndim == 2:
        planes, pixels = [image.compute()], [resolution]
    elif z is None:
        zi, yi, xi = _tissue_index(path, info, level)
        planes = [image[zi].compute(), image[:, yi, :].compute(), image[:, :, xi].compute().T]
        pixels = [resolution[1:], (resolution[0], resolution[2]), (resolution[1], resolution[0])]
    else:
        if not 0 <= z < info.shape[0]:
            raise InputError(f"{path}: z index {z} is outside 0-{info.shape[0] - 1}; pass --z in that range")
        placement = info.levels[level]
        z_mm = info.levels[0].translation_mm[0] + z * info.levels[0].scale_mm[0]
        zi = round((z_mm - placement.translation_mm[0]) / resolution[0])
        planes, pixels = [image[min(max(zi, 0), image.shape[0] - 1)].compute()], [resolution[1:]]
    return views_image(planes, pixels, min_size)


def views_image(planes: Sequence[np.ndarray], pixels_mm: Sequence[tuple[float, float]],
                min_size: int = MIN_SCREENSHOT_SIZE) -> Image.Image:
    """Greyscale image of one XY plane, or of the ``(xy, xz, yz)`` planes laid out as orthogonal views.

    ``planes``: ``(y, x)``, ``(z, x)`` and ``(y, z)`` arrays (YZ transposed: z
    runs left to right beside XY), ``pixels_mm`` their (row, column) pixel
    sizes. Contrast from the 0.5-99.5 percentiles of all of them; one square
    display pixel, the XY pixel or finer so XY is >= ``min_size`` pixels long;
    scale bars in micrometres on XY and XZ; XY top left, XZ below, YZ right.
    """
    display_mm = _display_mm(list(pixels_mm), list(planes), min_size)
    panels = [_panel(plane, pixel, display_mm) for plane, pixel in zip(contrast_stretch(planes), pixels_mm)]
    draw_scale_bar(panels[0], display_mm)
    if len(panels) == 1:
        return panels[0]
    xy, xz, yz = panels
    draw_scale_bar(xz, display_mm)
    for panel, label in ((xy, "XY"), (xz, "XZ"), (yz, "YZ")):
        _draw_label(panel, label)
    canvas = Image.new("L", (xy.width + _GAP + yz.width, xy.height + _GAP + xz.height), _BACKGROUND)
    canvas.paste(xy, (0, 0))
    canvas.paste(yz, (xy.width + _GAP, 0))
    canvas.paste(xz, (0, xy.height + _GAP))
    return canvas


def _tissue_index(path: str | os.PathLike, info: OmeZarrInfo, level: int) -> tuple[int, int, int]:
    """Index at ``level`` of the planes through the middle of the tissue, found on the coarsest level."""
    coarsest = len(info.levels) - 1
    coarse, _ = read_omezarr(path, coarsest)
    centre = tissue_centre(coarse)
    source, target = info.levels[coarsest], info.levels[level]
    index = []
    for axis, i in enumerate(centre):
        mm = source.translation_mm[axis] + i * source.scale_mm[axis]
        j = round((mm - target.translation_mm[axis]) / target.scale_mm[axis])
        index.append(min(max(j, 0), target.shape[axis] - 1))
    return tuple(index)
