"""Benchmark: ProM3E ``infer`` throughput against the published per-modality loop, in the same run.

Run: ``python -m pytest tests/bench/test_bench_model.py -m bench -s`` (``GEOPROM3E_BENCH_DEVICE=cuda`` on a GPU).
Writes ``bench-results/model_infer.json``.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from geoprom3e.model import ProM3E

from .benchutil import PeakRSS, bench_device, best_time, sync, write_results

pytestmark = pytest.mark.bench

VISIBLE = [1, 2, 3]  # sat, loc, env


def published_infer(model: ProM3E, x: torch.Tensor, visible: list[int], n_samples: int) -> torch.Tensor:
    """What the published code does: a Python loop over modalities, the whole sequence through every block,
    a loop of latent draws, and every decoder."""
    with torch.no_grad():
        b = x.shape[0]
        tokens = []
        for i in visible:
            tokens.append(model.projectors[i](x[:, i]) + model.modality_identifiers[i])
        seq = torch.cat([model.cls_tokens.expand(b, -1, -1), model.register_tokens.expand(b, -1, -1),
                         torch.stack(tokens, dim=1)], dim=1)
        for blk in model.encoder:
            seq = blk(seq)
        mu = F.normalize(seq[:, 0], dim=-1)
        logvar = seq[:, 1]
        if n_samples:
            zs = [mu + torch.exp(logvar / 2) * torch.randn(b, 1, device=x.device) for _ in range(n_samples)]
            z = torch.stack(zs).mean(0)
        else:
            z = mu
        return torch.stack([F.normalize(dec(z), dim=-1) for dec in model.decoders], dim=1)


def matmul_flops(device: torch.device) -> float:
    """Measured fp32 matmul FLOP/s of this device on a transformer-shaped product."""
    a = torch.randn(4096, 1024, device=device)
    w = torch.randn(1024, 1024, device=device)
    t = best_time(lambda: a @ w, device, repeats=5)
    return 2 * 4096 * 1024 * 1024 / t


def fast_path_flops(model: ProM3E, v: int, decoders: int) -> float:
    """Multiply-add FLOPs per cell of ``infer`` (depth-1 model, v visible tokens)."""
    c = model.config
    e, h, p, d = c.embed_dim, c.mlp_dim, c.proj_hidden_dim, c.input_dim
    proj = v * 2 * (d * p + p * e)
    kv = v * 2 * 2 * e * e
    q_out = 2 * 2 * e * e * 2  # queries and out-projection for the 2 latent tokens
    mlp = 2 * 2 * 2 * e * h
    dec = decoders * 2 * (e * e + e * d)
    return float(proj + kv + q_out + mlp + dec)


def test_bench_infer_throughput():
    device = bench_device()
    torch.manual_seed(0)
    model = ProM3E().to(device).eval()
    peak_flops = matmul_flops(device)
    batches = [int(b) for b in os.environ.get("GEOPROM3E_BENCH_BATCHES", "1024,4096,16384").split(",")]
    rows = []
    for b in batches:
        x = F.normalize(torch.randn(b, 6, 512, device=device), dim=-1)
        for n in (0, 5):
            t_pub = best_time(lambda x=x, n=n: published_infer(model, x, VISIBLE, n), device, repeats=2)
            t_map = best_time(lambda x=x, n=n: model.infer(x, VISIBLE, n_samples=n, decode=["image"]), device)
            t_all = best_time(lambda x=x, n=n: model.infer(x, VISIBLE, n_samples=n), device, repeats=2)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                model.infer(x, VISIBLE, n_samples=n, decode=["image"])
                sync(device)
                peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
            else:
                with PeakRSS() as mem:
                    model.infer(x, VISIBLE, n_samples=n, decode=["image"])
                peak_mb = mem.peak_mb
            flops = fast_path_flops(model, len(VISIBLE), 1)
            row = {
                "batch": b,
                "n_samples": n,
                "published_cells_per_s": round(b / t_pub, 1),
                "infer_map_cells_per_s": round(b / t_map, 1),
                "infer_all_decoders_cells_per_s": round(b / t_all, 1),
                "speedup_map": round(t_pub / t_map, 2),
                "speedup_all_decoders": round(t_pub / t_all, 2),
                "peak_mem_mb": round(peak_mb, 1),
                "mflop_per_cell_infer_map": round(flops / 1e6, 1),
                "matmul_fraction": round(flops * b / t_map / peak_flops, 3),
            }
            rows.append(row)
            print(row)
    path = write_results(
        "model_infer",
        {"device": str(device), "visible": "sat,loc,env", "embed_dim": model.config.embed_dim,
         "measured_matmul_gflops": round(peak_flops / 1e9, 1), "rows": rows},
    )
    print(f"wrote {path}")
    assert all(r["speedup_map"] > 1.0 for r in rows)
