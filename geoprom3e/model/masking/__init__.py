"""Masking strategies for training ProM3E: the published scheme, MIAM and MIAM's baselines.

>>> from geoprom3e.model.masking import get_strategy
>>> s = get_strategy("miam", 6, kappa=10, lam=1.0)
>>> visible = s.sample_visible(1024)            # [1024, 6] bool, never an empty row
>>> s.update([0.9, 0.2, 0.3, 0.3, 0.4, 0.1])   # one score per modality, higher is better
>>> t = get_strategy("miam", 4, tokens_per_modality=[1, 6, 4, 2])  # several tokens in some modalities
>>> tokens = t.sample_tokens(256)               # [256, 13] bool: each token of m masked with prob. p_m
"""

from geoprom3e.model.masking.base import CORNER_WEIGHTINGS, MaskingStrategy, corner_weights, corners, token_counts
from geoprom3e.model.masking.baselines import (
    OPM,
    Constant,
    Dirichlet,
    ModalityDropout,
    PublishedProM3E,
    Uniform,
    UniformHypercube,
)
from geoprom3e.model.masking.miam import MIAM, BetaHypercube
from geoprom3e.model.masking.registry import get_strategy, list_strategies, strategy_params

__all__ = [
    "CORNER_WEIGHTINGS",
    "MIAM",
    "OPM",
    "BetaHypercube",
    "Constant",
    "Dirichlet",
    "MaskingStrategy",
    "ModalityDropout",
    "PublishedProM3E",
    "Uniform",
    "UniformHypercube",
    "corner_weights",
    "corners",
    "get_strategy",
    "list_strategies",
    "strategy_params",
    "token_counts",
]
