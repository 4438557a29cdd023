"""Plain-language names, units and meanings of QC metrics, and what to do about red flags.

The report labels every metric it shows through :func:`describe`: known
names come from :data:`METRICS`; a name a step adds later still gets a
readable label, a unit guessed from its suffix (``_um``, ``_px``,
``_fraction`` ...) and a generic meaning, so new metrics appear without
editing this module (add them here to give them a real description).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """How the report names one metric."""

    label: str
    unit: str
    meaning: str


#: Readable names of the steps, in pipeline order.
STEP_LABELS = {
    "mosaic_grid_3d": "Tile assembly",
    "stitch_3d": "Stitching",
    "axial_corr": "Depth correction",
    "normalize": "Normalization",
    "stack": "Stacking",
    "pipeline": "Run",
    "report": "Report",
}

_M = MetricInfo
#: Known metrics: name -> label, unit, meaning.
METRICS: dict[str, MetricInfo] = {
    "n_tiles": _M("Tiles", "count", "Tiles acquired for the slice."),
    "n_frames_averaged": _M("Frames per B-scan", "count", "Raw frames the microscope averaged into each B-scan "
                            "(n_repeat in the tiles' info.txt; empty when the tiles do not say). One frame leaves "
                            "the speckle unaveraged: the report warns (a lower match of the volume to the tissue, "
                            "tile pairs along oblique structure 1-2 px off)."),
    "axial_resolution_um": _M("Axial voxel", "um", "Depth of one voxel along the A-line, as the mosaic grid "
                              "was written with it; depths, slice thicknesses and attenuation (per mm) scale with "
                              "it."),
    "axial_resolution_source": _M("Axial voxel from", "text", "Where the axial voxel size came from: 'argument' "
                                  "(the axial_resolution param), 'acquisition.json', or 'default' (the lab "
                                  "system's 1.5 um assumed, since the tiles' info.txt does not give it: the "
                                  "report warns)."),
    "nonzero_fraction": _M("Non-zero voxels", "%", "Share of voxels that hold any signal; "
                           "near 0 means an empty slice."),
    "confidence": _M("Stitch confidence", "0-1", "Median confidence of the neighbouring tile pairs whose "
                     "registration was accepted (how clearly each match beat every other offset); 0.5 is the "
                     "acceptance threshold, 1 a clear match."),
    "n_pairs": _M("Tile pairs", "count", "Neighbouring tile pairs that overlap."),
    "n_fallback_pairs": _M("Pairs on stage model", "count", "Tile pairs whose registration was rejected; "
                           "they were placed from the stage positions alone."),
    "max_residual_px": _M("Largest pair residual", "px", "Largest disagreement between a pair's measured "
                          "offset and the final tile positions."),
    "ncc_threshold": _M("Match threshold", "NCC", "Score a tile pair needs for its registration to be used."),
    "min_significance": _M("Match threshold", "z", "How many standard errors a tile pair's best match must "
                           "beat every other offset by for its registration to be considered."),
    "n_stage_fallback_tiles": _M("Tiles on stage model", "count", "Tiles no accepted pair supports; they "
                                 "keep their stage positions (within the stage error)."),
    "n_stage_fallback_untextured_tiles": _M("Stage tiles without texture", "count", "Tiles on the stage model "
                                            "none of whose overlaps reached significance 2: nothing in them to "
                                            "register (gel, or tissue too faint); the quarter flag says how many."),
    "stage_fallback_fraction": _M("Share on stage model", "%", "Share of the tiles placed by the stage "
                                  "model; above a quarter the slice is flagged."),
    "n_corroborated_tiles": _M("Tiles on weak corroborated peaks", "count", "Tiles placed by a weak joint "
                               "peak that two or more of their overlaps support and whose loops close; the "
                               "weakest registration, worth a look."),
    "n_weak_tiles": _M("Tiles on weak links only", "count", "Tiles registered only through weak links (outside "
                       "the largest piece joined by significant pairs), e.g. in nearly empty agarose; their "
                       "positions can be off by 1-4 px. With the stage-placed tiles, above a quarter of the "
                       "tiles the slice is flagged."),
    "n_weak_along_ridge_tiles": _M("Tiles on weak links along a ridge", "count", "Tiles joined to the rest "
                                   "by an overlap that only measures one direction (an edge: along it, one "
                                   "offset looks like another) and placed along that edge by weak overlaps "
                                   "only; often right, but their position along the edge can be off by "
                                   "2-3 px (see each tile's sigma_px). Not a flag."),
    "n_weak_lone_link_tiles": _M("Tiles placed by one weak overlap", "count", "Tiles that a single weak "
                                 "overlap (not significant on its own) alone joins to the rest: the other "
                                 "overlaps joining them only measure one direction (edges), along which they "
                                 "agree with any placement, so nothing checks it. They can be 10 px or more "
                                 "off, though most are right. Not a flag."),
    "weak_lone_links": _M("Weak overlaps placing tiles alone", "significance", "The single weak "
                          "overlaps counted by n_weak_lone_link_tiles, with their significance."),
    "n_lone_link_refused_tiles": _M("Tiles refused a lone far link", "count", "Tiles for which a joint "
                                    "search found a position that a single overlap held, farther from the "
                                    "stage's step than any confident pair departs; refused, the tile was "
                                    "placed by other overlaps or kept its stage-model position."),
    "n_far_link_refused_tiles": _M("Tiles refused an unchecked far link", "count", "Tiles with a confident "
                                   "overlap that no loop of confident overlaps checked and that departs from "
                                   "the stage's step farther than the checked ones do; refused as a wrong "
                                   "match, the tile was placed by its other overlaps or kept its stage-model "
                                   "position."),
    "n_weak_link_swapped_tiles": _M("Tiles with a weak link swapped", "count", "Tiles placed by the joint "
                                    "search through an overlap that a clearly more significant overlap of the "
                                    "same loop contradicted; the weaker one was dropped and the stronger one "
                                    "kept."),
    "n_far_bridge_kept_tiles": _M("Tiles placed by a far bridge", "count", "Tiles that a single overlap joins "
                                  "to the others, departing from the stage's step farther than the other "
                                  "overlaps do, kept because it places them no farther from their stage "
                                  "positions than the joint search allows."),
    "n_far_bridges_kept": _M("Far bridges kept", "count", "Overlaps that alone join two groups of tiles (on "
                             "no loop) and depart from the stage's step farther than the other overlaps do, "
                             "kept because the group they place lies within the stage's error; such an overlap "
                             "alone decides where that group lies, and the slice is flagged."),
    "n_strong_survivor_links": _M("Searched overlaps kept strong after their placement broke", "count",
                                  "Accepted overlaps of a tile placed by several overlaps at once whose other "
                                  "overlaps the solve then dropped, kept as strong (allowed to be the only link "
                                  "between tiles) because their own registration is strong (significance 3 or "
                                  "more) at that offset; the other survivors of such a placement count as weak. "
                                  "On a foreign 10 % overlap such an overlap (9.28, 0.16 px off) otherwise left its "
                                  "tile on the stage, 4.6 px off."),
    "n_far_lone_link_tiles": _M("Tiles placed far by a lone link", "count", "Tiles that a single overlap (on "
                                "no loop) places farther from their stage positions than the search for a tile "
                                "allows, measured from the other tiles' own positions; one unchecked overlap "
                                "decides where they lie, and the slice is flagged (check it: if the overlap is a "
                                "wrong match, those tiles are worse than the stage). Such overlaps are refused "
                                "(next entry) unless the tiles' other overlaps agree with it, or the solve without "
                                "it loses other overlaps, or it is strong (significance 6 or more) and places them "
                                "within twice that allowance (the few other tiles sample the stage's error poorly); "
                                "the tiles a strong overlap so places do not widen the allowance of the overlaps "
                                "among them."),
    "n_far_lone_link_to_stage_tiles": _M("Tiles put on the stage, their lone link refused", "count", "Tiles "
                                         "that a single overlap (on no loop) placed farther from their stage "
                                         "positions than the search for a tile allows; the overlap was refused "
                                         "as unchecked and they kept their stage-model positions (the slice is "
                                         "flagged)."),
    "n_far_lone_link_searched_tiles": _M("Tiles placed without their refused lone link", "count",
                                         "Tiles whose single overlap (on no loop) with the others was refused "
                                         "as above by the first solve, before any search, and which the "
                                         "searches then placed by their other overlaps, within the stage's "
                                         "window (the slice is flagged)."),
    "n_lone_edge_link_along_stage_tiles": _M("Tiles on the stage along their lone edge link", "count", "Tiles "
                                             "that a single overlap (on no loop) holding only an edge joins to "
                                             "the others: along the edge the overlap cannot tell where they lie, "
                                             "and their other overlaps did not agree with where it put them, so "
                                             "they keep their stage-model positions along the edge (across it, "
                                             "the overlap places them). Their error along the edge is the "
                                             "stage's."),
    "n_far_bridges_refused": _M("Far bridges refused", "count", "Overlaps that alone join two groups of tiles "
                                "(on no loop) and depart from the stage's step farther than the other overlaps "
                                "do, refused as wrong matches because the group they would place lies beyond the "
                                "stage's error; that group was placed by other overlaps or kept its stage-model "
                                "positions."),
    "n_far_weak_peak_refused_tiles": _M("Tiles refused a far weak peak", "count", "Tiles for which the search "
                                        "found a weak position that several overlaps agree on, farther from "
                                        "the tile's stage position than any placed tile lies from its own; "
                                        "refused, the tile was placed by other overlaps or kept its "
                                        "stage-model position."),
    "n_weak_piece_to_stage_tiles": _M("Tiles of weak pieces put on the stage", "count", "Tiles of a group "
                                      "that only weak overlaps joined to the rest, placed more than 5 px from "
                                      "the stage by overlaps that hardly preferred that placement to the "
                                      "stage's, or nearer by overlaps that preferred the stage's, or held "
                                      "only along nearly parallel edges; their overlaps were dropped and they "
                                      "kept their stage-model positions."),
    "n_unsupported_placement_dropped_tiles": _M("Tiles whose broken placement was dropped", "count", "Tiles "
                                                "(alone or as a group) placed by the combined evidence of "
                                                "several overlaps, one of which the solve then rejected, "
                                                "whose other overlaps no longer located them significantly "
                                                "on their own; those overlaps were dropped and the tile "
                                                "placed by other overlaps or kept its stage-model position."),
    "n_beyond_edge_ridges_tiles": _M("Tiles beyond their edge overlaps' ridges", "count", "Tiles whose every "
                                     "overlap was an edge (tissue against agarose, which locates the tiles "
                                     "across the edge only) and placed by the first solve farther along each "
                                     "edge than half the length its evidence spans: no overlap held the tile "
                                     "where its own evidence is. Their overlaps were dropped and the tile "
                                     "placed by other overlaps or kept its stage-model position."),
    "n_costly_link_refused_tiles": _M("Tiles of placements refused for costing kept overlaps", "count",
                                      "Tiles of a placement by combined evidence one of whose overlaps made "
                                      "the solve reject an overlap kept before it, at least twice as "
                                      "significant on its own; the placement was refused instead (or only that "
                                      "overlap, when it alone cost every such overlap)."),
    "n_corroboration_refused_tiles": _M("Tiles refused a weakly corroborated placement", "count",
                                        "Tiles left out of the first placements for which a weak combined "
                                        "peak was refused: an edge overlap (which locates the tiles across "
                                        "the edge only) agreed with it only along its edge, away from its "
                                        "own peak, and no overlap had its own peak there. The tile was "
                                        "placed by other overlaps or kept its stage-model position."),
    "n_tied_to_left_out_tiles": _M("Tiles refused a weak placement against a stronger overlap", "count",
                                   "Tiles left out of the first placements for which a weak combined peak "
                                   "was refused: the tile's overlap with a tile still left out was "
                                   "significant on its own and stronger than the peak, which read only "
                                   "the overlaps with placed tiles. The tile was placed by other overlaps "
                                   "or kept its stage-model position."),
    "n_rigid_piece_tiles": _M("Tiles placed as a rigid piece at their stage-model mean", "count",
                              "Tiles that no trusted overlap joins to the rest of the slice, but that strong "
                              "overlaps on loops that all close join into a piece of four or more: the piece "
                              "is placed as one, by its overlaps within it, its mean on the mean of its tiles' "
                              "stage-model positions (it is off as a whole by about the stage error over the "
                              "square root of its size, which its tiles' sigma_px states)."),
    "n_rigid_join_links": _M("Weak overlaps that joined rigid pieces on a loop", "count",
                             "Overlaps below significance 3 between two rigid pieces of strong overlaps, each on "
                             "a loop with another such overlap (two or more join the same pieces, so each checks "
                             "the others): the pieces were placed as one at their tiles' stage-model mean, only "
                             "whole, every overlap of it kept and its loops closed (status 'kept, joins rigid "
                             "pieces on a loop'). The larger piece's mean stage error is smaller. No flag."),
    "n_main_join_links": _M("Overlaps that placed a piece by its links on a loop to the main group", "count",
                            "Overlaps kept because they placed a piece of strong overlaps among the tiles the "
                            "solve left out: two or more of its overlaps to the main group, agreeing within 1.5 px "
                            "(their loop through the main group closes), placed it with the main group held; "
                            "only its tiles those loops check moved, the others where they were (status 'kept, "
                            "places a piece by its links on a loop to the main group'). No flag."),
    "n_main_join_check_links": _M("Overlaps refused in depth that checked a piece's one link to the main group",
                                  "count",
                                  "Overlaps refused in depth (their own peak not repeated on the depth ranges of "
                                  "their overlap) between a piece of strong overlaps the solve left out and the main "
                                  "group, where only one other overlap joins them: the refused overlap's own peak "
                                  "lay within 1.5 px of the offset that one overlap predicts for it, so the two "
                                  "close a loop and the piece was placed by that one overlap, the main group held "
                                  "(status 'refused in depth, its peak checks the one link placing a piece to the "
                                  "main group'). The refused overlap places nothing. No flag."),
    "n_open_loop_tiles": _M("Tiles placed through a loop that does not close", "count",
                            "Tiles that only a loop of accepted overlaps missing by more than 1.5 px joins to "
                            "the rest of the slice: one overlap of the loop erred and none was clearly the one, "
                            "so the loop was kept; the tiles may lie off by up to the miss "
                            "(open_loop_miss_px). A warning in the report (half the loops named on the "
                            "foreign runs held tiles within 1.2 px)."),
    "n_open_loop_to_stage_tiles": _M("Tiles of an open loop put on the stage model", "count",
                                     "Tiles placed through a loop that does not close whose piece departed "
                                     "from the stage model farther than every other placed tile (plus 2 px): "
                                     "no stage error puts them there, so the wrong overlap is one of theirs; "
                                     "the piece is placed as one at its tiles' stage-model mean, the overlaps "
                                     "joining it to the others dropped."),
    "open_loop_miss_px": _M("Miss of the loop that does not close", "px", "Largest departure of an accepted "
                            "overlap of such a loop from what the other overlaps predict (none: no such loop)."),
    "n_border_peak_links": _M("Overlaps peaking on the border of their search, refused", "count",
                              "Overlaps whose best offset lies on the border of the offsets scored "
                              "(the narrowest overlap scored, or the edge of the search window): no local "
                              "maximum, the true offset may lie beyond it (per pair border_peak). Refused as "
                              "evidence of their own; their tiles placed by other overlaps or on the stage. "
                              "One a joint search accepts at that peak widens its tiles' uncertainty "
                              "(sigma_px) by the search window's."),
    "n_split_peak_links": _M("Overlaps with a better match beside their peak", "count",
                             "Overlaps of significance 2 or more, at their own peak, with another local maximum "
                             "of the match within 5 px that matches better on the two offsets' common overlap by "
                             "more than 2 standard errors (per pair split_peak): the evidence grows with the "
                             "overlap's area, so the peak may have slid toward the larger overlap. Flagged, not "
                             "moved."),
    "n_settled_links": _M("Searched overlaps settled from their own evidence", "count",
                          "Accepted overlaps that a search left at a whole pixel where their sub-pixel fit "
                          "ran out of its box (the match's optimum elsewhere), settled once every search had "
                          "run as the overlap's own registration settles its peak: the walk along its ridge, "
                          "the fit, for a confident overlap the refit from the ridge's best match (per pair "
                          "settled); the positions are solved again with the same overlaps."),
    "n_unfit_peak_links": _M("Strong overlaps refused, their peak not refined", "count",
                             "Overlaps whose own peak, strong (significance 3 or more: never checked in depth), "
                             "the sub-pixel fit did not refine (a whole pixel, standard error 1 px: the fit ran "
                             "out of its box or could not run), refused as evidence and out of every search, as "
                             "an overlap refused in depth (per pair unfit_peak): on a foreign 10 % overlap such a "
                             "peak, between tiles overlapping by 1 px, matched structure 14.8 px off. Their tiles "
                             "placed by other overlaps or on the stage."),
    "n_absorbed_votes": _M("Contradicting overlaps absorbed: no vote against a lone link", "count",
                           "Overlaps not kept whose tiles the solve placed more than 1.5 px from their offset, "
                           "across a kept overlap on no loop (a vote against it), that the kept overlaps absorb "
                           "when solved with them (their residual then 1.5 px or less: a tile held loosely, "
                           "along its edge overlaps' ridges, moves to them): they say nothing against that "
                           "overlap and do not vote (per pair absorbed_vote). No flag: the lone overlap stays."),
    "n_loose_loop_links": _M("Overlaps kept to close a loose lone overlap's loop", "count",
                             "Overlaps not kept, contradicting the solve by more than 1.5 px across a kept "
                             "overlap on no loop whose sub-pixel fit kept its 1 px placeholder error (tiles "
                             "overlapping by under 6 px, or a fit that did not run), kept because the solve with "
                             "them keeps them and every kept overlap: the loop they close puts most of the "
                             "misclosure on the loose overlap. No flag."),
    "n_edge_loop_links": _M("Overlaps kept to close a lone edge overlap's loop along its ridge", "count",
                            "Overlaps not kept, contradicting the solve by more than 1.5 px across a kept edge "
                            "overlap on no loop (its peak on an edge's ridge, measured across it only), kept because "
                            "the unweighted solve with them, that overlap free along its ridge, keeps them and every "
                            "kept overlap: they place its side along the ridge, where it knows nothing. No flag."),
    "n_depth_range_peak_links": _M("Overlaps refused in depth, placed by their strong depth range", "count",
                                   "Overlaps refused in depth (a range's peak more than 2 px from their own) whose "
                                   "most significant depth range is strong (significance 3 or more) and not on an "
                                   "edge's ridge: they take that range's offset, significance and standard error "
                                   "instead (per pair depth_range_peak), out of every search. The whole-depth "
                                   "projection includes the planes above the cut; a third of the tissue below it "
                                   "can match where the whole does not (foreign one-frame data: every such range "
                                   "measured lay within 1.2 px of the truth)."),
    "n_depth_corroborated_links": _M("Overlaps refused in depth, kept by two confident depth ranges", "count",
                                     "Overlaps refused in depth (a range's peak more than 2 px from their own) whose "
                                     "two most significant depth ranges are both confident (significance 2 or more, "
                                     "the strongest below 3) and lie within 3 px of their own peak, not along an "
                                     "edge's ridge: they keep their own peak as a candidate (per pair "
                                     "depth_corroborated). Two confident ranges near the peak outweigh a weak one "
                                     "far from it."),
    "n_depth_checked_links": _M("Overlaps checked on depth ranges", "count",
                                "Candidate overlaps below strong, and joint-search links below strong that "
                                "were never candidates, registered again on three disjoint depth "
                                "ranges of their two overlap strips below the cut (per pair "
                                "depth_disagreement_px: the largest distance between a range's offset and the "
                                "overlap's own)."),
    "n_depth_refused_links": _M("Overlaps whose peak depth did not repeat, refused", "count",
                                "Checked overlaps that some depth range placed more than 2 px from their own "
                                "offset: a peak the tissue's texture through depth does not repeat (noise, or "
                                "a texture the depth average blurred). Refused as evidence, of their own and in "
                                "every joint search; their tiles placed by other overlaps or on the stage "
                                "(n_depth_refused_on_stage_tiles). One within 3 px that a closed loop of "
                                "overlaps kept is accepted, not counted."),
    "n_depth_confirmed_links": _M("Overlaps a depth range disagreed with, kept on their strongest range", "count",
                                  "Checked overlaps that some depth range placed more than 2 px from their own "
                                  "offset, yet whose most significant range (significance 2 or more) repeated "
                                  "it within 2 px: not refused (per pair depth_confirmed_significance, that "
                                  "range's significance; null for every other overlap). Right on one-frame "
                                  "speckle, where a weak range peaks on noise; a depth-constant structure can "
                                  "confirm a wrong one."),
    "n_depth_refused_on_stage_tiles": _M("Tiles of an overlap refused in depth, on the stage model", "count",
                                         "Tiles an overlap refused in depth touches that no accepted overlap "
                                         "places: they keep their stage-model position (per tile "
                                         "depth_refused_on_stage)."),
    "n_unlocated_links": _M("Overlaps whose match runs down to the border of their search", "count",
                            "Accepted overlaps whose match is as good from their best offset down to the "
                            "narrowest overlap scored (3 px or more along the step, per pair unlocated_px): the "
                            "best offset owes its place to the overlap's area, the true one may lie anywhere "
                            "down to that border or beyond. Each widens its tiles' uncertainty (sigma_px), "
                            "which the tile bar reads."),
    "max_tile_sigma_px": _M("Largest tile uncertainty", "px", "Largest honest standard error of a tile's "
                            "position (per axis): pairs' errors and peak spreads through the global solve, "
                            "the stage scatter for stage-placed tiles."),
    "tiles": _M("Per tile", "per tile", "Each tile (row, col): source (pairs, or stage: kept its stage-model "
                "position), n_pairs, sigma_px (honest standard error of its position, px), and true/false for "
                "each way it was placed or refused, counted by the slice's n_..._tiles of the same name: "
                "corroborated, weak, weak_along_ridge, weak_lone_link, lone_link_refused, far_link_refused, "
                "weak_link_swapped, far_bridge_kept, far_weak_peak_refused, weak_piece_to_stage, "
                "unsupported_placement_dropped, beyond_edge_ridges, costly_link_refused, corroboration_refused, "
                "far_lone_link_to_stage (its lone far link refused: on the stage model), far_lone_link_searched "
                "(its lone far link refused by the first solve: placed by its other overlaps), "
                "lone_edge_link_along_stage, broad_lone_link_to_stage (its lone link less certain than the "
                "stage: on the stage model), ridge_contradicted_link_refused (a weak link of it refused: it alone "
                "placed an edge link's tiles along the ridge, solved beyond it), outvoted_link_refused (a lone link "
                "of it refused: candidates joining its blocks contradicted it and agreed with each other), "
                "off_peak_link_to_stage (its lone link, placed off its own peak by a search, refused: on the stage "
                "model), beyond_reach_edge_link_to_stage (its lone edge link, kept across its ridge only, put "
                "beyond half its ridge from its own peak along it, refused: on the stage model), "
                "tied_to_left_out, rigid_piece (placed with a rigid piece at its "
                "stage-model mean); open_loop_px (the miss of the loop that does not "
                "close it is placed through, or none); open_loop_to_stage (its piece, placed through such a "
                "loop beyond the stage's error, put on the stage model); depth_refused_on_stage (an overlap of it "
                "refused in depth, no other placing it: on the stage model); hinge_links and off_probability "
                "(tile_off_probability); stage_residual_px (the stage residual model's correction)."),
    "n_hinge_links": _M("Weak links holding tiles alone", "count", "Accepted overlaps of significance below "
                        "2.5 that a tile placed by overlaps follows by at least half of any change of their "
                        "offset: no other evidence checks them. About one in ten puts its tiles more than "
                        "1.5 px off (measured on the stitching matrix, session calib65)."),
    "hinge_links": _M("Weak links holding tiles alone", "significance", "The overlaps counted by "
                      "n_hinge_links, with their significance; per tile, the ones holding it."),
    "tile_off_probability": _M("Chance of a tile more than 1.5 px off", "probability", "Probability that a "
                               "tile placed by overlaps is more than 1.5 px from where it belongs, from the "
                               "number of weak links holding tiles alone (1 - 0.9^n); per tile, "
                               "off_probability from the links holding it. Tiles on the stage model are "
                               "not counted: their error is the stage's (their sigma_px). A red flag at "
                               "0.45 or more (six such links). 0 is not a guarantee: a strong wrong "
                               "placement, or a group of tiles shifted against another, is not seen."),
    "pair_residuals_px": _M("Pair residuals", "px", "Disagreement of each tile pair with the final positions."),
    "stage_residual_model": _M("Stage residual model", "per axis", "Per axis, how the tiles without a pair "
                               "were corrected beyond the stage model: none (plain stage model), row_parity "
                               "(backlash: one offset per row parity), smooth (drift: a local mean of the "
                               "registered tiles' residuals) or row_parity+smooth; used only where leave-one-out "
                               "over the registered tiles validated it (docs/stitching.md, step 8b)."),
    "stage_residual_loo_px_before": _M("Stage residual, plain stage", "px", "Per axis, RMS distance of the "
                                       "registered tiles from their stage-model positions (the plain stage "
                                       "model's leave-one-out error)."),
    "stage_residual_loo_px_after": _M("Stage residual, model", "px", "Per axis, RMS leave-one-out error of the "
                                      "chosen residual model over the registered tiles; a model is used only if "
                                      "this is at most 70% of the plain stage model's (corrections capped at 0.5 px)."),
    "stage_residual_n_tiles": _M("Tiles validating the residual model", "count", "Registered tiles the stage "
                                 "residual model was fitted to and validated on (at least 6 needed)."),
    "stage_residual_loo_exclude_tiles": _M("Residual validation gap", "tiles", "Rows and columns around each "
                                           "registered tile left out with it in the leave-one-out validation: the "
                                           "farthest tile to correct is this many plus one tiles from a registered "
                                           "tile, so the validation predicts from as far."),
    "stage_residual_loo_px_candidates": _M("Residual models tried", "px", "Per candidate model and axis, its "
                                           "RMS leave-one-out error over the registered tiles."),
    "n_stage_residual_tiles": _M("Tiles moved by the residual model", "count", "Tiles without a pair moved "
                                 "from their stage-model position by the validated stage residual model."),
    "surface_detected_fraction": _M("Surface found", "%", "Share of depth scans (A-lines) where the tissue "
                                    "surface was detected."),
    "median_surface_depth_um": _M("Surface depth", "µm", "Median depth of the tissue surface below the top "
                                  "of the scan."),
    "mean_attenuation_tissue_per_mm": _M("Tissue attenuation", "1/mm", "Mean optical attenuation of the "
                                         "tissue; white matter is higher than grey matter."),
    "n_tissue_lines": _M("Tissue A-lines", "count", "Depth scans counted as tissue."),
    "attenuation_map_window_um": _M("Attenuation map window", "µm", "Median depth below the cut over which the "
                                    "tissue A-lines' attenuation was fitted (down to the first change of the "
                                    "A-line: a different region below)."),
    "attenuation_map_shortened_fraction": _M("Attenuation windows shortened", "%", "Share of the tissue A-lines "
                                             "whose attenuation window stopped at a change above the bottom."),
    "attenuation_map_clamped_fraction": _M("Attenuation clamped", "%", "Share of the tissue A-lines whose signal "
                                           "rose with depth below the cut (negative attenuation, not physical: "
                                           "set to 0 in the map)."),
    "attenuation_map_faint_fraction": _M("Attenuation too faint", "%", "Share of the tissue A-lines whose signal "
                                         "below the cut is under the noise floor (no attenuation mapped: NaN)."),
    "attenuation_map_mixed_fraction": _M("Attenuation mixed", "%", "Share of the tissue A-lines dim beside a brighter "
                                         "region, whose averaging box holds mostly the region's light (no "
                                         "attenuation mapped: NaN)."),
    "attenuation_map_borrowed_surface_lines": _M("Attenuation from a neighbour's surface", "A-lines", "A-lines "
                                                 "(tissue or not) without a detected surface whose attenuation was "
                                                 "fitted from the nearest detected A-line's surface."),
    "attenuation_map_sparse_fraction": _M("Attenuation without support", "%", "Share of the imaged A-lines (tissue "
                                          "or not) around which the surfaces of their class were detected on fewer "
                                          "than a quarter of the A-lines: their region's attenuation is not measured "
                                          "(the gel and dark tissue far above the focus). Flagged above 30%."),
    "attenuation_map_sparse_mapped_lines": _M("Attenuation values without support", "A-lines", "A-lines without "
                                              "support that still carry a value: it rests on cuts a brighter "
                                              "neighbour's light lifted and reads that neighbour's decay."),
    "attenuation_map_dim_lines": _M("Dim A-lines", "count", "Imaged A-lines of the dim class (agarose, and tissue "
                                    "as dim); 0 without a level split."),
    "attenuation_map_dim_sparse_fraction": _M("Dim A-lines without support", "%", "Share of the dim class's A-lines "
                                              "without support (see Attenuation without support)."),
    "attenuation_map_cut_plane_lines": _M("Attenuation from the cut plane", "A-lines", "A-lines without support "
                                          "and without a surface of their own or a neighbour's within 8, fitted "
                                          "from the plane through the slice's detected surfaces (lowered by its "
                                          "tolerance): the gel and dark tissue far above the focus, away from "
                                          "the tissue whose light lifts their cut."),
    "noise_floor": _M("Noise floor", "intensity", "Signal level of the background noise."),
    "noise_variance": _M("Noise variance", "intensity²", "Variance of one voxel's background noise (above the "
                         "tissue surface); the attenuation map's decay fits are corrected for the bias it puts in "
                         "the log of a faint signal. 0: not estimable (no voxel above a surface), not corrected."),
    "useful_depth_um": _M("Useful depth", "µm", "Depth kept below the surface after correction."),
    "focus_mode": _M("Focus correction", "text", "How the focus fall-off was corrected (or why not); "
                     "\"borrowed (...)\": the slice's own estimate was refused and the acquisition's profile (the "
                     "median of the other slices') was divided out."),
    "focus_borrowed_from": _M("Focus borrowed from", "ids", "The slices whose own focus profiles make the "
                              "acquisition's profile this slice divided by (its own estimate was refused)."),
    "attenuation_mode": _M("Attenuation correction", "text", "How the attenuation was corrected."),
    "attenuation_tail_average": _M("Attenuation tail average", "text", "Lateral average of the compensation's "
                                   "tail sums: edge-aware (guided, with its sigma) or a box."),
    "attenuation_step_log": _M("Reflectivity step threshold", "ln", "Least log change of the signal across 6 "
                               "planes read as a reflectivity step and divided out before the compensation's tail "
                               "sums (0: none read, plain Vermeer)."),
    "focus_support_lines": _M("Focus support", "count", "Agarose depth scans (A-lines) measured at each input "
                              "depth of the focus profile; few lines mean the profile there is modelled."),
    "focus_support_threshold": _M("Focus support needed", "count", "A-lines a depth needs to count as measured "
                                  "in the focus profile."),
    "focus_support_min_tissue": _M("Fewest focus lines in tissue", "count", "Fewest agarose A-lines at any depth "
                                   "from the shallowest tissue surface down."),
    "focus_measured_fraction": _M("Focus measured", "%", "Share of the tissue depths whose focus value was "
                                  "measured on agarose rather than filled by the model."),
    "focus_model": _M("Focus model", "text", "Beam model fitted to the agarose profile (gaussian or lorentzian), "
                      "or none."),
    "focus_model_center_um": _M("Focal depth", "µm", "Depth of the fitted focus peak below the top of the input."),
    "focus_model_width_um": _M("Focus width", "µm", "Width of the fitted focus model."),
    "focus_fit_rms": _M("Focus fit error", "ratio", "Relative RMS misfit of the focus model to the measured depths."),
    "focus_reference_depth_um": _M("Focus reference depth", "µm", "Well-sampled depth where the focus profile "
                                   "is scaled to 1."),
    "focus_clipped_depths": _M("Clipped focus depths", "count", "Tissue depths whose focus value was raised to "
                               "its floor (their correction is capped): 0.05 where nothing supports the profile, "
                               "the noise's gain where a measurement or a trusted fit does."),
    "focus_gain_floor": _M("Focus gain floor", "ratio", "Lowest focus value divided by where the profile is "
                           "measured or given by a trusted fit: the noise's gain, at most 0.05, at least 0.005."),
    "focus_noise_gain": _M("Focus noise gain", "ratio", "Focus value at which the tissue's signal sinks under the "
                           "noise: the noise's standard deviation over the tissue's level (empty: unknown)."),
    "focus_deep_measured_depths": _M("Focus depths past 20x, measured", "count", "Tissue depths divided by a focus "
                                     "value below 0.05 (a gain above 20x) measured on the agarose."),
    "focus_deep_model_depths": _M("Focus depths past 20x, modelled", "count", "Tissue depths divided by a focus "
                                  "value below 0.05 that the fitted model gives (too few agarose A-lines there); "
                                  "flagged."),
    "focus_faint_depths": _M("Focus depths under the gel's noise", "count", "Tissue depths where the agarose's "
                             "signal is under the noise floor: the focus profile there is the trusted model's, "
                             "not the measurement's."),
    "focus_fallback": _M("Focus fallback", "text", "What was done instead of a measured focus profile, or empty."),
    "focus_level_class_ratio": _M("Agarose/tissue level contrast", "ratio", "How far apart the dim (agarose) and "
                                  "bright (tissue) classes of the A-line levels are (geometric means): of the split "
                                  "used, or the widest tried when none reached the ratio needed (then the focus "
                                  "correction is skipped). Near the ratio needed: the agarose barely stands out, "
                                  "e.g. a focus far below the cut."),
    "focus_level_min_class_ratio": _M("Agarose/tissue contrast needed", "ratio", "Ratio the level classes must "
                                      "reach for the dimmer to be taken as agarose (4 for the A-lines with a "
                                      "surface, 3 for every imaged A-line, 2 for every imaged A-line whose dim "
                                      "class is a gel by its decay alone)."),
    "focus_level_source": _M("Agarose/tissue levels split", "text", "Whose levels were split: the A-lines with a "
                             "detected surface, or, when those do not split (the gel's cut far above the focus, "
                             "rarely detected), every imaged A-line, the dim class checked to be a gel around "
                             "the sample."),
    "focus_level_surfaceless_fraction": _M("Dim class without a surface", "fraction", "Of a split of every "
                                           "imaged A-line: share of the dim class with no detected surface; "
                                           "at least 0.5 for a gel (dim tissue has a detected cut)."),
    "focus_level_edge_fraction": _M("Dim class around the sample", "fraction", "Of a split of every imaged "
                                    "A-line: share of the imaged area's edge cells outside the tissue mask; at "
                                    "least 0.75 for a gel embedding the sample."),
    "focus_level_decay_per_mm": _M("Dim class decay", "1/mm", "Of a split of every imaged A-line whose dim "
                                   "class lies around the sample with its cut detected: the attenuation its "
                                   "profile reads fitted with the focus; a gel's (at most 1 with 2 standard errors "
                                   "to spare) takes it for the gel, tissue's refuses it. Null: not checked."),
    "focus_level_decay_sd_per_mm": _M("Dim class decay error", "1/mm", "Standard error of that fit."),
    "focus_agarose_guard_um": _M("Agarose guard", "µm", "Lateral margin around the tissue mask that agarose "
                                 "A-lines must keep to count in the focus profile."),
    "focus_agarose_bright_cells": _M("Bright agarose cells", "count", "Cells outside the tissue mask left out "
                                     "of the focus profile: brighter than the gel (dim tissue at the sample's "
                                     "edge)."),
    "focus_agarose_bright_fraction": _M("Bright agarose share", "fraction", "Share of the agarose A-lines in "
                                        "those cells."),
    "focus_agarose_attenuation_per_mm": _M("Agarose attenuation", "1/mm", "Round-trip decay divided out of "
                                           "the agarose focus profile (given, or the Lorentzian fit combined with "
                                           "the prior); 0: none."),
    "focus_agarose_attenuation_sd_per_mm": _M("Agarose attenuation error", "1/mm", "Standard error of the "
                                              "agarose attenuation used (fit and prior combined)."),
    "focus_agarose_attenuation_fit_per_mm": _M("Agarose attenuation fit", "1/mm", "The Lorentzian x decay fit "
                                               "alone, before the prior; empty when the fit failed."),
    "focus_agarose_attenuation_fit_sd_per_mm": _M("Agarose attenuation fit error", "1/mm", "Standard error of "
                                                  "the fit alone, widened for residuals correlated along depth."),
    "focus_agarose_attenuation_prior_per_mm": _M("Agarose attenuation prior", "1/mm", "Mean and standard "
                                                 "deviation of the prior the fit is combined with."),
    "focus_agarose_attenuation_prior_weight": _M("Agarose prior weight", "fraction", "Weight of the prior in "
                                                 "the agarose attenuation (1: the prior alone; above 0.5 flagged)."),
    "focus_agarose_attenuation_source": _M("Agarose attenuation source", "text", "given, estimated (fit and "
                                           "prior), the prior alone (fit failed or unusable), the fit alone (it "
                                           "decays as no gel does: dim tissue taken for agarose; flagged), or not "
                                           "estimated (Gaussian focus: not identifiable)."),
    "focus_agarose_refit_failed": _M("Agarose refit failure", "text", "Empty when the Lorentzian was refitted "
                                     "with the agarose decay fixed; otherwise why the refit failed (the "
                                     "Lorentzian fitted without the decay is kept)."),
    "focus_profile": _M("Focus profile", "gain", "Gain divided out at each input depth."),
    "p_low": _M("Low percentile value", "intensity", "Input intensity mapped to 0."),
    "p_high": _M("High percentile value", "intensity", "Input intensity mapped to 1."),
    "percentiles": _M("Percentiles", "%", "Tissue percentiles mapped to 0 and 1."),
    "tissue_fraction": _M("Tissue", "%", "Share of the slice's area classified as tissue."),
    "tissue_median_after": _M("Tissue median", "0-1", "Median tissue intensity after normalization; "
                              "similar values across slices mean even brightness."),
    "flatfield": _M("Flat-field", "text", "Whether a tile flat-field correction was applied."),
    "fusion_flatfield": _M("Flat field at fusion", "per field", "Whether the stitcher divided the tiles' "
                           "vignetting out (status; 'not applied' says why), the noise floor it left in place, "
                           "the overlap pairs and samples supporting the fit and the applied field's range; "
                           "source 'overlaps' or 'agarose tiles' (a strip whose overlaps cannot fit both axes: "
                           "the field read on its tissue-free agarose tiles, agarose_tiles / "
                           "agarose_disagreement; agarose_status says why that failed too)."),
    "tile_summaries": _M("Tile summaries", "text", "Where the stitcher took the tiles' projections and least "
                         "plane means from: 'aip' (the mosaic grid's AIP, checked against the grid) or 'tiles' "
                         "(read from the tiles), and why."),
    "slice_ids": _M("Slice ids", "id", "Slices in the stack."),
    "n_slices": _M("Slices", "count", "Slices in the stack."),
    "shifts_px": _M("Lateral correction", "px", "Lateral shift [dy, dx] applied to a slice relative to the "
                    "previous one, beyond the stage motion."),
    "shift_um": _M("Shift vs previous", "µm", "Length of the lateral correction of a slice relative to the "
                   "previous one, beyond the stage motion; large jumps deserve a look."),
    "max_shift_px": _M("Largest correction", "px", "Largest lateral correction between two slices."),
    "z_offsets_um": _M("Depth offset", "µm", "Depth step from the previous slice minus the slice thickness."),
    "overlap_ncc": _M("Match with previous", "NCC", "Similarity (-1 to 1) of a slice's overlap with the "
                      "previous slice after alignment, relative to the speckle ceiling (1: as similar as the "
                      "speckle allows); below 0.2 is flagged, below 0.5 no lateral gain map."),
    "z_confidence": _M("Depth confidence", "0-1", "Confidence of the depth registration with the previous slice: "
                       "the depth scan's peak NCC relative to the speckle ceiling; 0 when the peak is ambiguous "
                       "(a plateau, a rival peak, within the scan's noise); below 0.3 the motor depth is kept."),
    "overlap_ncc_raw": _M("Raw match with previous", "NCC", "NCC of the aligned overlap with the previous slice "
                          "before it is related to the speckle ceiling."),
    "overlap_ceiling": _M("Overlap speckle ceiling", "NCC", "Highest NCC the speckle leaves two images of the same "
                          "tissue (from each image's lateral autocorrelation); 1 when the match exceeds it (speckle "
                          "shared between the slices)."),
    "z_peak_ncc": _M("Depth scan peak", "NCC", "Raw NCC at the peak of the depth scan against the previous slice."),
    "z_ceiling": _M("Depth scan speckle ceiling", "NCC", "Speckle ceiling of the depth scan's planes at its peak "
                    "(1 when the peak exceeds it); the depth confidence is the peak over it."),
    "z_noise": _M("Depth scan noise", "NCC", "Scatter of the depth scan's NCC by chance (the planes correlated "
                  "against laterally rolled copies); the peak must rise 3 times this above its rivals."),
    "z_sigma_um": _M("Depth uncertainty", "µm", "Standard deviation of a slice's depth relative to the first "
                     "slice when the depths are solved from the motor and surface depths and the registered "
                     "steps together (at least the distance between the two); above half an axial voxel it is "
                     "flagged."),
    "z_step_doubted": _M("Depth step doubted", "σ", "The registered depth step's disagreement with the motor "
                         "and surface depths, in standard deviations, when it was the only step beyond 2.5 of "
                         "them (inside the stack): that step was not trusted and the slice placed by its motor "
                         "and surface depth (else empty)."),
    "axial_voxel_um": _M("Axial voxel", "µm", "Axial voxel of the registration; a slice's depth uncertainty is "
                         "flagged above half of it."),
    "axial_voxel": _M("Axial voxel check", "µm", "When every registered depth step missed the motor and surface "
                      "depths by one fraction (an axial voxel assumed wrong): the assumed, implied and used voxel "
                      "and how the slices were placed ('implied voxel': the stack planned again at it; 'motor and "
                      "surface depths': the registered depth steps left out); refined_um: the voxel the kept "
                      "plan's steps named when they all missed on one side (kept when its plan misses less); "
                      "empty otherwise."),
    "glitch_corrected": _M("Motor glitch corrected", "ids", "Slices whose motor position was corrected."),
    "motor_slip_corrected": _M("Motor slip corrected", "ids", "Slices whose motor depth step missed the slice "
                               "thickness and whose registration at the thickness was the better supported: "
                               "they and the slices after them moved by the difference."),
    "lateral_anchor": _M("Lateral step anchor", "counts", "Per slice, its overlap with the previous slice cut "
                         "into blocks, each at its own lateral peak: the confident ones, those agreeing with the "
                         "overlap's peak, and those lying where the step above placed the previous slice; when "
                         "the blocks disagree (a mosaic broken by its stitch), the step is read on the latter "
                         "('anchored'), so that the slices below follow the part of the previous slice already "
                         "placed (empty: no step above, or no refined lateral shift)."),
    "lateral_support": _M("Lateral step support", "NCC", "Per slice, its overlap with the previous slice's NCC at "
                          "the lateral peak and where the motors put it, and the NCC's chance scatter: the peak "
                          "is used only when it beats the motors' position by 3 scatters (else the motors "
                          "place the slice laterally, flagged); empty without a refined lateral shift."),
    "motor_slip_blocks": _M("Motor slip, overlap blocks", "counts", "When a motor depth step missed the slice "
                            "thickness and the overlap matched poorly as a whole at both steps: the overlap's "
                            "blocks, each registered at its own lateral shift, that agree on a step near the "
                            "thickness and near the motor step (confident ones, and all that place the slice); "
                            "the thickness is adopted when at least 3 confident blocks, or two thirds of the "
                            "blocks, agree on it, and twice as many as on the motor step (else empty)."),
    "motor_slip_climb": _M("Motor slip, both scans", "NCC", "When a motor depth step missed the slice "
                           "thickness and neither whole scan nor the overlap's blocks placed the slice: the scan "
                           "around the motor step rose to its edge toward the thickness and the scan around the "
                           "thickness peaked inside its window, above every offset of both six planes or more "
                           "away by the rise a peak must have; the "
                           "thickness was adopted (placed by the motor and surface depth; red flag) (else empty)."),
    "motor_fallback": _M("Kept motor position", "ids", "Registered slices that kept the motor position "
                         "because the registration was unsure."),
    "motor_fallback_kept": _M("Kept of the motor position", "text", "For each slice kept on its motor position: "
                              "what it kept (depth, lateral position, or both: position); the rest was registered."),
    "n_motor_fallback": _M("Slices on motor position", "count", "Registered slices that kept the motor position."),
    "drift_clamped": _M("Drift clamped", "ids", "Slices whose accumulated drift was limited."),
    "excluded_slices": _M("Excluded slices", "ids", "Slices absent from the stack."),
    "failed_slices": _M("Failed slices", "ids", "Slices whose processing failed."),
    "n_gaps": _M("Gaps", "count", "Slices missing between the first and the last."),
    "slice_thickness_um": _M("Slice thickness", "µm", "Thickness of one physical section."),
    "z_tolerance_um": _M("Glitch tolerance (z)", "µm", "Largest miss of a depth step from the slice thickness "
                         "that is not an encoder glitch; a step missing it by more after placement is flagged."),
    "kept_depth_um": _M("Kept depth", "µm", "Depth of each slice kept in the volume."),
    "blend_speckle_limited": _M("Speckle-limited blend", "yes/no", "The slice's overlap with the next one is "
                                "speckle-limited (speckle ceiling < 0.6): blended over 0.6 of the thickness, "
                                "equal weights but at its ends, instead of the default 10%."),
    "blend_averaged_below_um": _M("Averaged below kept", "µm", "Depth of the slice averaged with the slices "
                                  "below it beyond its kept depth (its planes weighted by the inverse of their "
                                  "error measured on the overlaps; negative: cut above a speckle-limited overlap); "
                                  "None: not weighted (--blend_overlap_um given, or an overlap not measured)."),
    "blend_share_last": _M("Weight share at the bottom", "fraction", "The slice's share of the weight against the "
                           "next slice at its last averaged plane (0.5: both image the tissue equally well; "
                           "averaging stops below 0.2)."),
    "rotation_deg": _M("Rotation undone", "°", "Rotation about z undone before registering a slice on the "
                       "previous one (0: none found or not searched)."),
    "rotation_mode": _M("Rotation mode", "text", "full / rotation_only (weak overlap) / skipped (no significant "
                        "rotation, or the two halves of the overlap disagreed)."),
    "rotation_std_deg": _M("Rotation uncertainty", "°", "Half the difference of the angles fitted on the two "
                           "halves of the overlap."),
    "rotation_unapplied_deg": _M("Turn not applied", "°", "A turn of at least 1 degree that matched the overlap "
                                 "better than none but was refused (not significant, halves disagreeing, or "
                                 "outside the searched range): the slice was left unturned and is flagged."),
    "common_tilt": _M("Common cut tilt", "voxel/px", "Median tilt [y, x] of the slices' surface planes; every "
                      "slice is re-flattened to it."),
    "surface_tilt": _M("Surface tilt", "voxel/px", "Tilt [y, x] of the plane the axial correction flattened "
                       "the slice by."),
    "retilt_max_planes": _M("Re-flattening", "planes", "Largest A-line move re-flattening the slice to the "
                            "common tilt (negative: refused, its plane was too far off)."),
    "boundary_ratio_raw": _M("Boundary ratio (before gains)", "ratio", "Tissue intensity of the previous slice over "
                             "this slice's top on their overlap (median of the planes' ratios), before the stack "
                             "gains; 1 = seamless."),
    "boundary_ratio": _M("Boundary ratio", "ratio", "The same ratio after the stack gains; far from 1 means a "
                         "visible intensity step at that slab boundary."),
    "boundary_ratio_tissue": _M("Boundary ratio tissue", "text", "How the boundary ratio's tissue was chosen: "
                                "'otsu' (the brighter of two classes of A-line levels, gel beside tissue) or 'half "
                                "median' (one class, e.g. tissue filling the field), with the classes' separation."),
    "gain_top_bottom": _M("Slab gain top/bottom", "gain", "Gain applied to a slice at its top and bottom plane "
                          "to match its neighbours across the overlaps."),
    "gain_trend_measured": _M("Slab gain trend measured", "yes/no", "Whether the overlap with the slice below "
                              "measured the depth trend of the slice's gain; no (the last slice, a slice before a "
                              "gap): the trend is its neighbour's, unchecked, and the slab's bottom may be off "
                              "(docs/stacking.md)."),
    "gain_trend_map_level": _M("Slab gain trend borrowed from a map", "log gain", "For a slice whose trend no "
                               "overlap below measures (the last slice, a slice before a gap): what its trend "
                               "borrows beyond the slice above's, the trend of the level that slice's lateral gain "
                               "map gives its tissue; empty elsewhere or when the slice above has no map "
                               "(docs/stacking.md)."),
    "gain_compensated_level": _M("Slab compensated level", "gain", "Factor putting the normalised slice back on "
                                 "the depth correction's units, which every slice shares (its normalisation "
                                 "scale over the median slice's), before the overlaps' gains; 1 when unknown."),
    "focus_skipped": _M("Focus correction skipped", "text", "Why the depth correction divided no focus profile "
                        "out of the slice (its focus mode; empty when it did): the slice keeps the focus, off the "
                        "compensated scale; the slab levels start normalised and its gain's level and depth "
                        "trend are left to its overlaps (docs/stacking.md)."),
    "gain_level_source": _M("Slab level source", "text", "'compensated': the gains start from the slices' "
                            "compensated levels; 'normalised': a slice's normalisation scale is unknown, every "
                            "slice starts at its own normalised level (a tissue that brightens or darkens with "
                            "depth then reads as flat; docs/stacking.md)."),
    "lateral_gain_range": _M("Lateral gain range", "gain", "5th and 95th percentiles of the lateral gain map "
                             "fitted on the overlap with the next slice (regional attenuation-compensation "
                             "error, measured at the slice's bottom); [1, 1] = none needed."),
    "lateral_gain_partial_fraction": _M("Lateral gain partial A-lines", "fraction", "Fraction of the overlap's "
                                        "A-lines with a plane left out of the lateral gain map's depth means: "
                                        "empty in one slice (above the next slice's cut where it dips below its "
                                        "fitted plane, below the slice's imaged range, dim gel) or next to such a "
                                        "voxel; the means use the planes both hold (docs/stacking.md)."),
    "lateral_gain_fallback": _M("Lateral gain fallback", "text", "Why a slice got no lateral gain map: "
                                "overlap too small, the next slice placed by the motors, a weak overlap NCC, or no "
                                "slice right below it (the last slice, one before a gap: its deep planes keep the "
                                "attenuation compensation's error, flagged when the slabs above needed a lateral "
                                "gain; docs/stacking.md)."),
    "lateral_gain_strength": _M("Lateral gain strength", "fraction", "Strength at which the slice's lateral gain "
                                "map is applied (its log gain scaled): 1 from an overlap confidence of 0.6 with the "
                                "next slice, fading smoothly to 0 at 0.4 (flagged in between); 0: no map (see "
                                "Lateral gain fallback; docs/stacking.md)."),
    "lateral_gain_confidence": _M("Lateral gain confidence", "NCC", "Overlap NCC (of its speckle ceiling) with the "
                                  "next slice that set the lateral gain strength; empty when the map was not judged "
                                  "by it (no overlap, the next slice placed by the motors, no next slice)."),
    "tissue_attenuation_per_mm": _M("Tissue attenuation (stack)", "1/mm", "Mean attenuation of the slice's "
                                    "tissue over the depth it images: measured through the overlap with the next "
                                    "slice when there is one (its own slab, and below the next cut the next "
                                    "slab's, by the depth each covers), else the axial step's decay fit (see "
                                    "Attenuation source)."),
    "attenuation_source": _M("Attenuation source", "text", "overlap: the light lost between this slice's cut and "
                             "the next, from the ratio of the two slices' uncompensated signals on their overlap "
                             "(reflectivity changes with depth cancel); decay fit (no slice below): the axial "
                             "step's per-A-line fit, which reads reflectivity changes as attenuation."),
    "overlap_attenuation_per_mm": _M("Overlap attenuation", "1/mm", "Tissue attenuation of the slice's slab "
                                     "(its cut to the next), measured through the overlap with the next slice; "
                                     "empty when too few tissue pixels."),
    "overlap_attenuation_pixels": _M("Overlap attenuation pixels", "count", "Tissue pixels (4 x 4 A-line bins) "
                                     "the overlap attenuation is averaged over."),
    "overlap_attenuation_supported_fraction": _M("Overlap attenuation support", "%", "Fraction of the overlap "
                                                 "those pixels cover; under 20% is flagged as weakly supported."),
    "overlap_attenuation_path_um": _M("Overlap attenuation path", "µm", "Mean tissue path (one way) between the "
                                      "two cuts over those pixels."),
    "attenuation_next_slab_weight": _M("Next slab's weight", "%", "Weight of the next slab's overlap estimate in "
                                       "the slice's tissue attenuation (the depth the slice images below the next "
                                       "cut); 0 when the next slice has none (its own slab alone)."),
    "warnings": _M("Warnings", "text", "Warnings the step logged while it ran."),
}

_UNIT_SUFFIXES = (
    ("_per_mm", "1/mm"), ("_um", "µm"), ("_mm", "mm"), ("_px", "px"), ("_fraction", "%"),
    ("_ncc", "NCC"), ("_deg", "°"), ("_s", "s"),
)

#: What to do about a red flag, by the first pattern its message matches.
ADVICE: tuple[tuple[str, str], ...] = (
    (r"^failed", "Read the log named in the message, fix the cause and rerun the same command: "
                 "finished steps are not redone."),
    (r"^excluded|absent from the stack", "Expected if you excluded this slice; otherwise check that "
                                         "the acquisition holds its tiles."),
    (r"empty", "Check the raw tiles of this slice; if it was not imaged, add it to exclude_slices."),
    (r"textured tile\(s\) left on the stage model", "Look at the seams around the named tiles in the stitched "
                                                   "slice: they hold texture (an overlap was measured with "
                                                   "confidence) but lie where the stage put them, off by up to "
                                                   "its scatter. The stitch record's pairs (details below) say "
                                                   "why each overlap was refused."),
    (r"stitching confidence|stage model|zero stage step", "Open the slice's stitching figure below: if tiles "
                                                           "are misplaced, check the tile overlap of the "
                                                           "acquisition."),
    (r"registered depth step disagrees|depth uncertain", "Compare this slice with the previous one in the "
                                                         "volume (a side view): check the lateral match of their "
                                                         "overlap and the stitching of both slices; a seam or a "
                                                         "misregistered overlap along oblique fibres moves the "
                                                         "depth match."),
    (r"outlier slice shift", "Look at the continuity plot and the volume around this slice: a jump is "
                             "either a real stage glitch or a failed registration."),
    (r"poor overlap", "Compare this slice with the previous one in the volume; damaged or folded tissue "
                      "gives a poor match."),
    (r"overlap attenuation|no slice below", "The slice's tissue attenuation (stack QC) is the axial step's "
                                            "decay fit or weakly measured: treat it as approximate "
                                            "(docs/intensity.md, Attenuation through the overlap)."),
    (r"surface detected", "Check the depth profile figure: the tissue surface may be outside the scan."),
    (r"was not applied", "Look at this slice's top against the previous slice in the volume: if it is turned, "
                         "rerun the stack with a larger --max_rotation_deg (outside the range) or check the "
                         "overlap's tissue (halves disagreeing: a local warp or tear)."),
    (r"weak links .* alone hold", "Look at the seams around the named tiles in the stitched slice: a tile "
                                  "hung on a weak overlap can be several pixels off. If one is, the slice's "
                                  "overlaps lack texture there (or are too narrow); a larger tile overlap "
                                  "helps the next acquisitions."),
    (r"standard error above the .* tile bar", "Look at the seams around the named tiles in the stitched slice: "
                                             "their overlaps measure little along some direction (an edge, a "
                                             "faint or narrow overlap), so the tile can be off along it by up to "
                                             "about twice its standard error. The stitch record's tiles and pairs "
                                             "(details below) say which overlaps hold it."),
    (r"focus width", "Compare this slice's depth profile figure with its neighbours': if it is the odd one, rerun "
                     "its axial correction with --focus_profile (a neighbour's QC focus_profile saved as .npy)."),
    (r"focus correction skipped", "Intensity may fall off with depth in this slice; check its depth "
                                  "profile figure. \"no distinct background\": the agarose did not stand out from "
                                  "the tissue (e.g. a focus far below the cut); rerun the axial correction with "
                                  "--focus_profile (a slice's QC focus_profile saved as .npy)."),
    (r"figure .* refused|figure .* missing|not understood|unreadable|not a QC record",
     "Rerun the step that wrote this record (or remove the stray file)."),
    (r"no \*_qc\.json record", "Run the pipeline first, or pass its output directory."),
)
_DEFAULT_ADVICE = "Open this slice's details below and check its figures."


def describe(name: str) -> MetricInfo:
    """Label, unit and meaning of a metric; a readable fallback for unknown names.

    Examples
    --------
    >>> describe("confidence").unit
    '0-1'
    >>> describe("galvo_shift_px")
    MetricInfo(label='Galvo shift', unit='px', meaning='Metric galvo_shift_px reported by the step.')
    """
    if name in METRICS:
        return METRICS[name]
    unit, stem = "value", name
    for suffix, suffix_unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            unit, stem = suffix_unit, name[: -len(suffix)]
            break
    if stem.startswith("n_"):
        unit, stem = "count", stem[2:]
    label = re.sub(r"[_\s]+", " ", stem).strip().capitalize() or name
    return MetricInfo(label, unit, f"Metric {name} reported by the step.")


def step_label(step: str) -> str:
    """Readable name of a step (its own name when unknown)."""
    return STEP_LABELS.get(step, step.replace("_", " ").capitalize())


def advice(message: str) -> str:
    """What a user should do about a red flag with this message."""
    for pattern, text in ADVICE:
        if re.search(pattern, message, flags=re.IGNORECASE):
            return text
    return _DEFAULT_ADVICE
