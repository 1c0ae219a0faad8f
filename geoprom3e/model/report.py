"""Human-readable summaries of checkpoints and a model self-check."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch

from geoprom3e.errors import InputError, OutputError
from geoprom3e.io.atomic import atomic_write_bytes
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


def load_embeddings(path: str | Path) -> np.ndarray:
    """Read an [N, M, 512] embedding array from ``.npy`` or ``.npz`` (key ``embeddings`` or the only array)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"embeddings file {str(p)!r} does not exist: pass a .npy or .npz file of shape [N, 6, 512]")
    try:
        obj = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{str(p)!r} is not a .npy/.npz array file ({exc}): save it with numpy.save") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        keys = list(obj.keys())
        if "embeddings" in keys:
            return obj["embeddings"]
        if len(keys) == 1:
            return obj[keys[0]]
        raise InputError(f"{str(p)!r} holds arrays {keys}: name the embeddings array 'embeddings'")
    return obj


def infer_file(
    checkpoint: str | Path,
    embeddings: str | Path,
    visible: str,
    out: str | Path,
    *,
    decode: list[str] | None = None,
    n_samples: int = 5,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Run :meth:`ProM3E.infer` on an embeddings file and write an ``.npz`` atomically."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputError(f"{str(out)!r} exists: pass --overwrite to replace it, or choose another --out")
    model = ProM3E.from_checkpoint(checkpoint)
    x = load_embeddings(embeddings)
    res = model.infer(x, visible, n_samples=n_samples, decode=decode, generator=torch.Generator().manual_seed(seed))
    arrays = {
        "mu": res.mu.numpy(),
        "logvar": res.logvar.numpy(),
        "sigma_l1": res.sigma_l1.numpy(),
        "decoded": np.array(res.decoded, dtype="U8"),
    }
    if res.recon is not None:
        arrays["recon"] = res.recon.numpy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(out, buf.getvalue())
