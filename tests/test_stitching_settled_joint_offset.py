"""A joint search's whole pixel whose sub-pixel fit leaves its box is settled from the pair's evidence as the pair's
own registration settles its peak (session flat10, issue #10; ``pairwise.refine_joint_offset``)."""

from __future__ import annotations

import numpy as np
from test_stitching_ridge_refit import SHORT, TRUE_OFFSET, _offset, _tiles

from linumpy.stitching.global_solve import StageModel
from linumpy.stitching.pairwise import PairRegistration, local_maxima, refine_joint_offset, refine_subpixel
from linumpy.stitching.transform import PairRecord, TileTransform, transform_from_dict, transform_to_dict

#: The truth, below a pixel from :data:`TRUE_OFFSET`.
TRUTH = (TRUE_OFFSET[0] + 0.3, TRUE_OFFSET[1] - 0.2)


def _registration(significance: float) -> PairRegistration:
    """The pair's own registration with the short ridge's evidence map."""
    return PairRegistration(TRUTH, 0.6, significance, (0.05, 0.05), scores=(SHORT,))


def test_a_whole_pixel_the_fit_leaves_is_settled_on_the_truth():
    tile_a, tile_b = _tiles(TRUTH)
    whole = _offset(local_maxima(SHORT.values)[0])  # the evidence's flat top: its maximum toward the larger overlap
    # premise: the fit from there leaves its box and keeps the whole pixel, more than 1.5 px off
    assert refine_subpixel(tile_a, tile_b, whole)[0] == tuple(float(v) for v in whole)
    assert np.hypot(*np.subtract(whole, TRUTH)) > 1.5
    refined, sigma, settled = refine_joint_offset(tile_a, tile_b, whole, _registration(5.0))
    assert settled
    assert np.hypot(*np.subtract(refined, TRUTH)) < 0.1
    assert max(sigma) < 0.2


def test_a_whole_pixel_the_fit_keeps_is_fitted_not_settled():
    tile_a, tile_b = _tiles(TRUTH)
    refined, _, settled = refine_joint_offset(tile_a, tile_b, TRUE_OFFSET, _registration(5.0))
    assert not settled
    assert np.hypot(*np.subtract(refined, TRUTH)) < 0.1


def test_settled_survives_the_transform_json():
    """``settled`` is written with each pair and read back (missing in older files: False)."""
    step = (84.0, 84.0)
    records = (PairRecord((0, 0), (1, 0), TRUTH, 0.6, True, settled=True),
               PairRecord((0, 0), (0, 1), (0.0, 84.0), 0.9, True))
    transform = TileTransform((96, 96), step, {(0, 0): (0.0, 0.0), (1, 0): TRUTH, (0, 1): (0.0, 84.0)},
                              StageModel.nominal(step), pairs=records)
    data = transform_to_dict(transform)
    assert [p.settled for p in transform_from_dict(data).pairs] == [True, False]
    for pair in data["pairs"]:
        del pair["settled"]
    assert not any(p.settled for p in transform_from_dict(data).pairs)
