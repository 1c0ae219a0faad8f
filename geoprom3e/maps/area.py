"""Area of each grid cell in km², so maps of counts can be compared between cells of different size.

On a lat/lon grid a cell's area shrinks with latitude (on usa-250x500 by ≈ 1.40× from 24.5° N to 49.5° N),
which biases north–south comparisons of richness. Three cases, named in :attr:`CellArea.method`:

- geographic CRS: the exact area of the lat/lon rectangle on the CRS's ellipsoid (authalic-latitude formula,
  a sphere when the flattening is 0); it depends on the row only;
- equal-area projected CRS (Albers, Lambert azimuthal, Equal Earth, ...): the constant ``dx · dy``;
- other projected CRSs: ``dx · dy`` divided by the projection's areal scale factor at the cell centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoprom3e.grid.spec import GridSpec

_EQUAL_AREA = ("equal area", "equal-area", "equal earth", "mollweide", "sinusoidal", "eckert iv", "eckert vi")


@dataclass(frozen=True)
class CellArea:
    """Cell areas of a grid and how they were computed."""

    km2: np.ndarray
    """float64 [rows, cols], km² per cell (every cell, masked or not); a read-only broadcast view when the area
    depends on the row only or is constant (copy it before writing into it)."""
    method: str
    """``ellipsoidal (exact, <ellipsoid>)``, ``spherical (exact, R = … m)``, ``constant (equal-area CRS)``
    or ``projected (areal scale factor at cell centres)``."""


def ellipsoid_band_area_km2(lat_south: np.ndarray, lat_north: np.ndarray, dlon_deg: float, a: float,
                            f: float) -> np.ndarray:
    """Area (km²) of lat/lon rectangles ``dlon_deg`` wide between two latitudes on an ellipsoid (a in metres).

    ``A = b² Δλ / 2 · [q(φ₂) − q(φ₁)]``, ``q(φ) = sin φ / (1 − e² sin² φ) + artanh(e sin φ) / e`` (the sphere's
    ``R² Δλ (sin φ₂ − sin φ₁)`` when f = 0).
    """
    s1 = np.sin(np.radians(np.asarray(lat_south, dtype=np.float64)))
    s2 = np.sin(np.radians(np.asarray(lat_north, dtype=np.float64)))
    dlon = np.radians(dlon_deg)
    if f == 0:
        return a * a * dlon * (s2 - s1) / 1e6
    e2 = f * (2 - f)
    e = np.sqrt(e2)
    b2 = (a * (1 - f)) ** 2

    def q(s: np.ndarray) -> np.ndarray:
        return s / (1 - e2 * s * s) + np.arctanh(e * s) / e

    return b2 * dlon / 2 * (q(s2) - q(s1)) / 1e6


def cell_area_method(grid: GridSpec) -> str:
    """How :func:`cell_area` computes the areas of ``grid`` (without computing them)."""
    crs = grid.crs_obj
    if grid.is_geographic:
        ell = crs.ellipsoid
        if ell.inverse_flattening:
            return f"ellipsoidal (exact, {ell.name})"
        return f"spherical (exact, R = {float(ell.semi_major_metre):.0f} m)"
    op = crs.coordinate_operation
    name = op.method_name if op is not None else ""
    if any(k in name.lower() for k in _EQUAL_AREA):
        return f"constant (equal-area CRS: {name})"
    return "projected (areal scale factor at cell centres)"


def cell_area(grid: GridSpec, rows_per_block: int = 256) -> CellArea:
    """Area in km² of every cell of ``grid`` (see the module notes for the method per CRS)."""
    crs = grid.crs_obj
    dx, dy = grid.res
    w, s, e, n = grid.bbox
    if grid.is_geographic:
        ell = crs.ellipsoid
        a, f = float(ell.semi_major_metre), 1.0 / float(ell.inverse_flattening) if ell.inverse_flattening else 0.0
        edges = n - np.arange(grid.rows + 1, dtype=np.float64) * dy
        per_row = ellipsoid_band_area_km2(edges[1:], edges[:-1], dx, a, f)
        return CellArea(np.broadcast_to(per_row[:, None], grid.shape), cell_area_method(grid))
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    nominal = dx * dy * unit * unit / 1e6
    method = cell_area_method(grid)
    if method.startswith("constant"):
        return CellArea(np.broadcast_to(np.float64(nominal), grid.shape), method)
    from pyproj import Proj

    proj = Proj(crs)
    x, y = grid.cell_centers_xy()
    out = np.empty(grid.shape)
    for r0 in range(0, grid.rows, rows_per_block):
        yy, xx = np.meshgrid(y[r0:r0 + rows_per_block], x, indexing="ij")
        lon, lat = proj(xx, yy, inverse=True)
        out[r0:r0 + rows_per_block] = nominal / proj.get_factors(lon, lat).areal_scale
    return CellArea(out, method)
