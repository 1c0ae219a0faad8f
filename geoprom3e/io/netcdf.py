"""CF-1.8 NetCDF writer whose grid mapping GDAL, QGIS and rioxarray all read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from geoprom3e._version import __version__
from geoprom3e.grid.spec import GridSpec
from geoprom3e.io.layers import NODATA, LayerInfo, check_layers

#: Name of the cell-area layer that data variables point to with ``cell_measures`` (CF 7.2) when present.
CELL_AREA = "cell_area_km2"

#: Projected grids get 2-D lat/lon auxiliary coordinates up to this many cells (CF recommends them; on
#: larger grids they would dominate the file, and the grid mapping alone fixes every cell's position).
AUX_LATLON_MAX_CELLS = 4_000_000


def build_dataset(
    grid: GridSpec,
    layers: Mapping[str, np.ndarray],
    *,
    info: Mapping[str, LayerInfo] | None = None,
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """An xarray Dataset of ``layers`` on ``grid`` with CF coordinates and a ``spatial_ref`` grid mapping."""
    import rioxarray  # noqa: F401  (registers .rio)

    arrays = check_layers(grid.shape, layers)
    info = info or {}
    x, y = grid.cell_centers_xy()
    dx, dy = grid.res
    w, _, _, n = grid.bbox
    x_edges = w + np.arange(grid.cols + 1, dtype=np.float64) * dx
    y_edges = n - np.arange(grid.rows + 1, dtype=np.float64) * dy
    if grid.is_geographic and grid.epsg == 4326:
        dims = ("lat", "lon")
        coords = {
            "lat": ("lat", y, {"standard_name": "latitude", "long_name": "latitude of cell centre",
                               "units": "degrees_north", "axis": "Y"}),
            "lon": ("lon", x, {"standard_name": "longitude", "long_name": "longitude of cell centre",
                               "units": "degrees_east", "axis": "X"}),
        }
    else:
        unit = grid.crs_obj.axis_info[0].unit_name if grid.crs_obj.axis_info else "m"
        units = "m" if unit in ("metre", "meter") else unit
        dims = ("y", "x")
        coords = {
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "long_name": "y of cell centre",
                           "units": units, "axis": "Y"}),
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "long_name": "x of cell centre",
                           "units": units, "axis": "X"}),
        }
        if grid.n_cells <= AUX_LATLON_MAX_CELLS:
            lat, lon = grid.cell_centers()
            coords["lat"] = (dims, lat.astype(np.float32), {"standard_name": "latitude", "units": "degrees_north"})
            coords["lon"] = (dims, lon.astype(np.float32), {"standard_name": "longitude", "units": "degrees_east"})
    for dim in dims:
        coords[dim][2]["bounds"] = f"{dim}_bnds"
    data_vars = {}
    for name, arr in arrays.items():
        li = info.get(name, LayerInfo())
        a = {"long_name": li.long_name or name, "units": li.units}
        if li.description:
            a["comment"] = li.description
        if name == CELL_AREA:
            a["standard_name"] = "cell_area"
            a["units"] = "km2" if li.units in ("", "1") else li.units
        elif CELL_AREA in arrays:
            a["cell_measures"] = f"area: {CELL_AREA}"
        data_vars[name] = (dims, arr, a)
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({
        "Conventions": "CF-1.8",
        "title": f"geoprom3e maps on grid {grid.name}",
        "source": f"geoprom3e {__version__}",
        "history": f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} "
                   f"created by geoprom3e {__version__}",
        "grid_name": grid.name,
    })
    for k, v in (attrs or {}).items():
        ds.attrs[str(k)] = v if isinstance(v, (int, float, str)) else str(v)
    ds = ds.rio.write_crs(grid.crs, grid_mapping_name="spatial_ref")
    ds = ds.rio.write_transform(grid.transform, grid_mapping_name="spatial_ref")
    ds = ds.rio.write_coordinate_system()
    for dim, edges in zip(dims, (y_edges, x_edges)):  # CF 7.1 cell boundaries, (n, 2) per axis
        ds[f"{dim}_bnds"] = ((dim, "nv"), np.stack([edges[:-1], edges[1:]], axis=1))
    return ds


def write_netcdf(
    path: str | Path,
    grid: GridSpec,
    layers: Mapping[str, np.ndarray],
    *,
    info: Mapping[str, LayerInfo] | None = None,
    attrs: Mapping[str, object] | None = None,
    nodata: float = NODATA,
    complevel: int = 4,
) -> Path:
    """Write ``layers`` as CF-1.8 NetCDF-4 at ``path`` (not atomic: see write_maps).

    Each variable gets ``long_name``, ``units``, ``_FillValue`` = ``nodata``, ``grid_mapping`` and zlib
    compression; the axes get ``*_bnds`` cell boundaries, and when a ``cell_area_km2`` layer is among ``layers``
    the other variables name it in ``cell_measures = "area: cell_area_km2"``.

    Encodings are merged into what rioxarray set (``grid_mapping``), never replaced.
    """
    ds = build_dataset(grid, layers, info=info, attrs=attrs)
    encoding = {}
    for name in ds.data_vars:
        if name.endswith("_bnds"):
            encoding[name] = {"_FillValue": None}
            continue
        enc = dict(ds[name].encoding)  # keeps rioxarray's grid_mapping
        enc.update({"zlib": True, "complevel": complevel, "_FillValue": np.float32(nodata), "dtype": "float32",
                    "chunksizes": (min(grid.rows, 256), min(grid.cols, 256))})
        encoding[name] = enc
    for name in ds.coords:
        if name != "spatial_ref":
            encoding[name] = {**ds[name].encoding, "_FillValue": None}
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=encoding)
    return Path(path)
