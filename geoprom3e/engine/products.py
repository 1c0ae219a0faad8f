"""Map products from a warm cache: species similarity per query and ‖σ‖₁ uncertainty (one call per CLI command).

Both fuse the cached cell embeddings with ProM3E first (resumable, stored in the cache, reused by later
maps with the same model and settings), then score cells and write GeoTIFF + NetCDF + PNG + manifest.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoprom3e.engine.cache import EmbeddingCache
from geoprom3e.engine.fuse import FuseSettings, fuse_grid, model_fingerprint
from geoprom3e.errors import ConfigError, InputError
from geoprom3e.grid import GridSpec
from geoprom3e.io.layers import LayerInfo
from geoprom3e.io.manifest import build_manifest, describe_inputs
from geoprom3e.io.maps import MapOutputs, check_outputs, plan_outputs, write_maps
from geoprom3e.maps.species import similarity_maps
from geoprom3e.maps.uncertainty import uncertainty_layers
from geoprom3e.model import ProM3E

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total)."""


@dataclass(frozen=True)
class Query:
    """One species query: a photo path or a text."""

    kind: str
    """``image`` or ``text``."""
    value: str
    """Photo path, or the text (e.g. a scientific name)."""

    @property
    def slug(self) -> str:
        """File-name-safe stem for this query's outputs."""
        base = Path(self.value).stem if self.kind == "image" else self.value
        return "species_" + (re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_")[:60] or self.kind)


def load_model(checkpoint: str | Path | None, device: str | None = None) -> ProM3E:
    """ProM3E from a local checkpoint, or the published ``MVRL/ProM3E`` weights when ``checkpoint`` is None."""
    model = ProM3E.from_pretrained() if checkpoint is None else ProM3E.from_checkpoint(checkpoint)
    if device:
        model = model.to(torch.device(device))
    return model.eval()


def _manifest(kind: str, grid: GridSpec, cache: EmbeddingCache, model: ProM3E, fingerprint: str, group: str,
              timings: dict[str, float], extra: dict[str, Any], inputs: Sequence[str] = ()) -> dict[str, Any]:
    failures = [{"modality": m, **f} for m in cache.modalities() for f in cache.failures(m)]
    keys = cache.modality_keys()
    notes = [f"{m}: embeddings not in the ProM3E space ({k.get('encoder')})" for m, k in keys.items()
             if k.get("in_prom3e_space") is False]
    return build_manifest(
        kind=kind, grid=grid.to_dict(), inputs=describe_inputs([p for p in inputs if Path(p).is_file()]),
        counts={"cells_masked_in": int(grid.mask().sum()), "failed_cells": len(failures)},
        timings=timings, failures=failures[:10000],
        extra={"cache": str(cache.path), "cache_modalities": keys, "fused_group": group,
               "model": {"fingerprint": fingerprint, "config": model.config.to_dict()},
               "notes": notes, **extra},
    )


def species_maps(
    grid: GridSpec,
    cache_path: str | Path,
    queries: Sequence[Query],
    out_dir: str | Path,
    *,
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
    progress: Progress | None = None,
) -> list[MapOutputs]:
    """Write one similarity map per query (GeoTIFF band ``similarity``, NetCDF, PNG, manifest)."""
    from geoprom3e.encoders import get_encoder

    if not queries:
        raise ConfigError("no query: pass at least one photo (IMAGE...) or --text 'Genus species'")
    for q in queries:
        if q.kind == "image" and not Path(q.value).is_file():
            raise InputError(f"query image {q.value!r} does not exist: pass the path of a JPEG/PNG/WebP/TIFF photo")
        if q.kind == "text" and not q.value.strip():
            raise InputError("--text is empty: pass a species name, e.g. --text 'Cardinalis cardinalis'")
    for q in queries:  # refuse before any work
        check_outputs(plan_outputs(out_dir, q.slug, ["similarity"], png=png), overwrite)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    cache = EmbeddingCache(cache_path, grid, create=False)
    model = load_model(checkpoint, device)
    kinds = sorted({q.kind for q in queries})
    settings = FuseSettings(**{**asdict(fuse), "decode": tuple(kinds)})
    fp = model_fingerprint(model)
    group = fuse_grid(cache, model, settings, progress=(lambda n, tot: progress("fuse", n, tot)) if progress else None,
                      fingerprint=fp)
    timings["fuse"] = time.perf_counter() - t
    emb: dict[int, np.ndarray] = {}
    encoder_infos: dict[str, Any] = {}
    for kind in kinds:
        t = time.perf_counter()
        kw = dict((image_encoder if kind == "image" else text_encoder) or {})
        enc = get_encoder(kind, device=device, **kw)
        encoder_infos[kind] = asdict(enc.info)
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        vecs = enc.embed([queries[i].value for i in idx]).numpy()
        emb.update({i: vecs[k] for k, i in enumerate(idx)})
        timings[f"encode_{kind}_queries"] = time.perf_counter() - t
    outputs = []
    for kind in kinds:
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        t = time.perf_counter()
        sims = similarity_maps(cache, group, np.stack([emb[i] for i in idx]), modality=kind, mode=mode, alpha=alpha)
        timings[f"score_{kind}"] = time.perf_counter() - t
        for k, i in enumerate(idx):
            q = queries[i]
            meta = {"quantity": "species similarity", "query": q.value, "query_kind": q.kind, "mode": mode,
                    "alpha": alpha if mode == "hybrid" else "n/a", "visible": ",".join(settings.visible),
                    "n_samples": settings.n_samples, "model_fingerprint": fp,
                    **(attrs or {})}
            info = {"similarity": LayerInfo(
                long_name=f"cosine similarity to {Path(q.value).name if q.kind == 'image' else q.value}",
                units="1", cmap="magma",
                description=f"ProM3E {mode} similarity between the query {q.kind} embedding and each cell")}
            manifest = _manifest("species-map", grid, cache, model, fp, group, timings,
                                 {"query": asdict(q), "mode": mode, "alpha": alpha, "query_encoder":
                                  encoder_infos[q.kind]}, inputs=[q.value] if q.kind == "image" else [])
            outputs.append(write_maps(out_dir, grid, {"similarity": sims[k]}, basename=q.slug, info=info,
                                      attrs=meta, overwrite=overwrite, png=png, manifest=manifest,
                                      settings={"grid": grid.to_dict(), "cache": str(cache_path),
                                                "checkpoint": str(checkpoint or "MVRL/ProM3E"),
                                                "fuse": asdict(settings), "mode": mode, "alpha": alpha,
                                                "query": asdict(q)}))
    return outputs


def uncertainty_map(
    grid: GridSpec,
    cache_path: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    fuse: FuseSettings = FuseSettings(),
    device: str | None = None,
    overwrite: bool = False,
    png: bool = True,
    attrs: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> MapOutputs:
    """Write ``uncertainty.tif`` (bands ``sigma_l1``, ``n_modalities``) and its NetCDF, PNGs and manifest."""
    check_outputs(plan_outputs(out_dir, "uncertainty", ["sigma_l1", "n_modalities"], png=png), overwrite)
    t = time.perf_counter()
    cache = EmbeddingCache(cache_path, grid, create=False)
    model = load_model(checkpoint, device)
    settings = FuseSettings(**{**asdict(fuse), "decode": ()})
    fp = model_fingerprint(model)
    group = fuse_grid(cache, model, settings, progress=(lambda n, tot: progress("fuse", n, tot)) if progress else None,
                      fingerprint=fp)
    layers = uncertainty_layers(cache, group)
    timings = {"fuse_and_read": time.perf_counter() - t}
    info = {
        "sigma_l1": LayerInfo(long_name="ProM3E uncertainty ||sigma||_1", units="1", cmap="viridis",
                              description="sum over latent dimensions of exp(logvar / 2); higher = less certain"),
        "n_modalities": LayerInfo(long_name="modalities the cell showed the model", units="count", cmap="cividis"),
    }
    meta = {"quantity": "ProM3E latent uncertainty", "visible": ",".join(settings.visible),
            "model_fingerprint": fp, **(attrs or {})}
    return write_maps(out_dir, grid, layers, basename="uncertainty", info=info, attrs=meta, overwrite=overwrite,
                      png=png,
                      manifest=_manifest("uncertainty-map", grid, cache, model, fp, group, timings, {}),
                      settings={"grid": grid.to_dict(), "cache": str(cache_path),
                                "checkpoint": str(checkpoint or "MVRL/ProM3E"), "fuse": asdict(settings)})
