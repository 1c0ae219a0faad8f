"""Sentinel-2 chips for grid cells through STAC (Planetary Computer by default, any STAC API or static catalogue).

The flow, per block of cells: ONE search (CQL2-JSON cloud filter, sortby, large pages) -> scenes assigned to cells
locally -> hrefs signed right before each read -> windowed COG reads in each scene's own CRS from a thread pool,
with an SCL cloud check inside the chip and fallback/mosaic to the next scene -> per-cell status and reason.

For the gridding engine (one chunk of cells at a time, no store)::

    from geoprom3e.imagery import ImageryRequest, fetch_chip_block
    block = fetch_chip_block(ImageryRequest(), lats, lons, threads=16)
    block.chips        # [n, 3, 256, 256] uint8 (visual RGB); zeros where status != DONE
    block.status       # [n] uint8: 0 pending, 1 done, 2 failed, 3 no_scene  (STATUS_NAMES)
    block.reason       # "transient: ...", "corrupt: ...", "no_scene: ..." (is_transient(reason): worth a retry)
    block.stats["requests"], block.requests_per_chip   # HTTP requests for COG bytes
    block.reason, block.item_id, block.cloud_fraction, block.cloud_cover, block.datetime

Reuse ``source=open_source(request)``, ``signer=Signer(request.signing)`` and a ``ThreadPoolExecutor`` across
chunks. For a whole grid into a resumable Zarr store (what ``geoprom3e fetch-chips`` calls)::

    summary = fetch_chips_to_zarr(request, cell_ids, lats, lons, "chips.zarr")
    xarray.open_zarr("chips.zarr")   # chips[cell, band, y, x], cell_id, lat, lon, status, ...
"""

from geoprom3e.imagery.block import DONE, FAILED, NO_SCENE, PENDING, STATUS_NAMES, ChipBlock, fetch_chip_block
from geoprom3e.imagery.cells import csv_cells, grid_cells
from geoprom3e.imagery.fetch import FetchSummary, fetch_chips, fetch_chips_to_zarr, write_contact_sheet
from geoprom3e.imagery.outcome import failure_kind, is_transient
from geoprom3e.imagery.reads import ReadError, ReadSettings
from geoprom3e.imagery.request import (
    PLANETARY_COMPUTER_STAC,
    SCL_CLOUD_CLASSES,
    SELECTIONS,
    ImageryRequest,
    parse_datetime_window,
)
from geoprom3e.imagery.scenes import SceneItem, assign_scenes
from geoprom3e.imagery.search import (
    ItemSource,
    StacApiSource,
    StaticCatalogSource,
    cloud_filter,
    open_source,
    search_parameters,
)
from geoprom3e.imagery.signing import Signer
from geoprom3e.imagery.store import ChipStore, spatial_order

__all__ = [
    "DONE", "FAILED", "NO_SCENE", "PENDING", "STATUS_NAMES", "PLANETARY_COMPUTER_STAC", "SCL_CLOUD_CLASSES",
    "SELECTIONS", "ChipBlock", "ChipStore", "FetchSummary", "ImageryRequest", "ItemSource", "ReadError",
    "ReadSettings", "SceneItem", "Signer", "StacApiSource", "StaticCatalogSource", "assign_scenes", "cloud_filter",
    "csv_cells", "failure_kind", "grid_cells", "is_transient", "fetch_chip_block", "fetch_chips",
    "fetch_chips_to_zarr", "open_source",
    "parse_datetime_window", "search_parameters", "spatial_order", "write_contact_sheet",
]
