from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geoprom3e.errors import InputError
from geoprom3e.model.loss import KL_CUTOFF, contrastive_recon, kl_divergence, prom3e_loss

B, M, D, E = 16, 6, 32, 8


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    targets = F.normalize(torch.randn(B, M, D, generator=g), dim=-1)
    recon = F.normalize(targets + 0.5 * torch.randn(B, M, D, generator=g), dim=-1)
    mu = F.normalize(torch.randn(B, E, generator=g), dim=-1)
    logvar = 0.1 * torch.randn(B, E, generator=g)
    return recon, mu, logvar, targets


def scal(v: float) -> torch.Tensor:
    return torch.tensor(v, requires_grad=True)


def reference(recon, mu, logvar, targets, scale, shift, lambda_kl):
    """The published loss for a batch where every modality is present and a target."""
    losses = []
    for i in range(recon.shape[1]):
        logits = scale * torch.cdist(recon[:, i], targets[:, i]) + shift
        losses.append(F.cross_entropy(logits, torch.arange(recon.shape[0])))
    kl = -0.5 * torch.mean(1 + logvar - mu**2 - logvar.exp())
    return torch.stack(losses).mean() + lambda_kl * kl


def test_matches_the_published_formula_when_everything_is_present():
    recon, mu, logvar, targets = batch()
    ones = torch.ones(B, M, dtype=torch.bool)
    vis = torch.zeros(B, M, dtype=torch.bool)
    vis[:, 1] = True
    out = prom3e_loss(recon, mu, logvar, targets, ones, vis, scale=scal(-5.0), shift=scal(5.0), lambda_kl=1e-3)
    ref = reference(recon, mu, logvar, targets, -5.0, 5.0, 1e-3)
    assert torch.allclose(out.total, ref, atol=1e-6)
    assert bool(out.targets.all()) and not bool(torch.isnan(out.per_modality).any())


def test_better_reconstructions_give_lower_loss_and_gradients_reach_alpha_beta():
    recon, mu, logvar, targets = batch()
    ones = torch.ones(B, M, dtype=torch.bool)
    vis = torch.zeros_like(ones)
    a, b = scal(-5.0), scal(5.0)
    good = prom3e_loss(targets, mu, logvar, targets, ones, vis, scale=a, shift=b)
    bad = prom3e_loss(recon[torch.randperm(B)], mu, logvar, targets, ones, vis, scale=a, shift=b)
    assert float(good.recon.detach()) < float(bad.recon.detach()) - 0.5
    good.total.backward()
    assert a.grad is not None and float(a.grad) != 0.0
    assert contrastive_recon(targets[:, 0], targets[:, 0], torch.tensor(-50.0), torch.tensor(0.0)) < 1e-3


def test_absent_modalities_are_never_targets():
    recon, mu, logvar, targets = batch()
    present = torch.ones(B, M, dtype=torch.bool)
    present[:5, 2] = False
    present[:, 4] = False
    present[1:, 5] = False  # only one row holds audio: nothing to contrast, not a target
    vis = torch.zeros_like(present)
    vis[:, 0] = True
    out = prom3e_loss(recon, mu, logvar, targets, present, vis, scale=scal(-5.0), shift=scal(5.0))
    assert out.targets.tolist() == [True, True, True, True, False, False]
    assert math.isnan(float(out.per_modality[4])) and math.isnan(float(out.per_modality[5]))
    # values in absent entries (NaN even) never reach the loss
    poisoned = targets.clone()
    poisoned[:5, 2] = float("nan")
    poisoned[:, 4] = 123.0
    again = prom3e_loss(recon, mu, logvar, poisoned, present, vis, scale=scal(-5.0), shift=scal(5.0))
    assert torch.equal(again.total, out.total)
    # modality 2 uses only the 11 rows that hold it
    expected = contrastive_recon(recon[5:, 2], targets[5:, 2], torch.tensor(-5.0), torch.tensor(5.0))
    assert torch.allclose(out.per_modality[2], expected)


def test_masked_only_ignores_what_each_row_saw():
    recon, mu, logvar, targets = batch()
    present = torch.ones(B, M, dtype=torch.bool)
    vis = torch.zeros_like(present)
    vis[: B // 2, 0] = True
    vis[B // 2 :, 1] = True
    out = prom3e_loss(recon, mu, logvar, targets, present, vis, scale=scal(-5.0), shift=scal(5.0), masked_only=True)
    changed = targets.clone()
    changed[vis] = torch.randn(int(vis.sum()), D)
    again = prom3e_loss(recon, mu, logvar, changed, present, vis, scale=scal(-5.0), shift=scal(5.0), masked_only=True)
    assert torch.equal(out.total, again.total)
    full = prom3e_loss(recon, mu, logvar, changed, present, vis, scale=scal(-5.0), shift=scal(5.0))
    assert not torch.equal(full.total, out.total)


def test_kl_is_zeroed_above_the_cutoff_and_shapes_are_checked():
    mu = torch.zeros(4, E)
    assert float(kl_divergence(mu, torch.zeros(4, E))) == 0.0
    huge = torch.full((4, E), 12.0)  # e^12 / 2 ≈ 8e4 > 1e4
    assert float(-0.5 * torch.mean(1 + huge - huge.exp())) > KL_CUTOFF
    assert float(kl_divergence(mu, huge)) == 0.0
    recon, mu, logvar, targets = batch()
    with pytest.raises(InputError, match="loss inputs disagree"):
        prom3e_loss(recon, mu, logvar, targets, torch.ones(B, M - 1, dtype=torch.bool),
                    torch.zeros(B, M, dtype=torch.bool), scale=scal(-5.0), shift=scal(5.0))


def test_hidden_target_sums_cover_only_hidden_rows():
    recon, mu, logvar, targets = batch(3)
    present = torch.ones(B, M, dtype=torch.bool)
    present[:3, 2] = False
    visible = torch.zeros(B, M, dtype=torch.bool)
    visible[::2, 0] = True
    visible[1::2, 1] = True
    out = prom3e_loss(recon, mu, logvar, targets, present, visible, scale=scal(-5.0), shift=scal(5.0))
    for i in range(M):
        rows = present[:, i].nonzero().flatten()
        per_row = contrastive_recon(recon[rows, i], targets[rows, i], torch.tensor(-5.0), torch.tensor(5.0),
                                    reduction="none")
        hid = ~visible[rows, i]
        assert math.isclose(float(out.hidden_sum[i]), float(per_row[hid].sum()), rel_tol=1e-5)
        assert int(out.hidden_count[i]) == int(hid.sum())


def test_error_nll_is_minimised_at_the_log_mean_squared_error():
    from geoprom3e.model.loss import error_nll

    recon, _, _, targets = batch(4)
    use = torch.ones(B, M, dtype=torch.bool)
    s = torch.zeros(B, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.1)
    for _ in range(400):
        opt.zero_grad()
        error_nll(recon, targets, use, s).backward()
        opt.step()
    want = torch.log((recon - targets).pow(2).sum(-1).mean(-1))
    torch.testing.assert_close(s.detach(), want, atol=1e-3, rtol=0)
    r = recon.clone().requires_grad_(True)
    assert not error_nll(r, targets, use, s.detach()).requires_grad  # the residuals are detached
