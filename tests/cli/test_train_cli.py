from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.testing.synthetic import make_synthetic, small_recipe


@pytest.fixture()
def files(tmp_path):
    data = tmp_path / "train.npz"
    np.savez(data, **make_synthetic(600, seed=0).as_dict())
    held = tmp_path / "val.npz"
    np.savez(held, **make_synthetic(200, seed=9).as_dict())
    r = small_recipe(epochs=2, batch_size=128, score_rows=128)
    r["data"] = {"path": str(data)}
    r["masking"] = {"strategy": "miam"}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(r))
    return tmp_path, recipe, data, held


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_then_evaluate_from_the_cli(files):
    tmp, recipe, _, held = files
    out = tmp / "run"
    res = run("train", recipe, "--out", out, "--no-progress", "masking.params.lam=2", "train.epochs=2")
    assert res.exit_code == 0, res.output
    assert "trained 2 epochs" in res.output
    assert yaml.safe_load((out / "recipe.yaml").read_text())["masking"]["params"] == {"lam": 2}
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    res = run("train", recipe, "--out", out, "--no-progress", "--resume", "masking.params.lam=2", "train.epochs=3")
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    res = run("evaluate", out / "model", held, "--out", tmp / "ev", "-s", "sat", "-s", "sat,loc", "--alpha", "0.25")
    assert res.exit_code == 0, res.output
    assert "| ✓ | ✓ |" in res.output  # the sat,loc row of the table (image column blank first)
    rep = json.loads((tmp / "ev" / "evaluation.json").read_text())
    assert [s["visible"] for s in rep["subsets"]] == [["sat"], ["sat", "loc"]]
    assert rep["hybrid_alpha"] == 0.25


def test_help_teaches():
    for cmd in ("train", "evaluate"):
        res = run(cmd, "--help")
        assert res.exit_code == 0 and "Examples:" in res.output
    assert "miam, beta-hypercube" in run("train", "--help").output


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lerning_rate=1", "unknown key(s) train.lerning_rate: allowed in train: epochs, batch_size"),
        ("masking.strategy=miim", "unknown masking strategy 'miim': use one of prom3e, miam"),
        ("train.batch_size=100000", "batch size 100000 is larger than the 540 training rows"),
        ("train.epochs=0", "train.epochs = 0: must be a positive integer"),
        ("masking.params.lam=-1", "lam = -1"),
        ("epochs=3", "needs a section"),
    ],
)
def test_bad_recipe_values_exit_2_with_one_line(files, override, message):
    tmp, recipe, _, _ = files
    res = CliRunner().invoke(main, ["train", str(recipe), "--out", str(tmp / "bad"), "--no-progress", override])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert res.output.count("\n") == 1 and res.output.startswith("error: ")
    assert not (tmp / "bad" / "checkpoints").exists()


def test_bad_data_and_resume_exit_2_and_leave_the_run_alone(files):
    tmp, recipe, data, _ = files
    d = dict(np.load(data))
    del d["text"]
    np.savez(tmp / "no_text.npz", **d)
    res = CliRunner().invoke(main, ["train", str(recipe), "--no-progress", "--out", str(tmp / "x"),
                                    f"data.path={tmp / 'no_text.npz'}"])
    assert res.exit_code == 2 and "lacks modality keys text" in res.output
    d = dict(np.load(data))
    d["sat"] = d["sat"][:500]
    np.savez(tmp / "short.npz", **d)
    res = CliRunner().invoke(main, ["train", str(recipe), "--no-progress", "--out", str(tmp / "x"),
                                    f"data.path={tmp / 'short.npz'}"])
    assert res.exit_code == 2 and "different row counts" in res.output
    d = dict(np.load(data))
    d["env"][10] = np.nan
    np.savez(tmp / "nan.npz", **d)
    res = CliRunner().invoke(main, ["train", str(recipe), "--no-progress", "--out", str(tmp / "x"),
                                    f"data.path={tmp / 'nan.npz'}"])
    assert res.exit_code == 2 and "NaN or inf in env at rows [10]" in res.output

    out = tmp / "run"
    assert run("train", recipe, "--out", out, "--no-progress", "train.epochs=1").exit_code == 0
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())).hexdigest()
    res = CliRunner().invoke(main, ["train", str(recipe), "--out", str(out), "--resume", "--no-progress",
                                    "model.depth=2", "train.epochs=2"])
    assert res.exit_code == 2 and "another recipe (model.depth: 1 -> 2)" in res.output
    res = CliRunner().invoke(main, ["train", str(recipe), "--out", str(out), "--no-progress"])
    assert res.exit_code == 2 and "--resume to continue" in res.output
    after = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())).hexdigest()
    assert digest == after
    res = CliRunner().invoke(main, ["evaluate", str(out / "model"), str(tmp / "nan.npz"), "-s", "sat,bogus"])
    assert res.exit_code == 2 and "unknown modality 'bogus'" in res.output
