"""Benchmark: ProM3E training throughput at the published sizes (E = 1024, batch 1024), and the data loader.

Run: ``python -m pytest tests/bench/test_bench_train.py -m bench -q -s`` (``GEOPROM3E_BENCH_DEVICE=cuda`` on a
GPU). Writes ``bench-results/train.json``. The baseline measured in the same run is the loader alone
(shuffled in-memory batches, plus the masking strategy's sampling): training must be far slower than it,
or the loader would be the bottleneck. Also compares the published masking (one visible set per batch, the
short-sequence path) with MIAM (a set per row, key-padding masks) and, on a GPU, bf16 autocast with fp32.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from geoprom3e.model.data import BatchLoader, as_embedding_set
from geoprom3e.model.masking import get_strategy
from geoprom3e.model.train import train
from geoprom3e.testing.synthetic import make_synthetic

from .benchutil import PeakRSS, bench_device, sync, write_results

pytestmark = pytest.mark.bench

BATCH = 1024


def loader_rate(device: torch.device, strategy: str | None, rows: int = 16 * BATCH, epochs: int = 3) -> float:
    data = as_embedding_set(make_synthetic(rows, seed=0, missing=0.1).as_dict())
    loader = BatchLoader(data, BATCH, device=device)
    strat = get_strategy(strategy, 6) if strategy else None
    g = torch.Generator().manual_seed(0)
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for emb, _, present_cpu in loader.epoch(g):
            if strat is not None:
                strat.sample_visible(emb.shape[0], g, available=present_cpu).to(device)
            n += emb.shape[0]
    sync(device)
    return n / (time.perf_counter() - t0)


def train_rate(tmp_path, device: torch.device, strategy: str, steps: int, epochs: int, amp: bool) -> dict:
    rows = int((steps * BATCH + 2) / 0.9) + 2
    data = make_synthetic(rows, seed=0).as_dict()
    recipe = {
        "masking": {"strategy": strategy},
        "train": {"epochs": epochs, "batch_size": BATCH, "device": str(device), "amp": amp, "score_rows": 512,
                  "log_every": 1, "keep_checkpoints": 1},
    }
    with PeakRSS() as mem:
        res = train(recipe, tmp_path / f"{strategy}-{amp}", data=data, overwrite=True)
    last = res.metrics[-1]
    return {
        "strategy": strategy,
        "amp": amp and device.type == "cuda",
        "steps_per_epoch": steps,
        "epochs": epochs,
        "samples_per_s_last_epoch": round(last["samples_per_s"], 1),
        "epoch_seconds_last": round(last["epoch_seconds"], 3),
        "parameters": res.model.num_parameters(),
        "peak_rss_mb": round(mem.peak_mb, 1),
        "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
    }


def test_bench_train(tmp_path):
    device = bench_device()
    gpu = device.type == "cuda"
    steps = int(os.environ.get("GEOPROM3E_BENCH_TRAIN_STEPS", "20" if gpu else "3"))
    epochs = 2 if gpu else 1  # on a GPU the second epoch is timed (the first holds warm-up)
    loader_only = loader_rate(device, None)
    loader_miam = loader_rate(device, "miam")
    loader_prom3e = loader_rate(device, "prom3e")
    runs = [train_rate(tmp_path, device, "prom3e", steps, epochs, amp=True),
            train_rate(tmp_path, device, "miam", steps, epochs, amp=True)]
    if gpu:
        runs.append(train_rate(tmp_path, device, "prom3e", steps, epochs, amp=False))
    base = runs[0]["samples_per_s_last_epoch"]
    result = {
        "device": str(device),
        "batch_size": BATCH,
        "model": "published sizes: E=1024, H=2048, depth 1, 8 heads, 4 registers",
        "loader_rows_per_s": round(loader_only, 1),
        "loader_plus_miam_masking_rows_per_s": round(loader_miam, 1),
        "loader_plus_prom3e_masking_rows_per_s": round(loader_prom3e, 1),
        "train": runs,
        "ratios": {
            "loader_with_miam_masking_over_prom3e_training": round(loader_miam / base, 1),
            "miam_training_over_prom3e_training": round(runs[1]["samples_per_s_last_epoch"] / base, 3),
            **({"fp32_over_bf16_training": round(runs[2]["samples_per_s_last_epoch"] / base, 3)} if gpu else {}),
        },
    }
    path = write_results("train", result)
    print(f"\nwrote {path}")
    for r in runs:
        print(f"{r['strategy']:>7} amp={r['amp']!s:5}: {r['samples_per_s_last_epoch']:>9.1f} samples/s")
    print(f"loader only {loader_only:,.0f} rows/s; with MIAM masking {loader_miam:,.0f}; "
          f"with prom3e {loader_prom3e:,.0f}")
    assert loader_miam > 5 * base, "the data loader would be the bottleneck"
