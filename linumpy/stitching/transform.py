"""The estimated stitching transform and its JSON file.

A :class:`TileTransform` holds what stitching estimated for one slice: the
position of every tile and the stage model that places tiles it did not see.
Saved next to the stitched output, it can be applied unchanged to another
channel or slice acquired with the same grid (``linum_stitch_3d.py
--transform``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output
from linumpy.io.json_document import load_json_document
from linumpy.stitching.global_solve import StageModel, TileIndex
from linumpy.stitching.stage_residuals import AXES, StageResidualModel

FORMAT_NAME = "linumpy-tile-transform"
FORMAT_VERSION = 2
#: Versions this code reads (version 1 lacks the confidences).
READABLE_VERSIONS = (1, 2)
_DECIMALS = 4
#: Status of a pair on no loop departing from the stage model's step beyond the other kept pairs, kept because
#: the tiles it alone places lie within the stage's window (:func:`linumpy.stitching.departures._bridged_within_window`).
FAR_BRIDGE_KEPT = "kept, departs beyond the other pairs but its tiles within the stage's window"
#: Status of such a pair refused (:func:`linumpy.stitching.departures.implausible_departure`).
FAR_BRIDGE_REFUSED = "departs implausibly from the stage model"
#: Status of a pair whose own peak lies on the border of its scored window, refused as evidence
#: (:func:`linumpy.stitching.estimate._refused_on_border`).
BORDER_PEAK_REFUSED = "refused, its peak on the border of the scored window"
#: Status of a candidate, not strong pair whose peak its overlap strips' depth ranges did not repeat, refused as
#: evidence (:mod:`linumpy.stitching.depth_check`).
DEPTH_PEAK_REFUSED = "refused, its peak not repeated on the depth ranges of its overlap"
#: Status of a pair whose strong own peak the sub-pixel fit did not refine, refused as evidence
#: (:func:`linumpy.stitching.estimate.refused_unfit`).
UNFIT_PEAK_REFUSED = "refused, its strong peak not refined by the sub-pixel fit"
#: Status of a kept pair on no loop refused for placing its tiles beyond the search window
#: (:func:`linumpy.stitching.lone_links.far_lone_links_to_stage`).
FAR_LONE_LINK_REFUSED = "lone link placing its tiles beyond the search window, tiles on the stage"
#: Status of such a pair refused by the solve of the confident pairs, before the searches
#: (:func:`linumpy.stitching.departures.solve_plausible`): its tiles placed by their other pairs, or on the stage.
FAR_LONE_LINK_REFUSED_FIRST = "lone link placing its tiles beyond the search window, refused by the first solve"
#: Status of a kept pair on no loop, alone placing one tile, refused for knowing its position less well than the stage
#: model (:func:`linumpy.stitching.lone_links.broad_lone_links_to_stage`).
BROAD_LONE_LINK_REFUSED = "lone link less certain than the stage model, its tile on the stage"
#: Status of a weak pair refused before the searches as the only link placing an edge link's tiles along its ridge,
#: the solve putting that edge link beyond its ridge
#: (:func:`linumpy.stitching.ridge_bridges.weak_without_ridge_contradicted_bridges`).
RIDGE_CONTRADICTED_REFUSED = "weak link only an edge's ridge checked, beyond the ridge: refused"

#: Status of a kept pair on no loop refused because candidate links joining the same two blocks of tiles contradict it
#: and agree with each other (:func:`linumpy.stitching.outvoted.outvoted_lone_links`): they place the blocks instead.
OUTVOTED_LINK_REFUSED = "lone link outvoted by the links joining its blocks, refused"
#: Status of a kept pair on no loop, not an edge link, that a search placed farther from its own peak than
#: :data:`~linumpy.stitching.pair_terms.OWN_PEAK_PX`: refused, the side it alone held on the stage model
#: (:func:`linumpy.stitching.off_peak.off_peak_lone_links_to_stage`).
OFF_PEAK_LINK_REFUSED = "lone link placed off its own peak by a search, refused, its side on the stage"
#: Status of a kept edge link on no loop, kept across its ridge only as it departs from the stage along it, that the
#: solve put beyond half its ridge from its own peak along it: refused, the side it alone held on the stage model
#: (:func:`linumpy.stitching.ridge_reach.beyond_reach_edge_links_to_stage`).
BEYOND_REACH_EDGE_LINK_REFUSED = "lone edge link, its tiles beyond its ridge's reach, refused, its side on the stage"
#: Status of a kept edge link on no loop whose side's other overlaps did not prefer its placement along its ridge:
#: kept across its ridge only, its side on the stage along it
#: (:func:`linumpy.stitching.lone_links.lone_edge_links_across_only`).
LONE_EDGE_LINK_ACROSS_ONLY = "lone edge link, kept across its ridge only, its tiles on the stage along it"
#: Status of a kept link of a joint placement whose other links the solve dropped, kept strong (allowed to be the
#: only link between tiles) because its own registration is strong at that offset
#: (:func:`linumpy.stitching.refusals.strong_on_its_own`); the other survivors count as weak.
STRONG_SURVIVOR_KEPT = "kept (joint search), its placement broken, strong on its own"
#: Status of a candidate that joins the two blocks of a kept link on no loop whose sub-pixel fit kept its 1 px
#: placeholder error, kept because the solve with it keeps it and every kept pair
#: (:func:`linumpy.stitching.loose_loops.closed_loose_loops`).
LOOSE_LOOP_CLOSED = "kept, closes the loop of a loose lone link"
#: Status of a candidate that joins the two blocks of a kept edge link on no loop, kept because the unweighted solve
#: with it, the link's term along its ridge freed, keeps it and every kept pair: it places the link's side along the
#: ridge (:func:`linumpy.stitching.loose_loops.closed_loose_loops`).
EDGE_LOOP_CLOSED = "kept, closes the loop of a lone edge link along its ridge"
#: Status of a pair of a rigid piece (strong pairs on closed loops among tiles no trusted link joins to the others),
#: placed as one at its tiles' stage-model mean (:func:`linumpy.stitching.stage_pieces.place_rigid_pieces`).
RIGID_PIECE_KEPT = "kept (rigid piece at its tiles' stage-model mean)"
#: Status of a weak pair of a rigid piece that joined two pieces of strong pairs on a loop of such pairs, the pieces
#: then placed as one (:func:`linumpy.stitching.stage_pieces.loop_joined_pieces`).
RIGID_PIECES_JOINED = "kept, joins rigid pieces on a loop (placed as one at their tiles' stage-model mean)"
#: Status of the links that placed a piece of strong pairs by two or more links on a loop to the main group
#: (:func:`linumpy.stitching.stage_pieces.pieces_joined_to_main`).
PIECE_JOINED_TO_MAIN = "kept, places a piece by its links on a loop to the main group"
#: Status of a pair refused in depth whose own peak agreed with the one link that placed a piece of strong pairs
#: to the main group, checking it as that piece's second link (:func:`linumpy.stitching.stage_pieces.
#: pieces_joined_to_main`); it places nothing.
REFUSED_JOIN_CHECK = "refused in depth, its peak checks the one link placing a piece to the main group"
#: Status of a kept pair that joined a piece placed through an open loop to the other tiles, the piece then put
#: on the stage model (:func:`linumpy.stitching.tile_records.far_open_loop_pieces_to_stage`).
OPEN_LOOP_PIECE_TO_STAGE = "open loop placing its piece beyond the stage's error, piece on the stage"


@dataclass(frozen=True)
class PairRecord:
    """Diagnostics of one registered pair of neighbouring tiles.

    Attributes
    ----------
    a, b : (row, col)
        The two tiles; ``offset`` is ``position(b) - position(a)``.
    offset : tuple of float
        Measured offset, pixels.
    ncc : float
        NCC of the band-passed tiles at the offset.
    accepted : bool
        Used by the global solve.
    significance : float
        Robust z-score of the NCC peak against wrong offsets.
    sigma_px : tuple of float
        Standard error of the measured offset per axis.
    confidence : float
        ``significance / (2 * threshold)`` clipped to [0, 1]: 0.5 at the
        acceptance threshold.
    spread_px : tuple of float
        Width ``(y, x)`` of the pair's evidence peak at its offset
        (:func:`~linumpy.stitching.pairwise.peak_spread`; NaN where nothing
        was scored): above ~0.6 px the pair errs more than ``sigma_px`` says
        (2-3 times above 1 px, measured on the stitching matrix).
    free_direction : tuple of float or None
        Unit ``(y, x)`` direction along which the pair's evidence at its
        offset is an edge's ridge (:func:`~linumpy.stitching.pairwise.edge_ridge`):
        the pair locates the offset across it, along it only within the
        ridge (the aperture problem); ``None`` for an ordinary peak.
    ridge_px : float
        Length of that ridge, pixels (NaN for an ordinary peak); the pair's
        variance along it grows by ``ridge_px**2 / 12``.
    border_peak : bool
        Whether ``offset`` is the pair's own peak on the border of its scored
        window (:attr:`~linumpy.stitching.pairwise.PairRegistration.border_peak`):
        no local maximum of the match. An accepted one adds the search window's
        variance (:func:`linumpy.stitching.pair_terms.edge_variance`, both axes)
        to the tiles' stated errors, not to the solve.
    unlocated_px : float
        How far (pixels, along the step) the pair's match leaves ``offset`` unlocated toward the border of
        its scored window (:func:`~linumpy.stitching.pairwise.offset_unlocated`; 0 where the match drops
        before the border): an accepted one
        adds ``unlocated_px**2 / 3`` on the step's axis to the tiles' stated errors. 0 in transforms
        written before session narrow.
    split_peak : bool
        Whether ``offset`` is the pair's own registration and its evidence peak has another local maximum
        within :data:`~linumpy.stitching.pairwise.PEAK_RADIUS_PX` that beats it on their common overlap
        (:attr:`~linumpy.stitching.pairwise.PairRegistration.split_peak`): the peak may have slid toward the
        larger overlap. ``False`` in transforms written before session slide10.
    depth_disagreement_px : float
        For a candidate, not strong pair checked on depth ranges of its overlap strips
        (:mod:`linumpy.stitching.depth_check`), the largest distance (pixels) between its offset and a range's;
        above :data:`~linumpy.stitching.depth_check.DEPTH_AGREEMENT_PX` it was refused
        (:data:`DEPTH_PEAK_REFUSED`) unless accepted on a loop, within
        :data:`~linumpy.stitching.depth_check.LOOP_CHECKED_DISAGREEMENT_PX`
        (:func:`~linumpy.stitching.depth_check.refused_by_a_margin`); inf where a range found no peak (``"inf"`` in
        the JSON), NaN where not
        checked (null).
    depth_confirmed_significance : float
        For a pair the depth check would refuse (``depth_disagreement_px`` above
        :data:`~linumpy.stitching.depth_check.DEPTH_AGREEMENT_PX`) but its most significant range confirmed
        (:func:`~linumpy.stitching.depth_check.judged_disagreement`), that range's significance: the pair stayed a
        candidate on it. NaN (null) for every other pair, and in transforms written before session rule10d.
    settled : bool
        Whether a search's whole-pixel offset for the pair, its sub-pixel fit leaving its box there, was settled
        from the pair's evidence as its own registration's peak
        (:func:`~linumpy.stitching.pairwise.settled_search_offset`). False in transforms written before session
        flat10.
    unfit_peak : bool
        Whether the pair's own peak, strong, was refused because its sub-pixel fit did not refine it
        (:func:`~linumpy.stitching.estimate.refused_unfit`). False in transforms written before session
        sliver10.
    absorbed_vote : bool
        Whether the pair, a candidate not kept that the solve contradicted beyond
        :data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX` across a kept link on no loop, was denied its vote
        against that link because the kept pairs absorbed it when solved with it
        (:func:`~linumpy.stitching.outvoted.absorbed`). False in transforms written before session outvote10.
    depth_range_peak : bool
        Whether the pair, refused in depth, took the offset, significance and standard error of its most
        significant depth range, strong and located (:func:`~linumpy.stitching.depth_check.strong_range_peak`).
        False in transforms written before session ha10.
    depth_corroborated : bool
        Whether the pair, refused in depth, kept its own peak because its two most significant depth ranges are
        confident and near it (:func:`~linumpy.stitching.depth_check.corroborated_in_depth`). False in transforms
        written before session ha10b.
    status : str
        ``kept``, ``kept (loop closure)`` (moved to the rival peak its loops
        predict, :mod:`linumpy.stitching.loops`), ``kept (joint search)``
        (:mod:`linumpy.stitching.tile_search`), ``kept (joint search), its placement broken, strong on its own``
        (:data:`STRONG_SURVIVOR_KEPT`), ``kept, closes the loop of a loose lone link``
        (:data:`LOOSE_LOOP_CLOSED`), ``kept, closes the loop of a lone edge link along its ridge``
        (:data:`EDGE_LOOP_CLOSED`), ``kept (cluster search)``
        (:mod:`linumpy.stitching.cluster_search`), ``kept (piece search)``
        (a link of a piece searched again, :mod:`linumpy.stitching.reanchor`),
        or why the pair was not used:
        ``not significant``, ``refused, its peak on the border of the scored window``
        (:data:`BORDER_PEAK_REFUSED`), ``refused, its peak not repeated on the depth ranges of its overlap``
        (:data:`DEPTH_PEAK_REFUSED`), ``refused, its strong peak not refined by the sub-pixel fit``
        (:data:`UNFIT_PEAK_REFUSED`), ``inconsistent or outside the main group``
        (residual of the global solve too large, or linking tiles apart from
        the largest group; also a weak pair between tiles the kept pairs join:
        the loop it closes contradicted it), ``weak outside any loop`` (only
        link, not significant enough to stand alone), ``loop closure, inconsistent``,
        ``joint search, inconsistent``, ``joint search, no significant peak
        without its dropped pairs`` (the pairs left of a joint placement the
        solve broke, :func:`linumpy.stitching.refusals.drop_broken_placements`),
        ``cluster search, inconsistent``,
        ``piece search, inconsistent``, ``least certain of a broken loop``,
        ``broad link of a broken loop`` (:mod:`linumpy.stitching.link_conflicts`),
        ``departs implausibly from the stage model`` (on no loop, far beyond
        the other pairs' departures, :func:`linumpy.stitching.departures.implausible_departure`;
        :data:`FAR_BRIDGE_REFUSED`), ``kept, departs beyond the other pairs but its tiles
        within the stage's window`` (such a pair kept, :data:`FAR_BRIDGE_KEPT`),
        ``unchecked, departs beyond the stage's error`` (a confident pair no
        loop of confident pairs kept, departing farther than they do,
        :func:`linumpy.stitching.departures.unchecked_far_pairs`),
        ``weaker link of a loop, swapped out``
        (:func:`linumpy.stitching.link_conflicts.swap_clearly_weaker`),
        ``no overlap``.
    """

    a: TileIndex
    b: TileIndex
    offset: tuple[float, float]
    ncc: float
    accepted: bool
    significance: float = 0.0
    sigma_px: tuple[float, float] = (1.0, 1.0)
    confidence: float = 0.0
    status: str = ""
    spread_px: tuple[float, float] = (float("nan"), float("nan"))
    free_direction: tuple[float, float] | None = None
    ridge_px: float = float("nan")
    border_peak: bool = False
    unlocated_px: float = 0.0
    split_peak: bool = False
    depth_disagreement_px: float = float("nan")
    depth_confirmed_significance: float = float("nan")
    settled: bool = False
    unfit_peak: bool = False
    absorbed_vote: bool = False
    depth_range_peak: bool = False
    depth_corroborated: bool = False


@dataclass(frozen=True)
class TileRecord:
    """How one tile was placed.

    Attributes
    ----------
    source : str
        ``pairs`` (supported by at least one accepted pair) or ``stage``
        (placed by the fitted stage model, plus the validated stage residual
        of :attr:`TileTransform.stage_residuals` where there is one).
    n_pairs : int
        Accepted pairs linking the tile.
    sigma_px : float
        Honest standard error of its position in the slice's frame, pixels
        (the larger of the two axes; :mod:`linumpy.stitching.uncertainty`):
        the global solve's covariance under the pairs' calibrated errors and
        peak spreads, plus the frame the stage-placed tiles set; for a
        stage-placed tile, the stage scatter measured on the slice.
        Transforms written before session stitch27 hold the standard error
        relative to the linked neighbours (NaN for stage-placed tiles).
    corroborated : bool
        Placed by a weak joint peak (significance below the joint search's
        bar) that several of its links corroborate on a loop, rather than
        by a significant pair or joint peak: the weakest kind of
        registration, to check in the QC record.
    weak : bool
        Registered, but only through weak links: outside the largest piece
        of tiles joined by anchoring pairs (kept before the joint searches,
        or of significance >= 3 alone). False for stage-placed tiles.
    lone_link_refused : bool
        A joint search found a peak for the tile that one link alone held,
        departing from the stage model's step farther than the confident
        pairs do, and refused it: the tile was placed later by other
        evidence, or is on the stage. Since session lone10 also set where
        that link, below significance 3, put the tile farther from its
        stage-model position than every placed tile lies from its own plus
        2 px (:func:`linumpy.stitching.joint_placement.lone_beyond_placed`),
        and since session lone10b only where that link's own registration
        was not confident at the peak
        (:func:`linumpy.stitching.joint_placement.confident_alone`).
        False in transforms written before session stitch43.
    far_link_refused : bool
        A confident pair of the tile, which the solve of the confident pairs
        did not keep (no loop of them checked it), departed from the stage
        model's step farther than the kept ones do, and was refused (status
        ``unchecked, departs beyond the stage's error``): the tile was placed
        by its other pairs, or is on the stage. False in transforms written
        before session stitch44.
    weak_link_swapped : bool
        A link of the tile placed by the joint search was dropped for a
        clearly more significant one that the solve had dropped, the only
        other link of their loop (status ``weaker link of a loop, swapped
        out``). False in transforms written before session stitch44.
    far_bridge_kept : bool
        The tile is on the far side of a pair on no loop that departs from
        the stage model's step beyond the other kept pairs' bound, kept
        because it puts the tile within the joint search's window around its
        stage-model position (status ``kept, departs beyond the other pairs
        but its tiles within the stage's window``). False in transforms
        written before session stitch45.
    far_weak_peak_refused : bool
        The corroborated search found a weak joint peak for the tile farther
        from its stage-model position than any placed tile lies from its own
        plus 2 px, and refused it: the tile was placed later by other
        evidence, or is on the stage. False in transforms written before
        session stitch45.
    weak_piece_to_stage : bool
        The tile was in a piece that only weak links (own significance
        below 2) joined to the largest piece, placed more than 5 px from the
        stage model by links that preferred that placement to the stage's
        by less than 0.6 standard errors, or nearer by links that preferred
        the stage's placement by 0.6 or more (session weak207), or held by
        nothing but two or more edge links along nearly parallel ridges, or
        only through their loops (session worse213): its links were
        dropped (status ``weak attachment, piece on the stage``) and it is on
        the stage. False in transforms written before session stitch46.
    unsupported_placement_dropped : bool
        The joint search placed the tile, the solve dropped some of that
        placement's pairs, and the pairs left held no significant joint peak
        on their own where the tile lay: they were dropped too (status
        ``joint search, no significant peak without its dropped pairs``); the
        tile was placed later by other evidence, or is on the stage. Also set
        for the tiles of a group placement (``_place_group``) refused so
        (session stitch50). False in transforms written before session stitch48.
    beyond_edge_ridges : bool
        Every kept link of the tile after the first solve was an edge link that
        the solve put farther than half its ridge's length from its own peak
        along the ridge (no link held the tile where its evidence is): its
        links were dropped (status ``edge link, its tile solved beyond the
        ridges of all its links``); the tile was placed later by other
        evidence, or is on the stage. False in transforms written before
        session stitch51.
    costly_link_refused : bool
        A joint placement (step 6) one of whose links, added as a strong
        pair, made the solve drop pairs kept before it, one at least twice as
        significant on its own, was refused (or that link alone, when its
        removal alone gave back every such pair), and the tile was one of the
        refused pairs' (status ``joint search, costs pairs kept before``). False in
        transforms written before session stitch52.
    corroboration_refused : bool
        A corroborated weak joint peak (step 6) was refused for the tile: an
        edge link held it more than 2 px along its ridge from its own peak and
        no link had its own peak there. False in transforms written before
        session stitch54.
    far_lone_link_to_stage : bool
        The tile's only link to the other tiles was a kept pair on no loop
        that placed it farther from its stage-model position than the joint
        search's window (1.5 times the other tiles' largest deviation plus
        2 px, in their gauge): the link was refused (status ``lone link
        placing its tiles beyond the search window, tiles on the stage``)
        and the tile is on the stage. False in transforms written before
        session lone60.
    far_lone_link_searched : bool
        Such a link, kept by the solve of the confident pairs, was refused
        there (status ``lone link placing its tiles beyond the search window,
        refused by the first solve``), and the searches placed the tile by its
        other overlaps, without it; where they did not, the tile is on the
        stage and ``far_lone_link_to_stage`` is set. False in transforms
        written before session wrongpeak.
    lone_edge_link_along_stage : bool
        The tile's only link to the other tiles was a kept edge link on no
        loop, and its other overlaps with them did not prefer where that link
        put it along the ridge to where the stage model does: the link keeps
        its evidence across the ridge only (status ``lone edge link, kept
        across its ridge only, its tiles on the stage along it``) and the
        tile lies on the stage model along the ridge. False in transforms
        written before session foreign61.
    broad_lone_link_to_stage : bool
        The tile's only link to the other tiles was a kept pair on no loop
        whose honest standard error (sub-pixel error and peak width) exceeded
        the stage scatter on an axis: the link was refused (status ``lone
        link less certain than the stage model, its tile on the stage``) and
        the tile is on the stage. False in transforms written before session
        sigma10.
    ridge_contradicted_link_refused : bool
        A weak pair of the tile was refused before the searches: it alone
        placed an edge link's tiles along the ridge, and the solve put that
        edge link beyond its ridge (status ``weak link only an edge's ridge
        checked, beyond the ridge: refused`` unless a later search kept it).
        The tile was placed by the later searches or is on the stage. False
        in transforms written before session empty10.

    outvoted_link_refused : bool
        A kept pair on no loop of the tile was refused: at least two candidate
        links joining its two blocks of tiles contradicted it and the solve
        kept them together in its place (status ``lone link outvoted by the
        links joining its blocks, refused``). False in transforms written
        before session sliver10c.
    off_peak_link_to_stage : bool
        The tile is on the stage model: a kept pair on no loop, not an edge
        link, alone held it, and a search had placed that pair farther from
        its own peak than 2 px (status ``lone link placed off its own peak by
        a search, refused, its side on the stage``). False in transforms
        written before session stage10.
    beyond_reach_edge_link_to_stage : bool
        The tile is on the stage model: a kept edge link on no loop alone
        held it, kept across its ridge only (it departed from the stage along
        the ridge beyond the stage's error), and the solve put it farther than
        half its ridge's length from its own peak along the ridge (status
        ``lone edge link, its tiles beyond its ridge's reach, refused, its side
        on the stage``). False in transforms written before session ridge10b.
    tied_to_left_out : bool
        A corroborated weak joint peak (step 6) was refused for the tile: an overlap of the tile with a
        tile left out, of own significance at least 3 and above the joint peak's, tied it to that tile
        more firmly than the peak placed it. The tile was placed later by other evidence, or is on the
        stage. False in transforms written before session weak62.
    rigid_piece : bool
        The tile was left on the stage model by every other step, but strong pairs (own significance 3 or more,
        no edge link) on loops that all close join it to three or more such tiles: the piece is placed as one, by
        its pairs within it and at the mean of its tiles' stage-model positions as a whole (status ``kept (rigid
        piece at its tiles' stage-model mean)``; source ``pairs``, not ``weak``: its links are strong; its
        ``sigma_px`` includes the stage scatter over the square root of the piece's size, so the report's tile
        bar names it). False in transforms written before session rigid
        (:func:`linumpy.stitching.stage_pieces.place_rigid_pieces`).
    open_loop_px : float
        The tile lies where a loop of kept pairs that does not close puts it: without that loop's pairs (each
        departing from what the others predict by more than 1.5 px) it is not joined to the largest piece of
        kept pairs, and no pair of the loop was clearly the one that erred, or the culprit was significant on
        its own (3 or more), so the loop was kept. The loop's largest miss, pixels: the tile may lie off by up
        to about that (:func:`linumpy.stitching.tile_records.open_loop_tiles`; session link209). NaN for any other
        tile and in transforms written before.
    open_loop_to_stage : bool
        The tile lay where an open loop put it (``open_loop_px``) and its piece departed from the stage model
        farther than every other placed tile: the piece is placed as one at its tiles' stage-model mean, the
        pairs joining it to the others dropped (status ``open loop placing its piece beyond the stage's error,
        piece on the stage``; :func:`linumpy.stitching.tile_records.far_open_loop_pieces_to_stage`). False in
        transforms written before stop 63.
    depth_refused_on_stage : bool
        The tile is placed by the stage model and one of its links was refused in depth (its peak not repeated on
        the depth ranges of its overlap, :mod:`linumpy.stitching.depth_check`): that link is no evidence for any
        search either, so it does not place the tile its peak alone held. False in transforms written before
        session rejoin10, whose searches could keep such a link again.
    """

    source: str
    n_pairs: int
    sigma_px: float
    corroborated: bool = False
    weak: bool = False
    lone_link_refused: bool = False
    far_link_refused: bool = False
    weak_link_swapped: bool = False
    far_bridge_kept: bool = False
    far_weak_peak_refused: bool = False
    weak_piece_to_stage: bool = False
    unsupported_placement_dropped: bool = False
    beyond_edge_ridges: bool = False
    costly_link_refused: bool = False
    corroboration_refused: bool = False
    far_lone_link_to_stage: bool = False
    far_lone_link_searched: bool = False
    lone_edge_link_along_stage: bool = False
    broad_lone_link_to_stage: bool = False
    ridge_contradicted_link_refused: bool = False

    outvoted_link_refused: bool = False
    off_peak_link_to_stage: bool = False
    beyond_reach_edge_link_to_stage: bool = False
    tied_to_left_out: bool = False
    rigid_piece: bool = False
    open_loop_px: float = float("nan")
    open_loop_to_stage: bool = False
    depth_refused_on_stage: bool = False


@dataclass(frozen=True)
class TileTransform:
    """Lateral position of every tile of a mosaic grid, in pixels.

    Attributes
    ----------
    tile_shape : tuple of int
        ``(y, x)`` shape of one tile.
    tile_step_px : tuple of float
        Nominal ``(y, x)`` step of the grid.
    positions : dict
        ``(row, col) -> (y, x)`` estimated origin of each tile, in the stage
        model's frame (any global translation).
    stage_model : StageModel
        Places tiles missing from ``positions``.
    min_significance : float or None
        Significance a pair needed to be accepted (diagnostic).
    pairs : tuple of PairRecord
        Every registered pair (diagnostic).
    tiles : dict
        ``(row, col) -> TileRecord`` (diagnostic).
    stage_residuals : StageResidualModel
        The stage residual model and its leave-one-out validation
        (:mod:`linumpy.stitching.stage_residuals`); its ``corrections`` moved
        the stage-placed tiles (already in ``positions``).
    """

    tile_shape: tuple[int, int]
    tile_step_px: tuple[float, float]
    positions: dict[TileIndex, tuple[float, float]]
    stage_model: StageModel
    min_significance: float | None = None
    pairs: tuple[PairRecord, ...] = field(default=())
    tiles: dict[TileIndex, TileRecord] = field(default_factory=dict)
    stage_residuals: StageResidualModel = field(default_factory=StageResidualModel)

    def stage_fallback_tiles(self) -> list[TileIndex]:
        """Tiles placed by the stage model for lack of an accepted pair."""
        return sorted(t for t, record in self.tiles.items() if record.source == "stage")

    def far_bridges(self, status: str) -> list[tuple[TileIndex, TileIndex]]:
        """The pairs on no loop departing from the stage model beyond the other pairs with ``status``
        :data:`FAR_BRIDGE_KEPT` (placing the tiles they alone join) or :data:`FAR_BRIDGE_REFUSED`."""
        return sorted((r.a, r.b) for r in self.pairs if r.status == status)

    def position(self, tile: TileIndex) -> np.ndarray:
        """Return the ``(y, x)`` position of ``tile`` (stage model if not estimated)."""
        if tile in self.positions:
            return np.asarray(self.positions[tile], dtype=float)
        return self.stage_model.position(tile)


def _rounded(values) -> list[float]:
    return [round(float(v), _DECIMALS) for v in values]


def _optional(value: float) -> float | None:
    """``value`` rounded, or None for NaN (JSON has no NaN)."""
    return round(float(value), _DECIMALS) if np.isfinite(value) else None


def depth_disagreement_field(value: float, decimals: int = _DECIMALS) -> float | str | None:
    """A pair's ``depth_disagreement_px`` for JSON: rounded, None where not checked (NaN), ``"inf"`` where a
    depth range found no peak (JSON has neither; :func:`depth_disagreement_from_field` reads it back).

    Examples
    --------
    >>> [depth_disagreement_field(v) for v in (1.23456, float("nan"), float("inf"))]
    [1.2346, None, 'inf']
    """
    if np.isnan(value):
        return None
    return round(float(value), decimals) if np.isfinite(value) else "inf"


def depth_disagreement_from_field(field: float | str | None) -> float:
    """:func:`depth_disagreement_field`'s value read back: NaN for None, inf for ``"inf"``.

    Examples
    --------
    >>> [depth_disagreement_from_field(v) for v in (1.5, None, "inf")]
    [1.5, nan, inf]
    """
    return float("nan") if field is None else float(field)


def stage_residual_fields(residuals: StageResidualModel) -> dict:
    """The stage residual model's fields of the transform JSON and the QC record."""
    return {
        "stage_residual_model": dict(zip(AXES, residuals.kinds)),
        "stage_residual_loo_px_before": dict(zip(AXES, map(_optional, residuals.loo_px_before))),
        "stage_residual_loo_px_after": dict(zip(AXES, map(_optional, residuals.loo_px_after))),
        "stage_residual_n_tiles": int(residuals.n_tiles),
        "stage_residual_loo_exclude_tiles": int(residuals.exclude_tiles),
        "stage_residual_loo_px_candidates": {kind: dict(zip(AXES, map(_optional, values)))
                                             for kind, values in residuals.loo_px.items()},
        "n_stage_residual_tiles": len(residuals.corrections),
    }


def transform_to_dict(transform: TileTransform) -> dict:
    """Return the JSON-serialisable form of a transform."""
    model = transform.stage_model
    corrections = transform.stage_residuals.corrections
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tile_shape": [int(v) for v in transform.tile_shape],
        "tile_step_px": _rounded(transform.tile_step_px),
        "stage_model": {
            "origin": _rounded(model.origin),
            "row_step": _rounded(model.row_step),
            "col_step": _rounded(model.col_step),
        },
        "tile_positions_px": [
            [int(r), int(c), *_rounded(transform.positions[(r, c)])]
            for r, c in sorted(transform.positions)
        ],
        "min_significance": None if transform.min_significance is None
        else round(float(transform.min_significance), _DECIMALS),
        "pairs": [
            {"a": list(p.a), "b": list(p.b), "offset": _rounded(p.offset),
             "ncc": round(float(p.ncc), _DECIMALS), "accepted": bool(p.accepted),
             "significance": round(float(p.significance), _DECIMALS),
             "sigma_px": _rounded(p.sigma_px), "confidence": round(float(p.confidence), _DECIMALS),
             "status": p.status, "spread_px": [_optional(v) for v in p.spread_px],
             "free_direction": None if p.free_direction is None else _rounded(p.free_direction),
             "ridge_px": _optional(p.ridge_px), "border_peak": bool(p.border_peak),
             "unlocated_px": round(float(p.unlocated_px), _DECIMALS), "split_peak": bool(p.split_peak),
             "depth_disagreement_px": depth_disagreement_field(p.depth_disagreement_px),
             "depth_confirmed_significance": _optional(p.depth_confirmed_significance),
             "settled": bool(p.settled), "unfit_peak": bool(p.unfit_peak),
             "absorbed_vote": bool(p.absorbed_vote), "depth_range_peak": bool(p.depth_range_peak),
             "depth_corroborated": bool(p.depth_corroborated)}
            for p in transform.pairs
        ],
        "tiles": [
            {"tile": [int(r), int(c)], "source": record.source, "n_pairs": int(record.n_pairs),
             "sigma_px": _optional(record.sigma_px), "corroborated": bool(record.corroborated),
             "weak": bool(record.weak), "lone_link_refused": bool(record.lone_link_refused),
             "far_link_refused": bool(record.far_link_refused),
             "weak_link_swapped": bool(record.weak_link_swapped),
             "far_bridge_kept": bool(record.far_bridge_kept),
             "far_weak_peak_refused": bool(record.far_weak_peak_refused),
             "weak_piece_to_stage": bool(record.weak_piece_to_stage),
             "unsupported_placement_dropped": bool(record.unsupported_placement_dropped),
             "beyond_edge_ridges": bool(record.beyond_edge_ridges),
             "costly_link_refused": bool(record.costly_link_refused),
             "corroboration_refused": bool(record.corroboration_refused),
             "far_lone_link_to_stage": bool(record.far_lone_link_to_stage),
             "far_lone_link_searched": bool(record.far_lone_link_searched),
             "lone_edge_link_along_stage": bool(record.lone_edge_link_along_stage),
             "broad_lone_link_to_stage": bool(record.broad_lone_link_to_stage),
             "ridge_contradicted_link_refused": bool(record.ridge_contradicted_link_refused),

             "outvoted_link_refused": bool(record.outvoted_link_refused),
             "off_peak_link_to_stage": bool(record.off_peak_link_to_stage),
             "beyond_reach_edge_link_to_stage": bool(record.beyond_reach_edge_link_to_stage),
             "tied_to_left_out": bool(record.tied_to_left_out),
             "rigid_piece": bool(record.rigid_piece),
             "open_loop_px": _optional(record.open_loop_px),
             "open_loop_to_stage": bool(record.open_loop_to_stage),
             "depth_refused_on_stage": bool(record.depth_refused_on_stage),
             "stage_residual_px": _rounded(corrections[(r, c)]) if (r, c) in corrections else None}
            for (r, c), record in sorted(transform.tiles.items())
        ],
        **stage_residual_fields(transform.stage_residuals),
    }


def _stage_residuals_from_dict(data: dict) -> StageResidualModel:
    """The stage residual model of a transform JSON (none for files written before it existed)."""
    if "stage_residual_model" not in data:
        return StageResidualModel()

    def per_axis(values: dict) -> tuple[float, float]:
        return tuple(float("nan") if values[axis] is None else float(values[axis]) for axis in AXES)

    return StageResidualModel(
        kinds=tuple(str(data["stage_residual_model"][axis]) for axis in AXES),
        loo_px_before=per_axis(data["stage_residual_loo_px_before"]),
        loo_px_after=per_axis(data["stage_residual_loo_px_after"]),
        n_tiles=int(data["stage_residual_n_tiles"]),
        exclude_tiles=int(data["stage_residual_loo_exclude_tiles"]),
        loo_px={kind: per_axis(values) for kind, values in data["stage_residual_loo_px_candidates"].items()},
        corrections={tuple(t["tile"]): tuple(float(v) for v in t["stage_residual_px"])
                     for t in data.get("tiles", []) if t.get("stage_residual_px") is not None},
    )


def transform_from_dict(data: dict, source: str = "transform") -> TileTransform:
    """Build a transform from :func:`transform_to_dict` output.

    Raises
    ------
    InputError
        If ``data`` is not a linumpy tile transform.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise InputError(f"{source} is not a {FORMAT_NAME} JSON file; "
                         "pass a file written by linum_stitch_3d.py --transform_out")
    if data.get("version") not in READABLE_VERSIONS:
        raise InputError(f"{source} has version {data.get('version')}; "
                         f"this linumpy reads versions {READABLE_VERSIONS}")
    try:
        model = data["stage_model"]
        return TileTransform(
            tile_shape=tuple(int(v) for v in data["tile_shape"]),
            tile_step_px=tuple(float(v) for v in data["tile_step_px"]),
            positions={(int(r), int(c)): (float(y), float(x))
                       for r, c, y, x in data["tile_positions_px"]},
            stage_model=StageModel(
                origin=tuple(float(v) for v in model["origin"]),
                row_step=tuple(float(v) for v in model["row_step"]),
                col_step=tuple(float(v) for v in model["col_step"]),
            ),
            min_significance=data.get("min_significance"),
            pairs=tuple(
                PairRecord(a=tuple(p["a"]), b=tuple(p["b"]), offset=tuple(p["offset"]),
                           ncc=float(p["ncc"]), accepted=bool(p["accepted"]),
                           significance=float(p.get("significance", 0.0)),
                           sigma_px=tuple(p.get("sigma_px", (1.0, 1.0))),
                           confidence=float(p.get("confidence", 0.0)), status=p.get("status", ""),
                           spread_px=tuple(float("nan") if v is None else float(v)
                                           for v in p.get("spread_px", (None, None))),
                           free_direction=None if p.get("free_direction") is None
                           else tuple(float(v) for v in p["free_direction"]),
                           ridge_px=float("nan") if p.get("ridge_px") is None else float(p["ridge_px"]),
                           border_peak=bool(p.get("border_peak", False)),
                           unlocated_px=float(p.get("unlocated_px", 0.0)),
                           split_peak=bool(p.get("split_peak", False)),
                           depth_disagreement_px=depth_disagreement_from_field(p.get("depth_disagreement_px")),
                           depth_confirmed_significance=depth_disagreement_from_field(
                               p.get("depth_confirmed_significance")),
                           settled=bool(p.get("settled", False)),
                           unfit_peak=bool(p.get("unfit_peak", False)),
                           absorbed_vote=bool(p.get("absorbed_vote", False)),
                           depth_range_peak=bool(p.get("depth_range_peak", False)),
                           depth_corroborated=bool(p.get("depth_corroborated", False)))
                for p in data.get("pairs", [])
            ),
            tiles={tuple(t["tile"]): TileRecord(
                source=t["source"], n_pairs=int(t["n_pairs"]),
                sigma_px=float("nan") if t["sigma_px"] is None else float(t["sigma_px"]),
                corroborated=bool(t.get("corroborated", False)), weak=bool(t.get("weak", False)),
                lone_link_refused=bool(t.get("lone_link_refused", False)),
                far_link_refused=bool(t.get("far_link_refused", False)),
                weak_link_swapped=bool(t.get("weak_link_swapped", False)),
                far_bridge_kept=bool(t.get("far_bridge_kept", False)),
                far_weak_peak_refused=bool(t.get("far_weak_peak_refused", False)),
                weak_piece_to_stage=bool(t.get("weak_piece_to_stage", False)),
                unsupported_placement_dropped=bool(t.get("unsupported_placement_dropped", False)),
                beyond_edge_ridges=bool(t.get("beyond_edge_ridges", False)),
                costly_link_refused=bool(t.get("costly_link_refused", False)),
                corroboration_refused=bool(t.get("corroboration_refused", False)),
                far_lone_link_to_stage=bool(t.get("far_lone_link_to_stage", False)),
                far_lone_link_searched=bool(t.get("far_lone_link_searched", False)),
                lone_edge_link_along_stage=bool(t.get("lone_edge_link_along_stage", False)),
                broad_lone_link_to_stage=bool(t.get("broad_lone_link_to_stage", False)),
                ridge_contradicted_link_refused=bool(t.get("ridge_contradicted_link_refused", False)),

                outvoted_link_refused=bool(t.get("outvoted_link_refused", False)),
                off_peak_link_to_stage=bool(t.get("off_peak_link_to_stage", False)),
                beyond_reach_edge_link_to_stage=bool(t.get("beyond_reach_edge_link_to_stage", False)),
                tied_to_left_out=bool(t.get("tied_to_left_out", False)),
                rigid_piece=bool(t.get("rigid_piece", False)),
                open_loop_px=float("nan") if t.get("open_loop_px") is None else float(t["open_loop_px"]),
                open_loop_to_stage=bool(t.get("open_loop_to_stage", False)),
                depth_refused_on_stage=bool(t.get("depth_refused_on_stage", False)))
                for t in data.get("tiles", [])},
            stage_residuals=_stage_residuals_from_dict(data),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{source} is a malformed tile transform ({error!r}); "
                         "regenerate it with linum_stitch_3d.py") from error


def save_transform(transform: TileTransform, path: str | os.PathLike,
                   overwrite: bool = False) -> None:
    """Write a transform to a JSON file atomically."""
    text = json.dumps(transform_to_dict(transform), indent=1) + "\n"
    with atomic_output(path, overwrite) as temporary:
        Path(temporary).write_text(text)


def load_transform(path: str | os.PathLike) -> TileTransform:
    """Read a transform written by :func:`save_transform`.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a tile transform.
    """
    data = load_json_document(path, "transform file", "check --transform (a transform JSON file)")
    return transform_from_dict(data, source=str(path))
