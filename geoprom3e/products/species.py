"""``species_maps``: one similarity map per query photo or text, from the fused products of a cache window."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e.engine import EmbeddingCache, FuseSettings
from geoprom3e.engine.cache import Window, recon_key
from geoprom3e.errors import ConfigError
from geoprom3e.grid import GridSpec
from geoprom3e.io.layers import LayerInfo
from geoprom3e.io.maps import check_outputs, plan_outputs, write_maps
from geoprom3e.maps.species import check_mode, similarity_block, unit_queries
from geoprom3e.modalities import MODALITIES
from geoprom3e.products.base import (
    DEFAULT_OUT,
    MapProduct,
    ProductResult,
    Query,
    check_device,
    dataset,
    open_cache_window,
    query_names,
)
from geoprom3e.products.fused import fuse_window, fused_manifest, imagery_window, settings_of
from geoprom3e.progress import ProgressCallback, report
from geoprom3e.scores import HYBRID_CONVENTION, check_alpha


def species_maps(
    cache: str | Path,
    queries: Sequence[Query],
    *,
    grid: GridSpec | None = None,
    out_dir: str | Path = DEFAULT_OUT,
    checkpoint: str | Path | None = None,
    mode: str = "recon",
    alpha: float = 0.5,
    fuse: FuseSettings = FuseSettings(),
    image_encoder: dict[str, Any] | None = None,
    text_encoder: dict[str, Any] | None = None,
    device: str | None = None,
    overwrite: bool = False,
    png: bool = True,
    attrs: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> ProductResult:
    """Write one similarity map per query (GeoTIFF band ``similarity``, NetCDF, PNG, manifest, STAC item).

    Every setting is checked before the model loads or any output is touched. ``grid`` (default: the cache's
    grid) may be any window of the cache's grid; the map then equals that window of the full map.
    """
    if not queries:
        raise ConfigError("no query: pass at least one photo (IMAGE...) or --text 'Genus species'")
    check_mode(mode)
    alpha = check_alpha(alpha)
    for q in queries:
        q.check()
    check_device(device)
    store, window = open_cache_window(cache, grid)
    names = query_names(queries)
    for name in names:
        check_outputs(plan_outputs(out_dir, name, ["similarity"], png=png), overwrite)
    kinds = sorted({q.kind for q in queries})
    f = fuse_window(store, window, checkpoint, fuse, decode=kinds if mode != "inter" else (), device=device,
                    progress=progress)
    emb, infos, timings = _encode_queries(queries, kinds, image_encoder, text_encoder, device)
    result = ProductResult(details={"fused_group": f.group})
    for kind in kinds:
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        t = time.perf_counter()
        sims = similarity_from_cache(f.cache, f.group, np.stack([emb[i] for i in idx]), window=f.window,
                                     modality=kind, mode=mode, alpha=alpha, progress=progress)
        timings[f"score_{kind}"] = time.perf_counter() - t
        for k, i in enumerate(idx):
            q, name = queries[i], names[i]
            label = Path(q.value).name if q.kind == "image" else q.value
            meta = {"quantity": "species similarity", "query": q.value, "query_kind": q.kind, "mode": mode,
                    "alpha": alpha if mode == "hybrid" else "n/a", "score": HYBRID_CONVENTION if mode == "hybrid"
                    else mode, "visible": ",".join(fuse.visible), "n_samples": fuse.n_samples,
                    "model_fingerprint": f.fingerprint, **(attrs or {})}
            info = {"similarity": LayerInfo(long_name=f"cosine similarity to {label}", units="1", cmap="magma",
                                            description=f"ProM3E {mode} similarity between the query {q.kind} "
                                                        "embedding and each cell")}
            manifest = fused_manifest("species-map", f, timings, {"query": asdict(q), "mode": mode, "alpha": alpha,
                                                                  "query_encoder": infos[q.kind]},
                                      inputs=[q.value] if q.kind == "image" else [])
            layers = {"similarity": sims[k]}
            outputs = write_maps(out_dir, window.grid, layers, basename=name, info=info, attrs=meta,
                                 overwrite=overwrite, png=png, manifest=manifest,
                                 settings=settings_of(window.grid, f, "map-species", mode=mode, alpha=alpha,
                                                      query=asdict(q)),
                                 datetime_range=imagery_window(f))
            result.maps.append(MapProduct(name, dataset(window.grid, layers, info, meta), outputs))
    result.summary = f"wrote {len(result.maps)} species map(s) to {Path(out_dir)}"
    return result


def _encode_queries(queries: Sequence[Query], kinds: list[str], image_encoder: dict[str, Any] | None,
                    text_encoder: dict[str, Any] | None, device: str | None
                    ) -> tuple[dict[int, np.ndarray], dict[str, Any], dict[str, float]]:
    from geoprom3e.encoders import get_encoder

    emb: dict[int, np.ndarray] = {}
    infos: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for kind in kinds:
        t = time.perf_counter()
        enc = get_encoder(kind, device=device, **dict((image_encoder if kind == "image" else text_encoder) or {}))
        infos[kind] = asdict(enc.info)
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        vecs = enc.embed([queries[i].value for i in idx]).numpy()
        emb.update({i: vecs[k] for k, i in enumerate(idx)})
        timings[f"encode_{kind}_queries"] = time.perf_counter() - t
    return emb, infos, timings


def similarity_from_cache(cache: EmbeddingCache, group: str, queries: np.ndarray, *, window: Window | None = None,
                          modality: str = "image", mode: str = "recon", alpha: float = 0.5,
                          progress: ProgressCallback | None = None) -> np.ndarray:
    """[Q, rows, cols] similarity of query embeddings [Q, 512] with every cell of ``window`` (default: the whole
    cache) from fused product ``group``, chunk by chunk, every block checked against its checksum."""
    check_mode(mode)
    q = unit_queries(queries)
    window = window or cache.window()
    rows, cols = window.grid.shape
    out = np.full((q.shape[0], rows, cols), np.nan, np.float32)
    mask = cache.grid.mask()
    wmask = window.grid.mask()
    chunks = cache.chunks(window)
    rkey = recon_key(modality)
    for ch in chunks:
        bits = cache.read_fused(group, "core", ch, ["visible_bits"])["visible_bits"]
        valid = (bits > 0) & mask[ch.slices]
        recon = cache.read_fused(group, rkey, ch, [rkey])[rkey] if mode != "inter" else None
        inter = []
        if mode != "recon":
            for i, m in enumerate(MODALITIES):
                used = (bits >> i) & 1 == 1
                if used.any():
                    e, _ = cache.read_modality(m, ch)
                    inter.append((e, used))
        block = similarity_block(q, valid, mode=mode, alpha=alpha, recon=recon, inter=inter)
        src, dst = window.clip(ch)
        out[(slice(None), *dst)] = block[(slice(None), *src)]
        report(progress, "score", 1, len(chunks), unit="chunks")
    out[:, ~wmask] = np.nan
    return out
