"""A-lines without a detected surface: the map fits them from a neighbour's surface (issue #11, dark47).

Dim tissue far above the focus shows its cut only where its texture is bright just below it. A map of
those A-lines alone reads the texture falling back with depth as extra decay (the independent generator's
harsh-B dark tissue, 2 mm⁻¹, read +15 %). Synthetic tissue of a known attenuation whose texture falls with
depth in half of its 8 x 8 A-line patches and rises in the others, the surface given only in the former.
"""

from __future__ import annotations

import numpy as np

from linumpy.intensity.attenuation_map import borrowed_surface
from linumpy.intensity.axial import AxialSettings, SliceStatistics, correct_block
from linumpy.intensity.qc_summary import AxialQc, ClassSupport

DZ_MM = 0.0015
N_Z, SURFACE, SIZE, PATCH = 160, 10, 64, 8
TISSUE_PER_MM = 2.0
TEXTURE = 0.2  # the texture's change over the fitted depth, relative


def textured_tissue() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, found, falling)``: tissue below ``SURFACE``, padding (zeros) in the last 4 columns; the
    surface found (``found``) only where the texture falls with depth (``falling``)."""
    z = np.arange(N_Z, dtype=float)[:, None, None]
    y, x = np.indices((SIZE, SIZE))
    falling = ((y // PATCH + x // PATCH) % 2 == 0)
    ramp = (z - SURFACE) / (N_Z - SURFACE)
    texture = np.where(falling, 1 + TEXTURE * (1 - ramp), 1 + TEXTURE * ramp)
    data = (z >= SURFACE) * texture * np.exp(-2 * TISSUE_PER_MM * DZ_MM * np.maximum(z - SURFACE, 0))
    data[:, :, -4:] = 0.0
    found = np.where(falling, float(SURFACE), np.nan)
    found[:, -4:] = np.nan
    return data.astype(np.float32), found, falling


def statistics() -> SliceStatistics:
    return SliceStatistics(noise_floor=0.0, focus_profile=None, focus_mode="none", focus_qc={}, focus_flags=[],
                           plane=None, mean_surface_px=float(SURFACE), surface_fraction=0.5, tissue_level=None)


def test_borrowed_surface_nearest_within_distance_not_padding():
    found = np.full((5, 5), np.nan)
    found[2, 0] = 7.0
    imaged = np.ones((5, 5), bool)
    imaged[:, 4] = False
    surface, borrowed = borrowed_surface(found, imaged, max_distance=3)
    assert surface[2, 3] == 7.0 and borrowed[2, 3] and not borrowed[2, 0]
    assert np.isnan(surface[2, 4]) and not borrowed[2, 4]  # padding
    assert np.isnan(surface[0, 3]) and not borrowed[0, 3]  # sqrt(13) > 3 A-lines away
    assert not borrowed_surface(np.full((3, 3), np.nan), np.ones((3, 3), bool))[1].any()  # nothing detected


def test_map_of_the_tissue_without_surface_is_unbiased():
    """The detected A-lines alone read +10 % (the texture falling from a bright cut); all of them, the
    others fitted from a neighbour's surface, within 3 % of the truth. Padding stays unmapped."""
    data, found, falling = textured_tissue()
    _, mapped, _ = correct_block(data, found, statistics(), AxialSettings(), DZ_MM, 0, N_Z - SURFACE)
    imaged = np.zeros((SIZE, SIZE), bool)
    imaged[:, :-4] = True
    assert np.isnan(mapped.mu[~imaged]).all() and not mapped.borrowed[~imaged].any()
    assert np.isfinite(mapped.mu[imaged]).mean() > 0.95
    assert (mapped.borrowed[imaged] == ~falling[imaged])[np.isfinite(mapped.mu[imaged])].all()
    detected = float(np.nanmean(mapped.mu[imaged & falling]))
    everything = float(np.nanmean(mapped.mu[imaged]))
    assert detected / TISSUE_PER_MM - 1 > 0.08, detected
    assert abs(everything / TISSUE_PER_MM - 1) < 0.03, everything



def test_qc_counts_the_borrowed_lines_of_every_class():
    """The count is of all the blocks' A-lines mapped from a neighbour's surface, tissue or not. One A-line is
    without support (``sparse``: in the corner a patch without surfaces fills 65 of the 81 imaged A-lines within
    4, a share of 0.2 detected), counted, still mapped."""
    data, found, _ = textured_tissue()
    _, mapped, _ = correct_block(data, found, statistics(), AxialSettings(), DZ_MM, 0, N_Z - SURFACE)
    assert np.argwhere(mapped.sparse).tolist() == [[SIZE - 1, 0]] and np.isfinite(mapped.mu[SIZE - 1, 0])
    qc = AxialQc(N_Z - SURFACE)
    for _ in range(2):
        qc.add_corrected(np.zeros(N_Z - SURFACE), mapped, 0,
                         ClassSupport(borrowed=int(np.count_nonzero(mapped.borrowed))))
    metrics, _ = qc.attenuation_map_qc(DZ_MM * 1000)
    assert metrics["attenuation_map_borrowed_surface_lines"] == 2 * (SIZE * (SIZE - 4) // 2)
