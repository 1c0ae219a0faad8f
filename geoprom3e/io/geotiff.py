"""Cloud-Optimized GeoTIFF writer: one named float32 band per layer, nodata, tags, internal overviews."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from geoprom3e.grid.spec import GridSpec
from geoprom3e.io.layers import NODATA, LayerInfo, check_layers


def write_cog(
    path: str | Path,
    grid: GridSpec,
    layers: Mapping[str, np.ndarray],
    *,
    info: Mapping[str, LayerInfo] | None = None,
    tags: Mapping[str, object] | None = None,
    nodata: float = NODATA,
    compress: str = "DEFLATE",
    blocksize: int = 256,
) -> Path:
    """Write ``layers`` (name → [rows, cols], NaN = no data) as a COG at ``path`` (not atomic: see write_maps).

    Bands follow the order of ``layers``; each band's description is its name, and its tags hold
    ``long_name`` and ``units``. ``tags`` become dataset tags (values turned into strings).
    """
    arrays = check_layers(grid.shape, layers)
    info = info or {}
    profile = {
        "driver": "GTiff", "height": grid.rows, "width": grid.cols, "count": len(arrays), "dtype": "float32",
        "crs": rasterio.crs.CRS.from_user_input(grid.crs), "transform": grid.transform, "nodata": nodata,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            for i, (name, arr) in enumerate(arrays.items(), start=1):
                ds.write(np.where(np.isnan(arr), np.float32(nodata), arr), i)
                ds.set_band_description(i, name)
                li = info.get(name, LayerInfo())
                ds.update_tags(i, name=name, long_name=li.long_name or name, units=li.units)
                ds.set_band_unit(i, li.units)  # GDAL's unit type: what QGIS shows
            ds.update_tags(**{str(k): _tag(v) for k, v in (tags or {}).items()})
        with mem.open() as src:
            rasterio.shutil.copy(
                src, str(path), driver="COG", compress=compress, blocksize=blocksize, predictor="YES",
                overview_resampling="AVERAGE", BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
            )
    return Path(path)


def _tag(value: object) -> str:
    if isinstance(value, (dict, list, tuple)):
        import json

        return json.dumps(value, default=str)
    return str(value)
