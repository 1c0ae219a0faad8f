"""Encode many inputs: preprocessing in worker processes, pinned host memory, GPU batches, per-item failures.

The engine calls :func:`encode_batches`; failures of single items (a corrupt photo) are recorded, not fatal,
unless ``on_error="raise"``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from geoprom3e.encoders.base import FrozenEncoder
from geoprom3e.errors import ConfigError, GeoProm3eError
from geoprom3e.modalities import EMBED_DIM
from geoprom3e.progress import ProgressCallback, report

log = logging.getLogger(__name__)

ProgressFn = ProgressCallback
"""Receives a :class:`~geoprom3e.progress.ProgressEvent` (stage ``encode``, unit ``items``) after each batch."""


@dataclass(frozen=True)
class EncodeResult:
    """Embeddings of a list of inputs, with the ones that failed."""

    embeddings: np.ndarray
    """[N, 512] float32, L2-normalised; rows of failed items are NaN."""
    failed: tuple[tuple[int, str], ...] = field(default=())
    """(index, one-line reason) of each item that could not be encoded."""

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows that were encoded."""
        return np.isfinite(self.embeddings).all(axis=1)


class _Passthrough:
    vectorized = True

    def batch(self, items: Any) -> Any:
        return items


class _Chunks(torch.utils.data.Dataset):
    """Item ``i`` = preprocessed batch ``i`` (runs in a worker): (indices, batch or None, failures)."""

    def __init__(self, items: Sequence[Any], preprocessor: Any, batch_size: int) -> None:
        self.items, self.pre, self.bs = items, preprocessor, batch_size

    def __len__(self) -> int:
        return (len(self.items) + self.bs - 1) // self.bs

    def __getitem__(self, i: int) -> tuple[list[int], Any, list[tuple[int, str]]]:
        lo, hi = i * self.bs, min((i + 1) * self.bs, len(self.items))
        if getattr(self.pre, "vectorized", False):
            return list(range(lo, hi)), self.pre.batch(self.items[lo:hi]), []
        done, good, failed = [], [], []
        for j in range(lo, hi):
            try:
                one = self.pre(self.items[j]) if hasattr(self.pre, "collate") else self.pre.batch([self.items[j]])
                good.append(one)
                done.append(j)
            except GeoProm3eError as exc:
                failed.append((j, str(exc)))
        if not good:
            return [], None, failed
        if hasattr(self.pre, "collate"):
            return done, self.pre.collate(good), failed
        if isinstance(good[0], dict):
            batch = {k: torch.cat([g[k] for g in good]) for k in good[0]}
        else:
            batch = torch.cat(good)
        return done, batch, failed


def _encode_split(encoder: FrozenEncoder, batch: Any) -> torch.Tensor:
    """Encode; on CUDA out-of-memory split the batch in halves and retry."""
    try:
        return encoder.encode(batch)
    except torch.OutOfMemoryError:
        n = (next(iter(batch.values())) if isinstance(batch, dict) else batch).shape[0]
        if n <= 1:
            raise
        torch.cuda.empty_cache()
        log.warning("CUDA out of memory at batch %d: splitting", n)
        h = n // 2
        first = {k: v[:h] for k, v in batch.items()} if isinstance(batch, dict) else batch[:h]
        second = {k: v[h:] for k, v in batch.items()} if isinstance(batch, dict) else batch[h:]
        return torch.cat([_encode_split(encoder, first), _encode_split(encoder, second)])


def encode_batches(
    encoder: FrozenEncoder,
    items: Sequence[Any],
    *,
    batch_size: int | None = None,
    num_workers: int = 0,
    prefetch_factor: int = 2,
    on_error: str = "record",
    progress: ProgressFn | None = None,
) -> EncodeResult:
    """Embed ``items`` (paths, chips, an [N, 2] array of (lat, lon), strings, ...) in batches.

    ``num_workers > 0`` decodes and preprocesses in that many worker processes while the model runs; batches
    are pinned and copied asynchronously when the encoder is on a GPU. ``on_error="record"`` keeps going and
    lists failed items in the result; ``"raise"`` stops at the first one.
    """
    if on_error not in ("record", "raise"):
        raise ConfigError(f"on_error={on_error!r}: use 'record' or 'raise'")
    pre = encoder.preprocessor
    if getattr(pre, "vectorized", False):
        # cheap, array-wide preprocessing (lat/lon checks, covariate sampling): once, so errors name the bad rows
        items = encoder.preprocess(items)
        pre = _Passthrough()
    n = len(items)
    bs = int(batch_size or encoder.preferred_batch_size)
    if bs < 1:
        raise ConfigError(f"batch size {bs} must be ≥ 1")
    out = np.full((n, EMBED_DIM), np.nan, dtype=np.float32)
    failures: list[tuple[int, str]] = []
    if n == 0:
        return EncodeResult(out)
    loader = torch.utils.data.DataLoader(
        _Chunks(items, pre, bs), batch_size=None, shuffle=False, num_workers=num_workers,
        pin_memory=encoder.device.type == "cuda", prefetch_factor=prefetch_factor if num_workers else None,
        persistent_workers=False,
    )
    done = 0
    for idx, batch, failed in loader:
        if failed:
            if on_error == "raise":
                raise type_of_failure(failed[0][1])
            for j, msg in failed:
                log.warning("item %d failed: %s", j, msg)
            failures.extend(failed)
        if batch is not None:
            out[idx] = _encode_split(encoder, batch).numpy()
        done += len(idx) + len(failed)
        report(progress, "encode", len(idx) + len(failed), n, unit="items")
    return EncodeResult(out, tuple(sorted(failures)))


def type_of_failure(msg: str) -> GeoProm3eError:
    """Re-create the input error of a failed item (raised in the main process)."""
    from geoprom3e.errors import InputError

    return InputError(msg)
