"""Images for the HTML report: read only from where they belong, embed compressed.

:func:`read_figure` refuses any figure path that is not a plain image file
in the record's own folder (no ``/``, no ``..``, no absolute path, no
symlink leading out) and any file that is not a PNG or JPEG, so a QC record
cannot pull an arbitrary file into the report. :func:`image_data_uri` turns
an image into a small lossy WebP data URI for the self-contained page.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

#: Leading bytes of the image formats a report embeds.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
#: WebP quality (0-100) of embedded figures (plots) ...
WEBP_QUALITY = 60
#: ... and of greyscale images (screenshots: speckle compresses poorly, detail is not the point).
WEBP_QUALITY_GREY = 45
#: Longest side of an embedded figure, pixels ...
FIGURE_MAX_SIDE = 720
#: ... and of a greyscale image.
GREY_MAX_SIDE = 480
#: Height of a slice thumbnail in the table, pixels.
THUMBNAIL_HEIGHT = 72


class RefusedImage(ValueError):
    """A figure path or file the report will not embed; the message says why."""


def read_figure(folder: Path, file_name: object) -> bytes:
    """Bytes of the image ``file_name`` in ``folder``.

    Raises
    ------
    RefusedImage
        The name is not a plain file name, leads out of ``folder`` (e.g. via
        a symlink), is missing, or the file is not a PNG/JPEG image.
    """
    if not isinstance(file_name, str) or not file_name or Path(file_name).name != file_name or file_name in (
            ".", "..") or "\\" in file_name:
        raise RefusedImage(f"figure path {file_name!r} refused: a figure must be a file in the record's own folder")
    path = folder / file_name
    if not path.is_file():
        raise RefusedImage(f"figure {file_name} is missing")
    if path.resolve().parent != folder.resolve():
        raise RefusedImage(f"figure {file_name} refused: it links outside the record's folder")
    return read_image(path)


def read_image(path: Path) -> bytes:
    """Bytes of ``path`` if it is a PNG or JPEG image (by content), else :class:`RefusedImage`."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if not any(head.startswith(signature) for signature in IMAGE_SIGNATURES):
            raise RefusedImage(f"figure {path.name} refused: not a PNG or JPEG image")
        return head + handle.read()


def image_data_uri(image_bytes: bytes, max_side: int = FIGURE_MAX_SIDE, height: int | None = None) -> str:
    """A ``data:image/webp;base64,...`` URI of an image, shrunk to ``max_side`` (or to ``height``).

    Raises
    ------
    RefusedImage
        If the bytes do not decode as an image.
    """
    try:
        image = Image.open(io.BytesIO(image_bytes))
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise RefusedImage(f"image does not decode ({error})") from None
    grey = image.mode in ("L", "I", "I;16", "F")
    image = image.convert("L" if grey else "RGBA" if "A" in image.getbands() else "RGB")
    max_side = min(max_side, GREY_MAX_SIDE) if grey else max_side
    scale = height / image.height if height else min(1.0, max_side / max(image.size))
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=WEBP_QUALITY_GREY if grey else WEBP_QUALITY, method=6)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
