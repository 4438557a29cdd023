"""Exceptions users can act on.

Every error raised for bad input or a refused output derives from
:class:`LinumpyError`; the command-line scripts print its message as a single
line and exit non-zero (see :mod:`linumpy.cli`). Messages name the offending
path and say what to do.
"""


class LinumpyError(Exception):
    """Base class of the errors reported to users as one line."""


class InputError(LinumpyError, ValueError):
    """An input file or argument is missing, malformed or inconsistent."""


class OutputExistsError(LinumpyError, FileExistsError):
    """An output already exists and overwriting was not requested."""
