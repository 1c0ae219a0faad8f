"""ProM3E behaviour beyond the fixture: mixed visible sets, sampling, decoders, save/load."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geoprom3e.model import ProM3E, ProM3EConfig

SMALL = ProM3EConfig(embed_dim=64, mlp_dim=128, depth=2, heads=4)


def _model(seed: int = 0) -> ProM3E:
    torch.manual_seed(seed)
    return ProM3E(SMALL).eval()


def _x(b: int = 12, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, 6, 512, generator=g), dim=-1)


def test_default_size_matches_published_count():
    model = ProM3E()
    assert model.num_parameters() == 27_328_514
    assert len(model.state_dict()) == 96


def test_mixed_batch_rows_equal_their_own_runs():
    model, x = _model(), _x(12)
    sets = [[1, 2, 3], [2], [1, 2], [0, 4, 5], [3], [1, 2, 3, 4]]
    mask = torch.zeros(12, 6, dtype=torch.bool)
    for r in range(12):
        mask[r, sets[r % len(sets)]] = True
    mixed = model.infer(x, mask, n_samples=0)
    full = model.infer(x, mask, n_samples=0, return_hidden=True)
    for r in range(12):
        alone = model.infer(x[r : r + 1], sets[r % len(sets)], n_samples=0)
        torch.testing.assert_close(mixed.mu[r], alone.mu[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(mixed.logvar[r], alone.logvar[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(mixed.recon[r], alone.recon[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(full.mu[r], alone.mu[0], atol=1e-5, rtol=0)
    assert full.hidden.shape == (12, 2 + 4 + 6, 64)
    assert full.hidden_mask[:, 6:].eq(mask).all() and full.hidden_mask[:, :6].all()


def test_masked_entries_may_hold_nan_in_mixed_batches():
    model, x = _model(), _x(4)
    mask = torch.tensor([[0, 1, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0]] * 2, dtype=torch.bool)
    clean = model.infer(x, mask, n_samples=0)
    x2 = x.clone()
    x2[~mask] = float("nan")
    dirty = model.infer(x2, mask, n_samples=0)
    torch.testing.assert_close(dirty.mu, clean.mu)
    assert torch.isfinite(dirty.recon).all()


def test_sampling_is_one_scalar_per_row_and_reproducible():
    model, x = _model(), _x(8)
    a = model.infer(x, ["sat", "loc"], n_samples=5, generator=torch.Generator().manual_seed(3), decode=["image"])
    b = model.infer(x, ["sat", "loc"], n_samples=5, generator=torch.Generator().manual_seed(3), decode=["image"])
    c = model.infer(x, ["sat", "loc"], n_samples=0, decode=["image"])
    torch.testing.assert_close(a.recon, b.recon)
    assert not torch.allclose(a.recon, c.recon)
    # the same z as decoding mu + std * mean(eps) with eps drawn [n, B, 1]
    eps = torch.randn(5, 8, 1, generator=torch.Generator().manual_seed(3)).mean(0)
    z = a.mu + torch.exp(a.logvar / 2) * eps
    expected = F.normalize(model.decoders[0](z), dim=-1)
    torch.testing.assert_close(a.recon[:, 0], expected, atol=1e-6, rtol=0)


def test_decode_subset_and_none():
    model, x = _model(), _x(5)
    allm = model.infer(x, ["sat"], n_samples=0)
    some = model.infer(x, ["sat"], n_samples=0, decode=["text", "image"])
    none = model.infer(x, ["sat"], n_samples=0, decode=[])
    assert allm.recon.shape == (5, 6, 512) and allm.decoded[0] == "image"
    assert some.decoded == ("text", "image")
    torch.testing.assert_close(some.recon_of("image"), allm.recon[:, 0])
    torch.testing.assert_close(some.recon_of("text"), allm.recon[:, 4])
    assert none.recon is None
    torch.testing.assert_close(none.sigma_l1, torch.exp(allm.logvar / 2).sum(-1))
    torch.testing.assert_close(allm.recon.norm(dim=-1), torch.ones(5, 6))


def test_save_checkpoint_round_trip(tmp_path):
    model, x = _model(), _x(6)
    d = model.save_checkpoint(tmp_path / "ckpt")
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]
    again = ProM3E.from_checkpoint(d)
    assert again.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    a = model.infer(x, [0, 2], n_samples=0)
    b = again.infer(x, [0, 2], n_samples=0)
    torch.testing.assert_close(a.recon, b.recon, atol=0, rtol=0)
    # the safetensors file alone carries its config in metadata
    (d / "config.json").unlink()
    assert ProM3E.from_checkpoint(d / "model.safetensors").config == model.config


def test_plain_state_dict_pt(tmp_path):
    model = _model()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "config.json").write_text(model.config.to_json())
    again = ProM3E.from_checkpoint(tmp_path / "weights.pt")
    torch.testing.assert_close(again.cls_tokens, model.cls_tokens)


def test_training_forward_matches_inference_when_not_sampling():
    model, x = _model(), _x(6)
    out = model.forward(x, ["sat", "env"], sample=False)
    inf = model.infer(x, ["sat", "env"], n_samples=0)
    torch.testing.assert_close(out.mu, inf.mu, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.recon, inf.recon, atol=1e-5, rtol=0)
    model.train()
    out = model.forward(x, ["sat", "env"])
    out.recon.sum().backward()
    assert model.projectors[1].net[1].weight.grad is not None
    assert model.projectors[0].net[1].weight.grad is None  # image was not visible


def test_mask_token_option_mixed_rows_equal_their_own_runs_and_round_trip(tmp_path):
    from geoprom3e.model.checkpoint import infer_config

    torch.manual_seed(0)
    model = ProM3E(ProM3EConfig(embed_dim=64, mlp_dim=128, depth=2, heads=4, mask_token=True)).eval()
    assert "mask_token" in model.state_dict()
    x = _x(6)
    sets = [[1, 2, 3], [2], [0, 4, 5]]
    mask = torch.zeros(6, 6, dtype=torch.bool)
    for r in range(6):
        mask[r, sets[r % 3]] = True
    fast = model.infer(x, mask, n_samples=0)
    full = model.infer(x, mask, n_samples=0, return_hidden=True)
    for r in range(6):
        alone = model.infer(x[r : r + 1], sets[r % 3], n_samples=0)
        torch.testing.assert_close(fast.mu[r], alone.mu[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(full.mu[r], alone.mu[0], atol=1e-5, rtol=0)
    assert full.hidden.shape == (6, 2 + 4 + 6, 64)  # every modality holds a token (masked ones the mask token)
    fwd = model(x, mask, sample=False)
    torch.testing.assert_close(fwd.mu, fast.mu, atol=1e-5, rtol=0)
    # a masked modality's values are never read
    x2 = x.clone()
    x2[~mask] = 7.0
    torch.testing.assert_close(model.infer(x2, mask, n_samples=0).mu, fast.mu)
    model.save_checkpoint(tmp_path / "m")
    assert ProM3E.from_checkpoint(tmp_path / "m").config.mask_token
    assert infer_config(model.state_dict(), warn=False).mask_token


def test_error_head_option_and_token_scale():
    torch.manual_seed(0)
    model = ProM3E(ProM3EConfig(embed_dim=64, mlp_dim=128, depth=1, heads=4, error_head=True)).eval()
    x = _x(5)
    out = model.infer(x, ["sat", "loc"], n_samples=0)
    assert out.recon_sigma.shape == (5,) and bool((out.recon_sigma > 0).all())
    fwd = model(x, ["sat", "loc"], sample=False)
    torch.testing.assert_close(torch.exp(fwd.log_err / 2), out.recon_sigma, atol=1e-5, rtol=0)
    assert _model().infer(x, ["sat"], n_samples=0).recon_sigma is None
    a = model(x, ["sat", "loc"], sample=False, token_scale=1.0)
    b = model(x, ["sat", "loc"], sample=False, token_scale=2.0)
    torch.testing.assert_close(a.mu, fwd.mu)
    assert not torch.allclose(a.mu, b.mu)
