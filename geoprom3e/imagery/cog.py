"""COG bytes over HTTP without GDAL's guesswork: the header of each asset fetched once (and cached per scene), the
tiles a block of chips needs fetched in merged ranged reads, and GDAL decoding from memory.

GDAL reads a ``/vsisparse/`` file whose regions are the cached header and the fetched tile runs (``/vsimem/``), so
every byte it decodes arrived whole through :func:`geoprom3e.imagery.http.fetch_range` (which sees the HTTP status).
A window that fails to decode from whole bytes is therefore a corrupt file, never an outage.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager

import rasterio
from rasterio.io import MemoryFile
from rasterio.windows import Window

from geoprom3e.imagery.http import FetchError, fetch_range

_LEADER = 4  # GDAL COGs may carry a 4-byte size leader before each tile and a 4-byte trailer after it


class _NeedMore(Exception):
    """The tile index lies past the header bytes fetched so far."""


class CogHeader:
    """The first bytes of one COG (IFDs and tile index) and what GDAL reads from them."""

    def __init__(self, href: str, data: bytes, size: int) -> None:
        self.href, self.size, self.length = href, size, len(data)
        self.mem = MemoryFile(data)
        self._lock = threading.Lock()
        self._offsets: dict[tuple[int, int, int], tuple[int, int]] = {}
        try:
            self._ds = rasterio.open(self.mem.name)
        except rasterio.errors.RasterioError as exc:
            self.mem.close()
            if size > len(data):
                raise _NeedMore() from None
            raise FetchError("corrupt", f"not a readable TIFF ({str(exc)[:160]})") from None
        ds = self._ds
        self.crs, self.transform = ds.crs, ds.transform
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.dtype, self.nodata = ds.dtypes[0], ds.nodata
        self.block_h, self.block_w = ds.block_shapes[0]
        self.band_tiles = ds.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE", "PIXEL").upper() == "BAND"
        self._block_range(1, 0, 0)  # the tile index must be inside the header bytes

    def close(self) -> None:
        """Release the in-memory copy."""
        self._ds.close()
        self.mem.close()

    def _block_range(self, band: int, bx: int, by: int) -> tuple[int, int]:
        key = (band, bx, by)
        with self._lock:
            hit = self._offsets.get(key)
            if hit is None:
                try:
                    off = self._ds.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=band)
                    n = self._ds.get_tag_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", bidx=band)
                except rasterio.errors.RasterioError:
                    off = n = None
                if off is None or n is None:
                    if self.size > self.length:
                        raise _NeedMore()
                    raise FetchError("corrupt", f"tile ({bx}, {by}) has no offset in the tile index")
                hit = self._offsets[key] = (int(off), int(n))
        return hit

    def ranges(self, win: Window) -> list[tuple[int, int]]:
        """Byte ranges ``[start, stop)`` (with tile leader and trailer) of the full-resolution tiles under ``win``."""
        c0, r0 = max(int(win.col_off), 0), max(int(win.row_off), 0)
        c1, r1 = min(int(win.col_off + win.width), self.width), min(int(win.row_off + win.height), self.height)
        if c1 <= c0 or r1 <= r0:
            return []
        out = []
        for band in (range(1, self.count + 1) if self.band_tiles else (1,)):
            for by in range(r0 // self.block_h, (r1 - 1) // self.block_h + 1):
                for bx in range(c0 // self.block_w, (c1 - 1) // self.block_w + 1):
                    off, n = self._block_range(band, bx, by)
                    if n > 0:
                        out.append((max(off - _LEADER, 0), min(off + n + _LEADER, self.size)))
        return out


class HeaderCache:
    """Headers of recently read COGs, per unsigned href (one fetch per scene asset and process)."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, CogHeader] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, href: str, url: str, first_bytes: int, timeout_s: float, count) -> CogHeader:
        """The header of ``href`` (``url`` is its signed form), fetched with ranged GETs the first time."""
        with self._lock:
            if href in self._items:
                self._items.move_to_end(href)
                return self._items[href]
        n = first_bytes
        while True:
            count()
            data, size = fetch_range(url, 0, n, timeout_s)
            try:
                header = CogHeader(href, data, size if size is not None else len(data))
                break
            except _NeedMore:
                if n >= (64 << 20) or (size is not None and n >= size):
                    raise FetchError("corrupt", "the tile index lies past the first 64 MiB") from None
                n *= 4
        with self._lock:
            self._items[href] = header
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)[1].close()
        return header

    def clear(self) -> None:
        """Forget every header."""
        with self._lock:
            for h in self._items.values():
                h.close()
            self._items.clear()


HEADERS = HeaderCache()
"""The process-wide header cache (headers are immutable for a given href)."""


def merge_runs(ranges, max_gap: int, max_run: int) -> list[tuple[int, int]]:
    """Sorted ``[start, stop)`` runs covering ``ranges``; neighbours closer than ``max_gap`` bytes become one run
    (one request) while it stays under ``max_run`` bytes."""
    runs: list[list[int]] = []
    for a, b in sorted(set(ranges)):
        if runs and a - runs[-1][1] <= max_gap and max(b, runs[-1][1]) - runs[-1][0] <= max_run:
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])
    return [(a, b) for a, b in runs]


class TileCache:
    """Tile bytes fetched for one block of chips, per href (released when the block is done)."""

    def __init__(self) -> None:
        self._runs: dict[str, list[tuple[int, int, MemoryFile]]] = {}
        self._lock = threading.Lock()

    def _find(self, href: str, a: int, b: int):
        for s, e, m in self._runs.get(href, ()):
            if s <= a and b <= e:
                return s, e, m
        return None

    def missing(self, href: str, ranges) -> list[tuple[int, int]]:
        """The ranges not held yet."""
        with self._lock:
            return [(a, b) for a, b in ranges if self._find(href, a, b) is None]

    def add(self, href: str, start: int, data: bytes) -> None:
        """Keep ``data`` (bytes ``[start, start + len)`` of ``href``)."""
        with self._lock:
            self._runs.setdefault(href, []).append((start, start + len(data), MemoryFile(data)))

    def fetch(self, href: str, url: str, runs, timeout_s: float, count) -> None:
        """Fetch ``runs`` of ``url`` and keep them; raises :class:`FetchError` on the first failure."""
        for a, b in runs:
            count()
            data, _ = fetch_range(url, a, b, timeout_s)
            self.add(href, a, data)

    @contextmanager
    def sparse(self, header: CogHeader, ranges):
        """Path of a ``/vsisparse/`` file holding the header and the tiles under ``ranges`` (all must be held)."""
        regions = [(0, header.length, header.mem.name)]
        with self._lock:
            seen = set()
            for a, b in ranges:
                s, e, m = self._find(header.href, a, b)
                if m.name not in seen:
                    seen.add(m.name)
                    regions.append((s, e - s, m.name))
        xml = "".join(f"<SubfileRegion><Filename relative='0'>{name}</Filename><DestinationOffset>{dest}"
                      f"</DestinationOffset><SourceOffset>0</SourceOffset><RegionLength>{n}</RegionLength>"
                      "</SubfileRegion>" for dest, n, name in regions)
        with MemoryFile(f"<VSISparseFile><Length>{header.size}</Length>{xml}</VSISparseFile>".encode()) as f:
            yield "/vsisparse/" + f.name

    def clear(self) -> None:
        """Release every run."""
        with self._lock:
            for runs in self._runs.values():
                for _, _, m in runs:
                    m.close()
            self._runs.clear()
