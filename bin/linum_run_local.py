#!/usr/bin/env python3
"""Reconstruct an acquisition on this machine, without Nextflow.

Runs the same scripts with the same arguments and output tree as the
Nextflow pipeline, reading the same params file keys (see docs/pipeline.md).
Slices run in parallel (--workers); a rerun skips every step whose outputs
are complete, so an interrupted run resumes where it stopped.

Examples:
    linum_run_local.py --simulate small --outdir demo_output
    linum_run_local.py --simulate small --outdir demo_output --stack_resolution 10   # a lighter volume
    linum_run_local.py --simulate small --outdir demo_seed11 --params seed.yaml   # seed.yaml: "simulate_seed: 11"
    linum_run_local.py --params params.yaml --input /data/brain --outdir results --workers 4
"""

import argparse
import os

from linumpy.cli import add_overwrite_argument, finite_float, make_parser, run

DEFAULT_WORKERS = os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--params", metavar="FILE",
                        help="Params file (YAML or JSON), as for nextflow -params-file.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="DIR", help="Raw acquisition directory.")
    source.add_argument("--simulate", choices=("tiny", "small", "large"), metavar="PRESET",
                        help="Simulate an acquisition (tiny, small, large) into OUTDIR/acquisition; its seed, "
                             "layout and number of slices are the params file keys simulate_seed, "
                             "simulate_layout, simulate_n_slices.")
    parser.add_argument("--outdir", metavar="DIR", help="Output directory [params file, else results].")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="Slices processed at the same time [all cores: %(default)s].")
    parser.add_argument("--slices", type=int, nargs="+", metavar="ID", help="Reconstruct only these slices.")
    parser.add_argument("--exclude_slices", type=int, nargs="+", metavar="ID", help="Leave these slices out.")
    parser.add_argument("--allow_gaps", action="store_true", default=None,
                        help="Stack even when slice ids between the selected ones are missing.")
    parser.add_argument("--stack_resolution", type=finite_float, metavar="UM",
                        help="Voxel size of the final volume, micrometres [params file, else the slices' "
                             "finest lateral pixel: full resolution]. The 10/25/50/100 um analysis levels "
                             "coarser than it are added.")
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.pipeline.child import exit_on_sigterm
    from linumpy.pipeline.params import load_params
    from linumpy.pipeline.runner import run_pipeline
    from linumpy.pipeline.summary import end_of_run_lines

    exit_on_sigterm()
    params = load_params(args.params, {
        "input": args.input, "simulate": args.simulate, "outdir": args.outdir,
        "slices": args.slices, "exclude_slices": args.exclude_slices, "allow_gaps": args.allow_gaps,
        "stack_resolution": args.stack_resolution,
    })
    if args.simulate is not None:  # the command line wins over an input in the params file
        params = params.model_copy(update={"input": None})
    summary = run_pipeline(params, args.workers, progress=not args.quiet, overwrite=args.overwrite)
    if not args.quiet:
        print("\n".join(end_of_run_lines(summary, params.outdir, params.input)))


if __name__ == "__main__":
    run(build_parser(), main)
