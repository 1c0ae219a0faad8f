"""Which cells to fetch: a grid preset (masked, optionally cut to a bbox) or a CSV of (cell_id, lat, lon)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from geoprom3e.errors import InputError


def grid_cells(grid: str, bbox: tuple[float, float, float, float] | None = None,
               masked: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell_id, lat, lon) of a grid's cells; ``cell_id`` is the flat index ``row * cols + col`` in the full grid.

    ``bbox`` (W, S, E, N, in the grid's CRS) keeps the cells whose centres fall inside it; ``masked`` drops cells
    outside the grid's mask (e.g. outside the contiguous US).
    """
    from geoprom3e.grid import get_grid

    spec = get_grid(grid)
    lat, lon = spec.cell_centers()
    keep = spec.mask().copy() if masked else np.ones(spec.shape, bool)
    if bbox is not None:
        w, s, e, n = (float(v) for v in bbox)
        if not (w < e and s < n):
            raise InputError(f"bbox (W, S, E, N) = {tuple(bbox)}: west must be < east and south < north")
        x, y = spec.cell_centers_xy()
        xx, yy = np.meshgrid(x, y)
        keep &= (xx >= w) & (xx <= e) & (yy >= s) & (yy <= n)
    ids = np.nonzero(keep.ravel())[0].astype(np.int64)
    if ids.size == 0:
        raise InputError(f"grid {grid!r} has no cells{' inside bbox ' + str(tuple(bbox)) if bbox else ''}"
                         f"{' within its mask' if masked else ''}: check --bbox (W S E N in the grid's CRS)")
    return ids, lat.ravel()[ids], lon.ravel()[ids]


def csv_cells(path: str | Path, bbox: tuple[float, float, float, float] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell_id, lat, lon) from a CSV with those columns (``cell_id`` optional: row numbers); ``bbox`` in degrees."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read cells CSV {str(path)!r}: {exc}") from None
    cols = {c.lower(): c for c in df.columns}
    if "lat" not in cols or "lon" not in cols:
        raise InputError(f"cells CSV {str(path)!r} has columns {list(df.columns)}: it needs lat, lon "
                         "(and optionally cell_id)")
    lat = df[cols["lat"]].to_numpy(float)
    lon = df[cols["lon"]].to_numpy(float)
    ids = df[cols["cell_id"]].to_numpy(np.int64) if "cell_id" in cols else np.arange(len(df), dtype=np.int64)
    if bbox is not None:
        w, s, e, n = bbox
        k = (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)
        ids, lat, lon = ids[k], lat[k], lon[k]
    return ids, lat, lon
