"""The report's red flags for tiles the stitch estimate left where nothing checks them (session link209, #10)."""

from __future__ import annotations

from linumpy.qc.flags import record_flags
from linumpy.qc.glossary import advice


def _record(tiles: dict, pairs: dict) -> dict:
    return {"step": "stitch_3d", "slice_id": 2, "metrics": {"tiles": tiles, "pairs": pairs}}


def test_a_textured_tile_left_on_the_stage_is_flagged_an_empty_one_is_not():
    """Foreign c185 209 slice 2: (0, 3) on the stage model (scatter 4.67 px), 8.5 px off, its overlap with
    (1, 3) of significance 2.74 refused as weak outside any loop: silent before (1 stage tile of 16). A stage
    tile whose overlaps all read below 2 (empty agarose) and one where the stage errs little are not named."""
    tiles = {"(0, 3)": {"source": "stage", "weak": False, "sigma_px": 4.67},
             "(3, 3)": {"source": "stage", "weak": False, "sigma_px": 4.67},
             "(1, 3)": {"source": "pairs", "weak": False, "sigma_px": 0.37},
             "(3, 2)": {"source": "pairs", "weak": False, "sigma_px": 0.39}}
    pairs = {"(0, 3)-(1, 3)": {"significance": 2.74}, "(2, 3)-(3, 3)": {"significance": 0.4},
             "(3, 2)-(3, 3)": {"significance": 1.9}}
    [flag] = record_flags(_record(tiles, pairs))
    assert flag.message.startswith("1 textured tile(s) left on the stage model, its scatter above the 1.5 px tile "
                                   "bar ((0, 3) 4.7 px)")
    assert "seams around the named tiles" in advice(flag.message)
    tiles["(0, 3)"]["sigma_px"] = 1.2  # a stage that errs less than the tile bar
    assert record_flags(_record(tiles, pairs)) == []


def test_a_weak_piece_put_on_the_stage_is_flagged():
    """Foreign c185 207 slice 3 (weak207): {(0, 0), (1, 0)}, a pair of significance 20.9, put on the stage as a
    weakly attached piece (6.4 and 9.1 px off): both named."""
    tiles = {"(0, 0)": {"source": "stage", "weak_piece_to_stage": True, "sigma_px": 4.9},
             "(1, 0)": {"source": "stage", "weak_piece_to_stage": True, "sigma_px": 4.9},
             "(0, 1)": {"source": "pairs", "sigma_px": 0.4}}
    pairs = {"(0, 0)-(1, 0)": {"significance": 20.9}, "(0, 0)-(0, 1)": {"significance": 0.47}}
    [flag] = record_flags(_record(tiles, pairs))
    assert flag.message.startswith("2 textured tile(s) left on the stage model")
    assert "(0, 0) 4.9 px, (1, 0) 4.9 px" in flag.message
