"""What a trained ProM3E learned: per-subset retrieval, uncertainty, modality gap and hybrid retrieval.

:func:`evaluate` feeds every non-empty subset S of the available modalities (or the subsets asked for) and
measures, on held-out rows that hold all of S:

* recall@1/5/10 of each reconstructed modality j against the true embeddings of the same rows
  (row i's reconstruction must find row i's true e_j among all rows holding j);
* the mean uncertainty ‖σ‖₁;
* the modality gap: distance between the centroid of the reconstructions of j and the centroid of the true
  e_j (mean over targets), for S and for S plus each added modality; and how far the latent centroid moves
  when that modality is added;
* hybrid retrieval for each hidden modality q: row i's true e_q queries every row k by
  ``alpha · mean_{s∈S} cos(e_q,i, e_s,k) + (1 − alpha) · cos(e_q,i, recon_q,k)`` (inter- and intra-modal;
  :func:`geoprom3e.scores.hybrid_score`, the same score ``map-species --mode hybrid`` uses).

:func:`validate` is the cheaper pass the training loop runs each epoch (one visible modality at a time).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoprom3e.errors import ConfigError, InputError
from geoprom3e.io.atomic import atomic_write_text
from geoprom3e.modalities import MODALITIES, parse_modalities
from geoprom3e.model.data import EmbeddingSet, as_embedding_set
from geoprom3e.model.loss import prom3e_loss
from geoprom3e.model.prom3e import ProM3E
from geoprom3e.scores import HYBRID_CONVENTION, check_alpha, hybrid_score

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- validation during training
@dataclass
class Validation:
    """One validation pass: each modality alone reconstructs the others."""

    loss: float
    """Mean over modalities of the loss with only that modality visible (others as targets)."""
    per_modality: list[float]
    """[M] that loss per visible modality (NaN where the modality is missing from the validation rows)."""
    scores: list[float]
    """[M] score s_m, higher is better (1 / loss, or top-1 retrieval); missing ones get the geometric mean."""
    loo_loss: float | None = None
    """Mean over targets j of the loss of reconstructing j from every other modality the row holds (only with
    ``leave_one_out=True``)."""


@torch.no_grad()
def validate(
    model: ProM3E,
    data: EmbeddingSet,
    *,
    batch_size: int,
    score: str = "inverse-loss",
    score_rows: int = 2048,
    lambda_kl: float = 1e-3,
    device: str | torch.device = "cpu",
    leave_one_out: bool = False,
) -> Validation:
    """Loss and per-modality scores with one visible modality at a time (z = μ, deterministic); with
    ``leave_one_out`` also the loss of each target reconstructed from all the other modalities."""
    was_training = model.training
    model.eval()
    m = data.num_modalities
    losses = [math.nan] * m
    top1 = [math.nan] * m
    try:
        for i in range(m):
            rows = data.present[:, i].nonzero().flatten()
            if rows.numel() < 2:
                continue
            total = weight = 0.0
            keep_recon, keep_rows = [], 0
            for chunk in _chunks(rows, batch_size):
                emb = data.embeddings[chunk].to(device)
                pres = data.present[chunk].to(device)
                vis = torch.zeros_like(pres)
                vis[:, i] = True
                fwd = model(emb, [i], sample=False)
                out = prom3e_loss(
                    fwd.recon, fwd.mu, fwd.logvar, emb, pres, vis,
                    scale=model.negative_scale, shift=model.negative_shift, lambda_kl=lambda_kl, masked_only=True,
                )
                if bool(out.targets.any()):
                    total += float(out.total) * len(chunk)
                    weight += len(chunk)
                if score == "top1" and keep_rows < score_rows:
                    keep_recon.append(fwd.recon[: score_rows - keep_rows].float().cpu())
                    keep_rows += keep_recon[-1].shape[0]
            if weight:
                losses[i] = total / weight
            if score == "top1" and keep_recon:
                r = torch.cat(keep_recon)
                sel = rows[: r.shape[0]]
                accs = [
                    recall_at(r[p, j], data.embeddings[sel][p, j], (1,))[1]
                    for j in range(m)
                    if j != i and int((p := data.present[sel, j]).sum()) >= 2
                ]
                top1[i] = float(np.mean(accs)) if accs else math.nan
        loo = _leave_one_out(model, data, batch_size, lambda_kl, device) if leave_one_out else None
    finally:
        model.train(was_training)
    raw = [1.0 / v if v > 0 else math.nan for v in losses] if score == "inverse-loss" else top1
    if score not in ("inverse-loss", "top1"):  # scores come from elsewhere (training losses): placeholders
        raw = [1.0] * m
    return Validation(loss=_nanmean(losses), per_modality=losses, scores=_fill_scores(raw), loo_loss=loo)


def _leave_one_out(
    model: ProM3E, data: EmbeddingSet, batch_size: int, lambda_kl: float, device: str | torch.device
) -> float:
    m = data.num_modalities
    out = []
    for j in range(m):
        rows = (data.present[:, j] & (data.present.sum(dim=1) >= 2)).nonzero().flatten()
        if rows.numel() < 2:
            continue
        total = weight = 0.0
        for chunk in _chunks(rows, batch_size):
            emb = data.embeddings[chunk].to(device)
            pres = data.present[chunk].to(device)
            vis = pres.clone()
            vis[:, j] = False
            fwd = model(emb, vis, sample=False)
            only_j = torch.zeros_like(pres)
            only_j[:, j] = True
            res = prom3e_loss(
                fwd.recon, fwd.mu, fwd.logvar, emb, only_j, torch.zeros_like(pres),
                scale=model.negative_scale, shift=model.negative_shift, lambda_kl=0.0,
            )
            if bool(res.targets.any()):
                total += float(res.recon) * len(chunk)
                weight += len(chunk)
        if weight:
            out.append(total / weight)
    return float(np.mean(out)) if out else math.nan


def _fill_scores(raw: list[float]) -> list[float]:
    ok = [v for v in raw if math.isfinite(v) and v > 0]
    fill = float(np.exp(np.mean(np.log(ok)))) if ok else 1.0
    return [v if math.isfinite(v) and v >= 0 else fill for v in raw]


def _nanmean(values: Sequence[float]) -> float:
    ok = [v for v in values if math.isfinite(v)]
    return float(np.mean(ok)) if ok else math.nan


def _chunks(rows: torch.Tensor, size: int) -> list[torch.Tensor]:
    parts = list(torch.split(rows, size))
    if len(parts) > 1 and parts[-1].numel() < 2:  # a lone row has nothing to be contrasted with
        parts[-2] = torch.cat([parts[-2], parts.pop()])
    return parts


def recall_at(queries: torch.Tensor, keys: torch.Tensor, ks: Sequence[int], block: int = 1024) -> dict[int, float]:
    """Recall@k of row i of ``queries`` finding row i of ``keys`` by cosine similarity (ties count against)."""
    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    k = torch.nn.functional.normalize(keys.float(), dim=-1)
    ranks = torch.empty(q.shape[0], dtype=torch.long)
    for s in range(0, q.shape[0], block):
        sims = q[s : s + block] @ k.T
        own = sims[torch.arange(sims.shape[0]), torch.arange(s, s + sims.shape[0])]
        ranks[s : s + block] = (sims >= own[:, None]).sum(dim=1) - 1
    return {kk: float((ranks < kk).float().mean()) for kk in ks}


def _ranks_from_scores(scores: torch.Tensor) -> torch.Tensor:
    own = scores.diagonal()
    return (scores >= own[:, None]).sum(dim=1) - 1


# ---------------------------------------------------------------------- per-subset evaluation
@dataclass
class SubsetResult:
    """Metrics of one visible subset."""

    visible: list[str]
    """The modalities fed to the encoder."""
    rows: int
    """Evaluation rows that hold every visible modality."""
    recall: dict[str, dict[str, float]]
    """Per target modality: {"R@1": …, "R@5": …, "R@10": …}."""
    recall_masked: dict[str, float] | None
    """Mean recall over the hidden targets (None when every available modality is visible)."""
    sigma_l1: float
    """Mean ‖σ‖₁ over the rows."""
    modality_gap: float
    """Mean over targets of ‖centroid(recon_j) − centroid(e_j)‖."""
    modality_gap_added: dict[str, float] = field(default_factory=dict)
    """The same gap after adding one more modality to the visible set."""
    latent_shift_added: dict[str, float] = field(default_factory=dict)
    """‖centroid(μ | S) − centroid(μ | S + a)‖ for each added modality a."""
    hybrid: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per hidden query modality: R@1 of intra-modal (alpha=0), hybrid (chosen alpha) and inter-modal (alpha=1)."""


@dataclass
class EvaluationReport:
    """:func:`evaluate`'s result; :func:`write_evaluation` writes it as JSON and a markdown table."""

    modalities: list[str]
    """Available modalities evaluated."""
    rows: int
    """Rows drawn from the data for the evaluation."""
    hybrid_alpha: float
    """Weight alpha of the inter-modal similarity in the hybrid score (see :mod:`geoprom3e.scores`)."""
    ks: list[int]
    """The k of recall@k."""
    subsets: list[SubsetResult]
    """One entry per visible subset, in order of size then modality order."""
    latent_gap: dict[str, dict[str, float]] = field(default_factory=dict)
    """Distance between the latent centroids of each pair of single modalities."""
    checkpoint: str | None = None
    """Where the model came from, when known."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able)."""
        return asdict(self)


ProgressFn = Callable[[int, int], None]


def evaluate(
    model: ProM3E | str | Path,
    data: Any,
    *,
    modalities: Sequence[str] | str | None = None,
    subsets: Sequence[Sequence[str] | str] | None = None,
    ks: Sequence[int] = (1, 5, 10),
    hybrid_alpha: float = 0.5,
    max_rows: int = 2000,
    batch_size: int = 1024,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> EvaluationReport:
    """Evaluate one model on every non-empty visible subset (see the module docstring).

    Args:
        model: a :class:`ProM3E` or a checkpoint path.
        data: embeddings (path, dict, array or :class:`EmbeddingSet`); normally held-out rows.
        modalities: modalities to use (default: every one present in at least 2 rows).
        subsets: visible sets to evaluate (default: every non-empty subset of ``modalities``).
        ks: recall@k values.
        hybrid_alpha: alpha in [0, 1], weight of the inter-modal similarity in the hybrid score.
        max_rows: evaluate on at most this many rows (a seeded random sample); retrieval is among them.
        batch_size: rows per forward pass.
        seed: seed of the row sample.
        out_dir: when given, ``evaluation.json`` and ``evaluation.md`` are written there (atomically).
        progress: called with (subsets done, subsets in all).
    """
    checkpoint = None
    if not isinstance(model, ProM3E):
        checkpoint = str(model)
        model = ProM3E.from_checkpoint(model)
    hybrid_alpha = check_alpha(hybrid_alpha)
    if max_rows < 2 or batch_size < 1:
        raise ConfigError(f"max_rows = {max_rows}, batch_size = {batch_size}: need max_rows >= 2, batch_size >= 1")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ConfigError(f"ks = {ks!r}: recall@k needs k >= 1")
    c = model.config
    ds = data if isinstance(data, EmbeddingSet) else as_embedding_set(
        data, num_modalities=c.num_modalities, input_dim=c.input_dim, on_nan="absent", source=str(data)
        if isinstance(data, (str, Path)) else "data",
    )
    if len(ds) > max_rows:
        g = torch.Generator().manual_seed(seed)
        ds = ds.subset(torch.randperm(len(ds), generator=g)[:max_rows].sort().values)
    avail = _available(ds, modalities, c.num_modalities)
    sets = _subsets(subsets, avail, c.num_modalities)
    model.eval()
    cache: dict[tuple[int, ...], dict[str, Any]] = {}
    results = []
    for n_done, s in enumerate(sets, start=1):
        cache[s] = _run_subset(model, ds, s, avail, batch_size)
        if progress is not None:
            progress(n_done, len(sets))
    for s in sets:
        res = cache[s]
        if res["rows"] < 2:
            log.warning("subset %s: fewer than 2 rows hold all of it; skipped", [MODALITIES[i] for i in s])
            continue
        results.append(_subset_result(ds, s, avail, res, cache, model, batch_size, ks, hybrid_alpha))
    singles = {i: _run_subset(model, ds, (i,), avail, batch_size) if (i,) not in cache else cache[(i,)] for i in avail}
    latent_gap = {
        MODALITIES[a]: {
            MODALITIES[b]: float((singles[a]["mu_centroid"] - singles[b]["mu_centroid"]).norm())
            for b in avail if singles[b]["rows"] >= 2
        }
        for a in avail if singles[a]["rows"] >= 2
    }
    report = EvaluationReport(
        modalities=[MODALITIES[i] for i in avail], rows=len(ds), hybrid_alpha=hybrid_alpha, ks=ks,
        subsets=results, latent_gap=latent_gap, checkpoint=checkpoint,
    )
    if out_dir is not None:
        write_evaluation(report, out_dir)
    return report


def _available(ds: EmbeddingSet, modalities: Sequence[str] | str | None, m: int) -> list[int]:
    counts = ds.present.sum(dim=0)
    if modalities is None:
        avail = [i for i in range(m) if int(counts[i]) >= 2]
    else:
        avail = sorted(parse_modalities(modalities, m))
        few = [MODALITIES[i] for i in avail if int(counts[i]) < 2]
        if few:
            raise InputError(f"modalities {', '.join(few)} are present in fewer than 2 rows: leave them out")
    if not avail:
        raise InputError("no modality is present in at least 2 rows: nothing to evaluate")
    return avail


def _subsets(subsets: Sequence[Sequence[str] | str] | None, avail: list[int], m: int) -> list[tuple[int, ...]]:
    if subsets is None:
        return [s for k in range(1, len(avail) + 1) for s in itertools.combinations(avail, k)]
    out = []
    for spec in subsets:
        s = tuple(sorted(parse_modalities(spec, m)))
        outside = [MODALITIES[i] for i in s if i not in avail]
        if outside:
            raise ConfigError(
                f"subset {spec!r} uses {', '.join(outside)}, which the data lacks (available: "
                f"{', '.join(MODALITIES[i] for i in avail)})"
            )
        out.append(s)
    return out


def _run_subset(model: ProM3E, ds: EmbeddingSet, s: tuple[int, ...], avail: list[int], batch: int) -> dict[str, Any]:
    rows = ds.present[:, list(s)].all(dim=1).nonzero().flatten()
    if rows.numel() < 2:
        return {"rows": int(rows.numel())}
    recon, mu, sig = [], [], []
    for chunk in torch.split(rows, batch):
        inf = model.infer(ds.embeddings[chunk], list(s), n_samples=0, decode=avail)
        recon.append(inf.recon.float().cpu())
        mu.append(inf.mu.float().cpu())
        sig.append(inf.sigma_l1.float().cpu())
    mu_t = torch.cat(mu)
    return {
        "rows": int(rows.numel()),
        "idx": rows,
        "recon": torch.cat(recon),  # [n, len(avail), D] in avail order
        "mu_centroid": mu_t.mean(dim=0),
        "sigma_l1": float(torch.cat(sig).mean()),
    }


def _gap(ds: EmbeddingSet, res: dict[str, Any], avail: list[int]) -> float:
    gaps = []
    for a, j in enumerate(avail):
        p = ds.present[res["idx"], j]
        if int(p.sum()) >= 1:
            true_c = ds.embeddings[res["idx"][p], j].mean(dim=0)
            gaps.append(float((res["recon"][p, a].mean(dim=0) - true_c).norm()))
    return float(np.mean(gaps)) if gaps else math.nan


def _subset_result(
    ds: EmbeddingSet,
    s: tuple[int, ...],
    avail: list[int],
    res: dict[str, Any],
    cache: dict[tuple[int, ...], dict[str, Any]],
    model: ProM3E,
    batch: int,
    ks: list[int],
    w: float,
) -> SubsetResult:
    idx = res["idx"]
    recall: dict[str, dict[str, float]] = {}
    for a, j in enumerate(avail):
        p = ds.present[idx, j]
        if int(p.sum()) < 2:
            continue
        r = recall_at(res["recon"][p, a], ds.embeddings[idx[p], j], ks)
        recall[MODALITIES[j]] = {f"R@{k}": v for k, v in r.items()}
    hidden = [MODALITIES[j] for j in avail if j not in s and MODALITIES[j] in recall]
    recall_masked = (
        {f"R@{k}": float(np.mean([recall[h][f"R@{k}"] for h in hidden])) for k in ks} if hidden else None
    )
    gap_added, shift_added = {}, {}
    for a in avail:
        if a in s:
            continue
        t = tuple(sorted((*s, a)))
        if t not in cache:
            cache[t] = _run_subset(model, ds, t, avail, batch)
        if cache[t]["rows"] >= 2:
            gap_added[MODALITIES[a]] = _gap(ds, cache[t], avail)
            shift_added[MODALITIES[a]] = float((res["mu_centroid"] - cache[t]["mu_centroid"]).norm())
    hybrid = {}
    for a, q in enumerate(avail):
        if q in s:
            continue
        p = ds.present[idx, q]
        if int(p.sum()) < 2:
            continue
        query = torch.nn.functional.normalize(ds.embeddings[idx[p], q], dim=-1)
        intra = query @ res["recon"][p, a].T
        inter = torch.stack([query @ ds.embeddings[idx[p], v].T for v in s]).mean(dim=0)
        hybrid[MODALITIES[q]] = {
            f"alpha={a:g}": float((_ranks_from_scores(hybrid_score(inter, intra, a)) < 1).float().mean())
            for a in sorted({0.0, w, 1.0})
        }
    return SubsetResult(
        visible=[MODALITIES[i] for i in s],
        rows=res["rows"],
        recall=recall,
        recall_masked=recall_masked,
        sigma_l1=res["sigma_l1"],
        modality_gap=_gap(ds, res, avail),
        modality_gap_added=gap_added,
        latent_shift_added=shift_added,
        hybrid=hybrid,
    )


# ---------------------------------------------------------------------- output
def markdown_table(report: EvaluationReport) -> str:
    """Per-subset table in the MIAM paper's layout: one ✓ column per modality, then the metrics."""
    mods = report.modalities
    k_cols = [f"R@{k}" for k in report.ks]
    w = f"alpha={report.hybrid_alpha:g}"
    head = [*mods, *(f"{c} hidden" for c in k_cols), "‖σ‖₁", "gap", f"hybrid R@1 ({w})", *(f"{m} R@1" for m in mods)]
    align = [":-:"] * len(mods) + ["--:"] * (len(head) - len(mods))
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for r in report.subsets:
        checks = ["✓" if m in r.visible else "" for m in mods]
        hidden = [f"{100 * r.recall_masked[c]:.1f}" if r.recall_masked else "—" for c in k_cols]
        hyb = [v[w] for v in r.hybrid.values() if w in v]
        per = [f"{100 * r.recall[m]['R@1']:.1f}" if m in r.recall and "R@1" in r.recall[m] else "—" for m in mods]
        row = [*checks, *hidden, f"{r.sigma_l1:.2f}", f"{r.modality_gap:.3f}",
               f"{100 * float(np.mean(hyb)):.1f}" if hyb else "—", *per]
        lines.append("| " + " | ".join(row) + " |")
    note = (
        f"\nRecall in % over {report.rows} rows (chance R@1 ≈ {100 / max(report.rows, 1):.2f} %). "
        "'hidden' = mean over the modalities not visible; per-modality columns include visible ones "
        "(reconstruction of an input). gap = mean ‖centroid(recon) − centroid(true)‖. "
        f"{HYBRID_CONVENTION}.\n"
    )
    return "\n".join(lines) + "\n" + note


def write_evaluation(report: EvaluationReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``evaluation.md`` into ``out_dir`` atomically; returns both paths."""
    out = Path(out_dir)
    j = atomic_write_text(out / "evaluation.json", json.dumps(report.to_dict(), indent=1) + "\n")
    md = atomic_write_text(out / "evaluation.md", markdown_table(report))
    return j, md
