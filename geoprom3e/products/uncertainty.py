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
    measure: str = "sigma_l1",
) -> ProductResult:
    """Write ``uncertainty.tif`` (bands ``<measure>``, ``n_modalities``), its NetCDF, PNGs, manifest and STAC item.

    ``grid`` (default: the cache's grid) may be any window of the cache's grid. ``measure`` is ``sigma_l1`` (the
    published ‖σ‖₁, stored with the fused products) or a research measure of :mod:`geoprom3e.model.uncertainty`
    (``dispersion``, ``recon_sigma``), computed per cell for the window on each call.
    """
    from geoprom3e.errors import ConfigError
    from geoprom3e.model.uncertainty import MEASURES

    if measure not in MEASURES:
        raise ConfigError(f"--measure {measure!r} is unknown: use one of {', '.join(MEASURES)}")
    check_device(device)
    store, window = open_cache_window(cache, grid)
    check_outputs(plan_outputs(out_dir, "uncertainty", (measure, "n_modalities"), png=png), overwrite)
    f = fuse_window(store, window, checkpoint, fuse, device=device, progress=progress)
    t = time.perf_counter()
    layers = uncertainty_from_cache(store, f.group, window)
    if measure != "sigma_l1":
        layers = {measure: _research_measure(f, measure, layers["n_modalities"], progress),
                  "n_modalities": layers["n_modalities"]}
    timings = {"read" if measure == "sigma_l1" else f"compute_{measure}": time.perf_counter() - t}
    mi = MEASURES[measure]
    note = SIGMA_L1_NOTE if measure == "sigma_l1" else mi.note
    info = {
        measure: LayerInfo(long_name=mi.long_name, units=mi.units, cmap="viridis", description=note),
        "n_modalities": LayerInfo(long_name="modalities the cell showed the model", units="count", cmap="cividis"),
    }
    meta = {"quantity": mi.long_name, "measure": measure, "published": str(mi.published), "caveat": note,
            "visible": ",".join(fuse.visible), "model_fingerprint": f.fingerprint, **(attrs or {})}
    outputs = write_maps(out_dir, window.grid, layers, basename="uncertainty", info=info, attrs=meta,
                         overwrite=overwrite, png=png, manifest=fused_manifest("uncertainty-map", f, timings, {}),
                         settings=settings_of(window.grid, f, "uncertainty-map", measure=measure),
                         datetime_range=imagery_window(f))
    prod = MapProduct("uncertainty", dataset(window.grid, layers, info, meta), outputs)
    return ProductResult([prod], f"wrote {outputs.geotiff}", {"fused_group": f.group})


def _research_measure(f: Any, measure: str, n_modalities: np.ndarray, progress: ProgressCallback | None) -> np.ndarray:
    """A research uncertainty measure per cell of the window, chunk by chunk (not cached; dispersion draws its
    samples from a generator seeded by the fuse seed and the chunk, so it depends on the cache's chunking)."""
    import torch

    from geoprom3e.engine.fuse import chunk_inputs
    from geoprom3e.model.uncertainty import uncertainty
    from geoprom3e.progress import report

    cache, window = f.cache, f.window
    have = [m for m in f.settings.visible if m in cache.modalities()]
    mask = cache.grid.mask()
    out = np.full(window.grid.shape, np.nan, np.float32)
    chunks = cache.chunks(window)
    dev = next(f.model.parameters()).device
    for ch in chunks:
        emb, vis = chunk_inputs(cache, have, ch, mask, f.model.config.num_modalities)
        rr, cc = np.nonzero(vis.any(-1))
        block = np.full(ch.shape, np.nan, np.float32)
        gen = torch.Generator(device=dev).manual_seed(f.settings.seed * 1_000_003 + ch.cr * 10_007 + ch.cc)
        for s in range(0, rr.size, f.settings.batch_size):
            r, c = rr[s:s + f.settings.batch_size], cc[s:s + f.settings.batch_size]
            u = uncertainty(f.model, torch.from_numpy(emb[r, c]).to(dev), torch.from_numpy(vis[r, c]).to(dev),
                            measure, generator=gen)
            block[r, c] = u.float().cpu().numpy()
        src, dst = window.clip(ch)
        out[dst] = block[src]
        report(progress, measure, 1, len(chunks), unit="chunks")
    return np.where(np.isfinite(n_modalities), out, np.nan).astype(np.float32)
