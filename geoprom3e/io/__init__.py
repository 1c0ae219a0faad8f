"""Writers and readers: atomic files, rasters (GeoTIFF/NetCDF/PNG), manifests, observation tables.

``write_maps(out_dir, grid, {name: array}, ...)`` writes any set of named [rows, cols] layers on any
:class:`~geoprom3e.grid.GridSpec` as a COG (+ QGIS ``.qml``), CF-1.8 NetCDF, PNG quicklooks and a manifest.
Names are imported lazily, so ``geoprom3e.io.atomic`` stays cheap to import.
"""

from __future__ import annotations

from geoprom3e._lazy import lazy_exports

_EXPORTS = {
    "NODATA": "geoprom3e.io.layers",
    "LayerInfo": "geoprom3e.io.layers",
    "MapOutputs": "geoprom3e.io.maps",
    "build_dataset": "geoprom3e.io.netcdf",
    "build_manifest": "geoprom3e.io.manifest",
    "check_outputs": "geoprom3e.io.maps",
    "describe_inputs": "geoprom3e.io.manifest",
    "plan_outputs": "geoprom3e.io.maps",
    "qml_style": "geoprom3e.io.qml",
    "sha256_file": "geoprom3e.io.manifest",
    "versions": "geoprom3e.io.manifest",
    "write_cog": "geoprom3e.io.geotiff",
    "write_maps": "geoprom3e.io.maps",
    "write_netcdf": "geoprom3e.io.netcdf",
    "write_png": "geoprom3e.io.quicklook",
    "ColumnOverrides": "geoprom3e.io.observations",
    "ObservationFilter": "geoprom3e.io.observations",
    "ObservationReader": "geoprom3e.io.observations",
    "ReadOptions": "geoprom3e.io.observations",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
