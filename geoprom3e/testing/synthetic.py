"""Synthetic paired embeddings with a known structure, for training tests, experiments and the demo.

A latent variable z ~ N(0, I) drives each of the six 512-d modality embeddings through a fixed random
nonlinear map ``normalize(tanh(z A_m) B_m)``, plus per-modality noise, then L2-normalisation. One modality
is dominant (little noise: alone it tells the most about z) and one is weak (much noise). Entries can be
made missing at random (every row keeps at least one modality).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e.errors import ConfigError
from geoprom3e.modalities import EMBED_DIM, MODALITIES, modality_index

SMALL_MODEL = {"embed_dim": 64, "mlp_dim": 128, "heads": 4, "depth": 1, "proj_hidden_dim": 128, "dropout": 0.0}
"""A ProM3E config small enough to train in seconds on a CPU (pass as the recipe's ``model`` section)."""


@dataclass
class SyntheticMultimodal:
    """Generated data and what generated it."""

    embeddings: np.ndarray
    """[N, M, D] float32, L2-normalised where present, 0 where missing."""
    present: np.ndarray
    """[N, M] bool presence mask."""
    latent: np.ndarray
    """[N, latent_dim] the latent variable behind every modality."""
    noise: tuple[float, ...]
    """Noise level per modality (relative to the unit-norm signal)."""
    dominant: str
    """The low-noise modality."""
    weak: str
    """The high-noise modality."""
    difficulty: np.ndarray | None = None
    """[N] per-row noise multiplier δ (None unless ``row_difficulty`` was given)."""

    def as_dict(self, *, published_names: bool = False) -> dict[str, np.ndarray]:
        """``{modality: [N, D]}`` plus ``present`` [N, M]; ``published_names`` uses MultiNat's ``sound``."""
        out: dict[str, np.ndarray] = {}
        for i, name in enumerate(MODALITIES[: self.embeddings.shape[1]]):
            out["sound" if published_names and name == "audio" else name] = self.embeddings[:, i]
        if not self.present.all():
            out["present"] = self.present
        return out


def make_synthetic(
    n: int = 2048,
    *,
    num_modalities: int = len(MODALITIES),
    dim: int = EMBED_DIM,
    latent_dim: int = 16,
    hidden: int = 64,
    base_noise: float = 2.0,
    dominant: str = "sat",
    dominant_noise: float = 0.3,
    weak: str = "audio",
    weak_noise: float = 5.0,
    missing: float = 0.0,
    row_difficulty: tuple[float, float] | None = None,
    seed: int = 0,
    map_seed: int = 0,
) -> SyntheticMultimodal:
    """Generate ``n`` rows of paired embeddings (see the module docstring).

    Args:
        n: rows.
        num_modalities: M.
        dim: embedding width D.
        latent_dim: width of the shared latent z.
        hidden: width of the random nonlinear maps.
        base_noise: noise of the ordinary modalities.
        dominant: modality with ``dominant_noise``.
        dominant_noise: its noise.
        weak: modality with ``weak_noise``.
        weak_noise: its noise.
        missing: probability that an entry is missing (each row keeps at least one modality).
        row_difficulty: (low, high): each row's noise is multiplied by δ drawn log-uniformly in that range (from
            a separate random stream, so the rest of the data is as without it); planted per-row difficulty.
        seed: seed of the samples (latents, noise, missing entries): change it for held-out data.
        map_seed: seed of the fixed maps: keep it equal for training and held-out data.
    """
    if n < 1 or not 0.0 <= missing < 1.0:
        raise ConfigError(f"make_synthetic: n = {n}, missing = {missing}: need n >= 1 and 0 <= missing < 1")
    dom, wk = modality_index(dominant, num_modalities), modality_index(weak, num_modalities)
    if dom == wk:
        raise ConfigError(f"make_synthetic: dominant and weak are both {dominant!r}: pick two modalities")
    map_rng = np.random.default_rng(map_seed)
    maps = [
        (map_rng.normal(size=(latent_dim, hidden)) / np.sqrt(latent_dim), map_rng.normal(size=(hidden, dim)))
        for _ in range(num_modalities)
    ]
    rng = np.random.default_rng([seed, 1])
    noise = [base_noise] * num_modalities
    noise[dom], noise[wk] = dominant_noise, weak_noise
    z = rng.normal(size=(n, latent_dim))
    diff = None
    if row_difficulty is not None:
        lo, hi = row_difficulty
        diff = np.exp(np.random.default_rng([seed, 2]).uniform(np.log(lo), np.log(hi), size=n))
    emb = np.empty((n, num_modalities, dim), dtype=np.float32)
    for i, (a, b) in enumerate(maps):
        signal = _unit(np.tanh(z @ a * 1.5) @ b)
        eps = _unit(rng.normal(size=(n, dim)))
        scale = noise[i] if diff is None else noise[i] * diff[:, None]
        emb[:, i] = _unit(signal + scale * eps)
    present = np.ones((n, num_modalities), dtype=bool)
    if missing > 0:
        present = rng.random((n, num_modalities)) >= missing
        empty = ~present.any(axis=1)
        present[empty, rng.integers(0, num_modalities, int(empty.sum()))] = True
        emb[~present] = 0.0
    return SyntheticMultimodal(
        embeddings=emb, present=present, latent=z.astype(np.float32), noise=tuple(noise),
        dominant=MODALITIES[dom], weak=MODALITIES[wk], difficulty=diff,
    )


def small_recipe(**train: Any) -> dict[str, Any]:
    """A recipe dict with :data:`SMALL_MODEL`, batch 256 and a few epochs (overridable via ``train``)."""
    return {
        "model": dict(SMALL_MODEL),
        "train": {
            "epochs": 3, "batch_size": 256, "lr": 1e-3, "t0": 50, "score_rows": 512, "log_every": 5,
            "num_threads": 1, "device": "cpu", **train,
        },
    }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@functools.lru_cache(maxsize=4)
def trained_small_model(strategy: str = "miam", epochs: int = 12, n: int = 2000, seed: int = 0) -> Any:
    """Train (once per process and arguments) a :data:`SMALL_MODEL` on :func:`make_synthetic` data.

    Returns the :class:`~geoprom3e.model.train.TrainResult`; its run folder is a temporary directory.
    """
    from geoprom3e.model.train import train

    out = Path(tempfile.mkdtemp(prefix=f"geoprom3e-{strategy}-"))
    recipe = small_recipe(epochs=epochs, seed=seed)
    recipe["masking"] = {"strategy": strategy}
    return train(recipe, out / "run", data=make_synthetic(n, seed=seed).as_dict())


# ---------------------------------------------------------------------- supervised, several tokens per modality
@dataclass
class SyntheticTokens:
    """A supervised multimodal set whose modalities contribute several tokens (a GeoPlant/TaxaBench analogue)."""

    tokens: list[np.ndarray]
    """Per modality m: [N, T_m, d_m] float32 token features."""
    labels: np.ndarray
    """[N] int64 class (species) of each row."""
    names: tuple[str, ...]
    """Modality names."""
    noise: tuple[float, ...]
    """Noise level of each modality."""
    difficulty: np.ndarray
    """[N] per-row noise multiplier (1 unless ``row_difficulty`` was set)."""

    @property
    def tokens_per_modality(self) -> list[int]:
        """T_m of each modality."""
        return [int(t.shape[1]) for t in self.tokens]

    def subset(self, rows: np.ndarray) -> SyntheticTokens:
        """The rows given."""
        return SyntheticTokens([t[rows] for t in self.tokens], self.labels[rows], self.names, self.noise,
                               self.difficulty[rows])


SUPERVISED_MODALITIES = (
    # name, tokens, token width, noise: "tab" is dominant (little noise), "aud" weak (much noise)
    ("tab", 1, 8, 0.15),
    ("ts", 6, 4, 1.3),
    ("sat", 4, 6, 1.1),
    ("loc", 1, 4, 1.0),
    ("aud", 2, 4, 3.0),
)
"""The default modalities of :func:`make_supervised_tokens`: a dominant tabular modality, a 6-step time series,
a 4-patch image, a location token and a weak 2-token audio modality."""


def make_supervised_tokens(
    n: int = 4000,
    *,
    classes: int = 16,
    latent_dim: int = 8,
    modalities: tuple[tuple[str, int, int, float], ...] = SUPERVISED_MODALITIES,
    class_spread: float = 1.0,
    within_class: float = 0.6,
    row_difficulty: tuple[float, float] | None = None,
    seed: int = 0,
    map_seed: int = 0,
) -> SyntheticTokens:
    """Rows of a class-labelled latent seen through several noisy multi-token modalities.

    Each class c has a prototype μ_c ~ N(0, class_spread² I) in a ``latent_dim`` space; a row of class c has
    z = μ_c + within_class · ξ. Token k of modality m is ``tanh(z A_mk) + noise_m · δ · ε`` with a fixed random
    map A_mk per token (``map_seed``), so each token sees a different, partial view of z and the tokens of a
    modality add up. δ is the row's difficulty multiplier, drawn log-uniformly from ``row_difficulty`` when given.
    """
    if n < 1 or classes < 2:
        raise ConfigError(f"make_supervised_tokens: n = {n}, classes = {classes}: need n >= 1 and classes >= 2")
    map_rng = np.random.default_rng([map_seed, 7])
    protos = map_rng.normal(size=(classes, latent_dim)) * class_spread
    maps = [[map_rng.normal(size=(latent_dim, d)) / np.sqrt(latent_dim) * 2.0 for _ in range(t)]
            for _, t, d, _ in modalities]
    rng = np.random.default_rng([seed, 11])
    labels = rng.integers(0, classes, size=n)
    z = protos[labels] + within_class * rng.normal(size=(n, latent_dim))
    diff = np.ones(n)
    if row_difficulty is not None:
        lo, hi = row_difficulty
        diff = np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))
    tokens = []
    for (_, _t, d, noise), mm in zip(modalities, maps):
        x = np.stack([np.tanh(z @ a) + noise * diff[:, None] * rng.normal(size=(n, d)) for a in mm], axis=1)
        tokens.append(x.astype(np.float32))
    return SyntheticTokens(tokens, labels.astype(np.int64), tuple(m[0] for m in modalities),
                           tuple(m[3] for m in modalities), diff)
