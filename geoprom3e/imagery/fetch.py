"""Fetch a chip for every cell into a resumable Zarr store, block by block, and report what failed and why."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from geoprom3e.errors import GeoProm3eError, OutputError
from geoprom3e.imagery.block import DONE, FAILED, NO_SCENE, PENDING, fetch_chip_block
from geoprom3e.imagery.reads import ReadSettings
from geoprom3e.imagery.request import ImageryRequest
from geoprom3e.imagery.search import ItemSource, open_source
from geoprom3e.imagery.signing import Signer
from geoprom3e.imagery.store import ChipStore, create_store, spatial_order, validate_cells
from geoprom3e.io.atomic import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class FetchSummary:
    """What a :func:`fetch_chips_to_zarr` run did."""

    store: str
    """Path of the Zarr chip store."""
    cells: int
    """Cells in the store."""
    fetched: int
    """Cells attempted in this run (pending or failed before it)."""
    counts: dict[str, int]
    """Cells per status after the run (``done``, ``failed``, ``no_scene``, ``pending``)."""
    seconds: float
    """Wall time of this run."""
    search_requests: int
    """STAC search requests (pages) made in this run."""
    reads: int
    """COG window reads (assets and SCL) made in this run."""
    retries: int
    """Reads retried after a transient fault or a 403."""
    requests: int = 0
    """HTTP requests for COG bytes (headers included) made in this run."""
    failures_csv: str | None = None
    """CSV of the cells that are not done, with their reason (``None`` when every cell is done)."""
    contact_sheet: str | None = None
    """PNG of a sample of chips."""
    extra: dict = field(default_factory=dict)
    """Anything else worth recording (blocks, threads)."""

    @property
    def chips_per_s(self) -> float:
        """Cells fetched per second in this run."""
        return self.fetched / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> str:
        """JSON form (written beside the store as ``<name>.summary.json``)."""
        return json.dumps({**asdict(self), "chips_per_s": self.chips_per_s}, indent=2)


def sidecar(store: str | Path, suffix: str) -> Path:
    """Path of a file beside the store: ``chips.zarr`` -> ``chips.failures.csv``."""
    p = Path(store)
    return p.with_name(p.name.removesuffix(".zarr") + suffix)


def write_failures(store: ChipStore, path: Path) -> Path | None:
    """Write the not-done cells as CSV (atomically); remove a stale list and return ``None`` when all are done."""
    rows = store.failures()
    if not rows:
        path.unlink(missing_ok=True)
        return None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["cell_id", "lat", "lon", "status", "reason"])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


def _display(chip: np.ndarray) -> np.ndarray:
    rgb = chip[:3] if chip.shape[0] >= 3 else np.repeat(chip[:1], 3, axis=0)
    if rgb.dtype == np.uint8:
        return np.moveaxis(rgb, 0, -1)
    hi = np.percentile(rgb, 98) or 1
    return np.moveaxis(np.clip(rgb / hi * 255, 0, 255).astype(np.uint8), 0, -1)


def write_contact_sheet(store: ChipStore, path: Path, n: int = 36, seed: int = 0) -> Path | None:
    """A PNG grid of up to ``n`` done chips (a seeded sample) for a quick look; ``None`` when no chip is done."""
    from PIL import Image

    done = np.nonzero(store.status() == DONE)[0]
    if not done.size:
        return None
    pick = np.sort(np.random.default_rng(seed).choice(done, size=min(n, done.size), replace=False))
    chips = store.group["chips"].get_orthogonal_selection((pick,))
    size, cols = chips.shape[-1], int(np.ceil(np.sqrt(len(pick))))
    thumb = min(size, 128)
    rows = int(np.ceil(len(pick) / cols))
    sheet = Image.new("RGB", (cols * (thumb + 2), rows * (thumb + 2)), (255, 255, 255))
    for k, chip in enumerate(chips):
        im = Image.fromarray(_display(chip)).resize((thumb, thumb))
        sheet.paste(im, ((k % cols) * (thumb + 2), (k // cols) * (thumb + 2)))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def _fetch_blocks(request, store, todo_mask, source, signer, settings, threads, progress, max_blocks, totals):
    n = len(store.cell_id)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="chip") as pool:
        for b0 in range(0, n, store.block_size):
            idx = b0 + np.nonzero(todo_mask[b0:b0 + store.block_size])[0]
            if not idx.size:
                continue
            if max_blocks is not None and totals["blocks"] >= max_blocks:
                break
            block = fetch_chip_block(request, store.lat[idx], store.lon[idx], source=source, signer=signer,
                                     settings=settings, executor=pool, progress=progress)
            store.write_block(idx, block)
            totals["blocks"] += 1
            for k in ("search_requests", "reads", "retries", "requests"):
                totals[k] += block.stats.get(k, 0)
            log.info("block %d: %d/%d done (%d search, %d reads, %.1fs)", b0 // store.block_size, block.n_done,
                     idx.size, block.stats["search_requests"], block.stats["reads"], block.stats["seconds"])


def fetch_chips_to_zarr(request: ImageryRequest, cell_ids, lats, lons, out: str | Path, *,
                        block_size: int = 256, threads: int = 16, overwrite: bool = False,
                        retry_no_scene: bool = False, source: ItemSource | None = None,
                        settings: ReadSettings | None = None, progress: Callable[[int], None] | None = None,
                        max_blocks: int | None = None, attrs: dict | None = None,
                        on_start: Callable[[int], None] | None = None) -> FetchSummary:
    """Fetch one chip per cell into the Zarr store ``out``, resuming where an earlier run stopped.

    Cells are grouped into spatial blocks of ``block_size``; each block costs one STAC search and one window read
    per chip (plus SCL), read by ``threads`` threads. Cells already done are skipped; failed cells (and, with
    ``retry_no_scene``, cells without a scene) are tried again. Writes ``<out>.failures.csv``,
    ``<out>.contact.png`` and ``<out>.summary.json`` beside the store. ``progress(k)`` gets cells finished.
    ``on_start(n)`` gets the number of cells in the store once it is open. ``max_blocks`` stops after that many
    blocks (for tests and dry runs).
    """
    t0 = time.perf_counter()
    cell_ids, lats, lons = validate_cells(cell_ids, lats, lons)
    if block_size < 1:
        raise OutputError(f"block_size = {block_size} must be >= 1")
    out = Path(out)
    if out.exists() and overwrite:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    source = source or open_source(request)  # unreachable API / unknown collection: fail before touching out
    created = not out.exists()
    if not created:
        store = ChipStore(out)
        store.check_matches(request, cell_ids)
        log.info("resuming %s: %s", out, store.summary())
    else:
        order = spatial_order(lats, lons)
        create_store(out, request, cell_ids[order], lats[order], lons[order], block_size, attrs)
        store = ChipStore(out)
    status = store.status()
    if on_start:
        on_start(len(status))
    todo_mask = (status == PENDING) | (status == FAILED) | ((status == NO_SCENE) & retry_no_scene)
    skipped = int((~todo_mask).sum())
    if progress and skipped:
        progress(skipped)
    signer = Signer(request.signing)
    settings = settings or ReadSettings()
    totals = {"search_requests": 0, "reads": 0, "retries": 0, "requests": 0, "blocks": 0}
    n = len(store.cell_id)
    try:
        _fetch_blocks(request, store, todo_mask, source, signer, settings, threads, progress, max_blocks, totals)
    except GeoProm3eError:
        if created and totals["blocks"] == 0:  # a run-wide error before anything landed: leave no empty store
            shutil.rmtree(out, ignore_errors=True)
        raise
    fetched = int(todo_mask.sum()) if max_blocks is None else None
    counts = store.summary()
    summary = FetchSummary(
        store=str(out), cells=n, fetched=fetched if fetched is not None else int(n - skipped - counts["pending"]),
        counts=counts, seconds=time.perf_counter() - t0, search_requests=totals["search_requests"],
        reads=totals["reads"], retries=totals["retries"], requests=totals["requests"],
        failures_csv=str(p) if (p := write_failures(store, sidecar(out, ".failures.csv"))) else None,
        contact_sheet=str(p) if (p := write_contact_sheet(store, sidecar(out, ".contact.png"))) else None,
        extra={"blocks": totals["blocks"], "threads": threads, "block_size": store.block_size,
               "skipped_done": skipped},
    )
    atomic_write_text(sidecar(out, ".summary.json"), summary.to_json())
    return summary


def fetch_chips(request: ImageryRequest, out: str | Path, *, grid: str | None = None, cells_csv: str | None = None,
                bbox: tuple[float, float, float, float] | None = None, masked: bool = True,
                **kwargs) -> FetchSummary:
    """Resolve the cells (a grid preset, or a CSV of cell_id/lat/lon; optionally cut to ``bbox``) and fetch them
    into ``out`` with :func:`fetch_chips_to_zarr` (``kwargs`` pass through). What ``geoprom3e fetch-chips`` calls."""
    from geoprom3e.errors import InputError
    from geoprom3e.imagery.cells import csv_cells, grid_cells

    if (grid is None) == (cells_csv is None):
        raise InputError("give exactly one of --grid NAME or --cells CSV")
    if grid is not None:
        ids, lats, lons = grid_cells(grid, bbox, masked)
        attrs = {"grid": grid}
    else:
        ids, lats, lons = csv_cells(cells_csv, bbox)
        attrs = {"cells_csv": str(cells_csv)}
    if bbox is not None:
        attrs["bbox"] = list(bbox)
    log.info("%d cells to fetch into %s", len(ids), out)
    return fetch_chips_to_zarr(request, ids, lats, lons, out, attrs=attrs, **kwargs)
