"""The partitioned pair table gives exactly what one big np.unique gives, whatever the buffer and partitions."""

import numpy as np
import pytest

from geoprom3e.maps.pair_counts import PairCounts


@pytest.mark.parametrize(("buffer", "partitions", "weighted"), [(1, 1, False), (700, 7, True), (10**6, 64, False)])
def test_pair_counts_match_unique(buffer, partitions, weighted):
    rng = np.random.default_rng(buffer)
    n_cells = 5000
    chunks = []
    for _ in range(13):
        m = int(rng.integers(0, 2000))
        cell = rng.integers(0, n_cells, m)
        cell[: m // 3] = rng.integers(0, 50, m // 3)  # a dense corner: many repeats
        chunks.append(((cell << 32) | rng.integers(0, 300, m), rng.uniform(0.5, 3, m) if weighted else None))
    table = PairCounts(n_cells, buffer_records=buffer, partitions=partitions)
    for key, w in chunks:
        table.add(key, w)
    allk = np.concatenate([c[0] for c in chunks])
    ref_k, inv, ref_n = np.unique(allk, return_inverse=True, return_counts=True)
    parts = list(table.parts())
    assert np.array_equal(np.concatenate([p[0] for p in parts]), ref_k)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), ref_n)
    if weighted:
        ref_w = np.bincount(inv, weights=np.concatenate([c[1] for c in chunks]))
        assert np.allclose(np.concatenate([p[2] for p in parts]), ref_w)
    assert len(table) == len(ref_k)
    assert table.species_present() == len(np.unique(allk & 0xFFFFFFFF))
    for p, (keys, _, _) in enumerate(parts):  # every key sits in its partition's cell range
        assert np.all((keys >> 32) >= table.edges[p]) and np.all((keys >> 32) < table.edges[p + 1])
