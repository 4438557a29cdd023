"""How strong a pair registration's peak can be when the two tiles do not overlap (issue #10, session sliver10).

Two sub-tiles are cut from one flat-fielded tile projection of a pipeline run,
``top = tile[0:h]`` and ``bottom = tile[h - w:2 h - w]``: their true offset is
``(h - w, 0)`` exactly (``w`` the true overlap, ``-1`` a one-pixel gap), they
share the tile's optics (no vignetting or border difference) and only the
content continues from one to the other. Each pair is registered by
:func:`linumpy.stitching.pairwise.register_pair` at a nominal overlap of
``nominal_px`` (the ``c185`` kind's 10 px) within ``radius`` px, in both
orientations, for every tile with 10-95 % tissue. A strong peak (significance
``>= strong``) over a gap is what the content alone makes: the tissue outline
and the region boundaries crossing the strip continue across the gap, and a
shift along them keeps them matched.

Usage::

    python benchmarks/foreign/continuation.py RUN SLICE [SLICE ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from linumpy.io.zarr import open_omezarr_level, read_omezarr_info
from linumpy.stitching.estimate import neighbour_flat_field
from linumpy.stitching.pairwise import register_pair
from linumpy.stitching.stitch import mosaic_grid_layout
from linumpy.stitching.summaries import summaries_from_aip

TRUE_OVERLAPS_PX = (-1, 0, 2, 4, 8)


def flat_fielded_tiles(run: Path, slice_id: int) -> dict[tuple[int, int], np.ndarray]:
    """Each tile's projection of a run's slice divided by the slice's registration flat field."""
    grid = run / "mosaic_grids" / f"mosaic_grid_3d_z{slice_id:02d}.ome.zarr"
    data, _ = open_omezarr_level(grid)
    layout = mosaic_grid_layout(read_omezarr_info(grid).attributes, data.shape, str(grid))
    projections = summaries_from_aip(run / "mosaic_grids" / f"mosaic_grid_2d_z{slice_id:02d}.ome.zarr",
                                     data, layout).projections
    flat = neighbour_flat_field(projections, layout.tile_step_px)
    return {tile: projection / flat for tile, projection in projections.items()}


def tissue_threshold(tiles: dict[tuple[int, int], np.ndarray]) -> float:
    """Log intensity halfway between the background (5th percentile) and the tissue (95th) of all tiles."""
    logged = np.log(np.concatenate([tile.ravel() for tile in tiles.values()]))
    low, high = np.percentile(logged, [5, 95])
    return float((low + high) / 2)


def gap_registrations(image: np.ndarray, height: int, nominal_px: int, radius: int) -> list[tuple[int, float, float]]:
    """``(true overlap, significance, error px)`` of the sub-tile pairs of one image, one per true overlap."""
    rows = []
    for overlap in TRUE_OVERLAPS_PX:
        start = height - overlap
        if start + height > image.shape[0]:
            continue
        found = register_pair(image[:height], image[start:start + height], (height - nominal_px, 0), radius)
        rows.append((overlap, found.significance, float(np.hypot(found.offset[0] - start, found.offset[1]))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a linum_run_local.py output directory")
    parser.add_argument("slices", type=int, nargs="+")
    parser.add_argument("--height", type=int, default=47, help="sub-tile height, px")
    parser.add_argument("--nominal_px", type=int, default=10, help="nominal overlap, px")
    parser.add_argument("--radius", type=int, default=20, help="search radius, px")
    parser.add_argument("--strong", type=float, default=3.3, help="significance of a strong pair")
    args = parser.parse_args()
    rows = []
    for slice_id in args.slices:
        tiles = flat_fielded_tiles(args.run, slice_id)
        threshold = tissue_threshold(tiles)
        for image in tiles.values():
            if 0.1 < float((np.log(image) > threshold).mean()) < 0.95:
                for oriented in (image, image.T):
                    rows += gap_registrations(oriented, args.height, args.nominal_px, args.radius)
    print(f"true overlap | pairs | significance median | strong (>= {args.strong}) | strong and > 2 px off")
    for overlap in TRUE_OVERLAPS_PX:
        found = np.array([(s, e) for w, s, e in rows if w == overlap]).reshape(-1, 2)
        strong = found[:, 0] >= args.strong
        print(f"{overlap:12d} | {len(found):5d} | {np.median(found[:, 0]):19.2f} | {strong.sum():5d} "
              f"({100 * strong.mean():3.0f} %) | {(strong & (found[:, 1] > 2)).sum():5d}")


if __name__ == "__main__":
    main()
