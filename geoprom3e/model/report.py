"""Human-readable summaries of checkpoints and a model self-check."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from geoprom3e.modalities import MODALITIES
from geoprom3e.model.checkpoint import read_checkpoint
from geoprom3e.model.prom3e import ProM3E


def checkpoint_report(path: str | Path) -> str:
    """Config, parameter count, modalities and a load + inference check of a checkpoint, as text."""
    state, config, how = read_checkpoint(path)
    model = ProM3E.from_checkpoint(path)
    x = torch.nn.functional.normalize(torch.randn(4, config.num_modalities, config.input_dim), dim=-1)
    out = model.infer(x, ["sat", "loc"], n_samples=0)
    lines = [
        f"checkpoint   {path}",
        f"config from  {how}",
        *(f"  {k:<20} {v}" for k, v in config.to_dict().items()),
        f"parameters   {model.num_parameters():,} in {len(state)} tensors",
        f"modalities   {', '.join(f'{i}={n}' for i, n in enumerate(MODALITIES[: config.num_modalities]))}",
        f"load check   ok: infer on 4 random rows (sat, loc) gives mu {tuple(out.mu.shape)}, "
        f"mean ||sigma||_1 = {out.sigma_l1.mean().item():.4g}",
    ]
    return "\n".join(lines)


def self_check(out_dir: str | Path, *, seed: int = 0) -> dict[str, float | int | str]:
    """Build a default-size model, save it, reload it, run ``infer`` and report figures."""
    torch.manual_seed(seed)
    model = ProM3E().eval()
    out_dir = Path(out_dir)
    model.save_checkpoint(out_dir / "prom3e-selfcheck")
    reloaded = ProM3E.from_checkpoint(out_dir / "prom3e-selfcheck")
    x = torch.nn.functional.normalize(torch.randn(1024, 6, 512), dim=-1)
    t0 = time.perf_counter()
    a = model.infer(x, ["sat", "loc", "env"], n_samples=0, decode=["image"])
    dt = time.perf_counter() - t0
    b = reloaded.infer(x, ["sat", "loc", "env"], n_samples=0, decode=["image"])
    return {
        "parameters": model.num_parameters(),
        "reload_max_abs_diff": float((a.recon - b.recon).abs().max()),
        "cells_per_s": round(1024 / dt, 1),
        "mean_sigma_l1": float(a.sigma_l1.mean()),
        "checkpoint": str(out_dir / "prom3e-selfcheck"),
    }
