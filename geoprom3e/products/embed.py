"""``embed``: gather → encode → cache every cell of a grid (the expensive step, done once per grid)."""

from __future__ import annotations

import dataclasses
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
    rates: ProbeRates | None = None
    """Rates measured by a short probe (``--dry-run``), when taken."""

    def describe(self) -> str:
        """One line for users, before a long run."""
        reads = self.chip_reads
        how = "chip + SCL check, estimated"
        if self.rates is not None and self.rates.requests_per_chip is not None and self.stac_searches:
            reads = round(self.rates.requests_per_chip * self.cells)
            how = f"measured {self.rates.requests_per_chip:.2f} per chip"
        sat = (f", {self.stac_searches:,} STAC searches and about {reads:,} COG requests ({how})"
               if self.stac_searches else "")
        line = (f"embedding {self.cells:,} cells of {self.grid} in {self.chunks:,} chunks "
                f"({', '.join(self.modalities)}){sat}; about {self.cache_gb} GB of cache")
        if self.rates is not None:
            line += "; " + self.rates.describe(self.cells)
        return line

    def with_rates(self, rates: ProbeRates) -> EmbedPlan:
        """A copy of the plan that carries measured rates."""
        return dataclasses.replace(self, rates=rates)


@dataclass(frozen=True)
class ProbeRates:
    """Throughput measured on a few real cells: gather (I/O) and encode (compute) per modality."""

    cells: int
    """Cells probed."""
    gather_cells_per_s: dict[str, float]
    """Per modality, cells gathered per second (one block, the run's thread count)."""
    encode_cells_per_s: dict[str, float]
    """Per modality, cells encoded per second on the run's device."""
    requests_per_chip: float | None
    """COG requests per chip seen in the probe (sat only)."""
    gather_workers: int = 0
    """Gather processes the run will use (0: a thread); the probe measured one."""

    def seconds(self, cells: int) -> float:
        """Estimated wall time: gather and encode overlap, so the slower of the two sums bounds the run. Gather
        processes divide the gather time, up to one per core (an upper bound on their speed-up)."""
        import os

        scale = max(1, min(self.gather_workers, os.cpu_count() or 1))
        gather = sum(cells / r for r in self.gather_cells_per_s.values() if r > 0) / scale
        encode = sum(cells / r for r in self.encode_cells_per_s.values() if r > 0)
        return max(gather, encode)

    def describe(self, cells: int) -> str:
        """The estimate and the rates behind it."""
        s = self.seconds(cells)
        t = f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"
        g = ", ".join(f"{m} {r:,.0f}" for m, r in self.gather_cells_per_s.items())
        e = ", ".join(f"{m} {r:,.0f}" for m, r in self.encode_cells_per_s.items())
        per = " per process" if self.gather_workers > 1 else ""
        return (f"about {t} at the rates of a {self.cells}-cell probe (cells/s gather{per}: {g}; encode: {e}"
                + (f"; {self.gather_workers} gather processes" if self.gather_workers else "") + ")")


def probe_rates(grid: GridSpec, inputs: list[Any], *, cells: int = 32, gather_workers: int = 0) -> ProbeRates:
    """Gather and encode ``cells`` real cells of ``grid`` (masked-in cells of its middle rows) with the run's
    inputs, timing each stage, after as many cells warmed the scenes' headers and the encoders up: a few seconds
    of reads, nothing written."""
    import time

    import numpy as np

    lat, lon = grid.cell_centers()
    mask = grid.mask()
    rr, cc = np.nonzero(mask)
    if not rr.size:
        return ProbeRates(0, {}, {}, None, gather_workers)
    mid = np.argsort(np.abs(rr - grid.rows / 2), kind="stable")[: 2 * cells]
    warm, timed = mid[: len(mid) // 2], mid[len(mid) // 2:]  # the first half opens scenes, the second is measured
    la, lo = lat[rr[timed], cc[timed]], lon[rr[timed], cc[timed]]
    gather, encode, rpc = {}, {}, None
    for inp in inputs:
        if len(warm):
            w = inp.gather(lat[rr[warm], cc[warm]], lon[rr[warm], cc[warm]])
            if np.asarray(w.ok).any():
                inp.encode(w.raw)  # loads weights and warms up
        t = time.perf_counter()
        g = inp.gather(la, lo)
        gather[inp.modality] = len(la) / max(time.perf_counter() - t, 1e-9)
        ok = int(np.asarray(g.ok).sum())
        if "requests" in g.extra and ok:
            rpc = float(np.sum(g.extra["requests"])) / ok
        if ok:
            t = time.perf_counter()
            inp.encode(g.raw)
            encode[inp.modality] = ok / max(time.perf_counter() - t, 1e-9)
    return ProbeRates(len(la), gather, encode, rpc, gather_workers)


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
          max_chunks: int | None = None, retry_failed: bool = False, cache_grid: GridSpec | None = None,
          gather_workers: int | None = None) -> Any:
    """Embed every cell of ``grid`` into ``cache`` (see :func:`geoprom3e.engine.embed_grid`); returns its report."""
    from geoprom3e.engine import embed_grid

    ensure_fits_in_memory(grid, bytes_per_cell=32, what="the cell centres and mask")
    return embed_grid(grid, cache, inputs, chunk_size=chunk_size, progress=progress, scheduler=scheduler,
                      workers=workers, max_chunks=max_chunks, retry_failed=retry_failed, cache_grid=cache_grid,
                      gather_workers=gather_workers)
