"""A joint peak one weak link alone holds is refused where it puts its tile farther from its stage-model position
than every placed tile lies from its own plus 2 px (session lone10, issue #10), unless the link's own registration
is confident at that peak (session lone10b)."""

from __future__ import annotations

from test_stitching_matrix import stitch_errors

from linumpy.simulate.stitch_matrix import get_condition
from linumpy.stitching.global_solve import StageModel
from linumpy.stitching.joint_placement import confident_alone, lone_beyond_placed
from linumpy.stitching.pairwise import PairRegistration
from linumpy.stitching.tile_search import Placement

MODEL = StageModel(origin=(0.0, 0.0), row_step=(109.0, 0.0), col_step=(0.0, 109.0))


def test_a_lone_weak_peak_is_judged_by_its_tile_s_departure_from_the_stage_model():
    """``8 x 8 harsh`` seed 181's numbers: the empty (6, 0) on its link to (5, 0) alone, joint significance 2.19,
    put 13 px from its stage-model position where the placed tiles lay at most 10.6 px from theirs (bound 12.6 px):
    refused. Within the bound, held by two links, or by a strong lone link, it stands."""
    far = Placement((6, 0), 2.19, 2.0, {((5, 0), (6, 0)): (95, -6)}, position=(641, -6))
    assert lone_beyond_placed(far, MODEL, 12.6)
    assert not lone_beyond_placed(far, MODEL, 13.5)
    corroborated = Placement((6, 0), 2.19, 2.0, {((5, 0), (6, 0)): (95, -6), ((6, 0), (6, 1)): (1, 118)},
                             position=(641, -6))
    assert not lone_beyond_placed(corroborated, MODEL, 12.6)
    strong = Placement((6, 0), 3.5, 2.0, {((5, 0), (6, 0)): (95, -6)}, position=(641, -6))
    assert not lone_beyond_placed(strong, MODEL, 12.6)


def test_the_empty_tile_of_8x8_harsh_seed_181_stays_within_its_stage_error():
    """``8 x 8 harsh`` seed 181: the lone link (5, 0)-(6, 0), 20 px off along y, placed the empty (6, 0) 20.51 px
    from the truth, its stage position 8.42 (+12.09). Refused and flagged, the tile is no farther than its stage
    position, and no tile but the rigid piece's (6, 2) (its piece at its tiles' stage-model mean, +3.51) is."""
    ours, excess, _, transform = stitch_errors(get_condition("8x8 harsh"), 181)
    assert transform.tiles[(6, 0)].lone_link_refused
    assert excess[(6, 0)] <= 0.0, excess[(6, 0)]  # +12.09 before
    assert ours[(6, 0)] < 12.0  # 20.51 before
    assert max(v for t, v in excess.items() if t != (6, 2)) <= 0.5, excess


def test_a_lone_link_confident_on_its_own_is_not_judged_by_the_placed_tiles_deviation():
    """Foreign ``sparse`` seed 377 slice 3 (session lone10b): (2, 0) on (1, 0)-(2, 0) alone, own and joint
    significance 2.40, 9 px from its stage-model position where the six placed tiles lay at most 4.84 px from
    theirs (bound 6.84 px): beyond the bound, but the link is confident on its own at the joint peak, so spared.
    A peak only the joint window made significant (181's own 1.07), one off the link's own peak, or a placement
    two links hold are not spared."""
    sparse = Placement((2, 0), 2.40, 2.0, {((1, 0), (2, 0)): (84, 0)}, position=(167, 1))
    assert lone_beyond_placed(sparse, StageModel((0.0, 0.0), (79.0, 0.0), (0.0, 79.0)), 6.84)
    pair = ((1, 0), (2, 0))
    assert confident_alone(sparse, {pair: PairRegistration((83.32, -1.32), 0.3, significance=2.40)})
    assert not confident_alone(sparse, {pair: PairRegistration((83.32, -1.32), 0.3, significance=1.07)})
    assert not confident_alone(sparse, {pair: PairRegistration((76.0, -1.32), 0.3, significance=2.40)})
    two = Placement((2, 0), 2.40, 2.0, {pair: (84, 0), ((2, 0), (2, 1)): (0, 80)}, position=(167, 1))
    assert not confident_alone(two, {pair: PairRegistration((83.32, -1.32), 0.3, significance=2.40),
                                     ((2, 0), (2, 1)): PairRegistration((0.0, 80.0), 0.3, significance=2.40)})


def test_a_textured_tile_on_a_confident_lone_link_stays_placed_better_than_its_stage():
    """``overlap 10 %`` seed 193: (3, 1)'s one link, own significance 2.53, put it 5 px from its stage-model
    position where the six placed tiles lay at most 2.1 px from theirs (bound 4.11 px); the link is 1.4 px from
    the truth, the stage 5.7 px. Not refused: the tile is placed by its link, not flagged, and better than its stage."""
    ours, excess, _, transform = stitch_errors(get_condition("overlap 10%"), 193)
    assert not transform.tiles[(3, 1)].lone_link_refused
    assert transform.tiles[(3, 1)].source != "stage"
    assert ours[(3, 1)] < 2.0, ours[(3, 1)]
    assert excess[(3, 1)] < -2.0, excess[(3, 1)]
