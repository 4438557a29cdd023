"""The stack's z scan on the pyramid level above the registration level, the lateral shift refined on it.

Slices 256 pixels wide with a second level of 2 x 2 block means (128 px):
the pairs scan z on the block means and read only the planes the boundary
ratio reads on the finest level, yet place every slice as the truth does,
odd lateral shifts (half a coarse pixel) included.
"""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np

from linumpy.resample import block_mean
from linumpy.stack import stacking
from linumpy.stack.stacking import SliceVolume, StackParameters, plan_stack
from test_stack import AXIAL_UM, LATERAL_UM, SURFACE_PX, USEFUL_PX, make_brain, relative_truth

N_PLANES = StackParameters().n_planes


class PlaneCounter:
    """Planes of the finest level computed, from any thread."""

    def __init__(self) -> None:
        self.planes = 0
        self._lock = threading.Lock()

    def __call__(self, block: np.ndarray) -> np.ndarray:
        with self._lock:
            self.planes += block.shape[0]
        return block


def two_level_volumes(slabs: list[np.ndarray], counter: PlaneCounter) -> list[SliceVolume]:
    """Each slab as level 0 (one plane a chunk, its reads counted) and its 2 x 2 block means as level 1."""
    volumes = []
    for i, slab in enumerate(slabs):
        finest = da.from_array(slab, chunks=(1, *slab.shape[1:])).map_blocks(counter, dtype=slab.dtype)
        coarse = da.from_array(np.asarray(block_mean(slab, (1, 2, 2))), chunks=(8, 64, 64))
        levels = [(finest, (AXIAL_UM, LATERAL_UM, LATERAL_UM)), (coarse, (AXIAL_UM, 2 * LATERAL_UM, 2 * LATERAL_UM))]
        volumes.append(SliceVolume(i, levels, (SURFACE_PX, SURFACE_PX + USEFUL_PX)))
    return volumes


def test_z_scanned_on_the_coarse_level_places_slices_as_the_truth_reading_few_fine_planes(monkeypatch):
    # the averaging's overlap measure reads the coarsest level at least MEASURE_SIZE_PX wide: on a real pyramid a
    # coarse one; these two-level slices have it at 128 px only
    monkeypatch.setattr(stacking, "MEASURE_SIZE_PX", 128)
    brain = make_brain(steps_px=(20, 21, 19), shifts_px=((0, 0), (3, -2), (5, 1), (4, 4)), size=256)
    counter = PlaneCounter()
    plan = plan_stack(two_level_volumes(brain.slices, counter), brain.motors_mm, brain.thickness_um, LATERAL_UM)
    origins = np.array([s["origin_um"] for s in plan.record["slices"]])
    error_px = (origins - origins[0] - relative_truth(brain)) / np.array([AXIAL_UM, LATERAL_UM, LATERAL_UM])
    assert np.abs(error_px[:, 0]).max() <= 0.25  # axial voxels
    assert np.abs(error_px[:, 1:]).max() <= 0.1  # finest lateral pixels (odd shifts: half a coarse pixel)
    registrations = [s["registration"] for s in plan.record["slices"][1:]]
    assert all(r["z_confidence"] >= 0.5 and r["lateral_confidence"] >= 0.5 for r in registrations)
    assert all(tuple(r["pixel_um"][1:]) == (LATERAL_UM, LATERAL_UM) for r in registrations)  # the shifts: finest pixels
    # the finest level read only where each boundary ratio reads, with 2 planes on either side: the new slice's
    # n planes and the previous slice's at the step (a scan on level 0 reads its whole z tolerance: 90 planes)
    assert counter.planes <= len(registrations) * 2 * (N_PLANES + 4)
