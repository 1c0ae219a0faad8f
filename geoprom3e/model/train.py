"""Train ProM3E on paired embeddings with any masking strategy, resumable bit for bit.

>>> from geoprom3e.model.train import train
>>> result = train("recipes/train/prom3e-miam.yaml", "runs/miam", overrides=["train.epochs=5"])

Each epoch: the training pass (which also sums, per modality, the loss of the rows where that modality was a
hidden target: the default MIAM/OPM score, ``train.score = train-target-loss``), a validation pass (the
validation loss, and the supervised-reading scores when ``train.score`` asks for them), the masking strategy's
update, a JSON line in ``metrics.jsonl`` and a checkpoint ``checkpoints/epoch-NNNN/`` (``config.json`` +
``model.safetensors`` + ``training_state.pt`` with optimiser, scheduler, RNG and masking state), each written
atomically. With ``train.early_stopping`` the best epoch so far is also kept in ``best/``.

Several data sources (``data.path: [paired.npy, inat.npy]`` or ``data=[a, b]``) are split into
training/validation rows each; batches are drawn as ``data.source_sampling`` says (published: one source
per batch, each with equal probability).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoprom3e.errors import ConfigError, OutputError, TrainingError
from geoprom3e.io.atomic import atomic_dir, atomic_write_text
from geoprom3e.model.checkpoint import save_checkpoint
from geoprom3e.model.data import (
    BatchLoader,
    EmbeddingSet,
    SourceMixLoader,
    as_embedding_set,
    concat_sets,
    split_train_val,
)
from geoprom3e.model.evaluate import validate
from geoprom3e.model.loss import prom3e_loss
from geoprom3e.model.masking import MaskingStrategy, get_strategy
from geoprom3e.model.prom3e import ProM3E
from geoprom3e.model.recipe import TrainRecipe, load_recipe

log = logging.getLogger(__name__)

_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")


@dataclass
class TrainProgress:
    """What the progress callback receives (every ``train.log_every`` steps and at the end of each epoch)."""

    epoch: int
    """Current epoch, counting from 1."""
    epochs: int
    """Total epochs of the run."""
    step: int
    """Steps done in this epoch."""
    steps: int
    """Steps per epoch."""
    loss: float
    """Mean training loss of the epoch so far."""
    samples_per_s: float
    """Training throughput of the epoch so far."""
    metrics: dict[str, Any] | None = None
    """The epoch's metrics line, only on the end-of-epoch report."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    out_dir: Path
    """The run folder."""
    checkpoint: Path
    """The newest epoch checkpoint folder (loadable with ``ProM3E.from_checkpoint``)."""
    model: ProM3E
    """The trained model (in eval mode)."""
    recipe: TrainRecipe
    """The resolved recipe."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """One dict per epoch, as in ``metrics.jsonl``."""


ProgressFn = Callable[[TrainProgress], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; checks that a CUDA device exists when asked for."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r} but no CUDA GPU is visible: use train.device=cpu (or auto)")
    return torch.device(name)


def train(
    recipe: str | Path | Mapping[str, Any] | TrainRecipe | None,
    out_dir: str | Path,
    *,
    data: Any = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train a ProM3E model as ``recipe`` says and write checkpoints into ``out_dir``.

    Args:
        recipe: a YAML path, a nested dict or a :class:`TrainRecipe` (None: published defaults).
        out_dir: run folder (``recipe.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``model/``).
        data: embeddings passed directly (dict, array, :class:`EmbeddingSet` or a path; a list of them for several
            sources, the all-paired set first); overrides ``data.path``.
        overrides: ``["train.epochs=3", ...]`` or ``{"train.epochs": 3}`` applied on top of the recipe.
        resume: continue from the newest checkpoint in ``out_dir`` (the recipe must match it, epochs aside).
        overwrite: start afresh even when ``out_dir`` already holds checkpoints (they are deleted).
        progress: callback receiving :class:`TrainProgress`.
    """
    rc = load_recipe(recipe, overrides)
    threads = torch.get_num_threads()
    if rc.train.num_threads:
        torch.set_num_threads(rc.train.num_threads)
    try:
        return _train(rc, out_dir, data, resume, overwrite, progress)
    finally:
        torch.set_num_threads(threads)


def _train(
    rc: TrainRecipe, out_dir: str | Path, data: Any, resume: bool, overwrite: bool, progress: ProgressFn | None
) -> TrainResult:
    t = rc.train
    device = resolve_device(t.device)
    out = Path(out_dir)
    ckpt_root = out / "checkpoints"
    latest = latest_checkpoint(out)
    if latest is not None and not resume and not overwrite:
        raise OutputError(
            f"{str(out)!r} already holds a training run ({latest.name}): pass --resume to continue it, "
            "--overwrite to start again, or choose another output folder"
        )
    sources = _load_data(rc, data)
    dataset = concat_sets(sources)
    splits = [split_train_val(src, rc.data.val_fraction, t.seed + k) for k, src in enumerate(sources)]
    val_set = concat_sets([v for _, v in splits])
    if len(sources) > 1 and rc.data.source_sampling == "published":
        loader: BatchLoader | SourceMixLoader = SourceMixLoader([a for a, _ in splits], t.batch_size, device=device)
    else:
        loader = BatchLoader(concat_sets([a for a, _ in splits]), t.batch_size, device=device)
    data_fp = _data_fingerprint(dataset)
    if latest is not None and not resume:  # --overwrite, once the data has proven usable
        shutil.rmtree(ckpt_root)
        shutil.rmtree(out / "best", ignore_errors=True)
        latest = None

    torch.manual_seed(t.seed)
    model = ProM3E(rc.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=t.betas, eps=t.eps, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=t.t0, eta_min=t.eta_min)
    strategy = get_strategy(rc.masking.strategy, rc.model.num_modalities, 1, **rc.masking.params)
    gen = torch.Generator().manual_seed(t.seed + 1)  # masks and batch order (CPU)
    noise = torch.Generator(device=device).manual_seed(t.seed + 2)  # latent ε
    random.seed(t.seed)
    np.random.seed(t.seed % 2**32)
    metrics: list[dict[str, Any]] = []
    start = 0
    if resume and latest is not None:
        start, metrics = _restore(latest, rc, data_fp, model, opt, sched, strategy, gen, noise)
        log.info("resuming %s from %s (epoch %d)", out, latest.name, start)
    elif resume:
        log.warning("nothing to resume in %s: starting a new run", out)
    atomic_write_text(out / "recipe.yaml", rc.to_yaml())
    if start >= t.epochs:
        log.warning("the checkpoint already has %d epochs (train.epochs = %d): nothing to do", start, t.epochs)

    use_amp = t.amp and device.type == "cuda"
    ckpt = latest
    names = dataset.names
    for epoch in range(start, t.epochs):
        if t.early_stopping and _stopped(metrics, t.early_stopping):
            log.info("early stopping: no improvement for %d epochs", t.early_stopping)
            break
        strategy.start_epoch(epoch)
        train_stats, hidden_loss = _train_epoch(model, loader, strategy, opt, rc, gen, noise, use_amp, epoch, progress)
        sched.step()
        val = validate(
            model,
            val_set,
            batch_size=min(t.batch_size, len(val_set)),
            score=t.score,
            score_rows=t.score_rows,
            lambda_kl=rc.model.lambda_kl,
            device=device,
            leave_one_out=t.early_stopping > 0,
        )
        scores = target_loss_scores(hidden_loss) if t.score == "train-target-loss" else val.scores
        used = scores
        if t.score_smoothing and metrics:
            a = t.score_smoothing
            prev = list(metrics[-1]["scores_used"].values())
            used = [a * p + (1 - a) * v for p, v in zip(prev, scores)]
        strategy.update(used)
        line = {
            "epoch": epoch + 1,
            **train_stats,
            "train_target_loss": dict(zip(names, hidden_loss)),
            "val_loss": val.loss,
            "val_loss_per_modality": dict(zip(names, val.per_modality)),
            "scores": dict(zip(names, scores)),
            "scores_used": dict(zip(names, used)),
            "score": t.score,
            "lr": opt.param_groups[0]["lr"],
            "strategy": strategy.state(),
        }
        if t.early_stopping:
            line["val_loo_loss"] = val.loo_loss
            line["stop_criterion"] = float(np.nanmean([*val.per_modality, val.loo_loss]))
            if _is_best(metrics, line["stop_criterion"]):
                save_checkpoint(model, out / "best")
                line["best"] = True
        metrics.append(line)
        ckpt = _save(ckpt_root, epoch + 1, rc, data_fp, model, opt, sched, strategy, gen, noise, metrics)
        atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
        _prune(ckpt_root, t.keep_checkpoints)
        log.info("epoch %d/%d train %.4f val %.4f", epoch + 1, t.epochs, train_stats["train_loss"], val.loss)
        if progress is not None:
            progress(
                TrainProgress(
                    epoch + 1, t.epochs, len(loader), len(loader), train_stats["train_loss"],
                    train_stats["samples_per_s"], line,
                )
            )
    if ckpt is None:
        raise TrainingError(f"no epoch ran and {str(out)!r} holds no checkpoint: set train.epochs >= 1")
    if t.early_stopping and (out / "best" / "model.safetensors").is_file():
        from geoprom3e.model.checkpoint import read_checkpoint

        weights, _, _ = read_checkpoint(out / "best")
        model.load_state_dict({k: v.to(device) for k, v in weights.items()}, strict=True)
    save_checkpoint(model, out / "model")
    model.eval()
    return TrainResult(out_dir=out, checkpoint=ckpt, model=model, recipe=rc, metrics=metrics)


def _load_data(rc: TrainRecipe, data: Any) -> list[EmbeddingSet]:
    source = data if data is not None else rc.data.path
    if source is None:
        raise ConfigError("no training data: set data.path=FILE in the recipe (or pass data= from Python)")
    items = list(source) if isinstance(source, list) else [source]
    if not items:
        raise ConfigError("no training data: data= is an empty list")
    return [
        as_embedding_set(
            item,
            modalities=rc.data.modalities,
            num_modalities=rc.model.num_modalities,
            input_dim=rc.model.input_dim,
            on_nan=rc.data.on_nan,
            normalize=rc.data.normalize,
            source=str(item) if isinstance(item, (str, Path)) else f"data[{k}]" if len(items) > 1 else "data",
        )
        for k, item in enumerate(items)
    ]


def target_loss_scores(hidden_loss: Sequence[float]) -> list[float]:
    """MIAM's self-supervised score from the training-set target losses: s_m = exp(−L_m).

    L_m is the epoch's mean contrastive loss of the rows where m was present and hidden (m the target; when m
    was never hidden in the epoch, of every row where it was a target); the transform is monotone decreasing
    (lower loss, higher score) and maps InfoNCE losses to (0, 1] (the geometric-mean probability of the right
    row). Modalities that were no target at all get the geometric mean of the others (neutral for MIAM's
    ratios).
    """
    raw = [math.exp(-v) if math.isfinite(v) else math.nan for v in hidden_loss]
    ok = [v for v in raw if math.isfinite(v) and v > 0]
    fill = float(np.exp(np.mean(np.log(ok)))) if ok else 1.0
    return [v if math.isfinite(v) and v > 0 else fill for v in raw]


def _is_best(metrics: list[dict[str, Any]], value: float) -> bool:
    prev = [m["stop_criterion"] for m in metrics if math.isfinite(m.get("stop_criterion", math.nan))]
    return math.isfinite(value) and (not prev or value < min(prev))


def _stopped(metrics: list[dict[str, Any]], patience: int) -> bool:
    crit = [m.get("stop_criterion", math.nan) for m in metrics]
    ok = [i for i, v in enumerate(crit) if math.isfinite(v)]
    if not ok:
        return False
    best = min(ok, key=lambda i: crit[i])
    return len(crit) - 1 - best >= patience


def _train_epoch(
    model: ProM3E,
    loader: BatchLoader | SourceMixLoader,
    strategy: MaskingStrategy,
    opt: torch.optim.Optimizer,
    rc: TrainRecipe,
    gen: torch.Generator,
    noise: torch.Generator,
    use_amp: bool,
    epoch: int,
    progress: ProgressFn | None,
) -> tuple[dict[str, Any], list[float]]:
    t = rc.train
    m = rc.model.num_modalities
    model.train()
    total = torch.zeros((), device=loader.device)
    kl_sum = torch.zeros((), device=loader.device)
    err_sum = torch.zeros((), device=loader.device)
    hid_sum = torch.zeros(m, device=loader.device)
    hid_cnt = torch.zeros(m, device=loader.device)
    tgt_sum = torch.zeros(m, device=loader.device)
    tgt_cnt = torch.zeros(m, device=loader.device)
    visible_count = torch.zeros(m)
    scales = []
    steps = len(loader)
    t0 = time.perf_counter()
    for step, (emb, present, present_cpu) in enumerate(loader.epoch(gen), start=1):
        visible = strategy.sample_visible(emb.shape[0], gen, available=present_cpu)
        scale = strategy.feature_scale()
        scales.append(scale)
        visible_count += visible.sum(dim=0)
        visible_dev = visible.to(emb.device, non_blocking=True)
        with torch.autocast(device_type=emb.device.type, dtype=torch.bfloat16, enabled=use_amp):
            fwd = model(emb, visible_dev, generator=noise, token_scale=None if scale == 1.0 else scale)
        loss = prom3e_loss(
            fwd.recon, fwd.mu, fwd.logvar, emb, present, visible_dev,
            scale=model.negative_scale, shift=model.negative_shift,
            lambda_kl=rc.model.lambda_kl, masked_only=t.masked_only,
            log_err=fwd.log_err, error_weight=t.error_weight,
        )
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        total += loss.total.detach()
        kl_sum += loss.kl.detach()
        if loss.error is not None:
            err_sum += loss.error
        hid_sum += loss.hidden_sum
        hid_cnt += loss.hidden_count
        tgt_sum += loss.target_sum
        tgt_cnt += loss.target_count
        if step % t.log_every == 0 or step == steps:  # read the loss back only now: no GPU sync per step
            mean = float(total) / step
            if not math.isfinite(mean):
                raise TrainingError(
                    f"loss became {mean} at epoch {epoch + 1} (by step {step}): lower train.lr "
                    f"(now {t.lr}) or set train.grad_clip (now {t.grad_clip})"
                )
            if progress is not None:
                rate = step * loader.batch_size / max(time.perf_counter() - t0, 1e-9)
                progress(TrainProgress(epoch + 1, t.epochs, step, steps, mean, rate))
    dt = time.perf_counter() - t0
    # L_m over the rows where m was a hidden target; a modality never hidden this epoch (e.g. OPM before it first
    # drops anything) falls back to every row where it was a target, so a score exists from the first epoch
    hidden_loss = [
        float(hs) / float(hc) if float(hc) > 0 else float(ts) / float(tc) if float(tc) > 0 else math.nan
        for hs, hc, ts, tc in zip(hid_sum.cpu(), hid_cnt.cpu(), tgt_sum.cpu(), tgt_cnt.cpu())
    ]
    stats = {
        "train_loss": float(total) / steps,
        "train_kl": float(kl_sum) / steps,
        "samples_per_s": steps * loader.batch_size / max(dt, 1e-9),
        "epoch_seconds": dt,
        "visible_share": (visible_count / (steps * loader.batch_size)).tolist(),
    }
    if rc.model.error_head:
        stats["train_error_nll"] = float(err_sum) / steps
    if any(sc != 1.0 for sc in scales):
        stats["mean_feature_scale"] = float(np.mean(scales))
    return stats, hidden_loss


# ---------------------------------------------------------------------- checkpoints
def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete ``checkpoints/epoch-NNNN`` folder of a run, or None."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _EPOCH_DIR.match(p.name)) and (p / "training_state.pt").is_file()
    ]
    return max(found)[1] if found else None


def _data_fingerprint(data: EmbeddingSet) -> dict[str, Any]:
    h = hashlib.sha256()
    step = max(1, len(data) // 4096)
    h.update(data.embeddings[::step].numpy().tobytes())
    h.update(data.present.numpy().tobytes())
    return {"rows": len(data), "sha256": h.hexdigest()[:16]}


def _rng_state(gen: torch.Generator, noise: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1])},
        "generator": gen.get_state(),
        "noise": noise.get_state(),
    }


def _set_rng_state(state: dict[str, Any], gen: torch.Generator, noise: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), None))
    gen.set_state(state["generator"])
    noise.set_state(state["noise"])


def _save(
    root: Path,
    epoch: int,
    rc: TrainRecipe,
    data_fp: dict[str, Any],
    model: ProM3E,
    opt: torch.optim.Optimizer,
    sched: Any,
    strategy: MaskingStrategy,
    gen: torch.Generator,
    noise: torch.Generator,
    metrics: list[dict[str, Any]],
) -> Path:
    final = root / f"epoch-{epoch:04d}"
    with atomic_dir(final) as tmp:
        save_checkpoint(model, tmp)
        state = {
            "epoch": epoch,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": _rng_state(gen, noise),
            "strategy": json.dumps(strategy.state()),
            "fingerprint": json.dumps(rc.fingerprint()),
            "data": json.dumps(data_fp),
            "metrics": json.dumps(metrics),
        }
        torch.save(state, tmp / "training_state.pt")
        (tmp / "recipe.yaml").write_text(rc.to_yaml())
    atomic_write_text(root / "latest.json", json.dumps({"epoch": epoch, "checkpoint": final.name}) + "\n")
    return final


def _restore(
    ckpt: Path,
    rc: TrainRecipe,
    data_fp: dict[str, Any],
    model: ProM3E,
    opt: torch.optim.Optimizer,
    sched: Any,
    strategy: MaskingStrategy,
    gen: torch.Generator,
    noise: torch.Generator,
) -> tuple[int, list[dict[str, Any]]]:
    from geoprom3e.model.checkpoint import check_state_dict, read_checkpoint

    try:
        state = torch.load(ckpt / "training_state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable state: one clear line
        raise TrainingError(
            f"cannot read {str(ckpt / 'training_state.pt')!r} ({str(exc)[:160]}): resume from another run"
        ) from None
    old = json.loads(state["fingerprint"])
    new = rc.fingerprint()
    diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        raise TrainingError(
            f"checkpoint {str(ckpt)!r} was trained with another recipe ({'; '.join(diff[:6])}"
            f"{'; ...' if len(diff) > 6 else ''}): resume with its recipe.yaml, or train into a new folder"
        )
    old_data = json.loads(state["data"])
    if old_data != data_fp:
        raise TrainingError(
            f"checkpoint {str(ckpt)!r} was trained on other data ({old_data['rows']} rows, hash {old_data['sha256']}; "
            f"now {data_fp['rows']} rows, hash {data_fp['sha256']}): resume with the same data"
        )
    weights, config, _ = read_checkpoint(ckpt)
    check_state_dict(model, weights, config)
    model.load_state_dict(weights, strict=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    strategy.load_state(json.loads(state["strategy"]))
    _set_rng_state(state["rng"], gen, noise)
    return int(state["epoch"]), json.loads(state["metrics"])


def _prune(root: Path, keep: int) -> None:
    found = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if (m := _EPOCH_DIR.match(p.name)) and p.is_dir()
    )
    for _, p in found[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
