"""Benchmarks of ``embedding-map``: peak memory and time on usa-1000x2000 from a synthetic cache, and the cost of
the component fit alone at the published token width (E = 1024) on the default 100k-cell sample.

(a) embedding-map of μ and a register token on usa-1000x2000 (a fresh process; target: peak RSS <= 2 GB);
(b) FastICA and PCA fit of 3 components on 100,000 × 1024 float32 vectors (time and peak RSS, fresh process).

Run: ``python -m pytest tests/bench/test_bench_representations.py -m bench -s``; writes
``bench-results/representations.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .benchutil import write_results

pytestmark = pytest.mark.bench

RESULTS: dict = {}
_HWM = "int([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]) / 1024"


def _prefill(cache_dir: Path, grid, model, keys=("hidden_register1",)) -> str:
    """A cache whose fused core (μ) and hidden tokens ``keys`` are complete and up to date with their inputs, as
    after embed-grid + a first embedding-map; cell vectors are random unit vectors."""
    from geoprom3e.engine import EmbeddingCache, FuseSettings, fused_group, model_fingerprint

    cache = EmbeddingCache.create(cache_dir, grid, 64)
    for m in ("sat", "loc"):
        cache.ensure_modality(m, {"encoder": "bench"})
    settings = FuseSettings(visible=("sat", "loc"))
    group = fused_group(settings, model_fingerprint(model))
    e = model.config.embed_dim
    cache.ensure_fused(group, {"bench": True}, e)
    cache.ensure_fused_vectors(group, {k: (e, k) for k in keys})
    rng = np.random.default_rng(0)
    mask = grid.mask()
    for ch in cache.chunks():
        h, w = ch.shape
        inputs = {}
        for m in ("sat", "loc"):  # commit records only: embedding-map of μ/hidden tokens never reads the inputs
            cache.commit(m, ch, {"chunk": ch.id, "digest": f"bench-{m}", "failures": []})
            inputs[m] = f"bench-{m}"
        v = rng.standard_normal((h, w, e), dtype=np.float32)
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
        core = {"mu": v, "sigma_l1": rng.random((h, w), dtype=np.float32),
                "visible_bits": np.where(mask[ch.slices], 0b110, 0).astype(np.uint8)}
        cache.write_fused(group, ch, core, inputs, "core")
        for k in keys:
            cache.write_fused(group, ch, {k: rng.standard_normal((h, w, e), dtype=np.float32)}, inputs, k)
    return group


_MAP_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from geoprom3e.engine import FuseSettings
from geoprom3e.products import EmbeddingMapSettings, embedding_maps
d, cache = Path(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
res = embedding_maps(cache, out_dir=d / "out", checkpoint=d / "model", device="cpu", overwrite=True,
                     fuse=FuseSettings(visible=("sat", "loc")),
                     settings=EmbeddingMapSettings(tokens="mu,register1", sample=100_000))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": HWM, "sampled": res.details["sampled_cells"]}))
""".replace("HWM", _HWM)

_FIT_SCRIPT = r"""
import json, sys, time
import numpy as np
from geoprom3e.maps.components import fit_components
x = np.random.default_rng(0).standard_normal((100_000, 1024), dtype=np.float32)
x[:, :3] *= np.array([4.0, 3.0, 2.0], np.float32)
x[:, 0] = np.sign(x[:, 0]) * x[:, 0] ** 2  # something non-Gaussian to find
base = HWM
out = {}
for method in ("ica", "pca"):
    t0 = time.perf_counter()
    fit_components(x, method, 3, seed=0)
    out[method + "_seconds"] = time.perf_counter() - t0
out["peak_rss_mb"] = HWM
out["sample_mb"] = x.nbytes / 2**20
print(json.dumps(out))
""".replace("HWM", _HWM)


def test_a_embedding_map_usa_1000x2000_peak_memory_and_time(tmp_path):
    from geoprom3e.grid import get_grid
    from geoprom3e.model import ProM3E, ProM3EConfig

    torch.manual_seed(0)
    model = ProM3E(ProM3EConfig(embed_dim=64, mlp_dim=128, heads=4))
    model.save_checkpoint(tmp_path / "model")
    grid = get_grid("usa-1000x2000")
    _prefill(tmp_path / "cache", grid, model)
    base = subprocess.run([sys.executable, "-c", f"import geoprom3e.products.embedding_map, torch, sklearn; "
                           f"print({_HWM})"], capture_output=True, text=True, check=True)
    out = subprocess.run([sys.executable, "-c", _MAP_SCRIPT, str(tmp_path), str(tmp_path / "cache")],
                         capture_output=True, text=True, check=True)
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    RESULTS["a_embedding_map_usa-1000x2000"] = {
        "cells": int(grid.mask().sum()), "tokens": ["mu", "register1"], "embed_dim": 64,
        "sample": fig["sampled"], "peak_rss_mb": round(fig["peak_rss_mb"], 1),
        "after_imports_rss_mb": round(float(base.stdout.strip()), 1), "seconds": round(fig["seconds"], 2),
    }
    print(RESULTS["a_embedding_map_usa-1000x2000"])
    write_results("representations", RESULTS)
    assert fig["peak_rss_mb"] < 2048
    import rasterio

    with rasterio.open(tmp_path / "out" / "embedding_mu.tif") as ds:
        assert ds.shape == grid.shape and ds.count == 3


def test_b_component_fit_100k_by_1024():
    out = subprocess.run([sys.executable, "-c", _FIT_SCRIPT], capture_output=True, text=True, check=True)
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    RESULTS["b_fit_100k_x_1024"] = {k: round(v, 2) for k, v in fig.items()}
    print(RESULTS["b_fit_100k_x_1024"])
    write_results("representations", RESULTS)
    assert fig["peak_rss_mb"] < 2048
