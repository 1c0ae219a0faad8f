"""Records per (cell, species) pair, accumulated in bounded memory for 100M+ records.

Keys are ``cell << 32 | species``. Incoming keys wait in a buffer; a flush sorts the buffer, reduces it to
unique keys and merges them into sorted per-partition arrays (partitions are ranges of cells), so a merge
copies one partition at a time, never the whole table. Memory is about 12 bytes per distinct pair
(int64 key + uint32 count; + 8 with weights) plus one buffer and one partition copy.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_LOW = np.int64(0xFFFFFFFF)


def _runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.empty(0, dtype=np.int64)
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def reduce_keys(key: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sorted unique keys with their record counts (uint32) and summed weights (or None)."""
    if w is None:
        k = np.sort(key)
        starts = _runs(k)
        return k[starts], np.diff(np.append(starts, len(k))).astype(np.uint32), None
    order = np.argsort(key)
    k = key[order]
    starts = _runs(k)
    return k[starts], np.diff(np.append(starts, len(k))).astype(np.uint32), np.add.reduceat(w[order], starts)


class PairCounts:
    """Sorted unique (cell, species) keys with counts (and weights), partitioned by cell range."""

    def __init__(self, n_cells: int, *, buffer_records: int = 4_000_000, partitions: int = 64,
                 weighted: bool | None = None) -> None:
        parts = max(1, min(partitions, n_cells))
        self.edges = np.linspace(0, n_cells, parts + 1).astype(np.int64)
        """Cell range of partition p: ``edges[p] .. edges[p + 1]``."""
        self._bounds = self.edges[1:-1] << 32  # first key of partitions 1..P-1
        self.keys = [np.empty(0, np.int64) for _ in range(parts)]
        self.counts = [np.empty(0, np.uint32) for _ in range(parts)]
        self.weights: list[np.ndarray] | None = None
        self._buf: list[np.ndarray] = []
        self._buf_w: list[np.ndarray] = []
        self._buffered = 0
        self._buffer_records = buffer_records

    def __len__(self) -> int:
        self.flush()
        return sum(len(k) for k in self.keys)

    def add(self, key: np.ndarray, weight: np.ndarray | None = None) -> None:
        """Queue int64 keys (and their weights); merged on the next flush."""
        if not len(key):
            return
        self._buf.append(np.asarray(key, dtype=np.int64))
        if weight is not None:
            self._buf_w.append(np.asarray(weight, dtype=np.float64))
        self._buffered += len(key)
        held = sum(len(k) for k in self.keys)
        if self._buffered >= max(self._buffer_records, held // 4):  # amortised: merges copy O(held)
            self.flush()

    def flush(self) -> None:
        """Merge the buffer into the partitions."""
        if not self._buf:
            return
        key = np.concatenate(self._buf)
        w = np.concatenate(self._buf_w) if self._buf_w else None
        self._buf, self._buf_w, self._buffered = [], [], 0
        k, n, ws = reduce_keys(key, w)
        del key, w
        if ws is not None and self.weights is None:
            self.weights = [np.empty(0, np.float64) for _ in self.keys]
        cuts = np.concatenate([[0], np.searchsorted(k, self._bounds), [len(k)]])
        for p in range(len(self.keys)):
            a, b = cuts[p], cuts[p + 1]
            if a < b:
                self._merge(p, k[a:b], n[a:b], None if ws is None else ws[a:b])

    def _merge(self, p: int, k: np.ndarray, n: np.ndarray, w: np.ndarray | None) -> None:
        keys = self.keys[p]
        if not len(keys):
            self.keys[p], self.counts[p] = k.copy(), n.copy()
            if w is not None:
                self.weights[p] = w.copy()
            return
        pos = np.searchsorted(keys, k)
        hit = pos < len(keys)
        hit[hit] = keys[pos[hit]] == k[hit]
        self.counts[p][pos[hit]] += n[hit]
        if w is not None:
            self.weights[p][pos[hit]] += w[hit]
        new = ~hit
        if new.any():
            at = pos[new]
            self.keys[p] = np.insert(keys, at, k[new])
            self.counts[p] = np.insert(self.counts[p], at, n[new])
            if w is not None:
                self.weights[p] = np.insert(self.weights[p], at, w[new])

    def parts(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(keys, counts, weights or None) per partition, in key order (after a flush)."""
        self.flush()
        for p in range(len(self.keys)):
            yield self.keys[p], self.counts[p], None if self.weights is None else self.weights[p]

    def species_present(self) -> int:
        """Distinct species codes over all pairs."""
        seen = np.zeros(0, dtype=bool)
        for keys, _, _ in self.parts():
            if not len(keys):
                continue
            codes = np.unique(keys & _LOW)
            if codes[-1] >= len(seen):
                seen = np.concatenate([seen, np.zeros(int(codes[-1]) + 1 - len(seen), dtype=bool)])
            seen[codes] = True
        return int(seen.sum())
