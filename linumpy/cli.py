"""Shared plumbing of the ``bin/linum_*.py`` scripts.

Scripts stay thin: they build an :class:`argparse.ArgumentParser`, then hand a
``main(args)`` function to :func:`run`, which turns user-facing errors into one
line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import gc
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence

from linumpy.errors import LinumpyError
from linumpy.io.atomic import TEMP_MARKER
from linumpy.io.codecs import COMPRESSIONS, DEFAULT_COMPRESSION
from linumpy.io.options import DEFAULT_N_LEVELS
from linumpy.parallel import WORKERS_ENV, default_workers, set_default_workers
from linumpy.qc import warning_log

#: Exit status for an error the user can fix (bad input, refused output).
EXIT_USER_ERROR = 2
#: Exit status when memory ran out: Nextflow retries the task with more memory.
EXIT_OUT_OF_MEMORY = 137

#: Exit status when the reader of the output went away (a shell's 128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141

#: What to do about the file-system errors every script may meet.
_OS_ERROR_FIXES = {
    errno.ENOSPC: "free space or write elsewhere",
    errno.EDQUOT: "free space (disk quota exceeded) or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "check the permissions or write elsewhere",
    errno.EPERM: "check the permissions or write elsewhere",
    errno.ENOENT: "check the path",
}
#: A temporary output directory component: ``.NAME.partial-PID``.
_TEMPORARY = re.compile(r"(^|/)\.([^/]+)" + re.escape(TEMP_MARKER) + r"\d+(?=/|$)")


def os_error_message(error: OSError, program: str) -> str | None:
    """One line describing a file-system failure, or ``None`` for a bug-like OSError.

    The path is the file the error names, with a temporary output directory
    (``.NAME.partial-PID``) shown as its final name ``NAME``; an error that
    names no file (a failed ``write``) is attributed to ``program``.

    Examples
    --------
    >>> os_error_message(OSError(28, "No space left on device", "out/.a.zarr.partial-7/0/0"), "prog")
    'out/a.zarr/0/0: No space left on device; free space or write elsewhere'
    """
    fix = _OS_ERROR_FIXES.get(error.errno)
    if error.filename is None and fix is None:
        return None
    where = program if error.filename is None else _TEMPORARY.sub(r"\1\2", str(error.filename))
    reason = error.strerror or str(error)
    return f"{where}: {reason}; {fix}" if fix else f"{where}: {reason}"


def readable_default(value: object) -> str:
    """A default value as a user types it, not as Python prints it.

    Examples
    --------
    >>> readable_default([(1.0, 95.0)]), readable_default([10.0, 25.0]), readable_default(None)
    ('1 95', '10 25', 'none')
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(readable_default(item) for item in value)
    return str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The help layout of every script: UPPER-CASE positional names, readable defaults.

    Positional arguments without an explicit ``metavar`` show their name in
    upper case (``RESULTS_DIR``), like options' values; ``%(default)s`` in a
    help text prints lists as space-separated values (``1 95``, the way they
    are typed) and floats without trailing zeros.
    """

    def _get_default_metavar_for_positional(self, action: argparse.Action) -> str:
        return action.dest.upper()

    def _expand_help(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, (str, int)) and not isinstance(action.default, bool):
            return super()._expand_help(action)
        readable = argparse.Action(action.option_strings, action.dest, default=readable_default(action.default),
                                   type=action.type, choices=action.choices, help=action.help,
                                   metavar=action.metavar, nargs=action.nargs if action.nargs != 0 else None)
        return super()._expand_help(readable)


def finite_float(text: str) -> float:
    """Argparse type of every numeric option: a float, refusing ``inf`` and ``nan``.

    Examples
    --------
    >>> finite_float("2.5")
    2.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


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
        formatter_class=HelpFormatter,
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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--workers N``: threads reading, computing and writing chunks at once.

    :func:`run` makes the value the process-wide default (see :mod:`linumpy.parallel`).
    """
    parser.add_argument(
        "--workers", type=positive_int, default=None, metavar="N",
        help=f"Threads reading, computing and writing chunks at once [${WORKERS_ENV}, else the cores: "
             f"{default_workers()}].",
    )
    parser.set_defaults(sets_chunk_workers=True)


def add_omezarr_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of every script that writes a power-of-2 OME-Zarr pyramid.

    Adds ``--n_levels``, ``--compression``, ``--workers`` and ``-f/--overwrite``.
    """
    parser.add_argument(
        "--n_levels", type=int, default=DEFAULT_N_LEVELS,
        help="Pyramid levels above level 0, each 2x smaller laterally [%(default)s].",
    )
    parser.add_argument(
        "--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
        help="Chunk codec [%(default)s].",
    )
    add_workers_argument(parser)
    add_overwrite_argument(parser)


def progress_enabled(args: argparse.Namespace) -> bool:
    """Whether progress bars should be shown: not ``--quiet`` and stderr is a terminal.

    Redirected to a file (nohup, SLURM, the runners' task logs), a script
    writes its log lines only, never carriage-return progress bars.
    """
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


@contextlib.contextmanager
def frozen_imports() -> Iterator[None]:
    """Import the heavy libraries inside: no garbage collection while they load, their objects frozen after.

    A script's imports (numpy, scipy, dask, zarr) create some 10^5 objects
    and no garbage worth collecting, yet they trigger hundreds of the cyclic
    collector's passes, and the full collections that follow scan every one
    of those objects again, holding the GIL (on the five ``small`` slices the
    stack ran ~450 collections, 0.4-0.5 CPU s, three full ones of 0.1-0.4 s
    each; ``benchmarks/README.md``, session stack43). The collector is off
    inside the block; on leaving it, every object alive is moved out of its
    scans (``gc.freeze``) and the collector is turned back on if it was on.

    Examples
    --------
    >>> import gc
    >>> with frozen_imports():
    ...     import json
    ...     gc.isenabled()
    False
    >>> gc.isenabled(), gc.get_freeze_count() > 0
    (True, True)
    >>> gc.unfreeze()
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def run(
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace], None],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse arguments, run ``main`` and map failures to exit statuses.

    A :class:`~linumpy.errors.LinumpyError` prints ``error: <message>`` and
    exits with status 2; a :class:`MemoryError` exits with 137 so that the
    orchestrators retry the task with more memory; a file-system failure
    (full disk, quota, read-only, permission, or any OSError naming a file)
    prints ``error: <path>: <reason>; <fix>`` and exits with 2 too. Other
    exceptions are bugs and keep their traceback. A reader that closes the
    output early (``script | head``) ends the script quietly with status 141.
    Warnings logged while ``main`` runs are collected for the QC record the
    script writes (:mod:`linumpy.qc.warning_log`). The objects alive at exit
    are frozen (``gc.freeze``) so that the interpreter's finalization does
    not run its garbage collections over them.

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
    warning_log.install()
    if getattr(args, "sets_chunk_workers", False) and args.workers is not None:
        set_default_workers(args.workers)
    # CPython's finalization collects garbage over every object of the libraries imported (numpy, scipy,
    # zarr): 0.5-1.5 s of serial work after the outputs are written. Objects frozen at exit are
    # left out of those collections; the outputs are closed by then (registered once per process).
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    try:
        main(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:  # the reader stopped early (``| head``): not an error of the script
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    except LinumpyError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except MemoryError:
        print(f"error: out of memory in {parser.prog}; rerun with more memory", file=sys.stderr)
        sys.exit(EXIT_OUT_OF_MEMORY)
    except OSError as error:
        message = os_error_message(error, parser.prog)
        if message is None:
            raise
        # zarr's other writes still in flight (same full disk, same temporary) fail too; asyncio
        # would print each as "Task exception was never retrieved" with a traceback at exit.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
