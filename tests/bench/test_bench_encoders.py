"""Benchmarks: ViT-B/16 encoders (images/s at batch 64 and 256), GeoCLIP points/s, GPU chips/s and busy fraction.

Each figure is reported with a naive one-at-a-time loop measured in the same run.
Run: ``python -m pytest tests/bench/test_bench_encoders.py -m bench -q -s``
(``GEOPROM3E_BENCH_DEVICE=cuda`` on a GPU). Writes ``bench-results/encoders_*.json``.
Weights are random with the published architectures (same compute as the real ones).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from geoprom3e.encoders import chip_to_rgb_uint8, encode_batches, get_encoder, read_chip
from geoprom3e.testing.encoders import save_open_clip_vit_b16, save_vit_b16_sat

from .benchutil import bench_device, sync, write_results

pytestmark = pytest.mark.bench

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# overridable so a GPU machine without ../shared can be pointed at copies
CHIPS = Path(os.environ.get("GEOPROM3E_BENCH_CHIPS", SHARED / "sentinel2_l2a_chips_california_fires" / "post_fire"))
PHOTOS = Path(os.environ.get("GEOPROM3E_BENCH_PHOTOS", SHARED / "species_photos_open_license"))


def _chip_arrays(n: int) -> list[np.ndarray]:
    files = sorted(CHIPS.glob("*.tif"))
    if files:
        base = [chip_to_rgb_uint8(read_chip(f)).transpose(2, 0, 1).copy() for f in files]
    else:  # no shared data: synthetic 256 px chips
        rng = np.random.default_rng(0)
        base = [rng.integers(0, 255, (3, 256, 256), dtype=np.uint8) for _ in range(8)]
    return [base[i % len(base)] for i in range(n)]


def _rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def _vit_rates(enc, items: list, batches: tuple[int, ...], naive_n: int) -> dict:
    dev = enc.device
    enc.embed(items[:2])  # warm-up
    sync(dev)
    naive = _rate(naive_n, lambda: [enc.embed(x) for x in items[:naive_n]])
    out = {"naive_one_at_a_time_per_s": naive}
    for b in batches:
        n = b if dev.type == "cpu" else 4 * b
        r = _rate(n, lambda n=n, b=b: encode_batches(enc, items[:n], batch_size=b))
        out[f"batch{b}_per_s"] = r
        out[f"batch{b}_vs_naive"] = r / naive
    return out


@pytest.fixture(scope="module")
def device() -> torch.device:
    return bench_device()


def test_bench_sat_vit_b16(tmp_path_factory, device):
    folder = save_vit_b16_sat(tmp_path_factory.mktemp("ecosat") / "vit-b16")
    enc = get_encoder("sat", weights=folder, device=str(device))
    items = _chip_arrays(1024)
    res = _vit_rates(enc, items, (64, 256), naive_n=8 if device.type == "cpu" else 64)
    res.update(device=str(enc.device), dtype=str(enc.dtype), model="transformers CLIPVisionModelWithProjection "
               "ViT-B/16 (MVRL/ecosat shape), end to end from uint8 chips (preprocess + encode)")
    print("\nsat ViT-B/16:", {k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()})
    write_results("encoders_sat_vit_b16", res)
    assert res["batch64_per_s"] > 0


def test_bench_image_open_clip_vit_b16(tmp_path_factory, device):
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open_clip not installed (run in the .ci/setup --dev venv)")
    folder = save_open_clip_vit_b16(tmp_path_factory.mktemp("taxabind") / "vit-b-16")
    enc = get_encoder("image", weights=folder, device=str(device))
    photos = sorted(PHOTOS.glob("*.jpg")) or pytest.skip("needs the shared photos")
    items = [str(photos[i % len(photos)]) for i in range(1024)]
    res = _vit_rates(enc, items, (64, 256), naive_n=8 if device.type == "cpu" else 64)
    res.update(device=str(enc.device), dtype=str(enc.dtype), model="open_clip ViT-B-16 (taxabind layout), end to "
               "end from JPEG files (decode + preprocess + encode)")
    print("\nimage open_clip ViT-B/16:", {k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()})
    write_results("encoders_image_vit_b16", res)
    assert res["batch64_per_s"] > 0


def test_bench_geoclip_points(device):
    enc = get_encoder("loc", device=str(device))  # real GeoCLIP wheel weights (or MVRL/ecogeo when present)
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(24.5, 49.5, 100_000), rng.uniform(-125, -66.5, 100_000)], axis=1)
    enc.embed(pts[:10])
    naive_n = 300
    naive = _rate(naive_n, lambda: [enc.embed(p) for p in pts[:naive_n]])
    n = 20_000 if device.type == "cpu" else 100_000
    batched = _rate(n, lambda: encode_batches(enc, pts[:n]))
    res = {"device": str(enc.device), "weights": enc.info.weights, "naive_one_at_a_time_per_s": naive,
           "batched_per_s": batched, "batch_size": enc.preferred_batch_size, "vs_naive": batched / naive}
    print("\nGeoCLIP points:", res)
    write_results("encoders_geoclip_points", res)
    assert batched > naive


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_bench_gpu_chips_bf16(tmp_path_factory):
    """Chips/s in bf16 at batch 256, model alone and fed by the DataLoader (workers preprocess), with GPU busy %."""
    folder = save_vit_b16_sat(tmp_path_factory.mktemp("ecosat") / "vit-b16")
    res: dict = {}
    for compile_ in (False, True):
        enc = get_encoder("sat", weights=folder, device="cuda", compile=compile_)
        x = torch.randn(256, 3, 224, 224)
        for _ in range(3):
            enc.encode(x)
        torch.cuda.synchronize()
        n_rep = 20
        t0 = time.perf_counter()
        for _ in range(n_rep):
            enc.encode(x)
        torch.cuda.synchronize()
        res[f"model_only_chips_per_s{'_compiled' if compile_ else ''}"] = 256 * n_rep / (time.perf_counter() - t0)
    items = _chip_arrays(256 * 40)
    cpus = os.cpu_count() or 2
    loaders = {}
    for workers, on_dev in ((min(14, cpus - 2), True), (min(14, cpus - 2), False), (0, True)):
        enc = get_encoder("sat", weights=folder, device="cuda", resize_on_device=on_dev)
        fwd = enc._forward
        spans: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

        def timed(batch, fwd=fwd, spans=spans):  # record GPU time of each forward with CUDA events
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = fwd(batch)
            b.record()
            spans.append((a, b))
            return out

        enc._forward = timed
        encode_batches(enc, items[:512], batch_size=256, num_workers=workers)
        spans.clear()
        t0 = time.perf_counter()
        encode_batches(enc, items, batch_size=256, num_workers=workers, prefetch_factor=4)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        busy = sum(a.elapsed_time(b) for a, b in spans) / 1000
        loaders[f"workers{workers}_resize_{'gpu' if on_dev else 'cpu'}"] = {
            "chips_per_s": len(items) / wall, "gpu_busy_fraction": busy / wall}
    best = max(loaders.values(), key=lambda d: d["chips_per_s"])
    res.update(device=torch.cuda.get_device_name(0), dtype="bfloat16 autocast", batch=256, loaders=loaders,
               fed_by_loader_chips_per_s=best["chips_per_s"], gpu_busy_fraction=best["gpu_busy_fraction"])
    naive_n = 256
    naive = _rate(naive_n, lambda: [enc.embed(c) for c in items[:naive_n]])
    res.update(naive_one_at_a_time_per_s=naive, target_chips_per_s=2000)
    res["fed_vs_naive"] = res["fed_by_loader_chips_per_s"] / naive
    print("\nGPU chips:", res)
    write_results("encoders_gpu_chips", res)
    assert res["model_only_chips_per_s"] > 0
