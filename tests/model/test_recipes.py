"""The recipe named "published" is the published training (mvrl/proM3E), and every project addition is an
opt-in named key that the published recipe leaves off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoprom3e.model import ProM3E, ProM3EConfig
from geoprom3e.model.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "train"

# Read from mvrl/proM3E at commit 7a373eb ("update readme"); file and line of each value.
PUBLISHED = {
    # model.py ProM3E.__init__ defaults, train.py argparse defaults
    "model.input_dim": 512,  # train.py --input_dim 512
    "model.embed_dim": 1024,  # train.py --embed_dim 1024
    "model.num_modalities": 6,  # train.py --num_modalities 6
    "model.depth": 1,  # train.py --depth 1
    "model.heads": 8,  # train.py --heads 8
    "model.mlp_dim": 2048,  # train.py --mlp_dim 2048
    "model.num_register_tokens": 4,  # train.py --num_register_tokens 4
    "model.num_cls_tokens": 2,  # train.py --num_cls_tokens 2
    "model.dropout": 0.0,  # train.py --dropout default 0.0
    "model.lambda_kl": 1e-3,  # model.py lambda_kl: float = 1e-3
    "model.proj_hidden_dim": 1024,  # model.py MLP(input_dim, input_dim * 2, embed_dim)
    "model.token_init_std": 1.0,  # model.py nn.Parameter(torch.randn(...)) for cls, registers, identifiers
    "model.mask_token": False,  # model.py drops masked modalities from the sequence
    "model.error_head": False,  # not in model.py
    # dataset.py ProM3EDataset.__getitem__: torch.rand(1) < 0.5 picks the TaxaBind or the iNat set per batch
    "data.source_sampling": "published",
    "data.normalize": True,  # dataset.py F.normalize(batch_tensor, dim=-1)
    # model.py _get_unmasked_indices: 1 if torch.rand(1) < 0.9 else 2 visible modalities per batch
    "masking.strategy": "prom3e",
    "masking.params": {"p_two": 0.1},
    # train.py configure_optimizers / argparse
    "train.epochs": 500,  # --max_epochs 500
    "train.batch_size": 1024,  # --batch_size 1024
    "train.lr": 1e-4,  # --lr 1e-4
    "train.betas": [0.9, 0.98],  # AdamW(betas=(0.9, 0.98))
    "train.eps": 1e-6,  # AdamW(eps=1e-6)
    "train.weight_decay": 0.01,  # AdamW default (none given)
    "train.t0": 20,  # --scheduler_t0 20, CosineAnnealingWarmRestarts stepped per epoch (Lightning default)
    "train.eta_min": 1e-6,  # CosineAnnealingWarmRestarts(eta_min=1e-6)
    "train.grad_clip": 0.0,  # pl.Trainer without gradient_clip_val
    "train.amp": False,  # pl.Trainer without precision: fp32
    "train.masked_only": False,  # --masked_only is store_true, off by default
    # project additions, all off in the published recipe
    "train.score_smoothing": 0.0,
    "train.early_stopping": 0,
}


def flat(recipe) -> dict:
    out = {}
    for section, values in recipe.to_dict().items():
        for k, v in values.items():
            out[f"{section}.{k}"] = v
    return out


def test_published_recipe_equals_the_published_training():
    got = flat(load_recipe(RECIPES / "prom3e-published.yaml"))
    diff = {k: (got.get(k), v) for k, v in PUBLISHED.items() if got.get(k) != v}
    assert not diff, f"resolved recipe differs from the published values (got, published): {diff}"


def test_defaults_are_the_published_values_too():
    from geoprom3e.model.masking import get_strategy

    got = flat(load_recipe(None))
    diff = {k: (got.get(k), v) for k, v in PUBLISHED.items() if got.get(k) != v and k != "masking.params"}
    assert not diff, diff
    assert got["masking.params"] == {} and get_strategy("prom3e", 6).p_two == 0.1


def test_other_recipes_name_what_they_change():
    pub = flat(load_recipe(RECIPES / "prom3e-published.yaml"))
    changed = flat(load_recipe(RECIPES / "prom3e-dropout-clip-bf16.yaml"))
    diff = {k for k in pub if pub[k] != changed[k]}
    assert diff == {"model.dropout", "model.token_init_std", "train.grad_clip", "train.amp"}
    miam = flat(load_recipe(RECIPES / "prom3e-miam.yaml"))
    diff = {k for k in pub if pub[k] != miam[k]}
    assert diff == {"masking.strategy", "masking.params"}
    assert miam["train.score"] == "train-target-loss"


def test_token_init_is_std_one_as_published():
    torch.manual_seed(0)
    m = ProM3E(ProM3EConfig(embed_dim=256, mlp_dim=64, heads=4))
    vals = torch.cat([m.cls_tokens.detach().flatten(), m.register_tokens.detach().flatten(),
                      *[p.detach().flatten() for p in m.modality_identifiers]])
    assert abs(float(vals.std()) - 1.0) < 0.05
    small = ProM3E(ProM3EConfig(embed_dim=256, mlp_dim=64, heads=4, token_init_std=0.02))
    assert abs(float(small.cls_tokens.detach().std()) - 0.02) < 0.005
    assert ProM3EConfig().dropout == 0.0
    assert not any(k.startswith(("mask_token", "error_head")) for k in m.state_dict())


@pytest.mark.parametrize("bad", [{"model": {"token_init_std": 0}}, {"data": {"source_sampling": "mixed"}},
                                 {"train": {"early_stopping": -1}}])
def test_bad_values_of_the_new_keys_fail(bad):
    from geoprom3e.errors import ConfigError

    with pytest.raises(ConfigError):
        load_recipe(bad)


def test_published_source_choice_is_one_source_per_batch_half_each():
    from geoprom3e.model.data import SourceMixLoader, as_embedding_set
    from geoprom3e.testing.synthetic import make_synthetic

    a = as_embedding_set(make_synthetic(300, seed=1).as_dict())
    d = make_synthetic(900, seed=2).as_dict()
    d["present"] = torch.ones(900, 6, dtype=torch.bool).numpy()
    d["present"][:, 5] = False  # the iNat set: no audio
    b = as_embedding_set(d)
    loader = SourceMixLoader([a, b], 64)
    assert len(loader) == 1200 // 64
    g = torch.Generator().manual_seed(0)
    from_a = n = 0
    for _ in range(30):
        for _emb, present, _ in loader.epoch(g):
            audio = present[:, 5]
            assert bool(audio.all()) or not bool(audio.any()), "a batch mixes the two sources"
            from_a += int(bool(audio.all()))
            n += 1
    share = from_a / n  # 25 % of the rows, yet half of the batches (published torch.rand(1) < 0.5)
    assert abs(share - 0.5) < 4 * (0.25 / n) ** 0.5, share


def test_published_masking_picks_from_the_batch_modalities():
    from geoprom3e.model.masking import get_strategy

    s = get_strategy("prom3e", 6)
    avail = torch.ones(32, 6, dtype=torch.bool)
    avail[:, 5] = False  # iNat batch: published options = [0, 1, 2, 3, 4]
    g = torch.Generator().manual_seed(3)
    seen = torch.zeros(6)
    for _ in range(600):
        v = s.sample_visible(32, g, available=avail)
        assert bool((v == v[:1]).all()) and not bool(v[:, 5].any())
        seen += v[0].float()
    assert float(seen[:5].min()) > 80


def test_training_on_two_sources(tmp_path):
    from geoprom3e.model.train import train
    from geoprom3e.testing.synthetic import make_synthetic, small_recipe

    inat = make_synthetic(300, seed=2).as_dict()
    inat["present"] = torch.ones(300, 6, dtype=torch.bool).numpy()
    inat["present"][:, 5] = False
    r = small_recipe(epochs=1, batch_size=64, score_rows=64)
    res = train(r, tmp_path / "run", data=[make_synthetic(200, seed=1).as_dict(), inat])
    m = res.metrics[0]
    assert m["visible_share"][5] < 0.2 and len(res.metrics) == 1


def test_bundled_recipes_load_by_their_repository_path_from_any_folder(tmp_path, monkeypatch):
    from geoprom3e.model.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    assert load_recipe("recipes/train/prom3e-published.yaml").model.dropout == 0.0
