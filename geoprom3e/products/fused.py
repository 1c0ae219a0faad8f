"""The fused-products step that species and uncertainty maps share: open the cache window, load the model,
bring the fused products up to date (only stale chunks are computed), and describe the run in a manifest."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoprom3e.engine import EmbeddingCache, FuseSettings, fuse_grid, model_fingerprint
from geoprom3e.engine.cache import Window
from geoprom3e.grid import GridSpec, ensure_fits_in_memory
from geoprom3e.io.manifest import build_manifest, describe_inputs
from geoprom3e.products.base import load_model
from geoprom3e.progress import ProgressCallback, report


@dataclass
class Fused:
    """A cache window with up-to-date fused products of one model and settings."""

    cache: EmbeddingCache
    """The embedding cache."""
    window: Window
    """The requested grid inside the cache."""
    model: Any
    """The ProM3E model."""
    fingerprint: str
    """Hash of the model's config and weights."""
    group: str
    """Name of the fused product in the cache."""
    settings: FuseSettings
    """The fuse settings."""
    checkpoint: str
    """The checkpoint as the user named it."""
    seconds: float
    """Time spent loading and fusing."""


def fuse_window(cache: EmbeddingCache, window: Window, checkpoint: str | Path | None, fuse: FuseSettings, *,
                decode: Sequence[str] = (), device: str | None = None,
                progress: ProgressCallback | None = None) -> Fused:
    """Load the model and bring the window's fused products (and reconstructions of ``decode``) up to date."""
    t = time.perf_counter()
    ensure_fits_in_memory(window.grid, bytes_per_cell=64, what="the map layers")
    report(progress, "fuse", message=f"loading ProM3E ({checkpoint or 'MVRL/ProM3E'})")
    model = load_model(checkpoint, device)
    fp = model_fingerprint(model)
    group = fuse_grid(cache, model, fuse, decode=decode, window=window, progress=progress, fingerprint=fp,
                      checkpoint=str(checkpoint or "MVRL/ProM3E"))
    return Fused(cache, window, model, fp, group, fuse, str(checkpoint or "MVRL/ProM3E"), time.perf_counter() - t)


def fused_manifest(kind: str, f: Fused, timings: dict[str, float], extra: dict[str, Any],
                   inputs: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest of a map made from fused products: cache, model, failures inside the window."""
    grid = f.window.grid
    rs, cs = f.window.slices
    failures = [{"modality": m, **x} for m in f.cache.modalities() for x in f.cache.failures(m)
                if rs.start <= x.get("row", -1) < rs.stop and cs.start <= x.get("col", -1) < cs.stop]
    keys = f.cache.modality_keys()
    notes = [f"{m}: embeddings not in the ProM3E space ({k.get('encoder')})" for m, k in keys.items()
             if k.get("in_prom3e_space") is False]
    return build_manifest(
        kind=kind, grid=grid.to_dict(), inputs=describe_inputs([p for p in inputs if Path(p).is_file()]),
        counts={"cells_masked_in": int(grid.mask().sum()), "failed_cells": len(failures)},
        timings={"load_model_and_fuse": f.seconds, **timings}, failures=failures[:10000],
        extra={"cache": str(f.cache.path), "cache_grid": f.cache.grid.to_dict(),
               "window": {"row0": f.window.row0, "col0": f.window.col0}, "cache_modalities": keys,
               "fused_group": f.group, "model": {"checkpoint": f.checkpoint, "fingerprint": f.fingerprint,
                                                 "config": f.model.config.to_dict()},
               "notes": notes, **extra},
    )


def imagery_window(f: Fused) -> tuple | None:
    """(start, end) of the Sentinel-2 date window behind the cache's ``sat`` embeddings, or None."""
    window = (f.cache.modality_keys().get("sat", {}).get("imagery") or {}).get("datetime")
    if not window or "sat" not in f.settings.visible:
        return None
    from geoprom3e.imagery import parse_datetime_window

    try:
        start, end = parse_datetime_window(str(window))
    except Exception:  # noqa: BLE001 - an open-ended or odd window just leaves the item without a range
        return None
    if start.year < 1900 or end.year > 9000:
        return None
    return start, end


def settings_of(grid: GridSpec, f: Fused, command: str, **more: Any) -> dict[str, Any]:
    """The resolved settings written beside a map: enough to rebuild it."""
    from dataclasses import asdict

    return {"command": command, "grid": grid.to_dict(), "cache": str(f.cache.path), "checkpoint": f.checkpoint,
            "fuse": asdict(f.settings), **more}
