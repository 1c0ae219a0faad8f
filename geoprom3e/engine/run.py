"""Entry points the CLI calls: build the cell inputs from options, embed a grid, compare two maps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geoprom3e.engine.pipeline import EmbedReport, Progress, embed_grid
from geoprom3e.engine.sources import make_input
from geoprom3e.errors import ConfigError, OutputError
from geoprom3e.grid import GridSpec, ensure_fits_in_memory
from geoprom3e.io.atomic import atomic_path, atomic_write_text
from geoprom3e.maps.compare import Comparison, compare_rasters
from geoprom3e.modalities import MODALITIES, parse_modalities

ENGINE_MODALITIES = ("sat", "loc", "env")


def build_inputs(
    modalities: str,
    *,
    request: Any = None,
    threads: int = 16,
    covariates: str | None = None,
    weights: Mapping[str, str | None] | None = None,
    weights_dir: str | None = None,
    device: str | None = None,
) -> list[Any]:
    """Production cell inputs for ``"sat,loc,env"``-style modality lists (``request``: the
    :class:`~geoprom3e.imagery.ImageryRequest` for ``sat``, default Planetary Computer)."""
    names = [MODALITIES[i] for i in parse_modalities(modalities)]
    bad = [m for m in names if m not in ENGINE_MODALITIES]
    if bad:
        raise ConfigError(f"--modalities {modalities!r}: the grid engine embeds {', '.join(ENGINE_MODALITIES)}, "
                          f"not {', '.join(bad)}")
    weights = dict(weights or {})
    out = []
    for m in names:
        kw: dict[str, Any] = {"weights": weights.get(m), "device": device, "weights_dir": weights_dir}
        if m == "sat":
            kw.update(request=request, threads=threads)
        if m == "env":
            if not covariates:
                raise ConfigError("env needs covariate rasters: pass --covariates STACK.tif or a folder of "
                                  "WorldClim 2.1 rasters (elevation, bio1..bio19), or drop env from --modalities")
            kw["encoder_kwargs"] = {"covariates": covariates}
        out.append(make_input(m, **kw))
    return out


def run_embed_grid(grid: GridSpec, cache: str | Path, inputs: list[Any], *, chunk_size: int = 32,
                   progress: Progress | None = None, scheduler: str | None = None, workers: int | None = None,
                   max_chunks: int | None = None, retry_failed: bool = False) -> EmbedReport:
    """:func:`embed_grid` after checking the grid's cache fits on disk budgets and the mask fits in memory."""
    ensure_fits_in_memory(grid, bytes_per_cell=32, what="the cell centres and mask")
    return embed_grid(grid, cache, inputs, chunk_size=chunk_size, progress=progress, scheduler=scheduler,
                      workers=workers, max_chunks=max_chunks, retry_failed=retry_failed)


def run_compare(a: str | Path, b: str | Path, *, band_a: str | None = None, band_b: str | None = None,
                out: str | Path | None = None, overwrite: bool = False) -> Comparison:
    """Correlate two maps; with ``out`` also write ``compare.json`` and ``compare.png`` (hexbin)."""
    import json

    res = compare_rasters(a, b, band_a=band_a, band_b=band_b)
    if out is None:
        return res
    out = Path(out)
    targets = [out / "compare.json", out / "compare.png"]
    if not overwrite and any(p.exists() for p in targets):
        raise OutputError(f"{out / 'compare.json'} exists: pass --overwrite or choose another --out")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from geoprom3e.maps.compare import read_band

    x, _, _ = read_band(a, band_a)
    y, _, _ = read_band(b, band_b)
    ok = np.isfinite(x) & np.isfinite(y)
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    hb = ax.hexbin(x[ok], y[ok], gridsize=40, bins="log", cmap="viridis", mincnt=1)
    fig.colorbar(hb, ax=ax, label="cells (log)")
    ax.set_xlabel(f"{Path(str(a)).name} [{band_a or 1}]")
    ax.set_ylabel(f"{Path(str(b)).name} [{band_b or 1}]")
    ax.set_title(f"Pearson r = {res.pearson_r:.3f}, Spearman ρ = {res.spearman_rho:.3f} (n = {res.n_cells})",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(targets[1]) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    atomic_write_text(targets[0], json.dumps(res.to_dict(), indent=1) + "\n")
    return res


def estimate_cost(grid: GridSpec, modalities: str, *, chunk_size: int = 32, cache: str | Path | None = None) -> dict:
    """What ``embed-grid`` would do: cells, chunks, STAC searches and chip reads still to go, and cache size."""
    from geoprom3e.engine.cache import EmbeddingCache
    from geoprom3e.engine.chunks import iter_chunks

    names = [MODALITIES[i] for i in parse_modalities(modalities)]
    mask = grid.mask()
    chunks = list(iter_chunks(grid, chunk_size, mask))
    todo = chunks
    if cache is not None and (Path(cache) / "embeddings.zarr").is_dir():
        c = EmbeddingCache(cache, grid, create=False)
        todo = [ch for ch in chunks if not all(c.is_committed(m, ch) for m in names)]
    done = len(chunks) - len(todo)
    cells = int(sum(mask[ch.slices].sum() for ch in todo))
    sat = "sat" in names
    return {
        "grid": grid.name, "modalities": names, "cells": cells, "chunks": len(todo), "chunks_done": done,
        "stac_searches": len(todo) if sat else 0, "chip_reads": 2 * cells if sat else 0,
        "cache_gb": round(cells * 512 * 2 * len(names) / 2**30, 2),
    }


def describe_cost(cost: dict) -> str:
    """One line for users, before a long run."""
    sat = (f", {cost['stac_searches']:,} STAC searches and about {cost['chip_reads']:,} COG window reads "
           "(chip + SCL check)") if cost["stac_searches"] else ""
    return (f"embedding {cost['cells']:,} cells of {cost['grid']} in {cost['chunks']:,} chunks "
            f"({', '.join(cost['modalities'])}){sat}; about {cost['cache_gb']} GB of cache")
