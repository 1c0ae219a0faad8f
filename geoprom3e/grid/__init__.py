"""Grids: specs, presets, land masks and cell <-> coordinate maths.

>>> from geoprom3e.grid import get_grid
>>> g = get_grid("usa-250x500")
>>> g.shape, g.cell_of([40.0], [-100.0])
((250, 500), (array([95]), array([213])))
"""

from geoprom3e.grid.mask import conus_outline, grid_mask, grids_dir, read_geojson_geometry, to_grid_crs
from geoprom3e.grid.presets import ensure_fits_in_memory, get_grid, grid_from_options, list_grids, load_grid_file
from geoprom3e.grid.report import grid_report
from geoprom3e.grid.spec import MAX_CELLS, GridSpec

__all__ = [
    "MAX_CELLS",
    "GridSpec",
    "conus_outline",
    "ensure_fits_in_memory",
    "get_grid",
    "grid_from_options",
    "grid_mask",
    "grid_report",
    "grids_dir",
    "list_grids",
    "load_grid_file",
    "read_geojson_geometry",
    "to_grid_crs",
]
