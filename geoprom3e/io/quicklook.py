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
) -> Path:
    """Draw ``array`` ([rows, cols], NaN = no data) on ``grid`` with state outlines and a colour bar."""
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
    data = np.ma.masked_invalid(np.asarray(array, dtype=np.float32))
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
