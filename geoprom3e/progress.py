"""The one progress event every long-running geoprom3e function reports (a leaf: importable from anywhere).

Library functions take ``progress: ProgressCallback | None`` and call it with :class:`ProgressEvent`; they never
print or own a progress bar. The CLI turns events into bars (``geoprom3e.cli.progress``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """``advance`` more units of ``stage`` are done, out of ``total`` (None when unknown)."""

    stage: str
    """What is running: ``embed``, ``fuse``, ``score``, ``read records``, ..."""
    advance: int = 0
    """Units finished since the previous event of this stage."""
    total: int | None = None
    """Units in the whole stage, when known."""
    unit: str = "cells"
    """What a unit is (``cells``, ``records``, ``chunks``)."""
    message: str | None = None
    """A one-line note for the user (a new step started), instead of or beside a count."""


ProgressCallback = Callable[[ProgressEvent], None]
"""What library functions accept as ``progress``."""


def report(progress: ProgressCallback | None, stage: str, advance: int = 0, total: int | None = None,
           unit: str = "cells", message: str | None = None) -> None:
    """Send one event when there is a callback."""
    if progress is not None:
        progress(ProgressEvent(stage, advance, total, unit, message))
