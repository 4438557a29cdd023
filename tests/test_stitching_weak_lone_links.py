"""A weak link measuring every direction that alone places a group of tiles, its loops closing only through edge
links (along their ridges), is named in the QC record (a field, no flag) (session harsh8, issue #10: ``8x8 harsh``
seed 110's group of six tiles 12 px off, silent before)."""

from __future__ import annotations

import numpy as np
import pytest
from test_stitching_stage_departure import STEP, TILES, placed_qc

from linumpy.simulate.stitch_matrix import aligned_errors
from linumpy.stitching.transform import PairRecord

COLUMN = [(0, 2), (1, 2), (2, 2)]
#: Its edge link: only across its ridge (along x) does it say where the column lies.
EDGE_LINK = ((0, 1), (0, 2))
WEAK_LINK = ((1, 1), (1, 2))
OTHER_LINK = ((2, 1), (2, 2))


@pytest.mark.parametrize("drag_px, confident_other_link", [(10.0, False), (0.0, True)])
def test_a_group_placed_by_one_weak_link_checked_only_along_ridges_is_named(drag_px, confident_other_link):
    """The column, right among itself, hangs on the weak (1, 1)-(1, 2) (significance 0.80), dragged ``drag_px``
    along y, the ridge of the edge link (0, 1)-(0, 2) (1.30), which closes the loop whatever it says; the
    column's third overlap (2, 1)-(2, 2) is not kept (110: 0.58, right). The QC record names exactly the tiles
    off the truth by more than 1.5 px (the column) and the link; and nothing when that third
    overlap is a kept confident link (3.0) and the column lies right."""
    truth = {t: np.multiply(t, STEP) for t in TILES}
    positions = {t: truth[t] + ((drag_px, 0.0) if t in COLUMN else (0.0, 0.0)) for t in TILES}
    significance = {(a, b): 8.0 for a in TILES for b in TILES
                    if np.subtract(b, a).tolist() in ([0, 1], [1, 0])}
    significance.update({EDGE_LINK: 1.30, WEAK_LINK: 0.80, OTHER_LINK: 3.0 if confident_other_link else 0.58})
    pairs = tuple(PairRecord(a, b, tuple(np.subtract(positions[b], positions[a])), 0.5,
                             (a, b) != OTHER_LINK or confident_other_link, significance=s,
                             free_direction=(1.0, 0.0) if (a, b) == EDGE_LINK else None)
                  for (a, b), s in significance.items())
    metrics, flags = placed_qc(positions, pairs)
    reference = [t for t in TILES if t not in COLUMN]
    off = [str(t) for t, error in aligned_errors(positions, truth, reference).items() if error > 1.5]
    assert metrics["n_weak_lone_link_tiles"] == len(off)
    assert [t for t, record in metrics["tiles"].items() if record["weak_lone_link"]] == off
    assert metrics["weak_lone_links"] == ({f"{WEAK_LINK[0]}-{WEAK_LINK[1]}": 0.8} if off else {})
    assert not any(f.startswith("weak lone link") for f in flags)  # a field: most such links are right
