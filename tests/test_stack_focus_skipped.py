"""A slice the axial correction divided no focus out of must not bend the other slabs' gains (issue #11)."""

import numpy as np
import pytest

from linumpy.stack.gains import compensated_levels, compensated_ratios, fit_gains
from linumpy.stack.quality import focus_flags

#: Compensated-unit value of the tissue at the top and bottom of a slab that kept the focus (far above it: dim at
#: the top, rising with depth), and its normalisation scale (the corrected slabs read 1 everywhere, scale 1).
SKIPPED_TOP, SKIPPED_BOTTOM, SKIPPED_SCALE = 0.05, 0.3, 0.15


def _slab_gains(skipped: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom gains of each slab (compensated level included) as the stack fits them.

    The truth is flat: every corrected slab reads 1 at its top and bottom; a skipped slab reads
    ``SKIPPED_TOP`` to ``SKIPPED_BOTTOM``. Overlaps: the previous slab's bottom against this one's top.
    """
    scales = [SKIPPED_SCALE if s else 1.0 for s in skipped]
    top = [SKIPPED_TOP / c if s else 1.0 for s, c in zip(skipped, scales)]
    bottom = [SKIPPED_BOTTOM / c if s else 1.0 for s, c in zip(skipped, scales)]
    ratios = [None] + [bottom[k - 1] / top[k] for k in range(1, len(skipped))]
    depths = [None] + [(1.0, 0.0)] * (len(skipped) - 1)
    levels, _ = compensated_levels([None if s else c for s, c in zip(skipped, scales)])
    a, b = fit_gains(compensated_ratios(ratios, levels), depths, skipped)
    a = a + levels
    return np.exp(a), np.exp(a + b)


@pytest.mark.parametrize("skipped_index", [1, 2, 4])
def test_a_slab_without_focus_correction_leaves_the_corrected_slabs_flat(skipped_index: int) -> None:
    skipped = [k == skipped_index for k in range(5)]
    top, bottom = _slab_gains(skipped)
    corrected = [k for k in range(5) if not skipped[k]]
    # the corrected slabs read the truth (flat): no trend within a slab, one level for all
    assert np.allclose(bottom[corrected] / top[corrected], 1.0, atol=0.05)
    assert np.ptp(np.log(top[corrected])) < 0.05


def test_the_stack_flags_a_slice_without_focus_correction() -> None:
    flags = focus_flags({"slice_ids": [3, 4, 5], "focus_skipped": [None, "none (no background A-lines)", None]})
    assert len(flags) == 1 and flags[0].startswith("slice 4: no focus correction (none (no background A-lines))")
