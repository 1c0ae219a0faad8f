"""Chunks: square blocks of grid cells that the engine fetches, encodes and commits as one unit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from geoprom3e.errors import ConfigError
from geoprom3e.grid import GridSpec


@dataclass(frozen=True)
class Chunk:
    """One block of cells: rows ``r0:r1`` and columns ``c0:c1`` of the grid."""

    cr: int
    """Chunk row index."""
    cc: int
    """Chunk column index."""
    r0: int
    """First grid row."""
    r1: int
    """One past the last grid row."""
    c0: int
    """First grid column."""
    c1: int
    """One past the last grid column."""

    @property
    def id(self) -> str:
        """Stable name, used for commit markers: ``r{cr}_c{cc}``."""
        return f"r{self.cr}_c{self.cc}"

    @property
    def slices(self) -> tuple[slice, slice]:
        """(row slice, column slice) into [rows, cols] arrays."""
        return slice(self.r0, self.r1), slice(self.c0, self.c1)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of this chunk."""
        return self.r1 - self.r0, self.c1 - self.c0


def iter_chunks(grid: GridSpec, chunk_size: int, mask: np.ndarray | None = None) -> Iterator[Chunk]:
    """Chunks of ``grid`` in row-major order, skipping those with no masked-in cell."""
    if chunk_size < 1:
        raise ConfigError(f"chunk size {chunk_size}: must be >= 1 (32 is a good default)")
    rows, cols = grid.shape
    for cr, r0 in enumerate(range(0, rows, chunk_size)):
        for cc, c0 in enumerate(range(0, cols, chunk_size)):
            ch = Chunk(cr, cc, r0, min(r0 + chunk_size, rows), c0, min(c0 + chunk_size, cols))
            if mask is None or mask[ch.slices].any():
                yield ch
