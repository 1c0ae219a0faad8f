"""One block of cells -> one chip per cell: one search for the block, local assignment, threaded window reads.

:func:`fetch_chip_block` is what the gridding engine calls per chunk; it never raises for a single cell's
failure (the cell gets ``status`` failed/no_scene and a ``reason``), only for a run-wide problem (unreachable
STAC API, unknown collection or asset).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
import rasterio

from geoprom3e.errors import ImageryError, InputError
from geoprom3e.imagery.cog import HEADERS, TileCache, merge_runs
from geoprom3e.imagery.hrefs import check_scenes, href_policy
from geoprom3e.imagery.http import FetchError
from geoprom3e.imagery.outcome import tag
from geoprom3e.imagery.reads import ReadError, ReadSettings, chip_window, read_window
from geoprom3e.imagery.request import SCL_CLOUD_CLASSES, ImageryRequest
from geoprom3e.imagery.scenes import SceneItem, assign_scenes, cells_bbox
from geoprom3e.imagery.search import ItemSource, open_source
from geoprom3e.imagery.signing import Signer

log = logging.getLogger(__name__)

STATUS_NAMES = ("pending", "done", "failed", "no_scene")
"""``status`` codes, in order: 0 pending (not fetched yet), 1 done, 2 failed (reads failed), 3 no_scene."""
PENDING, DONE, FAILED, NO_SCENE = range(4)


@dataclass
class ChipBlock:
    """Chips and per-cell outcome for one block of cells (arrays indexed like the cells passed in)."""

    chips: np.ndarray
    """[n, bands, size, size] (uint8 for ``visual``, uint16 for bands); zeros where no chip."""
    status: np.ndarray
    """[n] uint8 codes, see :data:`STATUS_NAMES`."""
    reason: list[str]
    """Why a cell is not done, starting with its kind (``transient:``, ``corrupt:``, ``missing:``, ``refused:``,
    ``no_scene:``, ``error:``; see :mod:`geoprom3e.imagery.outcome`); a note for done cells that needed a fallback."""
    item_id: list[str]
    """Item(s) the chip came from (comma-joined for mosaics and medians)."""
    datetime: list[str]
    """Acquisition time of the (first) item."""
    cloud_cover: np.ndarray
    """[n] float32 scene-level ``eo:cloud_cover`` of the (first) item, NaN when none."""
    cloud_fraction: np.ndarray
    """[n] float32 fraction of SCL cloud/shadow/cirrus pixels inside the chip, NaN when not checked."""
    stats: dict = field(default_factory=dict)
    """Counters: ``search_requests``, ``scenes``, ``reads`` (chip windows read), ``requests`` (HTTP requests for COG
    bytes, headers included), ``retries``, ``search_seconds``, ``seconds``."""

    @property
    def n_done(self) -> int:
        """Cells with a chip."""
        return int(np.sum(self.status == DONE))

    @property
    def requests_per_chip(self) -> float:
        """HTTP requests for COG bytes per chip delivered (NaN when no chip)."""
        return self.stats.get("requests", 0) / self.n_done if self.n_done else float("nan")


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.values[key] = self.values.get(key, 0) + n

    def get(self, key: str, default: int = 0) -> int:
        return self.values.get(key, default)


def _worst(fractions: list[float]) -> float:
    """Largest finite cloud fraction, NaN when none was measured."""
    finite = [f for f in fractions if np.isfinite(f)]
    return max(finite) if finite else float("nan")


def _cloud_fraction(scl: np.ndarray, valid: np.ndarray) -> float:
    if not valid.any():
        return float("nan")
    return float(np.isin(scl[0][valid], SCL_CLOUD_CLASSES).mean())


_thread_state = threading.local()


class _CellReader:
    """Reads the chip of one cell from its candidate scenes (the per-cell policy lives here)."""

    def __init__(self, request: ImageryRequest, signer: Signer, settings: ReadSettings, counter: _Counter,
                 tiles: TileCache | None = None):
        self.r, self.signer, self.settings, self.counter = request, signer, settings, counter
        self.tiles = tiles if tiles is not None else TileCache()
        self.gdal = settings.gdal_options()
        self._scl_memo: dict[tuple, tuple[float, np.ndarray]] = {}
        self.refused: dict[str, str] = {}
        """Scene id -> why its hrefs may not be read (see :mod:`geoprom3e.imagery.hrefs`)."""

    def _read(self, scene: SceneItem, asset: str, lon: float, lat: float):
        self.counter.add("reads")
        try:
            return read_window(scene.hrefs[asset], lon, lat, self.r.chip_size, self.r.resolution, self.signer,
                               self.settings, counters=self.counter, tiles=self.tiles)
        except ImageryError as exc:  # the token endpoint failed (429, down): an outage, not a property of the cell
            raise ReadError("transient", str(exc)) from None

    # -- block prefetch: the tiles many cells need, in few merged ranged reads ------------------------------
    def _header(self, href: str):
        try:
            return HEADERS.get(href, self.signer.sign(href), self.settings.header_bytes,
                               self.settings.http_timeout_s, lambda: self.counter.add("requests"))
        except FetchError as exc:
            self.counter.add(exc.kind)
        except ImageryError:
            self.counter.add("transient")
        return None  # the cell's own read retries and records why

    def prefetch(self, jobs: list[tuple[SceneItem, str, float, float]], pool: Executor) -> None:
        """Fetch the full-resolution tiles under the chip windows of ``jobs`` (scene, asset, lon, lat), one merged
        ranged read per run of neighbouring tiles. Failures are left for each cell's own read to retry and record."""
        by_href: dict[str, list[tuple[float, float]]] = {}
        for scene, asset, lon, lat in jobs:
            href = "" if scene.id in self.refused else scene.hrefs.get(asset, "")
            if href.startswith(("http://", "https://")):
                by_href.setdefault(href, []).append((lon, lat))
        if not by_href:
            return
        headers = dict(zip(by_href, pool.map(self._header, list(by_href))))
        runs = []
        for href, cells in by_href.items():
            h = headers[href]
            if h is None:
                continue
            try:
                ranges = [rg for lon, lat in cells
                          for rg in h.ranges(chip_window(h, lon, lat, self.r.chip_size, self.r.resolution)[0])]
            except FetchError:
                continue
            todo = self.tiles.missing(href, ranges)
            runs += [(href, run) for run in merge_runs(todo, self.settings.merge_gap_bytes,
                                                       self.settings.max_run_bytes)]

        def fetch(job: tuple[str, tuple[int, int]]) -> None:
            href, run = job
            try:
                self.tiles.fetch(href, self.signer.sign(href), [run], self.settings.http_timeout_s,
                                 lambda: self.counter.add("requests"))
            except FetchError as exc:  # the cell's own read retries and records why
                self.counter.add(exc.kind)
            except ImageryError:
                self.counter.add("transient")

        list(pool.map(fetch, runs))

    def scl_passes(self, scene: SceneItem, lon: float, lat: float) -> bool:
        """Whether the chip's SCL window is clear enough (False also when the read failed: the cell's own pass
        retries it); the result is kept for the cell's pass."""
        if scene.id in self.refused:
            return False
        self._thread_env()
        try:
            cf, _ = self._scl(scene, lon, lat)
        except ReadError:
            return False
        return not cf > self.r.max_chip_cloud

    def _read_assets(self, scene: SceneItem, lon: float, lat: float) -> tuple[np.ndarray, np.ndarray]:
        parts, valid = [], None
        for a in self.r.assets:
            w = self._read(scene, a, lon, lat)
            parts.append(w.data)
            valid = w.valid if valid is None else valid & w.valid
        return np.concatenate(parts, axis=0).astype(self.r.dtype, copy=False), valid

    def _scl(self, scene: SceneItem, lon: float, lat: float) -> tuple[float, np.ndarray | None]:
        if not self.r.scl_asset:
            return float("nan"), None
        key = (scene.id, lon, lat)
        hit = self._scl_memo.get(key)
        if hit is not None:
            return hit
        w = self._read(scene, self.r.scl_asset, lon, lat)
        cloudy = np.isin(w.data[0], SCL_CLOUD_CLASSES) & w.valid
        self._scl_memo[key] = out = (_cloud_fraction(w.data, w.valid), cloudy)
        return out

    def _thread_env(self) -> None:
        """Enter the GDAL settings once per worker thread (rasterio's Env is thread-local) and keep them."""
        key = tuple(sorted(self.gdal.items()))
        if getattr(_thread_state, "env_key", None) != key:
            if getattr(_thread_state, "env", None) is not None:
                _thread_state.env.__exit__(None, None, None)
            _thread_state.env = rasterio.Env(**self.gdal)
            _thread_state.env.__enter__()
            _thread_state.env_key = key

    def __call__(self, lon: float, lat: float, scenes: list[SceneItem]) -> tuple:
        if threading.current_thread() is threading.main_thread():
            with rasterio.Env(**self.gdal):  # never leave settings behind in the caller's thread
                return self._pick(lon, lat, scenes)
        self._thread_env()
        return self._pick(lon, lat, scenes)

    def _pick(self, lon: float, lat: float, scenes: list[SceneItem]) -> tuple:
        if self.r.selection == "median":
            return self._median(lon, lat, scenes)
        return self._least_cloudy(lon, lat, scenes)

    def _least_cloudy(self, lon: float, lat: float, scenes: list[SceneItem]) -> tuple:
        notes: list[str] = []
        mosaic = mvalid = None
        used: list[SceneItem] = []
        fractions: list[float] = []
        cloudy_fallback: tuple[float, SceneItem] | None = None
        for scene in scenes:
            if scene.id in self.refused:
                return FAILED, None, used, float("nan"), tag("refused", f"{scene.id}: {self.refused[scene.id]}")[:900]
            try:
                cf, _ = self._scl(scene, lon, lat)
                if cf > self.r.max_chip_cloud:
                    notes.append(f"{scene.id}: {cf:.0%} cloud in chip")
                    if cloudy_fallback is None or cf < cloudy_fallback[0]:
                        cloudy_fallback = (cf, scene)
                    continue
                data, valid = self._read_assets(scene, lon, lat)
            except ReadError as exc:  # never fall back after an error: the chip would differ from a fault-free run
                return FAILED, None, used, float("nan"), tag(exc.outcome, f"{scene.id}: {exc}")[:900]
            if not valid.any():
                notes.append(f"{scene.id}: chip is all nodata")
                continue
            if mosaic is None and valid.all():  # the usual case: one scene covers the whole chip
                return DONE, data, [scene], cf, "; ".join(notes)[:900]
            if mosaic is None:
                mosaic, mvalid = data.copy(), valid.copy()
            else:  # fill the holes (scene edge, nodata) of what we have from the next scene
                fill = valid & ~mvalid
                mosaic[:, fill] = data[:, fill]
                mvalid |= fill
            used.append(scene)
            fractions.append(cf)
            if mvalid.all():
                note = "; ".join((["mosaic of scenes at a scene edge"] if len(used) > 1 else []) + notes)
                return DONE, mosaic, used, _worst(fractions), note[:900]
        if mosaic is not None:
            miss = 1 - mvalid.mean()
            if miss <= 0.01:
                return DONE, mosaic, used, _worst(fractions), f"{miss:.1%} of the chip is nodata"
            notes.append(f"scenes cover only {1 - miss:.0%} of the chip")
        if cloudy_fallback is not None and mosaic is None:
            cf, scene = cloudy_fallback
            try:
                data, valid = self._read_assets(scene, lon, lat)
                if valid.mean() >= 0.99:
                    return DONE, data, [scene], cf, f"every scene cloudier than {self.r.max_chip_cloud:.0%} " \
                                                    f"in the chip; used the least cloudy ({cf:.0%})"
            except ReadError as exc:
                return FAILED, None, used, float("nan"), tag(exc.outcome, f"{scene.id}: {exc}")[:900]
        return NO_SCENE, None, used, float("nan"), tag("no_scene", "; ".join(notes) or "no readable scene")[:900]

    def _median(self, lon: float, lat: float, scenes: list[SceneItem]) -> tuple:
        stack, used, fractions, notes = [], [], [], []
        for scene in scenes:
            if len(stack) >= self.r.median_k:
                break
            if scene.id in self.refused:
                return FAILED, None, used, float("nan"), tag("refused", f"{scene.id}: {self.refused[scene.id]}")[:900]
            try:
                cf, cloudy = self._scl(scene, lon, lat)
                data, valid = self._read_assets(scene, lon, lat)
            except ReadError as exc:
                return FAILED, None, used, float("nan"), tag(exc.outcome, f"{scene.id}: {exc}")[:900]
            good = valid & (~cloudy if cloudy is not None else True)
            if not good.any():
                notes.append(f"{scene.id}: no clear pixel in chip")
                continue
            stack.append(np.where(good[None], data.astype(np.float32), np.nan))
            used.append(scene)
            fractions.append(cf)
        if not stack:
            return NO_SCENE, None, used, float("nan"), tag("no_scene", "; ".join(notes) or "no clear scene")[:900]
        med = np.nanmedian(np.stack(stack), axis=0)
        holes = np.isnan(med).all(axis=0).mean()
        med = np.nan_to_num(med, nan=0.0)
        chip = np.rint(med).astype(self.r.dtype)
        note = f"median of {len(stack)} scene(s)" + (f"; {holes:.0%} without a clear pixel" if holes else "")
        finite = [f for f in fractions if np.isfinite(f)]
        return DONE, chip, used, float(np.mean(finite)) if finite else float("nan"), note


def _prefetch_first_scenes(reader: _CellReader, request: ImageryRequest, pool: Executor, todo: list[int],
                           first: list[SceneItem], lons: np.ndarray, lats: np.ndarray) -> None:
    """Fetch what the usual case reads, merged across cells: the SCL windows of each cell's least-cloudy scene at
    their native resolution, then the asset windows of the cells whose SCL passed (none for cells it rejects)."""
    passed = list(range(len(todo)))
    if request.scl_asset:
        reader.prefetch([(first[k], request.scl_asset, lons[i], lats[i]) for k, i in enumerate(todo)], pool)
        ok = list(pool.map(lambda k: reader.scl_passes(first[k], lons[todo[k]], lats[todo[k]]), passed))
        passed = [k for k in passed if ok[k]]
    reader.prefetch([(first[k], a, lons[todo[k]], lats[todo[k]]) for k in passed for a in request.assets], pool)


def _validate_cells(lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lats, lons = np.asarray(lats, float).ravel(), np.asarray(lons, float).ravel()
    if lats.shape != lons.shape:
        raise InputError(f"lats ({lats.size}) and lons ({lons.size}) differ in length: pass one (lat, lon) per cell")
    bad = ~np.isfinite(lats) | ~np.isfinite(lons) | (np.abs(lats) > 90) | (np.abs(lons) > 180)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise InputError(f"cell {i} has lat, lon = ({lats[i]}, {lons[i]}): latitude must be in [-90, 90] and "
                         "longitude in [-180, 180] (latitude first)")
    return lats, lons


def fetch_chip_block(request: ImageryRequest, lats: np.ndarray, lons: np.ndarray, *,
                     source: ItemSource | None = None, signer: Signer | None = None, threads: int = 16,
                     settings: ReadSettings | None = None, executor: Executor | None = None,
                     progress: Callable[[int], None] | None = None) -> ChipBlock:
    """Chips for one block of cells: ONE search for the block's bbox, scenes assigned to cells locally, then one
    threaded window read per chip (plus the SCL check). Cells that fail are reported, never raised.

    ``source``/``signer``/``executor`` are reused across blocks when given (open them once per run);
    ``progress(k)`` is called with the number of cells finished since the last call.
    """
    t0 = time.perf_counter()
    lats, lons = _validate_cells(lats, lons)
    n, size, nb = lats.size, request.chip_size, len(request.band_names)
    source = source or open_source(request)
    signer = signer or Signer(request.signing)
    settings = settings or ReadSettings()
    out = ChipBlock(
        chips=np.zeros((n, nb, size, size), dtype=request.dtype), status=np.full(n, PENDING, np.uint8),
        reason=[""] * n, item_id=[""] * n, datetime=[""] * n, cloud_cover=np.full(n, np.nan, np.float32),
        cloud_fraction=np.full(n, np.nan, np.float32))
    if n == 0:
        return out
    # chip half-width in degrees (generous at high latitude), so scenes that hold only part of a chip are found
    half_deg = request.chip_extent_m / 2 / 111_000 / max(math.cos(math.radians(min(abs(lats).max(), 85))), 0.1)
    requests_before = source.requests_made
    t_search = time.perf_counter()
    scenes = source.search(cells_bbox(lats, lons, half_deg))
    t_search = time.perf_counter() - t_search
    per_cell = assign_scenes(scenes, lats, lons, request.max_scenes_per_cell)
    counter = _Counter()
    reader = _CellReader(request, signer, settings, counter, TileCache())
    reader.refused = check_scenes(href_policy(request), scenes,
                                  tuple(request.assets) + ((request.scl_asset,) if request.scl_asset else ()))
    todo = []
    for i in range(n):
        if not per_cell[i]:
            out.status[i] = NO_SCENE
            out.reason[i] = tag("no_scene", f"no {request.collection} scene with cloud < {request.max_cloud:g}% "
                                            f"in {request.datetime} covers this cell")
        else:
            todo.append(i)
    if progress and n - len(todo):
        progress(n - len(todo))
    own = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="chip")
    try:
        if request.selection == "least-cloudy" and todo:
            _prefetch_first_scenes(reader, request, pool, todo, [scenes[per_cell[i][0]] for i in todo], lons, lats)
        futures = {pool.submit(reader, lons[i], lats[i], [scenes[j] for j in per_cell[i]]): i for i in todo}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                status, chip, used, cf, note = fut.result()
            except Exception as exc:  # a bug or an unexpected library error: record it, keep going
                log.exception("cell %d failed unexpectedly", i)
                status, chip, used, cf, note = FAILED, None, [], float("nan"), tag(
                    "error", f"{type(exc).__name__}: {exc}")[:900]
            out.status[i], out.reason[i], out.cloud_fraction[i] = status, note, cf
            if used:
                out.item_id[i] = ",".join(s.id for s in used)
                out.datetime[i] = used[0].datetime
                out.cloud_cover[i] = used[0].cloud_cover
            if chip is not None:
                out.chips[i] = chip
            if progress:
                progress(1)
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
        reader.tiles.clear()
    out.stats = {"search_requests": source.requests_made - requests_before, "scenes": len(scenes),
                 "reads": counter.get("reads"), "requests": counter.get("requests"),
                 "retries": counter.get("transient") + counter.get("auth"),
                 "search_seconds": t_search, "seconds": time.perf_counter() - t0}
    return out
