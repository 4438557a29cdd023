"""Shared plumbing of the ``bin/linum_*.py`` scripts.

Scripts stay thin: they build an :class:`argparse.ArgumentParser`, then hand a
``main(args)`` function to :func:`run`, which turns user-facing errors into one
line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from linumpy.errors import LinumpyError

#: Exit status for an error the user can fix (bad input, refused output).
EXIT_USER_ERROR = 2
#: Exit status when memory ran out: Nextflow retries the task with more memory.
EXIT_OUT_OF_MEMORY = 137


def make_parser(description: str | None) -> argparse.ArgumentParser:
    """Return an argument parser with the options every script shares.

    Parameters
    ----------
    description : str or None
        Help text, usually the script's module docstring.

    Returns
    -------
    argparse.ArgumentParser
        A parser with ``--verbose`` and ``--quiet`` already added.
    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="Log debugging details.")
    noise.add_argument("-q", "--quiet", action="store_true", help="Hide progress bars and notes.")
    return parser


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """Add the ``-f/--overwrite`` flag shared by every script that writes."""
    parser.add_argument(
        "-f", "--overwrite", action="store_true", help="Replace outputs that already exist."
    )


def progress_enabled(args: argparse.Namespace) -> bool:
    """Whether progress bars should be shown for these parsed arguments."""
    return not getattr(args, "quiet", False)


def run(
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace], None],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse arguments, run ``main`` and map failures to exit statuses.

    A :class:`~linumpy.errors.LinumpyError` prints ``error: <message>`` and
    exits with status 2; a :class:`MemoryError` exits with 137 so that the
    orchestrators retry the task with more memory. Other exceptions are
    bugs and keep their traceback.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The script's parser.
    main : callable
        Receives the parsed arguments.
    argv : sequence of str, optional
        Arguments to parse instead of ``sys.argv[1:]``.
    """
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    try:
        main(args)
    except LinumpyError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except MemoryError:
        print(f"error: out of memory in {parser.prog}; rerun with more memory", file=sys.stderr)
        sys.exit(EXIT_OUT_OF_MEMORY)
