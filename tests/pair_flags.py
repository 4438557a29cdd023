"""A boolean field of the transform's pair records checked through its JSON (shared by the stitching tests)."""

from __future__ import annotations

from linumpy.stitching.global_solve import StageModel
from linumpy.stitching.transform import PairRecord, TileTransform, transform_from_dict, transform_to_dict


def assert_pair_flag_round_trips(records: tuple[PairRecord, PairRecord], field: str,
                                 positions: dict, step: tuple[float, float], tile_shape: tuple[int, int]) -> None:
    """``field`` of two pair records (the first True, the second False) is written with each pair, read back, and
    read ``False`` from a file written before it (the key missing)."""
    transform = TileTransform(tile_shape, step, positions, StageModel.nominal(step), pairs=records)
    data = transform_to_dict(transform)
    assert [p[field] for p in data["pairs"]] == [True, False]
    assert [getattr(p, field) for p in transform_from_dict(data).pairs] == [True, False]
    for pair in data["pairs"]:
        del pair[field]
    assert not any(getattr(p, field) for p in transform_from_dict(data).pairs)
