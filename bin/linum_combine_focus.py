#!/usr/bin/env python3
"""Combine the slices' focus profiles into the acquisition's, for the slices whose own was refused.

Reads the axial correction's QC records of every slice (``*_axial_corr_qc.json``):
the per-depth median of the focus profiles the slices estimated and accepted
(focus_mode background or gaussian) is the acquisition's profile (the focus is
the instrument's, the same in instrument depth for every slice). Writes it as
JSON (``"profile": null`` when no slice accepted its own) and the slices that
borrow it (their own estimate refused: focus_mode ``none (<why>)``) as a CSV
(slice_id, focus_mode); each of them is corrected again with
``linum_axial_corr.py --acquisition_focus``. See docs/intensity.md.
"""

from __future__ import annotations

import argparse

from linumpy.cli import add_overwrite_argument, make_parser, run


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("qc_records", nargs="+", help="The slices' axial correction QC records (JSON).")
    parser.add_argument("out_json", help="The acquisition's focus profile (JSON).")
    parser.add_argument("--borrowers_csv", metavar="CSV", required=True,
                        help="Write the slices that borrow the profile here (slice_id, focus_mode).")
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.intensity import acquisition_focus
    from linumpy.qc.records import read_qc_record

    records = [read_qc_record(path) for path in args.qc_records]
    focus = acquisition_focus.combine(record for record in records if record["step"] == "axial_corr")
    acquisition_focus.write(focus, args.out_json, args.overwrite)
    acquisition_focus.write_borrowers(focus, args.borrowers_csv, args.overwrite)


if __name__ == "__main__":
    run(build_parser(), main)
