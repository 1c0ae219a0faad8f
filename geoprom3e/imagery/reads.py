"""Windowed COG reads in the file's own CRS, centred on a cell, with retries that tell transient faults
(429/5xx/timeouts/bodies cut short), expired tokens (403), missing files (404) and corrupt files apart by their
cause: the HTTP status and byte count of each request (:mod:`geoprom3e.imagery.http`), never a GDAL message."""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoprom3e.imagery.cog import HEADERS, TileCache, merge_runs
from geoprom3e.imagery.http import FetchError
from geoprom3e.imagery.signing import Signer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadSettings:
    """How hard to try each COG read and which GDAL options to read with."""

    retries: int = 4
    """Extra attempts after a transient failure (429/5xx/timeout/truncated body) or a 403 (re-signed)."""
    backoff_s: float = 0.5
    """First backoff delay; doubles on each retry (plus jitter)."""
    http_timeout_s: float = 30.0
    """GDAL_HTTP_TIMEOUT: seconds before a stalled HTTP request counts as a timeout."""
    gdal_retries: int = 2
    """GDAL_HTTP_MAX_RETRY: retries GDAL itself makes on 429/5xx before reporting a failure (local reads only)."""
    header_bytes: int = 65536
    """Bytes of each COG fetched first (IFDs and tile index); more is fetched when the index lies further."""
    merge_gap_bytes: int = 65536
    """Tile ranges of one asset closer than this are fetched as one ranged read."""
    max_run_bytes: int = 16 << 20
    """Largest merged ranged read."""

    def gdal_options(self) -> dict[str, str | int]:
        """GDAL config options for chip reads (DESIGN §8)."""
        return {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            "GDAL_HTTP_MULTIPLEX": "YES",
            "GDAL_HTTP_VERSION": "2",
            "GDAL_HTTP_MAX_RETRY": str(self.gdal_retries),
            "GDAL_HTTP_RETRY_DELAY": str(max(self.backoff_s, 0.05)),
            "GDAL_HTTP_TIMEOUT": str(int(max(1, self.http_timeout_s))),
            "GDAL_HTTP_CONNECTTIMEOUT": str(int(max(1, min(10, self.http_timeout_s)))),
            "VSI_CACHE": "TRUE",
            "VSI_CACHE_SIZE": str(32 << 20),
            "CPL_VSIL_CURL_CACHE_SIZE": str(512 << 20),
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF",
            "GDAL_CACHEMAX": 256,
        }


class ReadError(Exception):
    """A chip read that failed; ``kind`` is ``transient``, ``auth``, ``corrupt``, ``missing`` or ``permanent``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def outcome(self) -> str:
        """The failure kind recorded for the cell (see :mod:`geoprom3e.imagery.outcome`)."""
        return {"auth": "transient", "permanent": "corrupt"}.get(self.kind, self.kind)


_local = threading.local()


@functools.lru_cache(maxsize=1)
def _gdal_lib():
    import ctypes
    import ctypes.util
    import glob
    import os

    libs = glob.glob(os.path.join(os.path.dirname(rasterio.__file__) + ".libs", "libgdal*"))
    name = libs[0] if libs else ctypes.util.find_library("gdal")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def clear_gdal_http_cache(url: str | None = None) -> bool:
    """Forget what GDAL's /vsicurl/ cached for ``url`` (``VSICurlPartialClearCache``), or everything when ``None``.

    After a failed request GDAL remembers the file as missing/short; clearing makes the next attempt really ask
    the server again. Returns False when the GDAL library cannot be reached through ctypes.
    """
    lib = _gdal_lib()
    if lib is None:
        return False
    try:
        if url is None:
            lib.VSICurlClearCache()
        else:
            lib.VSICurlPartialClearCache(f"/vsicurl/{url}".encode())
    except AttributeError:
        return False
    return True


def _transformer(crs):
    from pyproj import Transformer

    cache = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    key = crs.to_string()
    t = cache.get(key)
    if t is None:
        t = cache[key] = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return t


@dataclass
class WindowRead:
    """Pixels of one asset around one cell, resampled to the chip grid."""

    data: np.ndarray
    """[bands, size, size] in the file's dtype; pixels outside the scene hold ``nodata``."""
    valid: np.ndarray
    """[size, size] bool: pixel inside the scene and not nodata in every band."""


def chip_window(ds, lon: float, lat: float, size: int, resolution: float) -> tuple[Window, float]:
    """Integer pixel window of ``ds`` whose centre is the cell centre, and the scale to the chip grid."""
    x, y = _transformer(ds.crs).transform(lon, lat)
    col, row = ~ds.transform @ (x, y)
    native = abs(ds.transform.a)
    w = size * resolution / native
    col_off = int(np.floor(col - w / 2 + 0.5))
    row_off = int(np.floor(row - w / 2 + 0.5))
    return Window(col_off, row_off, int(round(w)), int(round(w))), size / max(w, 1e-9)


def read_window_once(url: str, lon: float, lat: float, size: int, resolution: float,
                     overviews: bool = True) -> WindowRead:
    """Open ``url`` (signed already) and read the chip window; partial windows are padded with nodata.

    ``overviews=False`` reads full-resolution tiles only (what a block prefetched)."""
    with rasterio.open(url, **({} if overviews else {"OVERVIEW_LEVEL": "NONE"})) as ds:
        win, scale = chip_window(ds, lon, lat, size, resolution)
        nodata = ds.nodata if ds.nodata is not None else 0
        out = np.full((ds.count, size, size), nodata, dtype=ds.dtypes[0])
        c0, r0 = max(win.col_off, 0), max(win.row_off, 0)
        c1, r1 = min(win.col_off + win.width, ds.width), min(win.row_off + win.height, ds.height)
        valid = np.zeros((size, size), bool)
        if c1 > c0 and r1 > r0:
            oc0, or0 = int(round((c0 - win.col_off) * scale)), int(round((r0 - win.row_off) * scale))
            oc1, or1 = int(round((c1 - win.col_off) * scale)), int(round((r1 - win.row_off) * scale))
            win_part = Window(c0, r0, c1 - c0, r1 - r0)
            k = int(round(scale))
            if k > 1 and abs(scale - k) < 1e-9 and (or1 - or0, oc1 - oc0) == ((r1 - r0) * k, (c1 - c0) * k):
                # e.g. a 20 m SCL/band into a 10 m chip: native read + pixel repeat (GDAL's upsampling is ~10x slower)
                part = np.repeat(np.repeat(ds.read(window=win_part), k, axis=1), k, axis=2)
            else:
                part = ds.read(window=win_part, out_shape=(ds.count, or1 - or0, oc1 - oc0),
                               resampling=Resampling.nearest)
            out[:, or0:or1, oc0:oc1] = part
            valid[or0:or1, oc0:oc1] = True
        if ds.nodata is not None:
            valid &= ~np.all(out == ds.nodata, axis=0)
        return WindowRead(out, valid)


def _read_local(path: str, lon: float, lat: float, size: int, resolution: float) -> WindowRead:
    try:
        return read_window_once(path, lon, lat, size, resolution)
    except rasterio.errors.RasterioError as exc:
        import os

        if not os.path.exists(path):
            raise ReadError("missing", f"asset file {path!r} does not exist") from None
        raise ReadError("corrupt", f"unreadable COG: {str(exc)[:200]}") from None


def _read_remote(href: str, url: str, lon: float, lat: float, size: int, resolution: float,
                 settings: ReadSettings, tiles: TileCache, count) -> WindowRead:
    """One attempt: header (cached), the window's tiles (cached or fetched whole), decode from memory."""
    header = HEADERS.get(href, url, settings.header_bytes, settings.http_timeout_s, count)
    win, _ = chip_window(header, lon, lat, size, resolution)
    ranges = header.ranges(win)
    todo = tiles.missing(href, ranges)
    if todo:
        tiles.fetch(href, url, merge_runs(todo, settings.merge_gap_bytes, settings.max_run_bytes),
                    settings.http_timeout_s, count)
    with tiles.sparse(header, ranges) as path:
        try:
            return read_window_once(path, lon, lat, size, resolution, overviews=False)
        except rasterio.errors.RasterioError as exc:
            raise FetchError("corrupt", f"tiles arrived whole but do not decode: {str(exc)[:160]}") from None


def read_window(href: str, lon: float, lat: float, size: int, resolution: float, signer: Signer,
                settings: ReadSettings, counters=None, tiles: TileCache | None = None) -> WindowRead:
    """Read one chip window of the (unsigned) ``href``, signing right before each attempt.

    Over http(s) every byte comes through a classified ranged GET (header cached per asset, tiles from ``tiles``
    when a block prefetched them): HTTP 429/5xx, timeouts and short bodies are retried with exponential backoff,
    a 403 re-signs with a fresh token, and anything else raises :class:`ReadError` at once (``corrupt`` when whole
    bytes do not decode, ``missing`` on 404). ``counters.add("requests")`` counts every HTTP request.
    Local files are read directly (call inside ``rasterio.Env(**settings.gdal_options())``).
    """
    if not href.startswith(("http://", "https://")):
        return _read_local(href.removeprefix("file://"), lon, lat, size, resolution)
    own = tiles is None
    tiles = tiles or TileCache()

    def count() -> None:
        if counters is not None:
            counters.add("requests")

    last: ReadError | None = None
    try:
        for attempt in range(settings.retries + 1):
            signed = signer.sign(href)
            try:
                return _read_remote(href, signed, lon, lat, size, resolution, settings, tiles, count)
            except FetchError as exc:
                last = ReadError(exc.kind, str(exc))
            if counters is not None:
                counters.add(last.kind)
            if last.kind not in ("transient", "auth"):
                raise last
            if last.kind == "auth":
                signer.invalidate(href, signed)
                if not signer.needs_signing(href):
                    raise ReadError("auth", f"{last} and the href is not signed (signing='never')")
            if attempt < settings.retries:
                delay = settings.backoff_s * (2 ** attempt) * (0.75 + 0.5 * np.random.random())
                log.debug("retrying %s in %.2fs after %s", href, delay, last)
                time.sleep(delay if last.kind != "auth" else 0)
        raise ReadError(last.kind, f"gave up after {settings.retries + 1} attempts: {last}")
    finally:
        if own:
            tiles.clear()
