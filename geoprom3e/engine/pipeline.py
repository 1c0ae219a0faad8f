"""``embed_grid``: gather → encode → write every chunk of a grid into the embedding cache.

On one machine the three stages run at once on bounded queues: gather in ``gather_workers`` processes (or, with 0,
a thread), encode in the caller's thread where the GPU lives, write in a thread. With ``scheduler`` or
``workers`` the same per-chunk function runs as Dask tasks, each writing its own region of the Zarr cache.
Committed chunks are skipped, so an interrupted run resumes by running the same command again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e.engine.cache import EmbeddingCache
from geoprom3e.engine.chunks import Chunk
from geoprom3e.engine.gather import GatherPool, Work, default_gather_workers, gather, prepare, slot_bytes
from geoprom3e.engine.inputs import CellInput
from geoprom3e.errors import ConfigError
from geoprom3e.grid import GridSpec
from geoprom3e.modalities import EMBED_DIM
from geoprom3e.progress import ProgressCallback
from geoprom3e.progress import report as send_progress

log = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    """What an ``embed_grid`` run did."""

    cache: str
    """Cache folder."""
    grid: str
    """Grid name."""
    modalities: list[str]
    """Modalities embedded."""
    chunks_total: int
    """Chunks of the grid holding masked-in cells."""
    chunks_skipped: int
    """Chunks already committed before this run (resume)."""
    chunks_done: int
    """Chunks committed by this run."""
    cells: int
    """Masked-in cells in the chunks this run processed."""
    cells_ok: dict[str, int] = field(default_factory=dict)
    """Per modality, cells with an embedding."""
    requests: dict[str, float] = field(default_factory=dict)
    """Per modality, HTTP requests its gather made for imagery bytes (0 for inputs that make none)."""
    failures: dict[str, int] = field(default_factory=dict)
    """Per modality, failed cells in the whole cache (reasons are in the cache's commit markers)."""
    seconds: float = 0.0
    """Wall time."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Busy time of each stage (gather, encode, write; gather summed over its processes); their sum above
    ``seconds`` shows overlap."""
    gather_workers: int = 0
    """Gather processes feeding the encoder (0: a thread of the main process; Dask runs leave it 0)."""

    def requests_per_chip(self, modality: str = "sat") -> float | None:
        """HTTP requests per chip embedded (None when the modality made no requests or embedded nothing)."""
        n, req = self.cells_ok.get(modality, 0), self.requests.get(modality, 0.0)
        return req / n if n and req else None

    @property
    def cells_per_s(self) -> float:
        """Cells processed per second of wall time."""
        return self.cells / self.seconds if self.seconds else 0.0


def _encode(work: Work, inputs: dict[str, CellInput]) -> None:
    for m in work.todo:
        g = work.gathered[m]
        if g.ok.any():
            emb = np.asarray(inputs[m].encode(g.raw), dtype=np.float32)
            if emb.shape != (int(g.ok.sum()), EMBED_DIM):
                raise ConfigError(
                    f"{m} encoder returned shape {emb.shape} for {int(g.ok.sum())} cells: expected "
                    f"[{int(g.ok.sum())}, {EMBED_DIM}]"
                )
        else:
            emb = np.zeros((0, EMBED_DIM), np.float32)
        work.encoded[m] = emb
        work.gathered[m].raw = None  # free chips early


def _write(work: Work, cache: EmbeddingCache) -> int:
    h, w = work.chunk.shape
    for m in work.todo:
        g = work.gathered[m]
        failures: list[dict[str, Any]] = []
        if work.retry:  # keep the cells that were done, and the failures that were not retried
            e16, p = cache.read_modality(m, work.chunk)
            emb, present = e16.astype(np.float32), p.copy()
            redo = set(zip(work.rows.tolist(), work.cols.tolist()))
            failures = [f for f in (cache.marker(m, work.chunk) or {}).get("failures", [])
                        if (f["row"], f["col"]) not in redo]
        else:
            emb = np.full((h, w, EMBED_DIM), np.nan, np.float32)
            present = np.zeros((h, w), bool)
        lr, lc = work.rows - work.chunk.r0, work.cols - work.chunk.c0
        ok = np.asarray(g.ok, bool)
        emb[lr[ok], lc[ok]] = work.encoded[m]
        present[lr[ok], lc[ok]] = True
        failures += [
            {"row": int(r), "col": int(c), "reason": (g.reasons[i] if i < len(g.reasons) else "") or "unknown"}
            for i, (r, c) in enumerate(zip(work.rows, work.cols)) if not ok[i]
        ]
        cache.write_modality(m, work.chunk, emb, present, sorted(failures, key=lambda f: (f["row"], f["col"])))
    return int(work.rows.size)


def process_chunk(cache_path: str, chunk: Chunk, inputs: Sequence[CellInput],
                  todo: Sequence[str] | None = None, cells: Sequence[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Gather, encode and commit one chunk of the cache's grid (the unit of work of a Dask task) for the
    modalities in ``todo`` (default: those not committed yet); with ``cells``, only those cells are fetched again
    and the chunk's other cells keep what the cache holds. Returns its counts."""
    cache = EmbeddingCache(cache_path)
    grid = cache.grid
    by_name = {i.modality: i for i in inputs}
    todo = list(todo) if todo is not None else [m for m in by_name if not cache.is_committed(m, chunk)]
    work = prepare(grid, chunk, todo, cells)
    t0 = time.perf_counter()
    gather(work, by_name)
    t1 = time.perf_counter()
    _encode(work, by_name)
    t2 = time.perf_counter()
    n = _write(work, cache)
    t3 = time.perf_counter()
    ok = {m: int(np.asarray(work.gathered[m].ok).sum()) for m in todo}
    return {"chunk": chunk.id, "cells": n, "ok": ok, "requests": _requests(work), "gather": t1 - t0,
            "encode": t2 - t1, "write": t3 - t2}


def _requests(work: Work) -> dict[str, float]:
    return {m: float(np.sum(work.gathered[m].extra.get("requests", 0.0))) for m in work.todo}


def embed_grid(
    grid: GridSpec,
    cache_path: str | Path,
    inputs: Sequence[CellInput],
    *,
    chunk_size: int = 32,
    progress: ProgressCallback | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    queue_size: int = 2,
    max_chunks: int | None = None,
    retry_failed: bool = False,
    retryable: Callable[[str], bool] | None = None,
    cache_grid: GridSpec | None = None,
    gather_workers: int | None = None,
) -> EmbedReport:
    """Embed every masked-in cell of ``grid`` for each input's modality into the cache at ``cache_path``.

    Args:
        grid: the grid (a ``--bbox`` subset is a grid too). An existing cache embeds the chunks of its own grid
            that hold cells of ``grid``, which must be a window of it.
        cache_path: Zarr cache folder; created for ``grid``, or resumed when it exists with the same settings.
        inputs: one :class:`CellInput` per modality.
        chunk_size: cells per chunk side (also the Zarr chunking).
        progress: receives a :class:`~geoprom3e.progress.ProgressEvent` after each committed chunk.
        scheduler: a ``dask.distributed`` scheduler address (``tcp://host:port``): run chunks as Dask tasks.
        workers: start a local Dask cluster with this many worker processes instead.
        queue_size: chunks each single-process stage may hold ahead of the next.
        max_chunks: stop after this many chunks (for a quick look, or tests of resume).
        retry_failed: also redo committed chunks that recorded failed cells (after a network outage, say).
        retryable: with ``retry_failed``, which recorded reasons count (default: transient ones, e.g. HTTP 5xx
            or timeouts, and reasons no imagery class names; never ``no_scene``, ``corrupt``, ``missing``,
            ``refused`` or ``error``).
        cache_grid: the grid a NEW cache is created for (default ``grid``), e.g. the whole preset when
            ``grid`` is a window of it, so that later runs can embed and map other windows from the same cache.
        gather_workers: processes that gather (fetch and decode) chunks for the one encoder in this process;
            0 gathers in a thread of this process. Default: one per core when an input reads over the network
            (``sat``), else 0. Not used with ``scheduler``/``workers``, where each Dask task gathers its chunk.
    """
    if not inputs:
        raise ConfigError("no modality to embed: pass at least one input (e.g. --modalities loc)")
    names = [i.modality for i in inputs]
    if len(set(names)) != len(names):
        raise ConfigError(f"modalities {names} repeat: name each once")
    retryable = retryable or worth_retry
    if gather_workers is not None and (scheduler or workers):
        raise ConfigError("--gather-workers sets the gather processes of one machine; with --scheduler/--workers "
                          "each Dask worker gathers its own chunks: drop one of them")
    if gather_workers is not None and gather_workers < 0:
        raise ConfigError(f"--gather-workers {gather_workers}: must be >= 0 (0 gathers in the main process)")
    if gather_workers is None:
        gather_workers = default_gather_workers(inputs)
    cache = EmbeddingCache.create(cache_path, cache_grid or grid, chunk_size)
    window = cache.window(grid)
    for inp in inputs:
        cache.ensure_modality(inp.modality, inp.cache_key())
    with contextlib.ExitStack() as locks:
        for m in names:
            locks.enter_context(cache.writer_lock(m))
        return _embed(cache, names, inputs, window, progress=progress, scheduler=scheduler,
                      workers=workers, queue_size=queue_size, max_chunks=max_chunks, retry_failed=retry_failed,
                      retryable=retryable, gather_workers=gather_workers)


def _embed(cache: EmbeddingCache, names: list[str], inputs: Sequence[CellInput], window: Any, *,
           progress: ProgressCallback | None, scheduler: str | None, workers: int | None, queue_size: int,
           max_chunks: int | None, retry_failed: bool, retryable: Callable[[str], bool] | None,
           gather_workers: int = 0) -> EmbedReport:
    grid = cache.grid
    mask = grid.mask()
    chunks = cache.chunks(window)

    pending: list[tuple[Chunk, list[str], list[tuple[int, int]] | None]] = []
    for ch in chunks:  # whole chunks not committed yet; with retry_failed, the retryable failed cells of others
        new = [m for m in names if not cache.is_committed(m, ch)]
        if new:
            pending.append((ch, new, None))
        for m in names:
            if retry_failed and m not in new:
                cells = [(f["row"], f["col"]) for f in (cache.marker(m, ch) or {}).get("failures", [])
                         if retryable(f.get("reason", ""))]
                if cells:
                    pending.append((ch, [m], cells))
    skipped = len(chunks) - len({p[0] for p in pending})
    if max_chunks is not None:
        pending = pending[:max_chunks]
    total_cells = int(sum(mask[ch.slices].sum() if cells is None else len(cells) for ch, _, cells in pending))
    rep = EmbedReport(str(cache.path), window.grid.name, names, len(chunks), skipped, 0, 0,
                      stage_seconds={"gather": 0.0, "encode": 0.0, "write": 0.0})
    t0 = time.perf_counter()
    if scheduler or workers:
        from geoprom3e.engine.distributed import run_on_dask

        for res in run_on_dask(str(cache.path), pending, list(inputs), scheduler=scheduler, workers=workers):
            _account(rep, res, progress, total_cells)
    else:
        rep.gather_workers = gather_workers
        by_name = {i.modality: i for i in inputs}
        if gather_workers and pending:
            cells = max(int(mask[ch.slices].size) for ch, _, _ in pending)
            with GatherPool(grid, [by_name[m] for m in names], min(gather_workers, len(pending)),
                            slot_size=slot_bytes(inputs, cells), queue_size=queue_size) as pool:
                _run_local(grid, cache, pending, by_name, rep, progress, total_cells, queue_size, pool)
        else:
            _run_local(grid, cache, pending, by_name, rep, progress, total_cells, queue_size)
    rep.seconds = time.perf_counter() - t0
    rep.failures = {m: len(cache.failures(m)) for m in names}
    return rep


def _account(report: EmbedReport, res: dict[str, Any], progress: ProgressCallback | None, total: int) -> None:
    report.chunks_done += 1
    report.cells += res["cells"]
    for m, k in res["ok"].items():
        report.cells_ok[m] = report.cells_ok.get(m, 0) + k
    for m, k in res.get("requests", {}).items():
        report.requests[m] = report.requests.get(m, 0.0) + k
    for s in ("gather", "encode", "write"):
        report.stage_seconds[s] += res[s]
    send_progress(progress, "embed", res["cells"], total)


_STOP = object()


def worth_retry(reason: str) -> bool:
    """A failed cell worth fetching again: a transient cause, or a reason no imagery failure kind names."""
    from geoprom3e.imagery.outcome import failure_kind

    return failure_kind(reason) in ("transient", None)


def _hold_for_tests(stop: threading.Event) -> None:
    """Test hook: while the file named by ``$GEOPROM3E_TEST_HOLD_AFTER_COMMIT`` exists, pause after each commit
    (until the run is stopped), so a test can interrupt a run that is certainly not finished."""
    import os

    hold = os.environ.get("GEOPROM3E_TEST_HOLD_AFTER_COMMIT")
    while hold and Path(hold).exists() and not stop.wait(0.05):
        pass


def _run_local(grid: GridSpec, cache: EmbeddingCache, pending: list[tuple[Chunk, list[str], Any]],
               inputs: dict[str, CellInput], report: EmbedReport, progress: ProgressCallback | None, total: int,
               queue_size: int, pool: GatherPool | None = None) -> None:
    q_enc: queue.Queue = queue.Queue(maxsize=queue_size)
    q_out: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()
    errors: list[BaseException] = []

    def put(q: queue.Queue, item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def gathered() -> Any:
        if pool is not None:
            yield from pool.run(pending, stop)
            return
        for ch, todo, cells in pending:
            if stop.is_set():
                return
            work = prepare(grid, ch, todo, cells)
            gather(work, inputs)
            yield work

    def gatherer() -> None:
        try:
            for work in gathered():
                report.stage_seconds["gather"] += work.gather_seconds
                if not put(q_enc, work):
                    if pool is not None:
                        pool.release(work)
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
            stop.set()
        finally:
            put(q_enc, _STOP)

    def writer() -> None:
        try:
            while True:
                work = q_out.get()
                if work is _STOP:
                    return
                t = time.perf_counter()
                n = _write(work, cache)
                dt = time.perf_counter() - t
                ok = {m: int(np.asarray(work.gathered[m].ok).sum()) for m in work.todo}
                _account(report, {"cells": n, "ok": ok, "requests": _requests(work), "gather": 0.0, "encode": 0.0,
                                  "write": dt}, progress, total)
                _hold_for_tests(stop)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=gatherer, name="geoprom3e-gather", daemon=True),
               threading.Thread(target=writer, name="geoprom3e-write", daemon=True)]
    for t in threads:
        t.start()
    try:
        while not stop.is_set():
            try:
                work = q_enc.get(timeout=0.1)
            except queue.Empty:
                continue
            if work is _STOP:
                break
            t = time.perf_counter()
            try:
                _encode(work, inputs)
            finally:
                if pool is not None:
                    pool.release(work)
            report.stage_seconds["encode"] += time.perf_counter() - t
            if not put(q_out, work):
                break
    except BaseException:
        stop.set()
        raise
    finally:
        if not stop.is_set():
            q_out.put(_STOP)
        else:  # let the writer finish the chunk it holds, then drop the rest
            try:
                while True:
                    q_out.get_nowait()
            except queue.Empty:
                pass
            q_out.put(_STOP)
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
