"""Named uncertainty measures: the published ‖σ‖₁ unchanged, and the research ones behind clear names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geoprom3e.errors import ConfigError
from geoprom3e.model import ProM3E, ProM3EConfig
from geoprom3e.model.uncertainty import MEASURES, predictive_dispersion, uncertainty
from geoprom3e.testing.synthetic import make_synthetic

SMALL = dict(embed_dim=64, mlp_dim=128, depth=1, heads=4)


def _x(b=8):
    return F.normalize(torch.randn(b, 6, 512, generator=torch.Generator().manual_seed(1)), dim=-1)


def test_measures_are_labelled_and_only_sigma_l1_is_published():
    assert set(MEASURES) == {"sigma_l1", "dispersion", "recon_sigma"}
    assert [k for k, v in MEASURES.items() if v.published] == ["sigma_l1"]
    assert "not been shown" in MEASURES["sigma_l1"].note


def test_sigma_l1_is_the_published_quantity_and_the_others_behave():
    torch.manual_seed(0)
    model = ProM3E(ProM3EConfig(**SMALL)).eval()
    x = _x()
    s = uncertainty(model, x, ["sat", "loc"])
    torch.testing.assert_close(s, torch.exp(model.infer(x, ["sat", "loc"], n_samples=0).logvar / 2).sum(-1))
    d = uncertainty(model, x, ["sat", "loc"], "dispersion", generator=torch.Generator().manual_seed(0))
    assert d.shape == (8,) and bool(((d >= 0) & (d <= 1)).all())
    d2 = predictive_dispersion(model, x, ["sat", "loc"], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(d, d2)
    with pytest.raises(ConfigError, match="error_head"):
        uncertainty(model, x, ["sat"], "recon_sigma")
    with pytest.raises(ConfigError, match="unknown uncertainty measure"):
        uncertainty(model, x, ["sat"], "entropy")
    head = ProM3E(ProM3EConfig(**SMALL, error_head=True)).eval()
    r = uncertainty(head, x, ["sat"], "recon_sigma")
    torch.testing.assert_close(r, head.infer(x, ["sat"], n_samples=0).recon_sigma)


def test_planted_row_difficulty_leaves_the_rest_of_the_data_alone():
    a = make_synthetic(50, seed=3)
    b = make_synthetic(50, seed=3, row_difficulty=(1.0, 1.0))
    assert a.difficulty is None and b.difficulty.shape == (50,)
    torch.testing.assert_close(torch.from_numpy(a.embeddings), torch.from_numpy(b.embeddings))
    c = make_synthetic(50, seed=3, row_difficulty=(0.5, 2.0))
    assert 0.5 <= c.difficulty.min() and c.difficulty.max() <= 2.0
