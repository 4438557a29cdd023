#!/usr/bin/env python3
"""Gather every QC record and figure of a run into one self-contained HTML page.

The page lists the red flags (low stitching confidence, tile pairs on the
stage model, outlier slice shifts, empty, failed or excluded slices), a table
with one row per slice, and the figures, embedded in the file.
"""

import argparse
import logging

from linumpy.cli import add_overwrite_argument, make_parser, run


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("results_dir", help="Results directory of a pipeline run.")
    parser.add_argument("out_html", help="HTML file to write.")
    parser.add_argument("--title", default="linumpy QC report", help="Page title [%(default)s].")
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.qc.report import write_report

    collection = write_report(args.results_dir, args.out_html, args.title, args.overwrite)
    logging.info(
        "%s: %d slices, %d records, %d red flags",
        args.out_html, len(collection.slice_ids), len(collection.entries), len(collection.flags),
    )


if __name__ == "__main__":
    run(build_parser(), main)
