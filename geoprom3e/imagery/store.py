"""The resumable Zarr chip store: layout, creation, block writes, failure list and contact sheet.

Layout (``xarray.open_zarr(path)``): dims ``cell, band, y, x``; ``chips[cell, band, y, x]``; per cell ``cell_id``,
``lat``, ``lon``, ``item_id``, ``datetime``, ``cloud_cover``, ``cloud_fraction``, ``status`` (CF flags, see
:data:`~geoprom3e.imagery.block.STATUS_NAMES`) and ``reason``. Cells are stored in spatial-block order (the fetch
searches once per block); find a cell by ``cell_id``. ``status`` is written after the chips of a block, so a run
killed mid-block redoes that block on resume.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from pathlib import Path

import numpy as np

from geoprom3e._version import __version__
from geoprom3e.errors import CacheError, InputError
from geoprom3e.imagery.block import DONE, FAILED, NO_SCENE, PENDING, STATUS_NAMES, ChipBlock
from geoprom3e.imagery.request import ImageryRequest
from geoprom3e.io.atomic import atomic_dir

_PER_CELL_STR = ("item_id", "datetime", "reason")


def spatial_order(lats: np.ndarray, lons: np.ndarray, tile_deg: float = 1.0) -> np.ndarray:
    """Permutation that groups cells by ``tile_deg`` tiles (north to south, west to east), so consecutive cells
    share scenes and one search per block finds them all."""
    tr = np.floor((90 - np.asarray(lats)) / tile_deg)
    tc = np.floor((np.asarray(lons) + 180) / tile_deg)
    return np.lexsort((np.asarray(lons), -np.asarray(lats), tc, tr))


def _chip_chunk(block_size: int) -> int:
    for c in (16, 8, 4, 2, 1):
        if block_size % c == 0:
            return c
    return 1


def create_store(path: str | Path, request: ImageryRequest, cell_ids: np.ndarray, lats: np.ndarray,
                 lons: np.ndarray, block_size: int, attrs: dict | None = None) -> None:
    """Write an empty store (metadata and per-cell variables; no chip data) atomically at ``path``."""
    import numcodecs
    import xarray as xr
    import zarr

    n, nb, size = len(cell_ids), len(request.band_names), request.chip_size
    cc = _chip_chunk(block_size)
    ds = xr.Dataset(
        {
            "item_id": ("cell", np.array([""] * n, dtype=object), {"long_name": "STAC item(s) of the chip"}),
            "datetime": ("cell", np.array([""] * n, dtype=object), {"long_name": "acquisition time"}),
            "reason": ("cell", np.array([""] * n, dtype=object), {"long_name": "why the cell has no chip"}),
            "cloud_cover": ("cell", np.full(n, np.nan, np.float32),
                            {"long_name": "scene eo:cloud_cover", "units": "percent"}),
            "cloud_fraction": ("cell", np.full(n, np.nan, np.float32),
                               {"long_name": "fraction of SCL cloud/shadow/cirrus pixels in the chip", "units": "1"}),
            "status": ("cell", np.zeros(n, np.uint8), {
                "long_name": "chip status", "flag_values": list(range(len(STATUS_NAMES))),
                "flag_meanings": " ".join(STATUS_NAMES)}),
        },
        coords={
            "cell_id": ("cell", np.asarray(cell_ids, np.int64)),
            "lat": ("cell", np.asarray(lats, np.float64), {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("cell", np.asarray(lons, np.float64), {"units": "degrees_east", "standard_name": "longitude"}),
            "band": ("band", np.array(request.band_names, dtype=object)),
        },
        attrs={"title": "geoprom3e Sentinel-2 chip store", "imagery_request": request.to_json(),
               "block_size": int(block_size), "geoprom3e_version": __version__,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(attrs or {})},
    )
    enc = {v: {"chunks": (block_size,)} for v in ("item_id", "datetime", "reason", "cloud_cover",
                                                    "cloud_fraction", "status")}
    with atomic_dir(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp, mode="w", zarr_format=2, encoding=enc, consolidated=False)
        g = zarr.open_group(str(tmp), mode="r+", zarr_format=2)
        # the chips array is created empty (no chunk written until a block lands), not filled with zeros
        chips = g.create_array("chips", shape=(n, nb, size, size), chunks=(cc, nb, size, size), dtype=request.dtype,
                               fill_value=None, compressors=numcodecs.Blosc(cname="zstd", clevel=3))
        chips.attrs.update({"_ARRAY_DIMENSIONS": ["cell", "band", "y", "x"], "assets": ",".join(request.assets),
                            "long_name": "Sentinel-2 chip centred on the cell"})
        zarr.consolidate_metadata(str(tmp), zarr_format=2)


class ChipStore:
    """An open chip store: check it matches a request, find pending cells, write blocks."""

    def __init__(self, path: str | Path) -> None:
        import zarr

        self.path = Path(path)
        try:
            self.group = zarr.open_group(str(self.path), mode="r+", zarr_format=2)
            self.attrs = dict(self.group.attrs)
            self.cell_id = self.group["cell_id"][:]
            self.lat = self.group["lat"][:]
            self.lon = self.group["lon"][:]
        except Exception as exc:
            raise CacheError(f"{str(self.path)!r} is not a geoprom3e chip store ({type(exc).__name__}: {exc}): "
                             "choose another --out or pass --overwrite") from None
        if "imagery_request" not in self.attrs:
            raise CacheError(f"{str(self.path)!r} is a Zarr store but not a chip store: choose another --out")
        self.block_size = int(self.attrs["block_size"])

    @property
    def request(self) -> ImageryRequest:
        """The request the store was built with."""
        return ImageryRequest.from_json(self.attrs["imagery_request"])

    def check_matches(self, request: ImageryRequest, cell_ids: np.ndarray) -> None:
        """Raise :class:`CacheError` when resuming with other settings or other cells."""
        if self.request != request:
            old, new = self.request.__dict__, request.__dict__
            diff = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in old if old[k] != new[k])
            raise CacheError(f"chip store {str(self.path)!r} was built with other settings ({diff}): "
                             "use a new --out or pass --overwrite")
        if len(cell_ids) != len(self.cell_id) or not np.array_equal(np.sort(cell_ids), np.sort(self.cell_id)):
            raise CacheError(f"chip store {str(self.path)!r} holds {len(self.cell_id)} other cells than the "
                             f"{len(cell_ids)} asked for: use a new --out or pass --overwrite")

    def status(self) -> np.ndarray:
        """Current status codes per stored cell."""
        return self.group["status"][:]

    def write_block(self, idx: np.ndarray, block: ChipBlock) -> None:
        """Write a fetched block at stored positions ``idx`` (sorted); ``status`` last."""
        idx = np.asarray(idx)
        g = self.group
        keep = block.status == DONE
        if keep.any():
            g["chips"].set_orthogonal_selection((idx[keep],), block.chips[keep])
        for name in _PER_CELL_STR:
            g[name].set_orthogonal_selection((idx,), np.array(getattr(block, name), dtype=object))
        g["cloud_cover"].set_orthogonal_selection((idx,), block.cloud_cover)
        g["cloud_fraction"].set_orthogonal_selection((idx,), block.cloud_fraction)
        g["status"].set_orthogonal_selection((idx,), block.status)

    def summary(self) -> dict[str, int]:
        """Counts of cells per status name."""
        s = self.status()
        return {name: int(np.sum(s == code)) for code, name in enumerate(STATUS_NAMES)}

    def failures(self) -> list[dict]:
        """Cells that are not done, with their reason."""
        s = self.status()
        bad = np.nonzero(s != DONE)[0]
        if not bad.size:
            return []
        reasons = self.group["reason"].get_orthogonal_selection((bad,))
        return [{"cell_id": int(self.cell_id[i]), "lat": float(self.lat[i]), "lon": float(self.lon[i]),
                 "status": STATUS_NAMES[s[i]], "reason": str(reasons[k]) or ("not fetched yet" if s[i] == PENDING
                                                                              else "")}
                for k, i in enumerate(bad)]


def validate_cells(cell_ids, lats, lons) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays as int64/float64, same length, unique ids; raises :class:`InputError` otherwise."""
    cell_ids = np.asarray(cell_ids).astype(np.int64).ravel()
    lats, lons = np.asarray(lats, float).ravel(), np.asarray(lons, float).ravel()
    if not (len(cell_ids) == len(lats) == len(lons)):
        raise InputError(f"cell_ids ({len(cell_ids)}), lats ({len(lats)}) and lons ({len(lons)}) differ in length")
    if len(cell_ids) == 0:
        raise InputError("no cells to fetch: check --bbox against the grid's extent")
    if len(np.unique(cell_ids)) != len(cell_ids):
        raise InputError("cell ids are not unique: give each cell its own id")
    return cell_ids, lats, lons


__all__ = ["ChipStore", "create_store", "spatial_order", "validate_cells", "DONE", "FAILED", "NO_SCENE", "PENDING"]
