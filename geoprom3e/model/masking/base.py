"""The masking-strategy interface shared by MIAM and its baselines.

A strategy is a distribution over masking probabilities p ∈ [0, 1]^M (one per modality). A modality may
contribute several tokens (a time series split into T steps, a chip into patches or band groups); each token of
modality m is then masked independently with probability p_m (MIAM's definition, used by every baseline except
modality dropout, which drops a modality with all its tokens). ProM3E has one token per modality, so for it a
sample is one boolean ``visible`` row per training example.

Rows are never left without a visible token: a row whose draw masks everything is drawn again with the same p
(rejection, i.e. the mask distribution conditioned on "not empty"), and after a few tries one of its available
tokens, picked uniformly, is made visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
            "(use an accuracy or a transformed loss such as exp(-loss), not a raw loss)"
        )
    return s


def token_counts(tokens_per_modality: int | Sequence[int], num_modalities: int) -> tuple[int, ...]:
    """Tokens of each modality as a tuple of M positive integers (an int means the same for every one)."""
    if isinstance(tokens_per_modality, int) and not isinstance(tokens_per_modality, bool):
        t = (tokens_per_modality,) * num_modalities
    elif isinstance(tokens_per_modality, Sequence) and not isinstance(tokens_per_modality, str):
        t = tuple(tokens_per_modality)
    else:
        raise ConfigError(f"tokens_per_modality = {tokens_per_modality!r}: an integer or one integer per modality")
    if len(t) != num_modalities or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in t):
        raise ConfigError(
            f"tokens_per_modality = {tokens_per_modality!r}: need {num_modalities} positive integers (one per modality)"
        )
    return t


class MaskingStrategy:
    """Base class: subclasses implement :meth:`sample_probs`; dynamic ones also :meth:`update`.

    Args:
        num_modalities: number of modalities M.
        tokens_per_modality: tokens each modality contributes, one int for all or one per modality (ProM3E: 1).
    """

    name = "base"
    dynamic = False

    def __init__(self, num_modalities: int, tokens_per_modality: int | Sequence[int] = 1) -> None:
        if not isinstance(num_modalities, int) or isinstance(num_modalities, bool) or num_modalities < 1:
            raise ConfigError(f"num_modalities = {num_modalities!r}: must be a positive integer")
        self.num_modalities = num_modalities
        self.tokens = token_counts(tokens_per_modality, num_modalities)
        self.tokens_per_modality: int | tuple[int, ...] = (
            self.tokens[0] if len(set(self.tokens)) == 1 else self.tokens
        )
        self.one_token = all(t == 1 for t in self.tokens)
        """True when every modality has exactly one token (MIAM's one-token rule applies)."""
        self.token_modality = torch.repeat_interleave(torch.arange(num_modalities), torch.tensor(self.tokens))
        """[T] modality index of each token, tokens of modality 0 first."""
        self._scale = 1.0

    @property
    def num_tokens(self) -> int:
        """T = Σ tokens."""
        return int(self.token_modality.numel())

    # ------------------------------------------------------------------ to implement
    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] masking probabilities, one row per example."""
        raise NotImplementedError

    def update(self, scores: Any) -> None:
        """Take one score per modality (higher is better); static strategies only check them."""
        check_scores(scores, self.num_modalities)

    def start_epoch(self, epoch: int) -> None:
        """Called by the training loop before epoch ``epoch`` (counting from 0); OPM uses it for its warm-up."""

    def feature_scale(self) -> float:
        """Factor for the visible tokens' features in the batch last drawn (OPM's 1 / (1 − θ); else 1)."""
        return self._scale

    def state(self) -> dict[str, Any]:
        """JSON-able state for logging and for resuming (see :meth:`load_state`)."""
        return {"name": self.name}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (dynamic strategies restore their scores)."""
        if state.get("name", self.name) != self.name:
            raise ConfigError(f"masking state is for strategy {state.get('name')!r}, not {self.name!r}")

    # ------------------------------------------------------------------ shared sampling
    def sample_tokens(
        self, n: int, generator: torch.Generator | None = None, available: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[n, T] bool: True where a token is visible (tokens in modality order, see :attr:`token_modality`).

        ``available`` ([n, M] per modality or [n, T] per token) marks what the data holds: an absent token is
        never visible. No row is ever empty (see the module docstring).
        """
        avail = self._token_available(available, n)
        self._scale = 1.0
        p = self.sample_probs(n, generator)
        visible = self._token_draw(p, generator) & avail
        return self._not_empty(visible, avail, lambda rows: self._token_draw(p[rows], generator), generator)

    def sample_visible(
        self, n: int, generator: torch.Generator | None = None, available: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[n, M] bool: True where a modality is visible (at least one of its tokens kept); never an empty row."""
        tok = self.sample_tokens(n, generator, available)
        return self.modality_visible(tok)

    def modality_visible(self, token_visible: torch.Tensor) -> torch.Tensor:
        """[n, T] token visibility → [n, M] modality visibility (any token kept)."""
        if self.one_token:
            return token_visible.clone()
        n = token_visible.shape[0]
        out = torch.zeros(n, self.num_modalities, dtype=torch.bool)
        for m in range(self.num_modalities):
            out[:, m] = token_visible[:, self.token_modality == m].any(dim=1)
        return out

    def _token_draw(self, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """[n, T] visible tokens for masking probabilities p [n, M]: token of modality m kept w.p. 1 − p_m."""
        u = torch.rand(p.shape[0], self.num_tokens, generator=generator, dtype=p.dtype)
        return u >= p[:, self.token_modality]

    def _token_available(self, available: torch.Tensor | None, n: int) -> torch.Tensor:
        t = self.num_tokens
        if available is None:
            return torch.ones(n, t, dtype=torch.bool)
        a = torch.as_tensor(available).to("cpu")
        if a.dtype == torch.bool and tuple(a.shape) == (n, self.num_modalities):
            a = _check_available(a, n, self.num_modalities)
            return a[:, self.token_modality]
        if a.dtype == torch.bool and tuple(a.shape) == (n, t):
            return _check_available(a, n, t)
        raise ConfigError(
            f"available must be a bool tensor of shape [{n}, {self.num_modalities}] (per modality) or "
            f"[{n}, {t}] (per token), got {a.dtype} {tuple(a.shape)}"
        )

    def _not_empty(self, visible, avail, redraw, generator) -> torch.Tensor:  # noqa: ANN001
        for _ in range(_MAX_RESAMPLE):
            empty = ~visible.any(dim=1)
            if not bool(empty.any()):
                return visible
            rows = empty.nonzero().flatten()
            visible[rows] = redraw(rows) & avail[rows]
        return _fill_empty(visible, avail, generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_modalities={self.num_modalities}, tokens={self.tokens_per_modality})"


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


CORNER_WEIGHTINGS = ("paper", "uniform")
"""Corner-weight schemes: ``paper`` (MIAM's w_c) and ``uniform`` (every corner alike; the ablation)."""


def corner_weights(
    num_modalities: int, tokens_per_modality: int | Sequence[int] = 1, scheme: str = "paper"
) -> torch.Tensor:
    """[2^M] MIAM corner weights w_c; corner index c has bit m set when modality m is masked (c_m = 1).

    ``paper``: 1/4 for (0,…,0) and (1,…,1), 1/(2(2^M − 2)) for the others. ``uniform`` (ablation): 1/2^M each.
    One-token rule: only when EVERY modality has one token, the weight of (1,…,1) moves to (0,…,0) (masking
    everything is then meaningless); with several tokens somewhere it stays.
    """
    if scheme not in CORNER_WEIGHTINGS:
        raise ConfigError(f"corner weighting {scheme!r}: use one of {', '.join(CORNER_WEIGHTINGS)}")
    m = num_modalities
    one_token = all(t == 1 for t in token_counts(tokens_per_modality, m))
    k = 2**m
    if scheme == "uniform":
        w = torch.full((k,), 1.0 / k, dtype=torch.float64)
    elif m == 1:
        w = torch.tensor([0.5, 0.5], dtype=torch.float64)
    else:
        w = torch.full((k,), 1.0 / (2 * (k - 2)), dtype=torch.float64)
        w[0] = 0.25
        w[k - 1] = 0.25
    if one_token:
        w[0] += w[k - 1]
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
