"""A checkpoint pickle that needs code is refused with our one line only (no torch warnings before it)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import torch

from geoprom3e.model import ProM3E, ProM3EConfig


class Evil:
    def __reduce__(self):
        return (print, ("must never run",))


def test_pickle_needing_code_gives_exactly_one_line(tmp_path):
    model = ProM3E(ProM3EConfig(embed_dim=32, mlp_dim=64, heads=4))
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": model.state_dict(), "x": Evil()}, f)
    torch.save({"state_dict": model.state_dict(), "x": Evil()}, tmp_path / "evil2.ckpt")
    for name in ("evil.pt", "evil2.ckpt"):
        res = subprocess.run([sys.executable, "-m", "geoprom3e", "model", "info", str(tmp_path / name)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2
        assert res.stderr.strip().count("\n") == 0 and "refusing to load it" in res.stderr, res.stderr
        assert "must never run" not in res.stdout
