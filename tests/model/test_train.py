from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from geoprom3e.errors import ConfigError, InputError, OutputError, TrainingError
from geoprom3e.model import ProM3E
from geoprom3e.model.data import as_embedding_set, read_embedding_file
from geoprom3e.model.evaluate import evaluate
from geoprom3e.model.recipe import load_recipe
from geoprom3e.model.train import latest_checkpoint, train
from geoprom3e.testing.synthetic import make_synthetic, small_recipe, trained_small_model

TIMING = ("samples_per_s", "epoch_seconds")


def tiny_recipe(**train_kw):
    r = small_recipe(batch_size=128, score_rows=128, **train_kw)
    r["model"]["dropout"] = 0.1  # dropout draws from the global RNG: resume must restore it
    r["masking"] = {"strategy": "miam", "params": {"lam": 2.0}}
    return r


def test_training_lowers_the_loss_and_beats_chance_from_two_modalities():
    res = trained_small_model("miam", 12)
    losses = [m["train_loss"] for m in res.metrics]
    vals = [m["val_loss"] for m in res.metrics]
    assert losses[-1] < losses[0] - 0.5 and vals[-1] < vals[0] - 0.5, (losses, vals)
    held_out = make_synthetic(400, seed=123).as_dict()  # same maps, new rows
    pairs = ["image,loc", "sat,env", "loc,text", "env,audio"]
    rep = evaluate(res.model, held_out, subsets=pairs, max_rows=400)
    chance = 1 / 400
    for r in rep.subsets:
        assert r.recall_masked["R@1"] > 20 * chance, (r.visible, r.recall_masked)
    # the weak modality (audio) is the hardest to reconstruct, the dominant one (sat) the easiest
    best = rep.subsets[0].recall
    assert best["sat"]["R@1"] > best["audio"]["R@1"]


def test_run_folder_holds_recipe_metrics_and_loadable_checkpoints():
    res = trained_small_model("miam", 12)
    out = res.out_dir
    assert load_recipe(out / "recipe.yaml").digest() == res.recipe.digest()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == list(range(1, 13))
    first = json.loads(lines[0])
    assert set(first["scores"]) == {"image", "sat", "loc", "env", "text", "audio"}
    assert first["strategy"]["name"] == "miam" and len(first["strategy"]["corner_weights"]) == 64
    kept = sorted(p.name for p in (out / "checkpoints").glob("epoch-*"))
    assert kept == ["epoch-0011", "epoch-0012"]  # keep_checkpoints = 2
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["checkpoint"] == "epoch-0012"
    assert latest_checkpoint(out) == out / "checkpoints" / "epoch-0012"
    x = torch.from_numpy(make_synthetic(8, seed=5).embeddings)
    for folder in (out / "model", out / "checkpoints" / "epoch-0012"):
        loaded = ProM3E.from_checkpoint(folder)
        a = loaded.infer(x, ["sat", "loc"], n_samples=0)
        b = res.model.infer(x, ["sat", "loc"], n_samples=0)
        assert torch.equal(a.mu, b.mu)
    # MIAM learned from the scores that sat (dominant) is strong and audio (weak) is not
    scores = json.loads(lines[-1])["scores"]
    assert scores["sat"] > scores["image"] > scores["audio"]
    r = json.loads(lines[-1])["strategy"]["rho_s"]
    assert r[1] > 1 > r[5]


def test_resume_continues_bit_for_bit(tmp_path):
    data = make_synthetic(700, seed=3, missing=0.2).as_dict()  # missing entries: mixed visible sets per batch
    full = train(tiny_recipe(epochs=3), tmp_path / "full", data=data)
    part = train(tiny_recipe(epochs=1), tmp_path / "part", data=data)
    assert len(part.metrics) == 1
    resumed = train(tiny_recipe(epochs=3), tmp_path / "part", data=data, resume=True)
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    strip = [{k: v for k, v in m.items() if k not in TIMING} for m in full.metrics]
    strip_r = [{k: v for k, v in m.items() if k not in TIMING} for m in resumed.metrics]
    assert strip == strip_r
    oa = torch.load(full.checkpoint / "training_state.pt", weights_only=True)
    ob = torch.load(resumed.checkpoint / "training_state.pt", weights_only=True)
    assert torch.equal(oa["rng"]["generator"], ob["rng"]["generator"])
    for k, st in oa["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg"], ob["optimizer"]["state"][k]["exp_avg"])


def test_score_smoothing_feeds_the_strategy_an_average(tmp_path):
    r = tiny_recipe(epochs=3, score_smoothing=0.8)
    res = train(r, tmp_path / "run", data=make_synthetic(500, seed=2).as_dict())
    m = res.metrics
    assert m[0]["scores_used"] == m[0]["scores"]
    for prev, cur in zip(m, m[1:]):
        for k in cur["scores"]:
            assert np.isclose(cur["scores_used"][k], 0.8 * prev["scores_used"][k] + 0.2 * cur["scores"][k])
    last = np.array(list(m[-1]["scores_used"].values())) + 1e-3
    np.testing.assert_allclose(m[-1]["strategy"]["rho_s"], last / np.prod(last) ** (1 / 6), rtol=1e-9)


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_resume_refuses_another_config_or_other_data_and_leaves_the_run_alone(tmp_path):
    data = make_synthetic(400, seed=4).as_dict()
    train(tiny_recipe(epochs=1), tmp_path / "run", data=data)
    before = _tree_digest(tmp_path / "run" / "checkpoints")
    other = tiny_recipe(epochs=2)
    other["model"]["embed_dim"] = 32
    with pytest.raises(TrainingError, match=r"another recipe \(model.embed_dim: 64 -> 32"):
        train(other, tmp_path / "run", data=data, resume=True)
    with pytest.raises(TrainingError, match="other data"):
        train(tiny_recipe(epochs=2), tmp_path / "run", data=make_synthetic(400, seed=5).as_dict(), resume=True)
    with pytest.raises(OutputError, match="--resume to continue"):
        train(tiny_recipe(epochs=2), tmp_path / "run", data=data)
    bad = dict(data)
    bad["sat"] = bad["sat"][:10]
    with pytest.raises(InputError, match="different row counts"):  # --overwrite with bad data deletes nothing
        train(tiny_recipe(epochs=2), tmp_path / "run", data=bad, overwrite=True)
    assert _tree_digest(tmp_path / "run" / "checkpoints") == before


def test_missing_modalities_are_never_visible(tmp_path):
    d = make_synthetic(500, seed=6).as_dict()
    d["present"] = np.random.default_rng(0).random((500, 6)) > 0.3
    d["present"][:, 0] = True  # every row keeps image
    del d["audio"]
    with pytest.raises(InputError, match=r"lacks modality keys audio.*data.modalities"):
        train(tiny_recipe(epochs=1), tmp_path / "a", data=d)
    r = tiny_recipe(epochs=1)
    r["data"] = {"modalities": ["image", "sat", "loc", "env", "text"]}
    res = train(r, tmp_path / "b", data=d)
    share = res.metrics[0]["visible_share"]
    assert share[5] == 0.0 and min(share[:5]) > 0.0
    scores = list(res.metrics[0]["scores"].values())
    assert np.isclose(scores[5], np.exp(np.mean(np.log(scores[:5]))))  # missing: neutral geometric mean


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"train": {"batch_size": 5000}}, InputError, "batch size 5000 is larger than the 270 training rows"),
        ({"masking": {"strategy": "dropout"}}, ConfigError, "unknown masking strategy 'dropout': use one of prom3e"),
        ({"train": {"learning_rate": 1}}, ConfigError, r"unknown key\(s\) train.learning_rate: allowed in train: ep"),
        ({"train": {"lr": -1.0}}, ConfigError, r"train.lr = -1.0: must be a number in \(0.0, inf\]"),
        ({"data": {"val_fraction": 1.5}}, ConfigError, "data.val_fraction = 1.5"),
        ({"masking": {"strategy": "miam", "params": {"kappa": 0}}}, ConfigError, "kappa = 0"),
        ({"optimiser": {}}, ConfigError, r"unknown section\(s\) optimiser"),
    ],
)
def test_bad_recipes_fail_before_anything_is_written(tmp_path, change, error, match):
    r = tiny_recipe(epochs=1)
    for k, v in change.items():
        r.setdefault(k, {}).update(v)
    with pytest.raises(error, match=match):
        train(r, tmp_path / "run", data=make_synthetic(300, seed=1).as_dict())
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_data_is_reported_with_rows(tmp_path):
    d = make_synthetic(50, seed=2).as_dict()
    d["loc"][[3, 7]] = np.nan
    with pytest.raises(InputError, match=r"NaN or inf in loc at rows \[3, 7\]"):
        as_embedding_set(d)
    s = as_embedding_set(d, on_nan="absent")
    assert not bool(s.present[3, 2]) and bool(s.present[4, 2])
    d = make_synthetic(50, seed=2).as_dict()
    d["env"] = d["env"][:40]
    with pytest.raises(InputError, match="different row counts.*env=40"):
        as_embedding_set(d)
    with pytest.raises(InputError, match="expected \\[N, 6, 512\\]"):
        as_embedding_set(np.zeros((4, 5, 512), dtype=np.float32))


def test_file_layouts_read_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zarr

    syn = make_synthetic(40, seed=8, missing=0.25)
    ref = as_embedding_set(syn.as_dict())
    published = {k: v for k, v in syn.as_dict(published_names=True).items() if k != "present"}
    np.save(tmp_path / "multinat.npy", published)  # the published MultiNat layout: a pickled dict
    npy = as_embedding_set(tmp_path / "multinat.npy")
    assert npy.names[5] == "audio" and torch.allclose(npy.embeddings[syn.present], ref.embeddings[syn.present])
    np.savez(tmp_path / "emb.npz", **syn.as_dict())
    pq.write_table(
        pa.table({name: pa.array([list(r) if syn.present[i, j] else None for i, r in enumerate(syn.embeddings[:, j])],
                                 type=pa.list_(pa.float32()))
                  for j, name in enumerate(ref.names)}),
        tmp_path / "emb.parquet",
    )
    g = zarr.open_group(str(tmp_path / "emb.zarr"), mode="w")
    for k, v in syn.as_dict().items():
        g.create_array(k, data=v)
    for f in ("emb.npz", "emb.parquet", "emb.zarr"):
        got = as_embedding_set(tmp_path / f)
        assert torch.equal(got.present, ref.present), f
        assert torch.allclose(got.embeddings, ref.embeddings, atol=1e-6), f


def test_npy_reader_runs_no_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump({"image": Evil()}, f)
    with pytest.raises(InputError, match="builtins.print.*refusing"):
        read_embedding_file(p)


def test_ssl_score_marks_the_planted_dominant_modality_and_miam_masks_it_more(tmp_path):
    """The MIAM paper's self-supervised score (appendix A.4.4): modality m scored by its training-set
    reconstruction loss with m as the target; sat is planted dominant (little noise), audio weak."""
    from geoprom3e.model.masking import get_strategy
    from geoprom3e.model.train import target_loss_scores

    r = tiny_recipe(epochs=14)
    assert load_recipe(r).train.score == "train-target-loss"  # the default
    res = train(r, tmp_path / "run", data=make_synthetic(1200, seed=0).as_dict())
    last = res.metrics[-1]
    loss = last["train_target_loss"]
    assert min(loss, key=loss.get) == "sat" and max(loss, key=loss.get) == "audio", loss
    scores = target_loss_scores(list(loss.values()))
    np.testing.assert_allclose(scores, np.exp(-np.array(list(loss.values()))), rtol=1e-12)  # s = exp(-L)
    assert list(last["scores"].values()) == scores
    rho = last["strategy"]["rho_s"]
    assert int(np.argmax(rho)) == 1 and int(np.argmin(rho)) == 5, rho
    # at a plateau (every score moved by the same amount between two evaluations) MIAM masks sat most
    s = get_strategy("miam", 6, lam=2.0)
    s.update(np.array(scores) - min(scores) / 2)
    s.update(scores)
    vis = s.sample_visible(40_000, torch.Generator().manual_seed(0)).float().mean(dim=0)
    assert int(torch.argmin(vis)) == 1 and int(torch.argmax(vis)) == 5, vis


def test_supervised_reading_stays_available(tmp_path):
    r = tiny_recipe(epochs=1, score="top1")
    res = train(r, tmp_path / "run", data=make_synthetic(400, seed=1).as_dict())
    assert res.metrics[0]["score"] == "top1" and all(0 <= v <= 1 for v in res.metrics[0]["scores"].values())


def test_early_stopping_rule_and_best_weights(tmp_path):
    from safetensors.torch import load_file

    from geoprom3e.model.train import _stopped

    crit = [{"stop_criterion": v} for v in (3.0, 2.0, 2.5, 2.4)]
    assert _stopped(crit, 2) and not _stopped(crit, 3) and not _stopped([], 1)
    r = tiny_recipe(epochs=3, early_stopping=5)
    res = train(r, tmp_path / "run", data=make_synthetic(400, seed=1).as_dict())
    m = res.metrics
    for line in m:  # MIAM's rule: each modality alone plus all (leave-one-out) on validation
        want = np.nanmean([*line["val_loss_per_modality"].values(), line["val_loo_loss"]])
        assert np.isclose(line["stop_criterion"], want)
    best = min(range(len(m)), key=lambda i: m[i]["stop_criterion"])
    assert m[best].get("best") is True
    a = load_file(str(tmp_path / "run" / "best" / "model.safetensors"))
    b = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_opm_gets_scores_and_drops_with_the_ssl_score(tmp_path):
    r = tiny_recipe(epochs=3)
    r["masking"] = {"strategy": "opm", "params": {"warmup_epochs": 1}}
    res = train(r, tmp_path / "run", data=make_synthetic(500, seed=2).as_dict())
    m = res.metrics
    assert m[0]["visible_share"] == [1.0] * 6  # warm-up, and nothing hidden yet: scores from all target rows
    assert max(m[0]["strategy"]["drop_prob"]) > 0, m[0]["strategy"]
    assert min(m[-1]["visible_share"]) < 1.0 and m[-1]["mean_feature_scale"] > 1.0
