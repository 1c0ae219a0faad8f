"""Land masks: which cells' centres lie inside an outline (the contiguous USA by default)."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from pyproj import Transformer

from geoprom3e.errors import GridError

if TYPE_CHECKING:
    from geoprom3e.grid.spec import GridSpec

log = logging.getLogger(__name__)

CONUS_OUTLINE = "conus_outline_census2017_1to10m.geojson"
CONUS_STATES = "conus_states_census2017_1to10m.geojson"


def grids_dir() -> Path:
    """Folder with grid presets and boundaries: ``$GEOPROM3E_GRIDS_DIR``, else the bundled ``grids``."""
    from geoprom3e.resources import data_dir

    return data_dir("grids")


def read_geojson_geometry(path: str | Path) -> shapely.Geometry:
    """Union of all (multi)polygons in a GeoJSON file (lon/lat, as RFC 7946 requires), made valid."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GridError(f"mask file {str(path)!r} does not exist: pass an existing GeoJSON/GeoTIFF to --mask") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"mask file {str(path)!r} is not GeoJSON ({exc}): pass a GeoJSON or GeoTIFF to --mask"
        raise GridError(msg) from None
    if doc.get("type") == "FeatureCollection":
        geoms = [f.get("geometry") for f in doc.get("features", [])]
    elif doc.get("type") == "Feature":
        geoms = [doc.get("geometry")]
    else:
        geoms = [doc]
    polys = []
    for g in geoms:
        if not g:
            continue
        geom = shapely.geometry.shape(g)
        if geom.geom_type in ("Polygon", "MultiPolygon", "GeometryCollection"):
            polys.append(shapely.make_valid(geom))
    if not polys:
        raise GridError(f"mask file {str(path)!r} holds no polygons: pass a GeoJSON with Polygon/MultiPolygon features")
    return shapely.union_all(polys)


def conus_outline() -> shapely.Geometry:
    """The contiguous-US outline (Census 2017 1:10M via us-atlas, see ``grids/PROVENANCE.md``)."""
    return _cached_geojson(str(grids_dir() / CONUS_OUTLINE))


@functools.lru_cache(maxsize=8)
def _cached_geojson(path: str) -> shapely.Geometry:
    return read_geojson_geometry(path)


def to_grid_crs(geom: shapely.Geometry, crs: str, densify_deg: float = 0.05) -> shapely.Geometry:
    """Reproject a lon/lat geometry into ``crs`` (edges densified first so they bend like the projection)."""
    from pyproj import CRS

    target = CRS.from_user_input(crs)
    if target.to_epsg() == 4326:
        return geom
    tr = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    dense = shapely.segmentize(geom, densify_deg)
    return shapely.transform(dense, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def grid_mask(grid: GridSpec) -> np.ndarray:
    """Boolean [rows, cols], True where the cell centre lies inside ``grid.mask_source`` (a copy; cached internally)."""
    return _grid_mask(grid.crs, grid.bbox, grid.shape, grid.mask_source).copy()


@functools.lru_cache(maxsize=8)
def _grid_mask(crs: str, bbox: tuple, shape: tuple, source: str) -> np.ndarray:
    from geoprom3e.grid.spec import GridSpec

    grid = GridSpec("mask", crs, bbox, shape, mask_source=source)
    if source == "none":
        return np.ones(shape, dtype=bool)
    if source == "conus":
        geom = conus_outline()
    else:
        path = Path(source)
        if path.suffix.lower() in (".tif", ".tiff", ".vrt", ".nc"):
            return _raster_mask(path, grid)
        geom = read_geojson_geometry(path)
    geom = to_grid_crs(geom, crs)
    return _rasterize_centres(geom, grid)


def _rasterize_centres(geom: shapely.Geometry, grid: GridSpec) -> np.ndarray:
    """GDAL's default rasterize rule burns a cell when its centre lies inside: exactly the mask definition."""
    from rasterio.features import rasterize

    out = rasterize(
        [(geom, 1)], out_shape=grid.shape, transform=grid.transform, fill=0, all_touched=False, dtype="uint8"
    )
    log.info("mask %s on %s: %d of %d cells inside", grid.mask_source, grid.shape, int(out.sum()), grid.n_cells)
    return out.astype(bool)


def _raster_mask(path: Path, grid: GridSpec) -> np.ndarray:
    """Nearest-neighbour sample of a raster (non-zero, non-nodata = inside) at the grid's cell centres."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    if not path.exists():
        raise GridError(f"mask file {str(path)!r} does not exist: pass an existing GeoJSON/GeoTIFF to --mask")
    with rasterio.open(path) as src:
        data = src.read(1, masked=True).filled(0)
        out = np.zeros(grid.shape, dtype=np.float32)
        reproject(
            data.astype(np.float32), out, src_transform=src.transform, src_crs=src.crs,
            dst_transform=grid.transform, dst_crs=grid.crs, resampling=Resampling.nearest, dst_nodata=0,
        )
    return out != 0
