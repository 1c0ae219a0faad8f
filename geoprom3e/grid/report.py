"""A human-readable description of a grid (``geoprom3e grids show``)."""

from __future__ import annotations

from geoprom3e.grid.spec import GridSpec


def grid_report(grid: GridSpec) -> str:
    """Name, CRS, shape, cell size in km at the centre, bbox, transform and masked-in cells, one per line."""
    ew, ns = grid.cell_size_km()
    dx, dy = grid.res
    mask = grid.mask()
    inside = int(mask.sum())
    unit = "°" if grid.is_geographic else " " + (grid.crs_obj.axis_info[0].unit_name if grid.crs_obj.axis_info else "")
    w, s, e, n = grid.bbox
    lines = [
        f"name         {grid.name}",
        f"description  {grid.description or '-'}",
        f"crs          {grid.crs} ({grid.crs_obj.name})",
        f"shape        {grid.rows} rows × {grid.cols} cols = {grid.n_cells:,} cells",
        f"cell size    {dx:g}{unit} × {dy:g}{unit} (east-west × north-south); {ew:.2f} km × {ns:.2f} km at the centre",
        f"bbox         W {w:g}, S {s:g}, E {e:g}, N {n:g}",
        f"transform    {tuple(round(v, 12) for v in grid.transform[:6])}",
        f"mask         {grid.mask_source}: {inside:,} cells inside ({100.0 * inside / grid.n_cells:.1f} %)",
    ]
    return "\n".join(lines)
