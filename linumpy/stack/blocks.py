"""A pair's depth step from its overlap registered block by block, each block with its own lateral shift.

The z scan of :func:`linumpy.stack.refine.register_pair` aligns the new
slice's top on the previous slice's planes with one lateral shift for the
whole overlap. When the two mosaics are misregistered against each other by
a few pixels that differ from tile to tile (a slice stitched with tiles left
on their stage positions, 4-11 px off), no single shift aligns the overlap:
the NCC stays low at every depth and the scan is refused, at the motor step
and at the thickness alike. Each part of the overlap still matches its own
tissue at its own shift, so the depth is still there to read: the overlap is
split into a grid of blocks, each registered on its own
(:func:`block_estimates`), and the offsets of the blocks that place the slice vote
(:func:`vote_blocks`).

Only a pair whose motor depth step is in doubt and that neither whole scan
places uses it (:func:`linumpy.stack.stacking._check_motor_slips`): the
motor reading of the last slice jumped by half a thickness (nothing cancels
it, :func:`linumpy.stack.placement.find_encoder_glitches` cannot see it) or
a section was lost (a real step of two thicknesses). The blocks are
registered around both steps; the thickness is adopted only when most of the
blocks that place the slice agree on it, at least :data:`MIN_AGREEING_BLOCKS`
of them and :data:`VOTE_MARGIN` times as many as agree around the motor step
(a lost section: the tissue at the thickness is not the new slice's top, the
blocks there disagree, and the motor step is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from linumpy.stack.refine import PairEstimate, register_pair

#: Blocks per side of the overlap's grid: on the foreign acquisitions (4 x 4 tiles at 10 % overlap, the scan's
#: level 8 um per pixel) a block is about a tile wide, so one lateral shift fits most of it.
BLOCK_GRID = 3
#: Fewest blocks per side (in scan pixels) a block may have; the grid is coarsened below it.
MIN_BLOCK_PX = 16
#: Blocks within this many planes of their median offset agree (:func:`agreeing_blocks`).
AGREEMENT_PLANES = 2.0
#: Fewest agreeing confident blocks (z confidence at least the stack's ``min_confidence``) that adopt a step.
MIN_CONFIDENT_BLOCKS = 3
#: Fraction of the blocks that must agree among those that place the slice (:func:`places`, confident or not)
#: to adopt a step: most of the overlap, as a chance bump of a few blocks' curves would not.
PLACING_FRACTION = 2 / 3
#: The thickness is adopted when its agreeing blocks outnumber the motor step's by at least this factor.
VOTE_MARGIN = 2


def block_estimates(
    previous: np.ndarray,
    previous_first_plane: int,
    current_top: np.ndarray,
    expected_offset: float,
    tolerance: float,
    grid: int = BLOCK_GRID,
    lateral_sigma_px: float = 0.0,
) -> list[PairEstimate]:
    """:func:`~linumpy.stack.refine.register_pair` on each block of a ``grid`` x ``grid`` split of the overlap.

    Parameters
    ----------
    previous, previous_first_plane, current_top, expected_offset, tolerance
        As :func:`~linumpy.stack.refine.register_pair`: the previous slice's
        planes and the new slice's top over the same lateral window.
    grid : int
        Blocks per side; fewer when a block would be narrower than
        :data:`MIN_BLOCK_PX`.
    lateral_sigma_px : float
        The z scan's lateral smoothing (:func:`~linumpy.stack.refine.scan_z_offset`).

    Returns
    -------
    list of PairEstimate
        One per block, row by row; each with its own lateral shift.
    """
    grid = max(1, min(grid, min(current_top.shape[1:]) // MIN_BLOCK_PX))
    rows, columns = (np.linspace(0, n, grid + 1).astype(int) for n in current_top.shape[1:])
    estimates = []
    for y0, y1 in zip(rows[:-1], rows[1:], strict=True):
        for x0, x1 in zip(columns[:-1], columns[1:], strict=True):
            window = (slice(None), slice(y0, y1), slice(x0, x1))
            estimates.append(register_pair(np.ascontiguousarray(previous[window]), previous_first_plane,
                                           np.ascontiguousarray(current_top[window]), expected_offset, tolerance,
                                           lateral_sigma_px=lateral_sigma_px))
    return estimates


@dataclass(frozen=True)
class BlockVote:
    """The blocks' verdict on a depth step in doubt (:func:`vote_blocks`).

    Attributes
    ----------
    adopted : str
        ``"thickness"`` or ``"motor"`` (kept: the blocks do not prefer the thickness clearly).
    n_blocks : int
        Blocks registered around each step.
    agreeing : dict
        Per step (``"motor"``, ``"thickness"``), its agreeing confident blocks.
    placing : dict
        Per step, its agreeing blocks among those that place the slice (:func:`places`).
    estimate : PairEstimate or None
        The thickness's estimate when adopted: its z offset the median of the agreeing blocks that decided
        (the confident ones when they did), its z confidence their median confidence (below the stack's
        ``min_confidence`` the step is not used: the slice is placed by its motor depth moved onto the
        thickness, with its surface depth), its lateral shift the whole scan's (``whole``).
    """

    adopted: str
    n_blocks: int
    agreeing: dict[str, int]
    placing: dict[str, int]
    estimate: PairEstimate | None = None

    def to_dict(self) -> dict:
        """The record's ``blocks`` entry of ``motor_slip``."""
        return {"n_blocks": self.n_blocks, "agreeing": dict(self.agreeing), "placing": dict(self.placing),
                "adopted": self.adopted}


def places(estimate: PairEstimate, min_confidence: float) -> bool:
    """Whether a block's registration places the slice: its z scan confident, or its peak inside the scanned
    offsets (not on an edge) with its overlap aligned (lateral confidence at least ``min_confidence``).

    A block is a small overlap: the z scan's tests of a peak against the
    speckle's chance bumps (:func:`~linumpy.stack.refine.scan_z_offset`),
    set for a whole overlap, refuse most blocks' peaks although they lie where
    the other blocks' do (foreign c185 213: 7 of 9 blocks within 2 planes, one
    confident); the vote then asks most of the blocks to agree. A peak on the
    scan's edge says only that the match improves beyond it.

    Examples
    --------
    >>> places(PairEstimate(45.0, 0.0, (0.0, 0.0), 0.6, offsets_scanned=list(range(40, 50))), 0.3)
    True
    >>> places(PairEstimate(40.0, 0.0, (0.0, 0.0), 0.6, offsets_scanned=list(range(40, 50))), 0.3)  # its edge
    False
    """
    interior = bool(estimate.offsets_scanned) and (
        estimate.offsets_scanned[0] < estimate.z_offset_px < estimate.offsets_scanned[-1])
    return estimate.z_confidence >= min_confidence or (interior and estimate.lateral_confidence >= min_confidence)


def agreeing_blocks(estimates: list[PairEstimate]) -> list[PairEstimate]:
    """The blocks within :data:`AGREEMENT_PLANES` of their median offset.

    Examples
    --------
    >>> blocks = [PairEstimate(z, 0.5, (0.0, 0.0), 0.5) for z in (44.1, 44.6, 51.0, 43.9)]
    >>> [b.z_offset_px for b in agreeing_blocks(blocks)]
    [44.1, 44.6, 43.9]
    """
    if not estimates:
        return []
    median = float(np.median([e.z_offset_px for e in estimates]))
    return [e for e in estimates if abs(e.z_offset_px - median) <= AGREEMENT_PLANES]


def vote_blocks(
    motor_blocks: list[PairEstimate], thickness_blocks: list[PairEstimate], whole: PairEstimate,
    min_confidence: float,
) -> BlockVote:
    """Whether the blocks registered around the thickness place the slice clearly better than around the motor.

    Two tiers, each asking the thickness to gather :data:`VOTE_MARGIN` times
    as many agreeing blocks (:func:`agreeing_blocks`) as the motor step: at
    least :data:`MIN_CONFIDENT_BLOCKS` confident blocks, or
    :data:`PLACING_FRACTION` of all the blocks among those that place the
    slice (:func:`places`).

    Parameters
    ----------
    motor_blocks, thickness_blocks : list of PairEstimate
        :func:`block_estimates` around each step (empty when the slices do
        not overlap there).
    whole : PairEstimate
        The whole overlap's registration around the thickness (its lateral
        shift and confidences are kept).
    min_confidence : float
        The stack's ``min_confidence``.

    Examples
    --------
    >>> block = lambda z, c, lateral=0.5: PairEstimate(z, c, (0.0, 0.0), lateral, offsets_scanned=list(range(30, 61)))
    >>> whole = PairEstimate(40.0, 0.0, (3.0, -1.0), 0.1)
    >>> vote = vote_blocks([block(60.0, 0.0)] * 4, [block(44.2, 0.9), block(44.4, 0.8), block(43.8, 0.6),
    ...                                             block(30.0, 0.0)], whole, 0.3)
    >>> vote.adopted, vote.agreeing, vote.estimate.z_offset_px, vote.estimate.shift_yx_px
    ('thickness', {'motor': 0, 'thickness': 3}, 44.2, (3.0, -1.0))
    >>> vote = vote_blocks([block(60.0, 0.0)] * 6, [block(44.0, 0.0)] * 4 + [block(50.0, 0.0)] * 2, whole, 0.3)
    >>> vote.adopted, vote.placing, vote.estimate.z_confidence  # 4 of 6 agree, none confident: step not used
    ('thickness', {'motor': 0, 'thickness': 4}, 0.0)
    >>> vote_blocks([block(50.0, 0.9)] * 2, [block(44.2, 0.9)] * 3, whole, 0.3).adopted  # not clearly
    'motor'
    """
    n_blocks = max(len(motor_blocks), len(thickness_blocks))
    tiers = []
    for keep, least in ((lambda e: e.z_confidence >= min_confidence, MIN_CONFIDENT_BLOCKS),
                        (lambda e: places(e, min_confidence), PLACING_FRACTION * n_blocks)):
        agreeing = {step: agreeing_blocks([e for e in blocks if keep(e)])
                    for step, blocks in (("motor", motor_blocks), ("thickness", thickness_blocks))}
        clear = len(agreeing["thickness"]) >= max(least, VOTE_MARGIN * len(agreeing["motor"]))
        tiers.append((agreeing, clear))
    counts = [{step: len(blocks) for step, blocks in agreeing.items()} for agreeing, _ in tiers]
    chosen = next((agreeing["thickness"] for agreeing, clear in tiers if clear), None)
    if chosen is None:
        return BlockVote("motor", n_blocks, *counts)
    estimate = replace(whole, z_offset_px=float(np.median([e.z_offset_px for e in chosen])),
                       z_confidence=float(np.median([e.z_confidence for e in chosen])))
    return BlockVote("thickness", n_blocks, *counts, estimate)
