"""``embed``: gather → encode → cache every cell of a grid (the expensive step, done once per grid)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoprom3e.errors import ConfigError
from geoprom3e.grid import GridSpec, ensure_fits_in_memory
from geoprom3e.modalities import MODALITIES, parse_modalities
from geoprom3e.progress import ProgressCallback

ENGINE_MODALITIES = ("sat", "loc", "env")


def modality_names(modalities: str) -> list[str]:
    """``"sat,loc"`` → ``["sat", "loc"]``, refusing modalities the grid engine does not embed."""
    names = [MODALITIES[i] for i in parse_modalities(modalities)]
    bad = [m for m in names if m not in ENGINE_MODALITIES]
    if bad:
        raise ConfigError(f"--modalities {modalities!r}: the grid engine embeds {', '.join(ENGINE_MODALITIES)}, "
                          f"not {', '.join(bad)}")
    return names


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
    from geoprom3e.engine.sources import make_input

    weights = dict(weights or {})
    out = []
    for m in modality_names(modalities):
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


@dataclass(frozen=True)
class EmbedPlan:
    """What an ``embed-grid`` run would do."""

    grid: str
    """Grid (or window) name."""
    modalities: list[str]
    """Modalities to embed."""
    cells: int
    """Masked-in cells still to embed."""
    chunks: int
    """Chunks still to embed."""
    chunks_done: int
    """Chunks already committed."""
    stac_searches: int
    """One per chunk with sat."""
    chip_reads: int
    """About two COG window reads per cell with sat (chip + SCL check)."""
    cache_gb: float
    """Cache size those cells add."""

    def describe(self) -> str:
        """One line for users, before a long run."""
        sat = (f", {self.stac_searches:,} STAC searches and about {self.chip_reads:,} COG window reads "
               "(chip + SCL check)") if self.stac_searches else ""
        return (f"embedding {self.cells:,} cells of {self.grid} in {self.chunks:,} chunks "
                f"({', '.join(self.modalities)}){sat}; about {self.cache_gb} GB of cache")


def plan_embed(grid: GridSpec, modalities: str, *, chunk_size: int = 32, cache: str | Path | None = None) -> EmbedPlan:
    """What ``embed-grid`` would fetch and encode, given what the cache at ``cache`` already holds."""
    from geoprom3e.engine.cache import EmbeddingCache
    from geoprom3e.engine.chunks import iter_chunks

    names = modality_names(modalities)
    if cache is not None and (Path(cache) / "embeddings.zarr").is_dir():
        store = EmbeddingCache(cache)
        chunks = store.chunks(store.window(grid))
        mask = store.grid.mask()
        todo = [ch for ch in chunks if not all(store.is_committed(m, ch) for m in names)]
    else:
        mask = grid.mask()
        chunks = list(iter_chunks(grid, chunk_size, mask))
        todo = chunks
    cells = int(sum(mask[ch.slices].sum() for ch in todo))
    sat = "sat" in names
    return EmbedPlan(grid.name, names, cells, len(todo), len(chunks) - len(todo), len(todo) if sat else 0,
                     2 * cells if sat else 0, round(cells * 512 * 2 * len(names) / 2**30, 2))


def embed(grid: GridSpec, cache: str | Path, inputs: list[Any], *, chunk_size: int = 32,
          progress: ProgressCallback | None = None, scheduler: str | None = None, workers: int | None = None,
          max_chunks: int | None = None, retry_failed: bool = False, cache_grid: GridSpec | None = None) -> Any:
    """Embed every cell of ``grid`` into ``cache`` (see :func:`geoprom3e.engine.embed_grid`); returns its report."""
    from geoprom3e.engine import embed_grid

    ensure_fits_in_memory(grid, bytes_per_cell=32, what="the cell centres and mask")
    return embed_grid(grid, cache, inputs, chunk_size=chunk_size, progress=progress, scheduler=scheduler,
                      workers=workers, max_chunks=max_chunks, retry_failed=retry_failed, cache_grid=cache_grid)
