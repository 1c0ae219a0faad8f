from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoprom3e.errors import ConfigError
from geoprom3e.model.masking import OPM, corner_weights, corners, get_strategy, list_strategies

ALL = ["prom3e", "miam", "beta-hypercube", "uniform-hypercube", "constant", "uniform", "dirichlet",
       "modality-dropout", "opm"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_lists_every_strategy_and_rejects_unknown_names():
    assert list_strategies() == ALL
    with pytest.raises(ConfigError, match="unknown masking strategy 'miamm'.*prom3e, miam, beta-hypercube"):
        get_strategy("miamm", 6)
    with pytest.raises(ConfigError, match="no parameter kappa.*allowed: p"):
        get_strategy("constant", 6, kappa=3)
    with pytest.raises(ConfigError, match="kappa"):
        get_strategy("miam", 6, kappa=-1)
    with pytest.raises(ConfigError, match="p = 1.5"):
        get_strategy("modality-dropout", 6, p=1.5)


@pytest.mark.parametrize("name", ALL)
def test_samples_are_never_empty_and_respect_availability(name):
    s = get_strategy(name, 6)
    if s.dynamic:
        s.update([0.9, 0.1, 0.4, 0.5, 0.3, 0.2])
    p = s.sample_probs(500, gen())
    assert p.shape == (500, 6) and bool(((p >= 0) & (p <= 1)).all())
    v = s.sample_visible(2000, gen(1))
    assert v.dtype == torch.bool and v.shape == (2000, 6)
    assert bool(v.any(dim=1).all())
    avail = torch.rand(2000, 6, generator=gen(2)) < 0.4
    avail[torch.arange(2000), torch.randint(0, 6, (2000,), generator=gen(3))] = True
    avail[:50] = False
    avail[:50, 5] = True  # rows holding only audio
    v = s.sample_visible(2000, gen(4), available=avail)
    assert not bool((v & ~avail).any()), "a modality absent from a row was made visible"
    assert bool(v.any(dim=1).all())
    assert bool(v[:50, 5].all())


def test_available_rows_without_any_modality_are_rejected():
    avail = torch.ones(4, 6, dtype=torch.bool)
    avail[2] = False
    with pytest.raises(ConfigError, match=r"rows \[2\] have no modality"):
        get_strategy("miam", 6).sample_visible(4, gen(), available=avail)


def test_corner_weights_and_the_one_token_move():
    w1 = corner_weights(6, tokens_per_modality=1)
    w2 = corner_weights(6, tokens_per_modality=4)
    for w in (w1, w2):
        assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-12)
        assert torch.allclose(w[1:-1], torch.full((62,), 1 / (2 * 62), dtype=torch.float64))
    assert float(w2[0]) == 0.25 and float(w2[-1]) == 0.25
    assert float(w1[0]) == 0.5 and float(w1[-1]) == 0.0  # (1,…,1)'s weight moved to (0,…,0)
    c = corners(6)
    assert c[0].tolist() == [False] * 6 and c[-1].tolist() == [True] * 6 and c[5].tolist()[:3] == [True, False, True]


@pytest.mark.parametrize("tokens", [1, 3])
def test_miam_corner_frequencies_match_the_weights(tokens):
    # With a large κ each Beta factor sits at its corner, so a sample's corner is readable as p > 0.5.
    s = get_strategy("miam", 6, tokens_per_modality=tokens, kappa=60.0)
    n = 120_000
    p = s.sample_probs(n, gen(7))
    idx = ((p > 0.5).long() * (2 ** torch.arange(6))).sum(dim=1)
    freq = torch.bincount(idx, minlength=64).double() / n
    w = s.weights
    sd = torch.sqrt(w * (1 - w) / n)
    assert bool(((freq - w).abs() <= 5 * sd + 1e-4).all()), (freq - w).abs().max()
    if tokens == 1:
        assert float(freq[-1]) == 0.0


def test_miam_beta_factors_have_the_right_means():
    s = get_strategy("miam", 4, kappa=10.0, lam=2.0)
    s.update([0.8, 0.2, 0.2, 0.2])
    p = s.sample_probs(200_000, gen(3))
    assert torch.allclose(p.mean(dim=0), s.expected_probs(), atol=4e-3)
    # the inverse-CDF draws are real Beta(1, b) draws: compare one factor with scipy's mean and variance
    from scipy import stats

    b0, _ = s.beta_params()
    c = corners(4)[s.sample_corners(50_000, gen(9))]
    u = torch.rand(50_000, 4, generator=gen(10), dtype=torch.float64)
    draws = (1 - (1 - u) ** (1 / b0))[:, 1]
    assert abs(float(draws.mean()) - stats.beta(1, float(b0[1])).mean()) < 3e-3
    assert c.shape == (50_000, 4)


def test_miam_masks_a_dominant_modality_more():
    s = get_strategy("miam", 6, lam=2.0)
    before = s.sample_visible(40_000, gen(1)).float().mean(dim=0)
    assert float(before.max() - before.min()) < 0.02  # no scores yet: every modality alike
    s.update([0.9, 0.3, 0.3, 0.3, 0.3, 0.3])  # image (index 0) is dominant
    st = s.state()
    assert st["r"][0] > 1 > st["r"][1]
    after = s.sample_visible(40_000, gen(2)).float().mean(dim=0)
    assert float(after[0]) < float(after[1:].min()) - 0.1, after
    # a second evaluation where image stopped improving while the others still move: masked even more
    s.update([0.9, 0.4, 0.4, 0.4, 0.4, 0.4])
    again = s.sample_visible(40_000, gen(3)).float().mean(dim=0)
    assert float(again[0]) < float(after[0])
    # λ = 0 (beta hypercube) ignores the scores
    b = get_strategy("beta-hypercube", 6)
    b.update([0.9, 0.3, 0.3, 0.3, 0.3, 0.3])
    bv = b.sample_visible(40_000, gen(2)).float().mean(dim=0)
    assert float(bv.max() - bv.min()) < 0.02


def test_miam_rho_and_r_follow_the_formulas():
    s = get_strategy("miam", 3, eps=1e-3)
    s.update([0.5, 0.2, 0.1])
    s.update([0.6, 0.2, 0.4])
    sc = np.array([0.6, 0.2, 0.4]) + 1e-3
    d = np.abs(sc - (np.array([0.5, 0.2, 0.1]) + 1e-3)) + 1e-3
    rho_s = sc / np.prod(sc) ** (1 / 3)
    rho_d = d / np.prod(d) ** (1 / 3) + 1e-3
    st = s.state()
    np.testing.assert_allclose(st["rho_s"], rho_s, rtol=1e-12)
    np.testing.assert_allclose(st["rho_d"], rho_d, rtol=1e-12)
    np.testing.assert_allclose(st["r"], rho_s / rho_d, rtol=1e-12)
    t = get_strategy("miam", 3)
    t.load_state(st)
    assert t.state() == st
    with pytest.raises(ConfigError, match="one per modality"):
        s.update([1.0, 2.0])
    with pytest.raises(ConfigError, match="finite and >= 0"):
        s.update([1.0, -2.0, 1.0])


def test_opm_drop_probabilities_match_its_formula():
    s = get_strategy("opm", 4)
    assert s.drop_probs().tolist() == [0.0] * 4  # no scores yet
    scores = np.array([0.9, 0.3, 0.45, 0.6])
    s.update(scores)
    sc = scores + 1e-3
    expected = []
    for m in range(4):  # MIAM A.5: q_base 0.5, λ 0.4
        coeff = np.mean([sc[m] / sc[j] for j in range(4) if j != m])
        expected.append(0.5 * (1 + 0.4 * np.tanh(coeff - 1)) if coeff > 1 else 0.0)
    np.testing.assert_allclose(s.sample_probs(3, gen()).numpy(), np.tile(expected, (3, 1)), rtol=1e-12)
    assert expected[0] > 0.5 and expected[1] == 0.0
    s.start_epoch(6)  # after the reference's warm-up (epochs 0..5)
    v = s.sample_visible(40_000, gen(5)).float().mean(dim=0).numpy()
    assert abs((1 - v[0]) - expected[0]) < 0.02 and v[1] == 1.0
    assert isinstance(s, OPM)


def test_published_scheme_one_set_per_batch_90_10():
    s = get_strategy("prom3e", 6)
    g = gen(11)
    sizes = []
    for _ in range(3000):
        v = s.sample_visible(8, g)
        assert bool((v == v[:1]).all()), "the published scheme shares one set across the batch"
        sizes.append(int(v[0].sum()))
    share_two = sizes.count(2) / len(sizes)
    assert set(sizes) == {1, 2} and abs(share_two - 0.1) < 0.02
    avail = torch.ones(8, 6, dtype=torch.bool)
    avail[:4] = False
    avail[:4, 2] = True
    for _ in range(50):
        v = s.sample_visible(8, g, available=avail)
        assert bool(v[:4, 2].all()) and int(v[:4].sum()) == 4


@pytest.mark.parametrize(
    ("name", "expected_mask"), [("constant", 0.75), ("modality-dropout", 0.1), ("uniform-hypercube", 0.5),
                                ("dirichlet", 5 / 6)]
)
def test_static_baselines_mask_at_their_rates(name, expected_mask):
    p = get_strategy(name, 6).sample_probs(100_000, gen(4))
    assert abs(float(p.mean()) - expected_mask) < 0.01
    if name == "dirichlet":  # the 'visible' reading: 1 - p lies on the simplex
        assert torch.allclose((1 - p).sum(dim=1), torch.ones(100_000, dtype=torch.float64))


# ---------------------------------------------------------------------- MIAM appendix A.5 constants
def test_baseline_constants_are_the_papers():
    assert get_strategy("constant", 6).p == 0.75
    assert get_strategy("modality-dropout", 6).p == 0.1
    d = get_strategy("dirichlet", 6)
    assert d.alpha == 1.0 and d.reading == "visible"
    o = get_strategy("opm", 6)
    assert (o.q_base, o.lam) == (0.5, 0.4)  # MIAM A.5
    assert (o.p_exe, o.warmup_epochs, o.rescale) == (0.7, 6, True)  # GeWu-Lab/BML_TPAMI2024 main.py / Classifier.py
    m = get_strategy("miam", 6)
    assert (m.kappa, m.lam, m.eps, m.corner_weighting) == (10.0, 1.0, 1e-3, "paper")
    assert get_strategy("beta-hypercube", 6).lam == 0.0


def test_uniform_draws_one_shared_p_per_iteration():
    s = get_strategy("uniform", 4, tokens_per_modality=[1, 3, 1, 2])
    g = gen(8)
    ps = []
    for _ in range(20_000):
        p = s.sample_probs(7, g)
        assert bool((p == p[0, 0]).all()), "one p per iteration, shared by rows and modalities"
        ps.append(float(p[0, 0]))
    ps = np.array(ps)
    n = len(ps)
    assert abs(ps.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(ps.var() - 1 / 12) < 5 * np.sqrt((1 / 80 - 1 / 144) / n)


def test_opm_execution_probability_warm_up_and_rescaling():
    tokens = [1, 3, 2, 1]
    s = get_strategy("opm", 4, tokens_per_modality=tokens)
    s.update([0.9, 0.3, 0.45, 0.6])
    g = gen(9)
    for e in range(6):  # warm-up: the reference's epochs 0..5 drop nothing
        s.start_epoch(e)
        assert bool(s.sample_tokens(64, g).all()) and s.feature_scale() == 1.0
    s.start_epoch(6)
    q = s.drop_probs().numpy()
    theta = float((np.array(tokens) * q).sum() / sum(tokens))
    assert math.isclose(s.theta(), theta, rel_tol=1e-12)
    executed, n = 0, 20_000
    for _ in range(n):
        t = s.sample_tokens(64, g)
        if not bool(t.all()):  # with q_image ~0.7 over 64 rows an executed iteration always drops something
            executed += 1
            assert math.isclose(s.feature_scale(), 1 / (1 - theta), rel_tol=1e-12)
        else:
            assert s.feature_scale() == 1.0
    assert abs(executed / n - 0.7) < 5 * math.sqrt(0.7 * 0.3 / n)
    assert get_strategy("opm", 4, rescale=False).feature_scale() == 1.0


# ---------------------------------------------------------------------- several tokens per modality
def _beta_mixture_moments(s):
    """E[p_m] and E[p_m²] of MIAM's mixture of product Betas."""
    b0, a1 = s.beta_params()
    c = corners(s.num_modalities).double()
    w = s.weights[:, None]
    m1 = (w * (c * (a1 / (a1 + 1)) + (1 - c) * (1 / (1 + b0)))).sum(dim=0)
    m2 = (w * (c * (a1 / (a1 + 2)) + (1 - c) * (2 / ((1 + b0) * (2 + b0))))).sum(dim=0)
    return m1.numpy(), m2.numpy()


def _within(freq, prob, n, k=5.0):
    sd = np.sqrt(prob * (1 - prob) / n)
    return np.abs(freq - prob) <= k * sd + 1e-12


def test_miam_masks_each_token_with_p_m_and_tokens_of_a_modality_share_it():
    tokens = [1, 3, 2, 4]
    s = get_strategy("miam", 4, tokens_per_modality=tokens, lam=2.0)
    s.update([0.8, 0.3, 0.5, 0.2])
    s.update([0.81, 0.35, 0.52, 0.21])
    n = 150_000
    g = gen(12)
    masked = ~s._token_draw(s.sample_probs(n, g), g)  # the raw per-token draw, before the non-empty rule
    m1, m2 = _beta_mixture_moments(s)
    tm = s.token_modality.numpy()
    freq = masked.double().mean(dim=0).numpy()
    assert _within(freq, m1[tm], n).all(), (freq, m1[tm])
    # two tokens of one modality are masked together with probability E[p_m²] (one shared p_m), not E[p_m]²
    for m, (a, b) in {1: (1, 2), 2: (4, 5), 3: (6, 9)}.items():
        both = float((masked[:, a] & masked[:, b]).double().mean())
        assert _within(both, m2[m], n), (m, both, m2[m], m1[m] ** 2)
        assert abs(m2[m] - m1[m] ** 2) > 10 * np.sqrt(m2[m] * (1 - m2[m]) / n)  # the two hypotheses differ
    vis = s.sample_tokens(n, g)
    assert bool(vis.any(dim=1).all())
    mv = s.sample_visible(1000, g)
    assert mv.shape == (1000, 4)


def test_uniform_and_dropout_per_token_statistics():
    tokens = [2, 1, 3]
    u = get_strategy("uniform", 3, tokens_per_modality=tokens)
    g = gen(13)
    batches = [~u._token_draw(u.sample_probs(10, g), g) for _ in range(12_000)]  # 120k rows
    masked = torch.cat(batches).double()
    n = masked.shape[0]
    f = masked.mean(dim=0).numpy()
    per_batch = torch.stack([b.double().mean(dim=0) for b in batches]).numpy()
    sd = per_batch.std(axis=0) / np.sqrt(len(batches))  # rows of a batch share p: use batch means
    assert (np.abs(f - 0.5) <= 5 * sd).all(), f
    cross = torch.stack([(b[:, 0] & b[:, 2]).double().mean() for b in batches]).numpy()  # E[p²] = 1/3
    assert abs(cross.mean() - 1 / 3) <= 5 * cross.std() / np.sqrt(len(batches))
    d = get_strategy("modality-dropout", 3, tokens_per_modality=tokens)
    masked = ~d._token_draw(d.sample_probs(n, g), g)
    assert bool((masked[:, 0] == masked[:, 1]).all()) and bool((masked[:, 3] == masked[:, 5]).all())
    assert _within(masked.double().mean(dim=0).numpy(), np.full(6, 0.1), n).all()


def test_the_non_empty_rule_conditions_on_at_least_one_visible_token():
    p, tokens = 0.75, [2, 1]
    s = get_strategy("constant", 2, tokens_per_modality=tokens, p=p)
    n = 120_000
    vis = s.sample_tokens(n, gen(14))
    assert bool(vis.any(dim=1).all())
    want = (p - p**3) / (1 - p**3)  # P(token masked | not all 3 masked)
    assert _within((~vis).double().mean(dim=0).numpy(), np.full(3, want), n).all()
    avail = torch.ones(n, 3, dtype=torch.bool)
    avail[:, 1] = False  # per-token availability
    vis = s.sample_tokens(n, gen(15), available=avail)
    assert not bool(vis[:, 1].any()) and bool(vis.any(dim=1).all())


def test_one_token_rule_applies_only_when_every_modality_has_one_token():
    assert float(corner_weights(3, [1, 1, 1])[-1]) == 0.0
    w = corner_weights(3, [1, 4, 1])
    assert float(w[0]) == 0.25 and float(w[-1]) == 0.25
    u = corner_weights(3, [1, 4, 1], "uniform")
    assert torch.allclose(u, torch.full((8,), 1 / 8, dtype=torch.float64))
    u1 = corner_weights(3, 1, "uniform")
    assert float(u1[-1]) == 0.0 and math.isclose(float(u1[0]), 2 / 8)
    with pytest.raises(ConfigError, match="corner weighting"):
        get_strategy("miam", 3, corner_weighting="flat")
    with pytest.raises(ConfigError, match="tokens_per_modality"):
        get_strategy("miam", 3, tokens_per_modality=[1, 2])
