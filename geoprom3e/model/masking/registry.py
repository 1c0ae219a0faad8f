"""Registry of masking strategies: :func:`get_strategy` by name and :func:`list_strategies`."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from geoprom3e.errors import ConfigError
from geoprom3e.model.masking.base import MaskingStrategy
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

_STRATEGIES: dict[str, type[MaskingStrategy]] = {
    cls.name: cls
    for cls in (
        PublishedProM3E,
        MIAM,
        BetaHypercube,
        UniformHypercube,
        Constant,
        Uniform,
        Dirichlet,
        ModalityDropout,
        OPM,
    )
}


def list_strategies() -> list[str]:
    """Names accepted by :func:`get_strategy`, the published scheme first."""
    return list(_STRATEGIES)


def strategy_params(name: str) -> list[str]:
    """Keyword parameters the named strategy accepts."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def get_strategy(
    name: str, num_modalities: int, tokens_per_modality: int | Sequence[int] = 1, **params: Any
) -> MaskingStrategy:
    """Build a masking strategy by name, e.g. ``get_strategy("miam", 6, kappa=10, lam=2)``."""
    cls = _lookup(name)
    allowed = strategy_params(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"masking strategy {name!r} has no parameter {', '.join(unknown)}: "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    return cls(num_modalities, tokens_per_modality, **params)


def _lookup(name: str) -> type[MaskingStrategy]:
    key = str(name).strip().lower().replace("_", "-")
    if key not in _STRATEGIES:
        raise ConfigError(f"unknown masking strategy {name!r}: use one of {', '.join(_STRATEGIES)}")
    return _STRATEGIES[key]
