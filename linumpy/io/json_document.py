"""Reading the small JSON documents the pipeline passes between its steps.

A transform, a curvature decision, a QC record: each is one JSON file whose
absence or corruption must end the step with a one-line error naming the file
and the fix, never a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from linumpy.errors import InputError


def load_json_document(path: str | os.PathLike, what: str, fix: str) -> Any:
    """Return the parsed content of the JSON file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    what : str
        What the file holds, for the error message (e.g. ``"transform file"``).
    fix : str
        What the user should do when the file is missing or not JSON.

    Raises
    ------
    InputError
        If the file does not exist or is not valid JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise InputError(f"{what} {path} does not exist; {fix}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON ({error}); {fix}") from error
