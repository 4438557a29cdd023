"""Show an OME-Zarr image in napari, all pyramid levels, in micrometres."""

from __future__ import annotations

import os

from linumpy.errors import LinumpyError
from linumpy.io.zarr import read_omezarr, read_omezarr_info


def view_omezarr(path: str | os.PathLike) -> None:
    """Open ``path`` in a napari window and block until it is closed.

    Raises
    ------
    LinumpyError
        If napari is not installed.
    """
    try:
        import napari
    except ImportError:
        raise LinumpyError("napari is not installed; install it with: pip install 'linumpy[viewer]'") from None
    info = read_omezarr_info(path)
    levels = [read_omezarr(path, k)[0] for k in range(len(info.levels))]
    window = (info.omero or {}).get("channels", [{}])[0].get("window")
    viewer = napari.Viewer(title=info.name)
    viewer.add_image(
        levels,
        multiscale=len(levels) > 1,
        name=info.name,
        scale=[s * 1000 for s in info.resolution],
        translate=[t * 1000 for t in info.levels[0].translation_mm],
        contrast_limits=None if window is None else [window["start"], window["end"]],
    )
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "um"
    napari.run()
