"""What a failed cell's reason says about its cause, so a rerun knows which cells are worth trying again.

Every reason recorded for a cell that has no chip starts with one of these kinds:

- ``transient:`` the service struggled (HTTP 429/5xx, 403 on an expired token, a timeout, a body cut short):
  the same read later will most likely succeed; ``--retry-failed`` revisits these cells.
- ``corrupt:`` the bytes arrived whole and do not decode: the file is bad; retrying gives the same answer.
- ``missing:`` the asset is not there (HTTP 404) or the catalogue points nowhere.
- ``refused:`` the asset href is not allowed (scheme, host or folder outside the allow-list).
- ``no_scene:`` no scene covers the cell (or none covers the whole chip): a property of the data.
- ``error:`` an unexpected error in this program (a bug): reported, not retried on its own.
"""

from __future__ import annotations

KINDS = ("transient", "corrupt", "missing", "refused", "no_scene", "error")
"""Failure kinds, in the order above; only ``transient`` is worth a retry."""


def tag(kind: str, message: str) -> str:
    """``message`` prefixed with its failure kind (``"transient: HTTP 503 ..."``)."""
    if kind not in KINDS:
        raise ValueError(f"failure kind {kind!r} is unknown: use one of {', '.join(KINDS)}")
    return f"{kind}: {message}"


def failure_kind(reason: str) -> str | None:
    """The kind a recorded reason starts with, or ``None`` (a done cell, or a reason from an older run)."""
    head = (reason or "").split(":", 1)[0].strip()
    return head if head in KINDS else None


def is_transient(reason: str) -> bool:
    """True when the cell failed for a passing cause (HTTP status, timeout, cut body) and a retry may succeed.

    This is what ``embed-grid --retry-failed`` and ``fetch-chips`` resume use to pick cells to revisit.
    """
    return failure_kind(reason) == "transient"
