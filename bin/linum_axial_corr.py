#!/usr/bin/env python3
"""Correct the depth (axial) intensity profile of one slice.

Detects the tissue surface of every A-line, divides by the focus profile,
compensates the attenuation (depth-resolved estimate of Vermeer et al. 2014),
shifts every A-line so the surface is flat at --surface_depth_um and keeps
--useful_depth_um below it. Also writes <out stem>_surface.ome.zarr (surface
depth in um from the top of the input, NaN where no surface was detected) and
<out stem>_attenuation.ome.zarr (attenuation of the tissue just below the
cut at each A-line, 1/mm: its decay rate from the surface down to the first
change of the A-line, or the bottom) and <out stem>_uncompensated.ome.zarr (the
signal before attenuation compensation, flattened, 4 x 4 binned: the stack
measures each slice's attenuation through its overlap on it). When the
input records a field curvature the mosaic step removed (attribute
field_curvature_applied_px) and its agarose shows that the focus did not
move with the content, each A-line is divided by the focus profile read at
its own applied shift (QC fields focus_shift_*). See docs/intensity.md.
"""

from __future__ import annotations

import argparse

from linumpy.cli import add_omezarr_output_arguments, finite_float, make_parser, progress_enabled, run
from linumpy.intensity.options import ATTENUATION_MODES, AXIAL_DTYPES, DEFAULT_STEP_LOG, FOCUS_MODES


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("in_zarr", help="Input slice (z, y, x) OME-Zarr.")
    parser.add_argument("out_zarr", help="Output OME-Zarr.")
    parser.add_argument("--surface_depth_um", type=finite_float, default=0.0,
                        help="Depth of the flattened surface in the output [%(default)s].")
    parser.add_argument("--useful_depth_um", type=finite_float, default=None,
                        help="Output depth [from the mean surface to the bottom of the input].")
    parser.add_argument("--focus", choices=FOCUS_MODES, default="background",
                        help="Focus correction: mean profile of the agarose A-lines, a Gaussian "
                             "fitted to it, or none [%(default)s].")
    parser.add_argument("--focus_profile", metavar="NPY", default=None,
                        help="Divide by this focus profile (.npy, one value per input depth) instead.")
    parser.add_argument("--acquisition_focus", metavar="JSON", default=None,
                        help="The acquisition's focus profile (linum_combine_focus.py): divided by only when this "
                             "slice's own focus estimate is refused (focus_mode 'borrowed (...)' in the QC "
                             "record); a slice with its own accepted profile is not changed.")
    parser.add_argument("--agarose_attenuation_per_mm", type=finite_float, default=None,
                        help="The embedding gel's own attenuation, measured on the gel (1/mm); removed from the "
                             "agarose profile of the background focus estimate (default: estimated with the "
                             "Lorentzian focus fit, combined with a stated prior, when identifiable, else 0; "
                             "see the QC record).")
    parser.add_argument("--attenuation", choices=ATTENUATION_MODES, default="vermeer",
                        help="Attenuation compensation [%(default)s].")
    parser.add_argument("--attenuation_edge_sigma_px", type=finite_float, default=2.0,
                        help="Average the compensation's tail sums with an edge-aware (guided) filter of this "
                             "sigma (A-lines; 2 and 4 measured), so that tissues of different levels do not lend "
                             "each other their decay; ~5%% more CPU (0: the box average) [%(default)s].")
    parser.add_argument("--attenuation_step_log", type=finite_float, default=DEFAULT_STEP_LOG,
                        help="With the edge-aware sums: read a change of the signal by more than this (log) "
                             "across 6 planes as a step of reflectivity (dark tissue at the same attenuation) and "
                             "divide it out before Vermeer's tail sums (0.5 measured: helps on the simulator's "
                             "dark tissue, lowers the NCC on oblique fibres; 0: off, plain Vermeer) [%(default)s].")
    parser.add_argument("--dtype", choices=AXIAL_DTYPES, default="float32",
                        help="Stored dtype of the corrected volume; float16 halves it (relative rounding "
                             "0.05%%) [%(default)s].")
    add_omezarr_output_arguments(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.intensity import statistics_reads
    from linumpy.malloc import reuse_freed_memory_across_threads

    # the blocks and chunk columns (42 MB each on the `large` slice) one thread frees, another allocates again
    reuse_freed_memory_across_threads()

    # the first pass's chunk columns are decoded on another core while the correction's modules are imported
    with statistics_reads.started(args.in_zarr) as reads:
        from linumpy.intensity import acquisition_focus
        from linumpy.intensity.axial import AxialSettings, correct_slice
        from linumpy.io.profiles import read_depth_profile

        settings = AxialSettings(
            surface_depth_um=args.surface_depth_um,
            useful_depth_um=args.useful_depth_um,
            focus=args.focus,
            focus_profile=None if args.focus_profile is None else read_depth_profile(args.focus_profile),
            acquisition_focus=(None if args.acquisition_focus is None
                               else acquisition_focus.read(args.acquisition_focus)),
            attenuation=args.attenuation,
            agarose_attenuation_per_mm=args.agarose_attenuation_per_mm,
            tail_edge_sigma_px=args.attenuation_edge_sigma_px,
            attenuation_step_log=args.attenuation_step_log,
        )
        correct_slice(args.in_zarr, args.out_zarr, settings, n_levels=args.n_levels, dtype=args.dtype,
                      compression=args.compression, overwrite=args.overwrite, progress=progress_enabled(args),
                      statistics_reads=reads)


if __name__ == "__main__":
    run(build_parser(), main)
