"""The masking-strategy interface shared by MIAM and its baselines.

A strategy is a distribution over masking probabilities p ∈ [0, 1]^M (one per modality). Each of a
modality's tokens is then masked with probability p_m. ProM3E has one token per modality, so a sample of
the strategy is a boolean ``visible`` row per training example.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from geoprom3e.errors import ConfigError

_MAX_RESAMPLE = 64


def check_scores(scores: Any, num_modalities: int) -> torch.Tensor:
    """Validate one score per modality (higher is better, finite, >= 0) and return it as float64."""
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    if s.numel() != num_modalities:
        raise ConfigError(
            f"update() got {s.numel()} scores: pass exactly one per modality ({num_modalities}), higher is better"
        )
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ConfigError(
            f"update() got scores {[round(float(v), 6) for v in s]}: each must be finite and >= 0 "
            "(use an accuracy or an inverse loss, not a raw loss)"
        )
    return s


class MaskingStrategy:
    """Base class: subclasses implement :meth:`sample_probs`; dynamic ones also :meth:`update`.

    Args:
        num_modalities: number of modalities M.
        tokens_per_modality: tokens each modality contributes (ProM3E: 1).
    """

    name = "base"
    dynamic = False

    def __init__(self, num_modalities: int, tokens_per_modality: int = 1) -> None:
        for label, v in (("num_modalities", num_modalities), ("tokens_per_modality", tokens_per_modality)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{label} = {v!r}: must be a positive integer")
        self.num_modalities = num_modalities
        self.tokens_per_modality = tokens_per_modality

    # ------------------------------------------------------------------ to implement
    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] masking probabilities, one row per example."""
        raise NotImplementedError

    def update(self, scores: Any) -> None:
        """Take one validation score per modality (higher is better); static strategies only check them."""
        check_scores(scores, self.num_modalities)

    def state(self) -> dict[str, Any]:
        """JSON-able state for logging and for resuming (see :meth:`load_state`)."""
        return {"name": self.name}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (dynamic strategies restore their scores)."""
        if state.get("name", self.name) != self.name:
            raise ConfigError(f"masking state is for strategy {state.get('name')!r}, not {self.name!r}")

    # ------------------------------------------------------------------ shared sampling
    def sample_visible(
        self, n: int, generator: torch.Generator | None = None, available: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[n, M] bool: True where a modality is visible (at least one of its tokens kept).

        A modality absent from a row's data (``available`` False) is never visible, and no row is ever
        empty: rows left with nothing visible are redrawn, and after a few redraws get one of their
        available modalities, picked uniformly.
        """
        m = self.num_modalities
        avail = _check_available(available, n, m)
        visible = self._draw(n, generator) & avail
        for _ in range(_MAX_RESAMPLE):
            empty = ~visible.any(dim=1)
            k = int(empty.sum())
            if k == 0:
                return visible
            visible[empty] = self._draw(k, generator) & avail[empty]
        return _fill_empty(visible, avail, generator)

    def _draw(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        p = self.sample_probs(n, generator)
        t = self.tokens_per_modality
        u = torch.rand(n, p.shape[1], t, generator=generator, dtype=p.dtype)
        kept = u >= p[..., None]  # a token is masked with probability p_m
        return kept.any(dim=2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_modalities={self.num_modalities})"


def _check_available(available: torch.Tensor | None, n: int, m: int) -> torch.Tensor:
    if available is None:
        return torch.ones(n, m, dtype=torch.bool)
    a = torch.as_tensor(available).to("cpu")
    if a.dtype != torch.bool or tuple(a.shape) != (n, m):
        raise ConfigError(f"available must be a bool tensor of shape [{n}, {m}], got {a.dtype} {tuple(a.shape)}")
    empty = (~a.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ConfigError(
            f"rows {empty[:10]} have no modality available: drop rows without any embedding before training"
        )
    return a


def _fill_empty(visible: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    empty = ~visible.any(dim=1)
    if bool(empty.any()):
        w = avail[empty].double()
        pick = torch.multinomial(w, 1, generator=generator).flatten()
        rows = empty.nonzero().flatten()
        visible[rows, pick] = True
    return visible


def geometric_ratio(x: torch.Tensor) -> torch.Tensor:
    """X / (Π x)^(1/M), computed in log space."""
    return x / torch.exp(torch.log(x).mean())


def corner_weights(num_modalities: int, tokens_per_modality: int = 1) -> torch.Tensor:
    """[2^M] MIAM corner weights w_c; corner index c has bit m set when modality m is masked (c_m = 1).

    1/4 for (0,…,0) and (1,…,1), 1/(2(2^M − 2)) for the others; with one token per modality the weight of
    (1,…,1) moves to (0,…,0), which then has 1/2.
    """
    m = num_modalities
    k = 2**m
    if m == 1:
        w = torch.tensor([1.0, 0.0], dtype=torch.float64)
        return w if tokens_per_modality == 1 else torch.tensor([0.5, 0.5], dtype=torch.float64)
    w = torch.full((k,), 1.0 / (2 * (k - 2)), dtype=torch.float64)
    w[0] = 0.25
    w[k - 1] = 0.25
    if tokens_per_modality == 1:
        w[0] = 0.5
        w[k - 1] = 0.0
    return w


def corners(num_modalities: int) -> torch.Tensor:
    """[2^M, M] bool: row c is the corner with c_m = bit m of c."""
    idx = torch.arange(2**num_modalities)
    return ((idx[:, None] >> torch.arange(num_modalities)) & 1).bool()


def finite_float(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """A float parameter within [low, high] (or (low, high]); a one-line ConfigError otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"masking parameter {name} = {value!r}: must be a number") from None
    bad = not math.isfinite(v) or v > high or (v <= low if low_open else v < low)
    if bad:
        lo = f"({low}" if low_open else f"[{low}"
        raise ConfigError(f"masking parameter {name} = {value!r}: must be in {lo}, {high}]")
    return v
