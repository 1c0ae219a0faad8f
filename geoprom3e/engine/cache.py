"""The embedding cache: a georeferenced Zarr store of per-cell embeddings and ProM3E products.

Layout (``xarray.open_zarr(CACHE / "embeddings.zarr", consolidated=True)`` gives a Dataset with a CRS)::

    CACHE/
      embeddings.zarr/                 Zarr v3 group, consolidated metadata; attrs: format, grid, chunk_size
        lat, lon   (or y, x)           1-D cell-centre coordinates in the grid's CRS
        spatial_ref                    CF grid mapping (crs_wkt, GeoTransform) that rioxarray and GDAL read
        <m>_embedding                  float16 [y, x, 512], attrs: encoder / imagery settings (the cache key)
        <m>_present                    bool [y, x]: the cell has a usable embedding
        fused/<name>/                  ProM3E products of one model + visible set + n_samples + seed:
          mu, sigma_l1, visible_bits   (core, computed together), recon_<m> (added on demand)
      commits/<group>/r{i}_c{j}.json   one marker per committed chunk, written last and atomically: the
                                       chunk's failed cells, a checksum of what it holds and, for fused
                                       products, the checksums of the input chunks it was computed from
      locks/                           advisory file locks (metadata, one per writer of a modality)

This module owns every key of the store: other modules call its methods, never spell a Zarr path.
A chunk counts as done only when its marker exists and its checksum matches what the store holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from geoprom3e._version import __version__
from geoprom3e.engine.chunks import Chunk, iter_chunks
from geoprom3e.errors import CacheError, GeoProm3eError, GridError
from geoprom3e.grid import GridSpec
from geoprom3e.io.atomic import atomic_write_text
from geoprom3e.modalities import EMBED_DIM

log = logging.getLogger(__name__)

FORMAT = "geoprom3e-embedding-cache/2"
OLD_FORMATS = ("geoprom3e-embedding-cache/1",)
CORE_PRODUCTS = ("mu", "sigma_l1", "visible_bits")

#: Check every chunk a read returns against the checksum in its commit record. Only benchmarks turn this off,
#: to measure what the checks cost.
VERIFY_READS = True


def emb_key(modality: str) -> str:
    """Variable name of a modality's embeddings."""
    return f"{modality}_embedding"


def present_key(modality: str) -> str:
    """Variable name of a modality's presence mask."""
    return f"{modality}_present"


def recon_key(modality: str) -> str:
    """Variable name of a fused product's reconstruction of ``modality``."""
    return f"recon_{modality}"


def digest(*arrays: np.ndarray) -> str:
    """Checksum of the bytes of ``arrays`` as stored: ``crc32c:<8 hex digits>`` (CRC-32C, hardware-accelerated,
    ~10 GB/s: it detects damaged or missing chunks, not tampering)."""
    import google_crc32c

    crc = 0
    for a in arrays:
        crc = google_crc32c.extend(crc, np.ascontiguousarray(a).tobytes())
    return f"crc32c:{crc:08x}"


@dataclass(frozen=True)
class Window:
    """The cells of a grid inside the cache's grid: rows ``row0:row0+rows``, columns ``col0:col0+cols``."""

    grid: GridSpec
    """The requested grid (its own name, transform and mask)."""
    row0: int
    """First cache row."""
    col0: int
    """First cache column."""

    @property
    def slices(self) -> tuple[slice, slice]:
        """(row slice, column slice) into cache-grid arrays."""
        return (slice(self.row0, self.row0 + self.grid.rows), slice(self.col0, self.col0 + self.grid.cols))

    def clip(self, chunk: Chunk) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """(slices into the chunk's block, slices into the window's arrays) where they overlap."""
        r0, r1 = max(chunk.r0, self.row0), min(chunk.r1, self.row0 + self.grid.rows)
        c0, c1 = max(chunk.c0, self.col0), min(chunk.c1, self.col0 + self.grid.cols)
        return ((slice(r0 - chunk.r0, r1 - chunk.r0), slice(c0 - chunk.c0, c1 - chunk.c0)),
                (slice(r0 - self.row0, r1 - self.row0), slice(c0 - self.col0, c1 - self.col0)))


class EmbeddingCache:
    """An existing cache: ``EmbeddingCache(path)`` (the grid is read from the store). New ones: :meth:`create`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.zarr_path = self.path / "embeddings.zarr"
        meta = self.zarr_path / "zarr.json"
        if self.path.exists() and not self.path.is_dir():
            raise CacheError(f"--cache {str(self.path)!r} is a file, not a cache folder: pass a folder")
        if not meta.is_file():
            hint = "it holds no embeddings.zarr" if self.path.is_dir() else "it does not exist"
            raise CacheError(f"{str(self.path)!r} is not a geoprom3e embedding cache ({hint}): build one with "
                             f"`geoprom3e embed-grid --cache {self.path}`, or pass the right --cache")
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, ValueError) as exc:
            raise CacheError(f"cache {str(self.path)!r} has an unreadable embeddings.zarr/zarr.json ({exc}): "
                             "delete the folder and rebuild it with `geoprom3e embed-grid`") from None
        fmt = attrs.get("format")
        if fmt in OLD_FORMATS:
            raise CacheError(f"cache {str(self.path)!r} was written by an older geoprom3e ({fmt}) and cannot be "
                             f"read: delete it and rebuild with `geoprom3e embed-grid --cache {self.path}`")
        if fmt != FORMAT:
            raise CacheError(f"{str(self.path)!r} is not a geoprom3e embedding cache (format {fmt!r}): "
                             "pass the folder that `geoprom3e embed-grid --cache` wrote")
        try:
            self.grid = GridSpec.from_dict(attrs["grid"])
        except (KeyError, GridError) as exc:
            raise CacheError(f"cache {str(self.path)!r} has no valid grid definition ({exc}): rebuild it") from None
        self.chunk_size = int(attrs["chunk_size"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.root = zarr.open_group(str(self.zarr_path), mode="r+", use_consolidated=False)

    # ------------------------------------------------------------------ creation
    @classmethod
    def open(cls, path: str | Path) -> EmbeddingCache:
        """The existing cache at ``path``; its grid comes from the store."""
        return cls(path)

    @classmethod
    def create(cls, path: str | Path, grid: GridSpec, chunk_size: int = 32) -> EmbeddingCache:
        """Create a cache for ``grid``, or open the existing one at ``path`` when ``grid`` is a window of it."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise CacheError(f"--cache {str(path)!r} is a file, not a cache folder: pass a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create cache folder {str(path)!r} ({exc.strerror}): pass a writable --cache"
            raise CacheError(msg) from None
        with _file_lock(path / "locks" / "metadata.lock"):  # two runs creating one cache: one creates, one opens
            if not (path / "embeddings.zarr" / "zarr.json").is_file():
                # built aside and renamed into place, so no reader ever sees a half-made store
                tmp = path / f".embeddings.zarr.creating-{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                _create_store(tmp, grid, chunk_size)
                os.replace(tmp, path / "embeddings.zarr")
        cache = cls(path)
        cache.window(grid)
        return cache

    # ------------------------------------------------------------------ geometry
    def window(self, grid: GridSpec | None = None) -> Window:
        """Where ``grid`` (default: the whole cache grid) lies in the cache; one line when it is not a window."""
        if grid is None:
            return Window(self.grid, 0, 0)
        try:
            r0, c0 = grid.window_in(self.grid)
        except GridError as exc:
            raise CacheError(f"cache {str(self.path)!r}: {exc}") from None
        return Window(grid, r0, c0)

    def chunks(self, window: Window | None = None) -> list[Chunk]:
        """Cache chunks holding masked-in cells of ``window`` (default: the whole grid), row-major."""
        window = window or self.window()
        mask = self.grid.mask()
        sub = np.zeros_like(mask)
        rs, cs = window.slices
        sub[rs, cs] = mask[rs, cs] & window.grid.mask()
        return list(iter_chunks(self.grid, self.chunk_size, sub))

    # ------------------------------------------------------------------ modalities
    def modality_keys(self) -> dict[str, dict[str, Any]]:
        """What built each modality (encoder identity, imagery settings), read from each array's own metadata."""
        out = {}
        for name in sorted(self.root.array_keys()):
            if name.endswith("_embedding"):
                out[name[: -len("_embedding")]] = dict(self.root[name].attrs).get("cache_key", {})
        return out

    def modalities(self) -> list[str]:
        """Modalities the cache holds."""
        return list(self.modality_keys())

    def ensure_modality(self, modality: str, key: dict[str, Any]) -> None:
        """Create the arrays of ``modality`` or check that the existing ones were built with the same ``key``.

        Runs under the cache's metadata lock, so writers adding different modalities at once never lose one.
        """
        key = json.loads(json.dumps(key, sort_keys=True, default=str))
        with _file_lock(self.path / "locks" / "metadata.lock"):
            self._refresh()
            keys = self.modality_keys()
            if modality in keys:
                _check_same_key(self.path, modality, keys[modality], key)
                return
            rows, cols = self.grid.shape
            c = self.chunk_size
            dims = _dims(self.grid)
            common = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref", "modality": modality}
            self.root.create_array(present_key(modality), shape=(rows, cols), chunks=(c, c), dtype="bool",
                                   fill_value=False, dimension_names=dims,
                                   attributes={**common, "long_name": f"cell has a {modality} embedding"})
            self.root.create_array(emb_key(modality), shape=(rows, cols, EMBED_DIM), chunks=(c, c, EMBED_DIM),
                                   dtype="float16", fill_value=np.nan, compressors=None,
                                   dimension_names=(*dims, "feature"),
                                   attributes={**common, "long_name": f"{modality} embedding (frozen encoder)",
                                               "units": "1", "cache_key": key,
                                               **{k: json.dumps(v) if isinstance(v, dict) else str(v)
                                                  for k, v in key.items()}})
            self._consolidate()

    # ------------------------------------------------------------------ commits
    def _marker(self, group: str, chunk: Chunk) -> Path:
        return self.path / "commits" / group / f"{chunk.id}.json"

    def marker(self, group: str, chunk: Chunk) -> dict[str, Any] | None:
        """The commit record of ``chunk`` of ``group``, or None when it was never committed (or was unmarked)."""
        p = self._marker(group, chunk)
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a torn marker never counts as a commit

    def is_committed(self, group: str, chunk: Chunk) -> bool:
        """True when ``chunk`` of ``group`` (a modality or a fused product) was fully written."""
        return self.marker(group, chunk) is not None

    def commit(self, group: str, chunk: Chunk, info: dict[str, Any]) -> None:
        """Mark ``chunk`` of ``group`` done (call only after its arrays were written)."""
        try:
            atomic_write_text(self._marker(group, chunk), json.dumps(info, default=str))
        except GeoProm3eError as exc:
            raise CacheError(f"cannot commit chunk {chunk.id} of {group} in {str(self.path)!r}: {exc}") from None

    def uncommit(self, group: str, chunk: Chunk) -> None:
        """Forget ``chunk`` of ``group`` so that the next run recomputes it."""
        self._marker(group, chunk).unlink(missing_ok=True)

    def commit_info(self, group: str) -> list[dict[str, Any]]:
        """Every committed chunk's marker contents for ``group``."""
        folder = self.path / "commits" / group
        out = []
        for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            with contextlib.suppress(ValueError, OSError):
                out.append(json.loads(p.read_text()))
        return out

    def has_failures(self, group: str, chunk: Chunk, retryable: Any = None) -> bool:
        """True when ``chunk`` of ``group`` was committed with failed cells (``retryable(reason)`` filters them)."""
        info = self.marker(group, chunk)
        fails = (info or {}).get("failures") or []
        return any(retryable is None or retryable(f.get("reason", "")) for f in fails)

    def failures(self, group: str) -> list[dict[str, Any]]:
        """All failed cells recorded for ``group`` (row, col, reason)."""
        return [f for info in self.commit_info(group) for f in info.get("failures", [])]

    # ------------------------------------------------------------------ embeddings
    def write_modality(self, modality: str, chunk: Chunk, emb: np.ndarray, present: np.ndarray,
                       failures: Iterable[dict[str, Any]] = ()) -> None:
        """Write one chunk of embeddings [h, w, 512] and presence [h, w], then commit it with its checksum."""
        rs, cs = chunk.slices
        e16 = np.asarray(emb, dtype=np.float16)
        p = np.asarray(present, dtype=bool)
        try:
            self.root[emb_key(modality)][rs, cs, :] = e16
            self.root[present_key(modality)][rs, cs] = p
        except OSError as exc:
            raise _disk_error(self.path, exc) from None
        self.commit(modality, chunk, {"chunk": chunk.id, "cells": int(p.size), "present": int(p.sum()),
                                      "failures": list(failures), "digest": digest(e16, p)})

    def read_modality(self, modality: str, chunk: Chunk, *, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings float16 [h, w, 512], present [h, w]) of one committed chunk, checked against its checksum."""
        if emb_key(modality) not in self.root:
            raise CacheError(
                f"cache {str(self.path)!r} has no {modality!r} embeddings "
                f"(it has {', '.join(self.modalities()) or 'none'}): run "
                f"`geoprom3e embed-grid --cache {self.path} --modalities {modality}`"
            )
        info = self.marker(modality, chunk)
        if info is None:
            raise CacheError(f"chunk {chunk.id} of {modality!r} is not in cache {str(self.path)!r} yet (an "
                             f"interrupted or repaired embed-grid?): run `geoprom3e embed-grid --cache {self.path} "
                             f"--modalities {modality}` to finish it")
        rs, cs = chunk.slices
        e, p = self._read(modality, chunk, (emb_key(modality), (rs, cs, slice(None))),
                          (present_key(modality), (rs, cs)))
        if verify and VERIFY_READS and info.get("digest") != digest(e, p):
            raise self.corrupt(modality, chunk, "its data does not match the checksum in its commit record")
        return e, p

    def read_all(self, modality: str, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings float32 [rows, cols, 512], present [rows, cols]) over ``window`` (default: the whole
        grid), chunk by chunk with checksums verified; cells of uncommitted chunks are NaN / absent."""
        window = window or self.window()
        rows, cols = window.grid.shape
        emb = np.full((rows, cols, EMBED_DIM), np.nan, np.float32)
        present = np.zeros((rows, cols), bool)
        for ch in self.chunks(window):
            if self.marker(modality, ch) is None:
                continue
            e, p = self.read_modality(modality, ch)
            src, dst = window.clip(ch)
            emb[dst] = e[src]
            present[dst] = p[src]
        return emb, present

    def _read(self, group: str, chunk: Chunk, *keys: tuple[str, tuple]) -> list[np.ndarray]:
        out = []
        for key, sel in keys:
            try:
                out.append(np.asarray(self.root[key][sel]))
            except (ValueError, RuntimeError, OSError, KeyError) as exc:
                raise self.corrupt(group, chunk, f"{key} cannot be read ({type(exc).__name__})") from None
        return out

    def corrupt(self, group: str, chunk: Chunk, why: str) -> CacheError:
        """The one-line error for a bad chunk, naming it and the repair command."""
        return CacheError(f"cache {str(self.path)!r}: chunk {chunk.id} of {group} is corrupt ({why}): run "
                          f"`geoprom3e cache verify --repair --cache {self.path}`, then rerun the command")

    # ------------------------------------------------------------------ fused products
    def fused_groups(self) -> list[str]:
        """Names of the fused products in the cache."""
        return sorted(self.root["fused"].group_keys()) if "fused" in self.root else []

    def fused_attrs(self, name: str) -> dict[str, Any]:
        """Attributes of a fused product (checkpoint, model fingerprint, visible set, n_samples, seed)."""
        return dict(self.root[f"fused/{name}"].attrs)

    def ensure_fused(self, name: str, attrs: dict[str, Any], latent_dim: int, decode: Sequence[str] = ()) -> None:
        """Create the arrays of fused product ``name`` (core products, and a reconstruction per ``decode``)."""
        path = f"fused/{name}"
        wanted = [recon_key(m) for m in decode]
        if path in self.root and all(k in self.root[path] for k in (*CORE_PRODUCTS, *wanted)):
            return
        with _file_lock(self.path / "locks" / "metadata.lock"):
            self._refresh()
            g = self.root.require_group("fused").require_group(name)
            if not dict(g.attrs):
                g.attrs.update(json.loads(json.dumps(attrs, default=str)))
            rows, cols = self.grid.shape
            c = self.chunk_size
            dims = _dims(self.grid)
            common = {"grid_mapping": "spatial_ref"}
            specs = {
                "mu": ((rows, cols, latent_dim), "float16", np.nan, (*dims, "latent"),
                       "posterior mean mu (L2-normalised)"),
                "sigma_l1": ((rows, cols), "float32", np.nan, dims, "||sigma||_1 = sum exp(logvar / 2)"),
                "visible_bits": ((rows, cols), "uint8", 0, dims, "modalities the cell showed the model (bit i = "
                                 "modality i of image, sat, loc, env, text, audio)"),
                **{recon_key(m): ((rows, cols, EMBED_DIM), "float16", np.nan, (*dims, "feature"),
                                  f"reconstruction of the {m} embedding") for m in decode},
            }
            for key, (shape, dtype, fill, dnames, long_name) in specs.items():
                if key in g:
                    continue
                g.create_array(key, shape=shape, chunks=(c, c, *shape[2:]), dtype=dtype, fill_value=fill,
                               compressors=None if len(shape) == 3 else "auto", dimension_names=dnames,
                               attributes={**common, "long_name": long_name})
            self._consolidate()

    def write_fused(self, name: str, chunk: Chunk, arrays: dict[str, np.ndarray], inputs: dict[str, str],
                    product: str) -> None:
        """Write ``arrays`` of one chunk of fused product ``name`` and commit ``product`` (core or a recon)."""
        rs, cs = chunk.slices
        g = self.root[f"fused/{name}"]
        stored = {k: np.asarray(v, dtype=g[k].dtype) for k, v in arrays.items()}
        try:
            for k, v in stored.items():
                g[k][(rs, cs) + (slice(None),) * (v.ndim - 2)] = v
        except OSError as exc:
            raise _disk_error(self.path, exc) from None
        self.commit(f"fused/{name}/{product}", chunk, {
            "chunk": chunk.id, "inputs": inputs, "digests": {k: digest(v) for k, v in stored.items()}})

    def fused_marker(self, name: str, product: str, chunk: Chunk) -> dict[str, Any] | None:
        """Commit record of ``product`` (``core`` or ``recon_<m>``) for one chunk of fused product ``name``."""
        return self.marker(f"fused/{name}/{product}", chunk)

    def read_fused(self, name: str, product: str, chunk: Chunk, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Arrays ``keys`` of one committed chunk of a fused product, each checked against its checksum."""
        info = self.fused_marker(name, product, chunk)
        group = f"fused/{name}/{product}"
        if info is None:
            raise CacheError(f"chunk {chunk.id} of {group} is not in cache {str(self.path)!r}: rerun the command")
        rs, cs = chunk.slices
        arrays = self._read(group, chunk, *[(f"fused/{name}/{k}", (rs, cs)) for k in keys])
        out = {}
        for k, a in zip(keys, arrays):
            if VERIFY_READS and info.get("digests", {}).get(k) != digest(a):
                raise self.corrupt(group, chunk, f"{k} does not match the checksum in its commit record")
            out[k] = a
        return out

    # ------------------------------------------------------------------ integrity
    def verify(self, repair: bool = False) -> list[dict[str, str]]:
        """Check every committed chunk against its checksum; with ``repair`` unmark bad ones so runs redo them."""
        bad = []
        for m in self.modalities():
            for ch in self.chunks():
                if self.marker(m, ch) is None:
                    continue
                try:
                    self.read_modality(m, ch)
                except CacheError as exc:
                    bad.append({"group": m, "chunk": ch.id, "error": str(exc)})
                    if repair:
                        self.uncommit(m, ch)
        for name in self.fused_groups():
            products = [p.name for p in (self.path / "commits" / "fused" / name).glob("*") if p.is_dir()]
            for product in products:
                keys = list(CORE_PRODUCTS) if product == "core" else [product]
                for ch in self.chunks():
                    if self.fused_marker(name, product, ch) is None:
                        continue
                    try:
                        self.read_fused(name, product, ch, keys)
                    except CacheError as exc:
                        bad.append({"group": f"fused/{name}/{product}", "chunk": ch.id, "error": str(exc)})
                        if repair:
                            self.uncommit(f"fused/{name}/{product}", ch)
        return bad

    # ------------------------------------------------------------------ locking and metadata
    @contextlib.contextmanager
    def writer_lock(self, what: str) -> Iterator[None]:
        """Hold the exclusive writer lock of ``what`` (a modality); a second writer gets one line naming the holder."""
        path = self.path / "locks" / f"{what}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
                raise CacheError(f"cache {str(self.path)!r}: {what} is being written by {holder}: wait for that "
                                 "run to finish (or stop it), then run this command again") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
                      .encode(), 0)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def fuse_lock(self, name: str) -> Iterator[None]:
        """Exclusive lock of one fused product while it is being computed (a second map waits, then reuses it)."""
        with _file_lock(self.path / "locks" / f"fused-{name}.lock"):
            yield

    def _refresh(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.root = zarr.open_group(str(self.zarr_path), mode="r+", use_consolidated=False)

    def _consolidate(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(self.zarr_path))
        self._refresh()

    # ------------------------------------------------------------------ extra fused arrays (issue 13: hidden tokens)
    def ensure_fused_vectors(self, name: str, arrays: dict[str, tuple[int, str]]) -> None:
        """Create float16 per-cell vector arrays ``key`` [y, x, width] (``arrays``: key → (width, long name)) in the
        existing fused product ``name``, e.g. ProM3E's hidden tokens. Each is written and committed as its own
        product with :meth:`write_fused` (product = key) and read back with :meth:`read_fused`."""
        path = f"fused/{name}"
        if path not in self.root:
            raise CacheError(f"cache {str(self.path)!r} has no fused product {name!r}: fuse the cache first")
        if all(k in self.root[path] for k in arrays):
            return
        with _file_lock(self.path / "locks" / "metadata.lock"):
            self._refresh()
            g = self.root[path]
            rows, cols = self.grid.shape
            c = self.chunk_size
            dims = _dims(self.grid)
            for key, (width, long_name) in arrays.items():
                if key in g:
                    continue
                g.create_array(key, shape=(rows, cols, int(width)), chunks=(c, c, int(width)), dtype="float16",
                               fill_value=np.nan, compressors=None, dimension_names=(*dims, "feature"),
                               attributes={"grid_mapping": "spatial_ref", "long_name": long_name})
            self._consolidate()


# ---------------------------------------------------------------------- helpers
def _dims(grid: GridSpec) -> tuple[str, str]:
    return ("lat", "lon") if grid.epsg == 4326 else ("y", "x")


def _create_store(zpath: Path, grid: GridSpec, chunk_size: int) -> None:
    """A new store: grid attributes, 1-D coordinates and the CF grid mapping, consolidated."""
    create_georeferenced_group(zpath, grid, {"format": FORMAT, "chunk_size": int(chunk_size),
                                             "package_version": __version__,
                                             "title": f"geoprom3e embedding cache for grid {grid.name}"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(zpath))


def create_georeferenced_group(path: Path, grid: GridSpec, attrs: dict[str, Any]) -> Any:
    """A new Zarr group (mode ``w``) with ``grid`` as attribute, 1-D cell-centre coordinates (``lat``/``lon`` or
    ``y``/``x``) and a CF ``spatial_ref`` grid mapping that rioxarray and GDAL read; returns the group."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = zarr.open_group(str(path), mode="w")
        root.attrs.update({"Conventions": "CF-1.8", "grid": json.loads(json.dumps(grid.to_dict())), **attrs})
        x, y = grid.cell_centers_xy()
        ydim, xdim = _dims(grid)
        geo = grid.epsg == 4326
        for name, values, axis in ((ydim, y, "Y"), (xdim, x, "X")):
            a = {"axis": axis}
            if geo:
                a.update({"units": "degrees_north" if axis == "Y" else "degrees_east",
                          "standard_name": "latitude" if axis == "Y" else "longitude"})
            else:
                a.update({"units": "m", "standard_name": "projection_y_coordinate" if axis == "Y"
                          else "projection_x_coordinate"})
            arr = root.create_array(name, shape=values.shape, dtype="float64", dimension_names=(name,), attributes=a)
            arr[:] = values
        crs = grid.crs_obj
        t = grid.transform
        ref = root.create_array("spatial_ref", shape=(), dtype="int64", fill_value=0, attributes={
            **crs.to_cf(), "crs_wkt": crs.to_wkt(), "spatial_ref": crs.to_wkt(),
            "GeoTransform": " ".join(repr(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))})
        ref[...] = 0
    return root


def _check_same_key(path: Path, modality: str, old: dict[str, Any], key: dict[str, Any]) -> None:
    if old == key:
        return
    diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
    detail = "; ".join(f"{k}: cache has {old.get(k)!r}, asked {key.get(k)!r}" for k in diff[:3])
    raise CacheError(f"cache {str(path)!r} holds {modality!r} embeddings built with other settings ({detail}): "
                     "use another --cache, or delete that cache to rebuild")


def _disk_error(path: Path, exc: OSError) -> CacheError:
    import shutil

    try:
        free = shutil.disk_usage(path).free
        room = f"{free / 2**20:.0f} MiB free"
    except OSError:
        room = "free space unknown"
    return CacheError(f"writing to cache {str(path)!r} failed ({exc.strerror or exc}; {room}): free some space "
                      "or pass another --cache, then rerun: committed chunks are kept")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """A blocking advisory lock (``flock``) on ``path``; works across processes on one machine and on NFS v4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
