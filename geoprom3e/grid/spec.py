"""``GridSpec``: a regular raster grid (CRS, bbox, shape, mask source) and its cell <-> coordinate maths."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer

from geoprom3e.errors import GridError

#: Hard ceiling on cells per grid (int32 flat indices stay valid below it); memory is checked separately.
MAX_CELLS = 2**31 - 1


@dataclass(frozen=True)
class GridSpec:
    """A north-up regular grid: row 0 at the north edge, column 0 at the west edge.

    Cell ``(r, c)`` spans ``[W + c·dx, W + (c+1)·dx] × [N − (r+1)·dy, N − r·dy]`` in the grid's CRS, with
    ``dx = (E − W) / cols`` and ``dy = (N − S) / rows``.
    """

    name: str
    """Preset or user name, written into every output's metadata."""
    crs: str
    """CRS as a user string (``"EPSG:4326"``, ``"EPSG:5070"``, WKT or PROJ)."""
    bbox: tuple[float, float, float, float]
    """(W, S, E, N) edges of the outer cells, in CRS units (degrees for EPSG:4326)."""
    shape: tuple[int, int]
    """(rows, cols)."""
    mask_source: str = "conus"
    """Land mask source: ``"conus"`` (the bundled contiguous-US outline), ``"none"``, or a GeoJSON/raster path."""
    description: str = field(default="", compare=False)
    """Free text shown by ``geoprom3e grids show``."""

    def __post_init__(self) -> None:
        try:
            bbox = tuple(float(v) for v in self.bbox)
            shape = tuple(int(v) for v in self.shape)
        except (TypeError, ValueError):
            raise GridError(
                f"grid {self.name!r}: bbox {self.bbox!r} / shape {self.shape!r} must be 4 numbers / 2 integers"
            ) from None
        if len(bbox) != 4 or len(shape) != 2:
            raise GridError(f"grid {self.name!r}: bbox needs 4 numbers (W S E N) and shape 2 (rows cols), got "
                            f"{self.bbox!r} and {self.shape!r}")
        object.__setattr__(self, "bbox", bbox)
        object.__setattr__(self, "shape", shape)
        w, s, e, n = bbox
        if not all(math.isfinite(v) for v in bbox):
            raise GridError(f"bbox (W, S, E, N) = {_fmt(bbox)}: all four values must be finite numbers")
        if not w < e:
            raise GridError(f"bbox (W, S, E, N) = {_fmt(bbox)}: west must be < east (pass --bbox W S E N)")
        if not s < n:
            raise GridError(f"bbox (W, S, E, N) = {_fmt(bbox)}: south must be < north (pass --bbox W S E N)")
        if shape[0] < 1 or shape[1] < 1:
            raise GridError(f"grid {self.name!r}: shape {shape} must be at least 1 × 1 (rows cols)")
        if shape[0] * shape[1] > MAX_CELLS:
            raise GridError(
                f"grid {self.name!r} has {shape[0]} × {shape[1]} = {shape[0] * shape[1]:,} cells, more than "
                f"{MAX_CELLS:,}: use a coarser --res or --shape, or a --bbox subset"
            )
        crs = self.crs_obj  # validates
        if crs.is_geographic and (s < -90 or n > 90 or w < -180 or e > 360):
            raise GridError(
                f"bbox (W, S, E, N) = {_fmt(bbox)} is outside lon −180..360 / lat −90..90 for {self.crs}: "
                "check the order W S E N"
            )

    # -- basic geometry -----------------------------------------------------------------------------------
    @functools.cached_property
    def crs_obj(self) -> CRS:
        """The CRS as a ``pyproj.CRS``."""
        try:
            return CRS.from_user_input(self.crs)
        except Exception:  # pyproj raises CRSError with a long message
            raise GridError(f"CRS {self.crs!r} is not recognised: pass e.g. --crs EPSG:4326 or EPSG:5070") from None

    @property
    def rows(self) -> int:
        """Number of rows."""
        return self.shape[0]

    @property
    def cols(self) -> int:
        """Number of columns."""
        return self.shape[1]

    @property
    def n_cells(self) -> int:
        """Rows × cols."""
        return self.shape[0] * self.shape[1]

    @property
    def res(self) -> tuple[float, float]:
        """(dx, dy) cell size in CRS units, both positive."""
        w, s, e, n = self.bbox
        return (e - w) / self.cols, (n - s) / self.rows

    @property
    def transform(self) -> Affine:
        """Affine transform from (col, row) to (x, y) of the cell's upper-left corner (GDAL convention)."""
        w, _, _, n = self.bbox
        dx, dy = self.res
        return Affine(dx, 0.0, w, 0.0, -dy, n)

    @property
    def is_geographic(self) -> bool:
        """True when the CRS is in degrees (lat/lon)."""
        return bool(self.crs_obj.is_geographic)

    @property
    def epsg(self) -> int | None:
        """EPSG code of the CRS, or None."""
        return self.crs_obj.to_epsg()

    # -- coordinates --------------------------------------------------------------------------------------
    def cell_centers_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """1-D centre coordinates in the grid's CRS: ``x`` [cols] (west → east), ``y`` [rows] (north → south)."""
        w, _, _, n = self.bbox
        dx, dy = self.res
        x = w + (np.arange(self.cols, dtype=np.float64) + 0.5) * dx
        y = n - (np.arange(self.rows, dtype=np.float64) + 0.5) * dy
        return x, y

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre (lat, lon) in degrees (EPSG:4326), each a float64 [rows, cols] array."""
        x, y = self.cell_centers_xy()
        xx, yy = np.meshgrid(x, y)
        if self._is_lonlat():
            return yy, xx
        lon, lat = _to_lonlat(self.crs).transform(xx, yy)
        return np.asarray(lat), np.asarray(lon)

    def cell_of(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column (int64) of the cells holding points given in degrees; −1 for points outside the bbox.

        Points are reprojected to the grid's CRS first. Cell edges belong to the cell to their south/east
        (``r = floor((N − y) / dy)``, ``c = floor((x − W) / dx)``), so the north and west edges are inside
        and the south and east edges outside.
        """
        x, y = self.project(lat, lon)
        w, _, _, n = self.bbox
        dx, dy = self.res
        with np.errstate(invalid="ignore"):
            r = np.floor((n - y) / dy)
            c = np.floor((x - w) / dx)
            ok = (r >= 0) & (r < self.rows) & (c >= 0) & (c < self.cols)
        r = np.where(ok, r, -1).astype(np.int64)
        c = np.where(ok, c, -1).astype(np.int64)
        return r, c

    def flat_index_of(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Flat cell index ``r · cols + c`` (int64) of each point; −1 outside the bbox."""
        r, c = self.cell_of(lat, lon)
        return np.where(r >= 0, r * self.cols + c, -1)

    def project(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) in the grid's CRS of points given in degrees (lat, lon order, as everywhere in geoprom3e)."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if self._is_lonlat():
            return lon, lat
        x, y = _from_lonlat(self.crs).transform(lon, lat)
        return np.asarray(x), np.asarray(y)

    def cell_size_km(self) -> tuple[float, float]:
        """(east–west, north–south) size in km of the cell at the grid's centre."""
        dx, dy = self.res
        if not self.is_geographic:
            factor = self.crs_obj.axis_info[0].unit_conversion_factor / 1000.0
            return dx * factor, dy * factor
        w, s, e, n = self.bbox
        lat0 = math.radians((s + n) / 2)
        km_per_deg = 111.32  # WGS84 equatorial degree; good to < 0.5 % for a size readout
        return dx * km_per_deg * math.cos(lat0), dy * 110.95

    # -- masks and subsets --------------------------------------------------------------------------------
    def mask(self) -> np.ndarray:
        """Boolean [rows, cols]: True where the cell's centre lies inside the mask outline (cached)."""
        from geoprom3e.grid.mask import grid_mask

        return grid_mask(self)

    def subset(self, bbox: tuple[float, float, float, float], name: str | None = None) -> GridSpec:
        """The cells of this grid whose centres fall inside ``bbox`` (W, S, E, N in this grid's CRS)."""
        sub = GridSpec("bbox", self.crs, bbox, (1, 1), mask_source="none")  # validates the bbox
        w0, s0, e0, n0 = sub.bbox
        W, _, _, N = self.bbox
        dx, dy = self.res
        c0 = max(0, math.ceil((w0 - W) / dx - 0.5))
        c1 = min(self.cols - 1, math.floor((e0 - W) / dx - 0.5))
        r0 = max(0, math.ceil((N - n0) / dy - 0.5))
        r1 = min(self.rows - 1, math.floor((N - s0) / dy - 0.5))
        if c1 < c0 or r1 < r0:
            raise GridError(
                f"bbox (W, S, E, N) = {_fmt(sub.bbox)} holds no cell centre of grid {self.name!r} "
                f"(bbox {_fmt(self.bbox)}): widen the --bbox"
            )
        new_bbox = tuple(round(v, 9) for v in (W + c0 * dx, N - (r1 + 1) * dy, W + (c1 + 1) * dx, N - r0 * dy))
        return GridSpec(
            name or f"{self.name}[{','.join(exact_number(v) for v in sub.bbox)}]",
            self.crs,
            new_bbox,
            (r1 - r0 + 1, c1 - c0 + 1),
            mask_source=self.mask_source,
            description=f"subset of {self.name}",
        )

    def window_in(self, parent: GridSpec) -> tuple[int, int]:
        """(row0, col0) of this grid's cells inside ``parent``, compared by geometry (never by name).

        Raises :class:`GridError` unless both grids share the CRS and cell size, this grid's origin lies on
        ``parent``'s cell edges and all its cells are inside ``parent``.
        """
        where = (f"the cache's grid {parent.name!r} (bbox {_fmt(parent.bbox)}, {parent.crs}, "
                 f"{parent.rows} × {parent.cols})")
        if self.crs_obj != parent.crs_obj:
            raise GridError(f"grid {self.name!r} is in {self.crs}, not a window of {where}: use a grid in that CRS")
        (dx, dy), (pdx, pdy) = self.res, parent.res
        if not (math.isclose(dx, pdx, rel_tol=1e-9) and math.isclose(dy, pdy, rel_tol=1e-9)):
            raise GridError(f"grid {self.name!r} has cells of {dx:.9g} × {dy:.9g}, not a window of {where} "
                            f"(cells {pdx:.9g} × {pdy:.9g}): map it from a cache built for this grid")
        fc = (self.bbox[0] - parent.bbox[0]) / pdx
        fr = (parent.bbox[3] - self.bbox[3]) / pdy
        c0, r0 = round(fc), round(fr)
        if abs(fc - c0) > 1e-6 or abs(fr - r0) > 1e-6:
            raise GridError(f"grid {self.name!r} (bbox {_fmt(self.bbox)}) is not aligned to the cells of {where}: "
                            "pass a --bbox of that grid (cells whose centres fall inside are used)")
        if r0 < 0 or c0 < 0 or r0 + self.rows > parent.rows or c0 + self.cols > parent.cols:
            raise GridError(f"grid {self.name!r} (bbox {_fmt(self.bbox)}) reaches outside {where}: "
                            "pass a --bbox inside it, or embed the larger area into another --cache")
        return r0, c0

    # -- (de)serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) with the same keys a grid file uses."""
        d = asdict(self)
        d["mask"] = d.pop("mask_source")
        d["bbox"] = list(self.bbox)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GridSpec:
        """Build from a dict with keys name, crs, bbox, shape and optional mask, description."""
        missing = [k for k in ("name", "crs", "bbox", "shape") if k not in d]
        if missing:
            raise GridError(f"grid definition lacks {', '.join(missing)} (has {', '.join(sorted(d))}): add them")
        unknown = sorted(set(d) - {"name", "crs", "bbox", "shape", "mask", "description"})
        if unknown:
            raise GridError(f"grid definition has unknown keys {', '.join(unknown)}: remove them")
        return cls(
            name=str(d["name"]),
            crs=str(d["crs"]),
            bbox=tuple(d["bbox"]),
            shape=tuple(d["shape"]),
            mask_source=str(d.get("mask", "conus")),
            description=str(d.get("description", "")),
        )

    def _is_lonlat(self) -> bool:
        return self.epsg == 4326


@functools.lru_cache(maxsize=16)
def _from_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


@functools.lru_cache(maxsize=16)
def _to_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def exact_number(v: float) -> str:
    """Shortest text that reads back as exactly ``v``, without exponents: ``-2038000``, ``-106.2``."""
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    text = repr(float(v))
    if "e" in text or "E" in text:
        text = np.format_float_positional(float(v), unique=True, trim="-")
    return text


def path_safe(name: str, fallback: str = "grid") -> str:
    """``name`` as one safe path component: letters, digits, ``-_.,[]`` kept, others ``_``; never ``.``/``..``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_.,[]" else "_" for ch in str(name)).lstrip(".")
    return safe[:120] or fallback


def _fmt(bbox: tuple[float, ...], sep: str = ", ") -> str:
    inner = sep.join(f"{v:g}" for v in bbox)
    return inner if sep == "," else f"({inner})"
