"""The acquisition's focus profile, for the slices whose own estimate is refused.

The focus is the instrument's: the same curve in the instrument's depth for
every slice of an acquisition (only the tissue surface moves from slice to
slice). A slice whose own estimate from its agarose is refused (the axial
correction's ``focus_mode`` reads ``none (<why>)``: no distinct background,
no agarose A-lines, too few of them) keeps the focus's rise through depth,
which nothing measures when it is the last slab of the stack. It borrows the
acquisition's profile instead: the per-depth median of the profiles the
other slices estimated and accepted (``background`` or ``gaussian``), read
from their axial QC records (``focus_profile``), scaled to 1 at its maximum.
The slice's ``focus_mode`` then reads ``borrowed (<why its own was refused>;
from slices ...)`` and the stack treats it as corrected.

:func:`combine` is the acquisition-level step (``linum_combine_focus.py``);
the axial correction of a refused slice is run again with the result
(``linum_axial_corr.py --acquisition_focus``), which it uses only when its own
estimate is refused again (a slice with an accepted own profile is never
changed).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output

#: The ``focus_mode`` of a slice whose own estimate was refused for want of data (``"none"`` alone: on request).
REFUSED_PREFIX = "none ("
#: The ``focus_mode`` values of an own estimate the acquisition's profile is made of.
DONOR_MODES = ("background", "gaussian")
#: The ``focus_mode`` prefix of a slice that divided by the acquisition's profile.
BORROWED_PREFIX = "borrowed ("


@dataclass(frozen=True)
class AcquisitionFocus:
    """The acquisition's focus profile and where it comes from.

    Attributes
    ----------
    profile : ndarray, shape (depth,), or None
        Per-depth median of the donors' profiles, 1 at its maximum (float32); None without a donor.
    donors : tuple of int
        The slices whose own accepted profiles were combined.
    per_aline : bool
        Every donor read its profile at each A-line's applied field-curvature shift (the profile is then in the
        tiles' frame, and a borrower reads it the same way).
    refused : dict
        ``{slice_id: focus_mode}`` of the slices whose own estimate was refused.
    """

    profile: np.ndarray | None
    donors: tuple[int, ...]
    per_aline: bool
    refused: dict[int, str]

    def mode(self, own_mode: str) -> str:
        """The ``focus_mode`` of a borrower whose own estimate read ``own_mode``.

        Examples
        --------
        >>> focus = AcquisitionFocus(np.ones(3, np.float32), (0, 1, 3), False, {2: "none (no background A-lines)"})
        >>> focus.mode("none (no background A-lines)")
        'borrowed (no background A-lines; from slices 0, 1, 3)'
        """
        return f"{BORROWED_PREFIX}{refusal(own_mode)}; from slices {', '.join(str(i) for i in self.donors)})"

    @property
    def borrowers(self) -> list[int]:
        """The refused slices that borrow the profile (none without a profile)."""
        return sorted(self.refused) if self.profile is not None else []

    def to_json(self) -> dict[str, Any]:
        """The JSON form written by :func:`write` (the profile to 6 decimals)."""
        profile = None if self.profile is None else [round(float(v), 6) for v in self.profile]
        return {"profile": profile, "donors": list(self.donors),
                "per_aline": self.per_aline, "refused": {str(k): v for k, v in sorted(self.refused.items())}}


def is_refused(focus_mode: str | None) -> bool:
    """Whether an axial correction's ``focus_mode`` is a refused own estimate (a borrower).

    Examples
    --------
    >>> [is_refused(m) for m in ("none (no background A-lines)", "none", "background", None)]
    [True, False, False, False]
    """
    return isinstance(focus_mode, str) and focus_mode.startswith(REFUSED_PREFIX)


def refusal(focus_mode: str) -> str:
    """Why a refused own estimate was refused: ``focus_mode`` without its ``none (...)``.

    Examples
    --------
    >>> refusal("none (no background A-lines)")
    'no background A-lines'
    """
    return focus_mode[len(REFUSED_PREFIX):-1] if is_refused(focus_mode) else focus_mode


def combine(records: Iterable[Mapping[str, Any]]) -> AcquisitionFocus:
    """The acquisition's focus from the slices' axial QC records (no profile when no slice accepted its own).

    A donor is a record whose ``focus_mode`` is ``background`` or ``gaussian`` with a ``focus_profile``
    metric; the donors' profiles (each 1 at its maximum) must share one length (one acquisition).
    The per-depth median of the donors is scaled to 1 at its maximum.

    Raises
    ------
    InputError
        If the donors' profiles differ in length.

    Examples
    --------
    >>> records = [{"slice_id": i, "metrics": {"focus_mode": "background", "focus_profile": p}}
    ...            for i, p in enumerate([[0.5, 1.0, 0.5], [0.4, 1.0, 0.6], [0.6, 1.0, 0.4]])]
    >>> records.append({"slice_id": 3, "metrics": {"focus_mode": "none (no background A-lines)"}})
    >>> focus = combine(records)
    >>> focus.profile.tolist(), focus.donors, focus.refused
    ([0.5, 1.0, 0.5], (0, 1, 2), {3: 'none (no background A-lines)'})
    """
    profiles, donors, per_aline, refused = [], [], [], {}
    for record in records:
        metrics, slice_id = record["metrics"], record.get("slice_id")
        mode = metrics.get("focus_mode")
        if is_refused(mode) and slice_id is not None:
            refused[int(slice_id)] = mode
        elif mode in DONOR_MODES and metrics.get("focus_profile"):
            profiles.append(np.asarray(metrics["focus_profile"], np.float64))
            donors.append(-1 if slice_id is None else int(slice_id))
            per_aline.append(bool(metrics.get("focus_shift_per_aline", False)))
    if not profiles:
        return AcquisitionFocus(None, (), False, refused)
    lengths = sorted({p.size for p in profiles})
    if len(lengths) > 1:
        raise InputError(f"the slices' focus profiles have {lengths} depths: not one acquisition's slices")
    median = np.median(np.stack(profiles), axis=0)
    order = np.argsort(donors, kind="stable")
    return AcquisitionFocus((median / median.max()).astype(np.float32), tuple(donors[i] for i in order),
                            all(per_aline), refused)


def write(focus: AcquisitionFocus, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the acquisition's focus as JSON (atomically; ``"profile": null`` without a donor)."""
    with atomic_output(path, overwrite) as tmp:
        Path(tmp).write_text(json.dumps(focus.to_json(), indent=1, sort_keys=True) + "\n")
    return Path(path)


def write_borrowers(focus: AcquisitionFocus, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the borrowers as CSV (``slice_id,focus_mode``; the header alone when none borrows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([("slice_id", "focus_mode"), *((i, focus.refused[i]) for i in focus.borrowers)])
    with atomic_output(path, overwrite) as tmp:
        Path(tmp).write_text(buffer.getvalue())
    return Path(path)


def read_borrowers(path: str | os.PathLike) -> list[int]:
    """The slice ids of :func:`write_borrowers`'s CSV."""
    with open(path, newline="") as handle:
        return [int(row["slice_id"]) for row in csv.DictReader(handle)]


def read(path: str | os.PathLike) -> AcquisitionFocus:
    """Read :func:`write`'s JSON.

    Raises
    ------
    InputError
        If the file is unreadable or not an acquisition focus.
    """
    try:
        value = json.loads(Path(path).read_text())
        profile = None if value["profile"] is None else np.asarray(value["profile"], np.float32)
        focus = AcquisitionFocus(profile, tuple(int(i) for i in value["donors"]), bool(value["per_aline"]),
                                 {int(k): str(v) for k, v in value["refused"].items()})
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not an acquisition focus file ({error}); rerun linum_combine_focus.py") from None
    if profile is not None and (profile.ndim != 1 or not np.isfinite(profile).all()
                                or not profile.max(initial=0) > 0):
        raise InputError(f"{path}: the acquisition's focus profile must be 1D, finite, with a positive maximum")
    return focus
