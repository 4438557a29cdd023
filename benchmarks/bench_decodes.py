#!/usr/bin/env python3
"""Count the chunk decodes and chunk writes of one step: a measure of its work that load does not change.

Runs a ``bin/`` script in this process with the direct chunk reader and
writer (:mod:`linumpy.io.chunk_writer`) counted, and prints, per array (its
path relative to the work folder, temporaries shown by their final name),
the chunk files decoded (and their bytes) and the chunk files written (and
their bytes), so that "the input was decoded 1.9 times" is a number. Reads that go through zarr-python (sharded or unusual layouts) are
not counted.

    python benchmarks/bench_decodes.py [--json out.json] -- bin/linum_stitch_3d.py IN OUT -f
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import re
import sys
import threading
from pathlib import Path

from linumpy.io import chunk_writer

#: ``.NAME.partial-PID`` directories are reported as ``NAME``.
_TEMPORARY = re.compile(r"\.([^/]+)\.partial-\d+")


def _name(directory: Path) -> str:
    """An array directory, a temporary shown by its final name."""
    return _TEMPORARY.sub(r"\1", str(directory))


class Counter:
    """Thread-safe tallies of chunks and bytes per array."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tally: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def add(self, directory: Path, kind: str, nbytes: int) -> None:
        with self.lock:
            entry = self.tally[_name(directory)]
            entry[f"{kind}_chunks"] += 1
            entry[f"{kind}_bytes"] += nbytes


def install(counter: Counter) -> None:
    """Wrap the direct reader's and writer's per-chunk methods to count them."""
    reader, writer = chunk_writer.ChunkFileReader, chunk_writer.ChunkFileWriter
    decode_into, chunk, write_chunk = reader._decode_into, reader._chunk, writer._write_chunk

    def counted_decode_into(self, index, destination):
        if self.chunk_path(index).is_file():  # not stored: filled, nothing decoded
            counter.add(self.directory, "decoded", destination.nbytes)
        return decode_into(self, index, destination)

    def counted_chunk(self, index):
        values = chunk(self, index)
        if values is not None:
            counter.add(self.directory, "decoded", values.nbytes)
        return values

    def counted_write(self, index, values):
        if values.any():  # chunks of zeros are not stored
            counter.add(self.directory, "written", values.nbytes)
        return write_chunk(self, index, values)

    reader._decode_into, reader._chunk, writer._write_chunk = counted_decode_into, counted_chunk, counted_write


def run_script(script: Path, arguments: list[str]) -> None:
    """Run ``script``'s ``main`` with ``arguments`` (as its ``__main__`` would)."""
    spec = importlib.util.spec_from_file_location("step_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(module.build_parser().parse_args(arguments))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="Write the tallies here too.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT ARGUMENTS...")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the script and its arguments after --")
    counter = Counter()
    install(counter)
    run_script(Path(command[0]), command[1:])
    report = {name: dict(sorted(entry.items())) for name, entry in sorted(counter.tally.items())}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
