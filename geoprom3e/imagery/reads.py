"""Windowed COG reads in the file's own CRS, centred on a cell, with the GDAL settings large STAC reads need and
retries that tell transient faults (429/5xx/timeouts/truncated bodies), expired tokens (403) and bad files apart."""

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
    """GDAL_HTTP_MAX_RETRY: retries GDAL itself makes on 429/5xx before reporting a failure."""

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
    """A chip read that failed; ``kind`` is ``transient``, ``auth`` or ``permanent``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_DECODE = ("tiffreadencoded", "ireadblock", "decod", "deflate", "lzw", "zstd", "jpeg", "short read", "read failed")
_TRANSIENT = ("response code: 5", "response code: 429", "timed out", "timeout", "transfer closed",
              "connection reset", "couldn't connect", "could not connect", "empty reply", "recv failure",
              "partial file", "outstanding read data", "read error", "failed to connect")


def _probe_status(url: str, timeout: float) -> int | None:
    """HTTP status of a 1-byte ranged GET (GDAL hides it behind "does not exist"), ``None`` on network errors."""
    import requests

    try:
        r = requests.get(url, headers={"Range": "bytes=0-0"}, timeout=timeout, stream=True)
        r.close()
        return r.status_code
    except requests.RequestException:
        return None


def classify(exc: Exception, url: str, timeout: float) -> ReadError:
    """Turn a rasterio/GDAL error on ``url`` into a :class:`ReadError` with its kind."""
    parts, e = [], exc
    while e is not None and len(parts) < 4:  # rasterio chains the GDAL error ("Read failed. See previous ...")
        parts.append(str(e))
        e = e.__cause__ or e.__context__
    msg = " <- ".join(parts).replace("\n", " ")
    low = msg.lower()
    if "response code: 403" in low:
        return ReadError("auth", f"HTTP 403 (token expired or missing): {msg[:160]}")
    if any(t in low for t in _TRANSIENT):
        return ReadError("transient", msg[:200])
    if url.startswith(("http://", "https://")) and ("does not exist" in low or "no such file" in low):
        status = _probe_status(url, timeout)
        if status == 403:
            return ReadError("auth", "HTTP 403 on open (token expired or missing)")
        if status is None or status == 429 or status >= 500:
            return ReadError("transient", f"HTTP {status or 'connection error'} on open")
        if status == 404:
            return ReadError("permanent", "asset file not found (HTTP 404)")
        return ReadError("transient", f"open failed although the server answers HTTP {status}: {msg[:120]}")
    if url.startswith(("http://", "https://")) and any(t in low for t in _DECODE):
        # a block that does not decode after an HTTP read is most often a body cut short: try again
        return ReadError("transient", f"block read failed (truncated response?): {msg[:160]}")
    return ReadError("permanent", f"unreadable COG: {msg[:200]}")


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


def read_window_once(url: str, lon: float, lat: float, size: int, resolution: float) -> WindowRead:
    """Open ``url`` (signed already) and read the chip window; partial windows are padded with nodata."""
    with rasterio.open(url) as ds:
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


def read_window(href: str, lon: float, lat: float, size: int, resolution: float, signer: Signer,
                settings: ReadSettings, counters=None) -> WindowRead:
    """Read one chip window of the (unsigned) ``href``, signing right before each attempt.

    Transient faults are retried with exponential backoff, a 403 re-signs with a fresh token, anything else
    raises :class:`ReadError` at once. Call inside ``rasterio.Env(**settings.gdal_options())``.
    """
    last: ReadError | None = None
    verified = False
    for attempt in range(settings.retries + 1):
        signed = signer.sign(href)
        try:
            return read_window_once(signed, lon, lat, size, resolution)
        except rasterio.errors.RasterioError as exc:
            last = classify(exc, signed, settings.http_timeout_s)
            if signed.startswith(("http://", "https://")):
                clear_gdal_http_cache(signed)  # GDAL caches the failure; make the next try (or run) ask again
                if last.kind == "permanent" and not verified:
                    # a header cut short looks like a corrupt file: read once more before calling it corrupt
                    verified = True
                    try:
                        return read_window_once(signed, lon, lat, size, resolution)
                    except rasterio.errors.RasterioError as exc2:
                        last = classify(exc2, signed, settings.http_timeout_s)
                        clear_gdal_http_cache(signed)
        if counters is not None:
            counters.add(last.kind)
        if last.kind == "permanent":
            raise last
        if last.kind == "auth":
            signer.invalidate(href, signed)
            if not signer.needs_signing(href):
                raise ReadError("permanent", f"{last} and the href is not signed (signing='never')")
        if attempt < settings.retries:
            delay = settings.backoff_s * (2 ** attempt) * (0.75 + 0.5 * np.random.random())
            log.debug("retrying %s in %.2fs after %s", href, delay, last)
            time.sleep(delay if last.kind != "auth" else 0)
    raise ReadError(last.kind, f"gave up after {settings.retries + 1} attempts: {last}")
