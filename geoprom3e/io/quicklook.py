"""PNG quicklooks: one layer, state outlines, colour bar and title (matplotlib, no display needed)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from geoprom3e.grid.spec import GridSpec


@functools.lru_cache(maxsize=4)
def _state_lines(crs: str) -> list[np.ndarray]:
    """Boundary rings of the contiguous-US states, as (x, y) arrays in ``crs``."""
    import json

    import shapely

    from geoprom3e.grid.mask import CONUS_STATES, grids_dir, to_grid_crs

    path = grids_dir() / CONUS_STATES
    if not path.exists():
        return []
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    lines = []
    for feature in features:
        geom = to_grid_crs(shapely.geometry.shape(feature["geometry"]), crs)
        for part in shapely.get_parts(shapely.boundary(geom)):
            for line in shapely.get_parts(part):
                lines.append(shapely.get_coordinates(line))
    return lines


def block_mean(a: np.ndarray, max_side: int) -> np.ndarray:
    """NaN-aware mean over k × k blocks so that neither side exceeds ``max_side`` (k = 1: unchanged)."""
    k = int(np.ceil(max(a.shape) / max_side))
    if k <= 1:
        return a
    rows, cols = -(-a.shape[0] // k) * k, -(-a.shape[1] // k) * k
    padded = np.full((rows, cols), np.nan, dtype=np.float32)
    padded[: a.shape[0], : a.shape[1]] = a
    blocks = padded.reshape(rows // k, k, cols // k, k)
    finite = np.isfinite(blocks)
    count = finite.sum(axis=(1, 3))
    total = np.where(finite, blocks, 0.0).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def write_png(
    path: str | Path,
    grid: GridSpec,
    array: np.ndarray,
    *,
    title: str,
    label: str = "",
    cmap: str = "viridis",
    outlines: bool = True,
    dpi: int = 120,
    max_side: int = 1400,
) -> Path:
    """Draw ``array`` ([rows, cols], NaN = no data) on ``grid`` with state outlines and a colour bar.

    Arrays longer than ``max_side`` cells on a side are first averaged in blocks (NaN-aware), since the
    figure has about that many pixels anyway.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    w, s, e, n = grid.bbox
    aspect = 1.0
    if grid.is_geographic:
        aspect = 1.0 / max(0.2, math.cos(math.radians((s + n) / 2)))
    height_ratio = (n - s) * aspect / (e - w)
    fig = Figure(figsize=(9, max(2.5, min(9, 9 * height_ratio + 1.0))), dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    data = np.ma.masked_invalid(block_mean(np.asarray(array, dtype=np.float32), max_side))
    finite = data.compressed()
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmax = vmin + 1.0
    ax.set_facecolor("#e8e8e8")
    im = ax.imshow(data, extent=(w, e, s, n), origin="upper", cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest", aspect=aspect)
    if outlines:
        lines = _state_lines(grid.crs)
        if lines:
            ax.add_collection(LineCollection(lines, colors="0.3", linewidths=0.35, zorder=3))
    ax.set_xlim(w, e)
    ax.set_ylim(s, n)
    ax.set_title(title)
    if grid.is_geographic:
        ax.set_xlabel("longitude (°)")
        ax.set_ylabel("latitude (°)")
    else:
        ax.set_xlabel(f"x ({grid.crs})")
        ax.set_ylabel("y")
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    if label:
        cb.set_label(label)
    fig.savefig(str(path), format="png", bbox_inches="tight")
    return Path(path)
