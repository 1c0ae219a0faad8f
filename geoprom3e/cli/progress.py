"""The CLI's one adapter from :class:`~geoprom3e.progress.ProgressEvent` to progress bars and step lines."""

from __future__ import annotations

import sys
from typing import Any

import click

from geoprom3e.progress import ProgressEvent


class Bars:
    """A progress callback that draws one tqdm bar per stage on stderr (only on a terminal) and prints messages.

    Use as a context manager so bars close on errors too::

        with Bars() as bars:
            species_maps(..., progress=bars)
    """

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:  # noqa: D102
        if event.message:
            self._close(event.stage)
            click.echo(event.message, err=True)
        if not event.advance and event.total is None:
            return
        bar = self._bars.get(event.stage)
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=event.total, desc=event.stage, unit=f" {event.unit}", unit_scale=event.unit == "records",
                       dynamic_ncols=True, file=sys.stderr, disable=None, leave=False)
            self._bars[event.stage] = bar
        elif event.total is not None and bar.total != event.total:
            bar.total = event.total
        bar.update(event.advance)

    def _close(self, stage: str) -> None:
        bar = self._bars.pop(stage, None)
        if bar is not None:
            bar.close()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        for stage in list(self._bars):
            self._close(stage)
