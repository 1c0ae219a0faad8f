"""``uncertainty_map``: ‖σ‖₁ per cell and the number of modalities each cell showed the model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e.engine import EmbeddingCache, FuseSettings
from geoprom3e.engine.cache import Window
from geoprom3e.engine.fuse import read_window
from geoprom3e.grid import GridSpec
from geoprom3e.io.layers import LayerInfo
from geoprom3e.io.maps import check_outputs, plan_outputs, write_maps
from geoprom3e.maps.uncertainty import SIGMA_L1_NOTE, uncertainty_layers
from geoprom3e.products.base import DEFAULT_OUT, MapProduct, ProductResult, check_device, dataset, open_cache_window
from geoprom3e.products.fused import fuse_window, fused_manifest, imagery_window, settings_of
from geoprom3e.progress import ProgressCallback

LAYERS = ("sigma_l1", "n_modalities")


def uncertainty_from_cache(cache: EmbeddingCache, group: str, window: Window | None = None) -> dict[str, np.ndarray]:
    """``sigma_l1`` and ``n_modalities`` [rows, cols] of ``window`` (default: the whole cache) from fused product
    ``group`` (checksums verified)."""
    window = window or cache.window()
    core = read_window(cache, group, window, "core", ["sigma_l1", "visible_bits"],
                       {"sigma_l1": float("nan"), "visible_bits": 0})
    valid = cache.grid.mask()[window.slices] & window.grid.mask()
    return uncertainty_layers(core["sigma_l1"], core["visible_bits"], valid)


def uncertainty_map(
    cache: str | Path,
    *,
    grid: GridSpec | None = None,
    out_dir: str | Path = DEFAULT_OUT,
    checkpoint: str | Path | None = None,
    fuse: FuseSettings = FuseSettings(),
    device: str | None = None,
    overwrite: bool = False,
    png: bool = True,
    attrs: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> ProductResult:
    """Write ``uncertainty.tif`` (bands ``sigma_l1``, ``n_modalities``), its NetCDF, PNGs, manifest and STAC item.

    ``grid`` (default: the cache's grid) may be any window of the cache's grid.
    """
    check_device(device)
    store, window = open_cache_window(cache, grid)
    check_outputs(plan_outputs(out_dir, "uncertainty", LAYERS, png=png), overwrite)
    f = fuse_window(store, window, checkpoint, fuse, device=device, progress=progress)
    t = time.perf_counter()
    layers = uncertainty_from_cache(store, f.group, window)
    timings = {"read": time.perf_counter() - t}
    info = {
        "sigma_l1": LayerInfo(long_name="ProM3E latent spread ||sigma||_1", units="1", cmap="viridis",
                              description=SIGMA_L1_NOTE),
        "n_modalities": LayerInfo(long_name="modalities the cell showed the model", units="count", cmap="cividis"),
    }
    meta = {"quantity": "ProM3E latent spread ||sigma||_1", "caveat": SIGMA_L1_NOTE,
            "visible": ",".join(fuse.visible), "model_fingerprint": f.fingerprint, **(attrs or {})}
    outputs = write_maps(out_dir, window.grid, layers, basename="uncertainty", info=info, attrs=meta,
                         overwrite=overwrite, png=png, manifest=fused_manifest("uncertainty-map", f, timings, {}),
                         settings=settings_of(window.grid, f, "uncertainty-map"),
                         datetime_range=imagery_window(f))
    prod = MapProduct("uncertainty", dataset(window.grid, layers, info, meta), outputs)
    return ProductResult([prod], f"wrote {outputs.geotiff}", {"fused_group": f.group})
