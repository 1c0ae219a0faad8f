"""The embedding cache: a Zarr store of per-cell modality embeddings, committed chunk by chunk.

Layout (``xarray``/``zarr`` readable)::

    CACHE/
      embeddings.zarr/              the Zarr group (``xarray.open_zarr(CACHE / "embeddings.zarr")``)
        zarr.json                   attrs: format, grid, chunk size, per-modality key (encoder, imagery)
        emb_<modality>              float16 [rows, cols, 512] (chunked like the engine's chunks)
        present_<modality>          bool   [rows, cols]: the cell has a usable embedding
        fused_<hash>/               ProM3E products (see ``geoprom3e.engine.fuse``)
      commits/<group>/r{i}_c{j}.json  one marker per committed chunk, written last and atomically,
                                    holding the chunk's failed cells and reasons

A chunk counts as done only when its marker exists, so a run killed mid-chunk redoes that chunk on
resume and never trusts a half-written one. Each chunk lands in its own Zarr chunk files, so separate
processes (Dask workers) can commit different chunks at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from geoprom3e._version import __version__
from geoprom3e.engine.chunks import Chunk
from geoprom3e.errors import CacheError
from geoprom3e.grid import GridSpec
from geoprom3e.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

FORMAT = "geoprom3e-embedding-cache/1"
EMBED_DIM = 512


class EmbeddingCache:
    """Open or create the cache for one grid; modalities are added with :meth:`ensure_modality`."""

    def __init__(self, path: str | Path, grid: GridSpec, chunk_size: int = 32, *, create: bool = True) -> None:
        self.path = Path(path)
        self.grid = grid
        self.chunk_size = chunk_size
        self.zarr_path = self.path / "embeddings.zarr"
        exists = (self.zarr_path / "zarr.json").is_file()
        if not exists and not create:
            raise CacheError(
                f"no embedding cache at {str(self.path)!r} for grid {grid.name!r}: build it with "
                f"`geoprom3e embed-grid --grid {grid.name} --cache {self.path}`"
            )
        if exists:
            self.root = zarr.open_group(str(self.zarr_path), mode="r+")
            attrs = dict(self.root.attrs)
            if attrs.get("format") != FORMAT:
                raise CacheError(
                    f"{str(self.path)!r} is not a geoprom3e embedding cache (format {attrs.get('format')!r})"
                )
            if attrs.get("grid") != _grid_key(grid):
                raise CacheError(
                    f"cache {str(self.path)!r} was built for grid {attrs.get('grid', {}).get('name')!r} "
                    f"{attrs.get('grid')}, not {grid.name!r} {_grid_key(grid)}: use another --cache"
                )
            self.chunk_size = int(attrs["chunk_size"])
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.root = zarr.open_group(str(self.zarr_path), mode="a")
            self.root.attrs.update(
                {"format": FORMAT, "grid": _grid_key(grid), "chunk_size": chunk_size, "modalities": {},
                 "package_version": __version__}
            )

    # ------------------------------------------------------------------ modalities
    def modality_keys(self) -> dict[str, dict[str, Any]]:
        """What built each modality (encoder identity, imagery settings)."""
        return dict(self.root.attrs.get("modalities", {}))

    def ensure_modality(self, modality: str, key: dict[str, Any]) -> None:
        """Create the arrays of ``modality`` or check that an existing one was built with the same ``key``."""
        keys = self.modality_keys()
        key = json.loads(json.dumps(key, sort_keys=True, default=str))
        if modality in keys:
            old = keys[modality]
            if old != key:
                diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
                detail = "; ".join(f"{k}: cache has {old.get(k)!r}, asked {key.get(k)!r}" for k in diff[:3])
                raise CacheError(
                    f"cache {str(self.path)!r} holds {modality!r} embeddings built with other settings ({detail}): "
                    "use another --cache, or delete that cache to rebuild"
                )
            return
        rows, cols = self.grid.shape
        c = self.chunk_size
        self.root.create_array(f"emb_{modality}", shape=(rows, cols, EMBED_DIM), chunks=(c, c, EMBED_DIM),
                               dtype="float16", fill_value=np.nan, overwrite=True, compressors=None,
                               dimension_names=("y", "x", "feature"))
        self.root.create_array(f"present_{modality}", shape=(rows, cols), chunks=(c, c), dtype="bool",
                               fill_value=False, overwrite=True, dimension_names=("y", "x"))
        keys[modality] = key
        self.root.attrs["modalities"] = keys

    def modalities(self) -> list[str]:
        """Modalities the cache holds."""
        return list(self.modality_keys())

    # ------------------------------------------------------------------ commits
    def _marker(self, group: str, chunk: Chunk) -> Path:
        return self.path / "commits" / group / f"{chunk.id}.json"

    def is_committed(self, group: str, chunk: Chunk) -> bool:
        """True when ``chunk`` of ``group`` (a modality or a fused product) was fully written."""
        return self._marker(group, chunk).is_file()

    def commit(self, group: str, chunk: Chunk, info: dict[str, Any]) -> None:
        """Mark ``chunk`` of ``group`` done (call only after its arrays were written)."""
        atomic_write_text(self._marker(group, chunk), json.dumps(info, default=str))

    def has_failures(self, group: str, chunk: Chunk) -> bool:
        """True when ``chunk`` of ``group`` was committed with failed cells."""
        marker = self._marker(group, chunk)
        return marker.is_file() and bool(json.loads(marker.read_text()).get("failures"))

    def commit_info(self, group: str) -> list[dict[str, Any]]:
        """Every committed chunk's marker contents for ``group``."""
        folder = self.path / "commits" / group
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def write_modality(self, modality: str, chunk: Chunk, emb: np.ndarray, present: np.ndarray,
                       failures: Iterable[dict[str, Any]] = ()) -> None:
        """Write one chunk of embeddings [h, w, 512] and presence [h, w], then commit it."""
        rs, cs = chunk.slices
        self.root[f"emb_{modality}"][rs, cs, :] = emb.astype(np.float16)
        self.root[f"present_{modality}"][rs, cs] = present
        fails = list(failures)
        self.commit(modality, chunk, {"chunk": chunk.id, "cells": int(present.size), "present": int(present.sum()),
                                      "failures": fails})

    def read_modality(self, modality: str, chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings float32 [h, w, 512], present [h, w]) of one chunk."""
        if f"emb_{modality}" not in self.root:
            raise CacheError(
                f"cache {str(self.path)!r} has no {modality!r} embeddings "
                f"(it has {', '.join(self.modalities()) or 'none'}): run "
                f"`geoprom3e embed-grid --grid {self.grid.name} --modalities {modality}`"
            )
        rs, cs = chunk.slices
        return (np.asarray(self.root[f"emb_{modality}"][rs, cs, :], dtype=np.float32),
                np.asarray(self.root[f"present_{modality}"][rs, cs]))

    def failures(self, group: str) -> list[dict[str, Any]]:
        """All failed cells recorded for ``group`` (row, col, reason)."""
        return [f for info in self.commit_info(group) for f in info.get("failures", [])]


def _grid_key(grid: GridSpec) -> dict[str, Any]:
    d = grid.to_dict()
    d.pop("description", None)
    return json.loads(json.dumps(d))
