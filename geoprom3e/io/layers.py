"""How a named map layer is described in every output format (long name, units, colour map)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from geoprom3e.errors import OutputError

#: Value written for "no data" in GeoTIFF and NetCDF outputs (NaN in memory).
NODATA = -9999.0


@dataclass(frozen=True)
class LayerInfo:
    """Metadata of one named layer."""

    long_name: str = ""
    """Human-readable name (NetCDF ``long_name``, GeoTIFF band tag, PNG title)."""
    units: str = "1"
    """UDUNITS string (``1`` for dimensionless, ``count`` for counts)."""
    cmap: str = "viridis"
    """Matplotlib colour map for the PNG quicklook and the QGIS style."""
    description: str = ""
    """Longer note written as the NetCDF ``comment`` and a GeoTIFF band tag."""


def check_layers(grid_shape: tuple[int, int], layers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate names and shapes; return float32 arrays (views when already float32) with NaN as no-data."""
    if not layers:
        raise OutputError("no layers to write: pass at least one named [rows, cols] array")
    out = {}
    for name, arr in layers.items():
        if not name or not name.replace("_", "").isalnum() or name[0].isdigit():
            raise OutputError(f"layer name {name!r} must be letters, digits and '_' (not leading digit): rename it")
        a = np.asarray(arr)
        if a.shape != tuple(grid_shape):
            raise OutputError(f"layer {name!r} has shape {a.shape}, the grid is {tuple(grid_shape)}: pass [rows, cols]")
        out[name] = a.astype(np.float32, copy=False)  # writers never modify their inputs
    return out
