"""The ProM3E training loss with per-row visible sets and presence masks.

For each modality i that is a target in the batch, ``logits = α · cdist(ẑ_i, e_i) + β`` over the rows
where modality i is present (InfoNCE: row k must pick its own e_i among the batch), cross-entropy against
the matching row, averaged over target modalities; plus ``λ_kl · KL`` with
``KL = −½ mean(1 + logvar − μ² − e^logvar)``, zeroed when above 1e4 (as published).

Two things beside the published loss:

* per-modality sums of the per-row losses over the rows in which the modality was a *hidden* target
  (present and masked): the training-set score MIAM uses in the self-supervised setting (``hidden_sum`` /
  ``hidden_count``); they cost nothing extra and do not change the loss;
* :func:`error_nll`, the research option behind ``ProM3EConfig.error_head``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from geoprom3e.errors import InputError

KL_CUTOFF = 1e4
"""KL values above this are dropped from the loss (the published guard against early blow-ups)."""


@dataclass
class LossOutput:
    """The loss of one batch and its parts."""

    total: torch.Tensor
    """Scalar: reconstruction loss + λ_kl · KL (what is back-propagated)."""
    recon: torch.Tensor
    """Scalar: mean over target modalities of the contrastive reconstruction loss."""
    kl: torch.Tensor
    """Scalar: the KL term before weighting (0 when it exceeded the cutoff)."""
    per_modality: torch.Tensor
    """[M] contrastive loss per modality (NaN where the modality was not a target in this batch)."""
    targets: torch.Tensor
    """[M] bool: which modalities were targets (at least 2 rows present)."""
    hidden_sum: torch.Tensor | None = None
    """[M] sum of the per-row contrastive losses over rows where the modality was present and not visible
    (detached; on the loss's device)."""
    hidden_count: torch.Tensor | None = None
    """[M] number of those rows."""
    target_sum: torch.Tensor | None = None
    """[M] sum of the per-row contrastive losses over every row where the modality was a target."""
    target_count: torch.Tensor | None = None
    """[M] number of those rows."""
    error: torch.Tensor | None = None
    """Scalar: the :func:`error_nll` term before weighting (error_head models only)."""


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """−½ mean(1 + logvar − μ² − e^logvar) over every element, zeroed when above :data:`KL_CUTOFF`."""
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    return torch.where(kl > KL_CUTOFF, torch.zeros_like(kl), kl)


def contrastive_recon(
    recon: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE over rows: ``logits = scale · cdist(recon, target) + shift``, cross-entropy with the diagonal
    (``reduction="none"`` gives the [n] per-row losses)."""
    logits = scale * torch.cdist(recon, target) + shift
    labels = torch.arange(recon.shape[0], device=recon.device)
    return F.cross_entropy(logits, labels, reduction=reduction)


def error_nll(recon: torch.Tensor, targets: torch.Tensor, use: torch.Tensor, log_err: torch.Tensor) -> torch.Tensor:
    """Heteroscedastic Gaussian likelihood of the reconstruction residuals, with the residuals detached.

    The residual r_ij = recon_ij − e_ij of row i and target j is modelled as isotropic Gaussian with total
    variance σ_i² = exp(s_i) (s = ``log_err``, one per row); per row the negative log-likelihood is, up to
    constants and the factor D/2, ``mean_j (‖r_ij‖² · e^(−s_i)) + s_i``, minimised by
    s_i = log mean_j ‖r_ij‖². The residuals are detached, so this term trains only the error head (and, through
    the log-variance token, the encoder) and leaves the reconstructions as the published loss makes them.
    Rows without a target are skipped; returns the mean over rows (0 when none).
    """
    sq = (recon.detach().float() - targets.float()).pow(2).sum(dim=-1)  # [B, M]
    w = use.float()
    n = w.sum(dim=1)
    rows = n > 0
    if not bool(rows.any()):
        return log_err.sum() * 0.0
    mean_sq = (sq * w).sum(dim=1)[rows] / n[rows]
    s = log_err.float()[rows]
    return (mean_sq * torch.exp(-s) + s).mean()


def prom3e_loss(
    recon: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    targets: torch.Tensor,
    present: torch.Tensor,
    visible: torch.Tensor,
    *,
    scale: torch.Tensor,
    shift: torch.Tensor,
    lambda_kl: float = 1e-3,
    masked_only: bool = False,
    log_err: torch.Tensor | None = None,
    error_weight: float = 1.0,
) -> LossOutput:
    """ProM3E loss for one batch.

    Args:
        recon: [B, M, D] L2-normalised reconstructions (``ForwardOutput.recon``).
        mu: [B, E] latent means.
        logvar: [B, E] latent log-variances.
        targets: [B, M, D] the true embeddings (values where ``present`` is False are never read).
        present: [B, M] bool, True where the row has that modality; absent ones are never targets.
        visible: [B, M] bool, what the encoder saw; with ``masked_only`` visible entries are not targets.
        scale: α (``model.negative_scale``), negative so that closer means a larger logit.
        shift: β (``model.negative_shift``).
        lambda_kl: weight of the KL term.
        masked_only: reconstruct only the modalities each row did not see.
        log_err: [B] the error head's output (``ForwardOutput.log_err``); adds ``error_weight`` · :func:`error_nll`.
        error_weight: weight of that term.
    """
    b, m, _ = recon.shape
    if present.shape != (b, m) or visible.shape != (b, m) or targets.shape != recon.shape:
        raise InputError(
            f"loss inputs disagree: recon {tuple(recon.shape)}, targets {tuple(targets.shape)}, "
            f"present {tuple(present.shape)}, visible {tuple(visible.shape)}"
        )
    use = present & ~visible if masked_only else present
    hidden = present & ~visible
    per = recon.new_full((m,), float("nan"), dtype=torch.float32)
    is_target = torch.zeros(m, dtype=torch.bool)
    h_sum = torch.zeros(m, device=recon.device, dtype=torch.float32)
    h_cnt = torch.zeros(m, device=recon.device, dtype=torch.float32)
    t_sum = torch.zeros(m, device=recon.device, dtype=torch.float32)
    t_cnt = torch.zeros(m, device=recon.device, dtype=torch.float32)
    losses = []
    all_rows = bool(use.all())
    for i in range(m):
        if all_rows:
            r_i, t_i = recon[:, i], targets[:, i]
            hid = hidden[:, i]
        else:
            rows = use[:, i].nonzero().flatten()
            if rows.numel() < 2:  # one row is always its own best match: nothing to learn
                continue
            r_i, t_i = recon[rows, i], targets[rows, i]
            hid = hidden[rows, i]
        per_row = contrastive_recon(r_i.float(), t_i.float(), scale.float(), shift.float(), reduction="none")
        li = per_row.mean()
        losses.append(li)
        per[i] = li.detach()
        is_target[i] = True
        d = per_row.detach()
        h_sum[i] = (d * hid).sum()
        h_cnt[i] = hid.sum()
        t_sum[i] = d.sum()
        t_cnt[i] = d.numel()
    rec = torch.stack(losses).mean() if losses else recon.sum() * 0.0
    kl = kl_divergence(mu.float(), logvar.float())
    total = rec + lambda_kl * kl
    err = None
    if log_err is not None:
        err = error_nll(recon, targets, use, log_err)
        total = total + error_weight * err
    return LossOutput(
        total=total, recon=rec, kl=kl, per_modality=per, targets=is_target, hidden_sum=h_sum, hidden_count=h_cnt,
        target_sum=t_sum, target_count=t_cnt, error=None if err is None else err.detach(),
    )
