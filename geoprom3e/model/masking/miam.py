"""MIAM, the modality-imbalance-aware masking strategy, and its λ = 0 special case (beta hypercube).

p ~ MixProdBeta = Σ_c w_c Π_m f_m with f_m = Beta(1, κ r_m^(−λ)) where c_m = 0 and Beta(κ r_m^λ, 1) where
c_m = 1. r_m = ρ_s,m / ρ_d,m compares how good modality m is alone (ρ_s, its score against the geometric
mean) with how fast that score still moves (ρ_d, the same for |Δ s_m|): a modality that is strong and has
stopped improving gets r_m > 1 and is masked more often.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from geoprom3e.errors import ConfigError
from geoprom3e.model.masking.base import (
    MaskingStrategy,
    check_scores,
    corner_weights,
    corners,
    finite_float,
    geometric_ratio,
)


class MIAM(MaskingStrategy):
    """Modality-imbalance-aware masking.

    Each token of modality m is masked with probability p_m (several tokens per modality are masked
    independently with the same p_m).

    Args:
        num_modalities: number of modalities M.
        tokens_per_modality: tokens per modality (an int, or one per modality); only when every modality has one
            token does the all-masked corner's weight move to all-visible.
        kappa: κ, concentration of the Beta factors (default 10).
        lam: λ, how strongly the imbalance ratio r bends the Betas (default 1.0; 0 = beta hypercube).
        eps: ε added to the scores s, their changes d and ρ_d (default 1e-3).
        corner_weighting: ``paper`` (w_c as published) or ``uniform`` (every corner alike; the ablation).
    """

    name = "miam"
    dynamic = True

    def __init__(
        self,
        num_modalities: int,
        tokens_per_modality: int | Sequence[int] = 1,
        *,
        kappa: float = 10.0,
        lam: float = 1.0,
        eps: float = 1e-3,
        corner_weighting: str = "paper",
    ) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.kappa = finite_float("kappa", kappa, low=0.0, low_open=True)
        self.lam = finite_float("lam", lam, low=0.0)
        self.eps = finite_float("eps", eps, low=0.0, low_open=True)
        if not isinstance(corner_weighting, str):
            raise ConfigError(f"masking parameter corner_weighting = {corner_weighting!r}: paper or uniform")
        self.corner_weighting = corner_weighting
        m = num_modalities
        self.weights = corner_weights(m, self.tokens, corner_weighting)
        self._corners = corners(m)
        self.rho_s = torch.ones(m, dtype=torch.float64)
        self.rho_d = torch.ones(m, dtype=torch.float64)
        self.r = torch.ones(m, dtype=torch.float64)
        self.last_scores: torch.Tensor | None = None
        self.updates = 0

    def beta_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(b0, a1): Beta(1, b0_m) is used where c_m = 0 and Beta(a1_m, 1) where c_m = 1."""
        b0 = self.kappa * self.r ** (-self.lam)
        a1 = self.kappa * self.r**self.lam
        return b0, a1

    def sample_corners(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n] corner indices drawn with probabilities w_c."""
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] float64 masking probabilities from the mixture of product Betas."""
        c = self._corners[self.sample_corners(n, generator)]
        b0, a1 = self.beta_params()
        u = torch.rand(n, self.num_modalities, generator=generator, dtype=torch.float64)
        # Inverse CDFs: Beta(1, b) -> 1 - (1 - u)^(1/b); Beta(a, 1) -> u^(1/a).
        p_visible_corner = 1.0 - (1.0 - u) ** (1.0 / b0)
        p_masked_corner = u ** (1.0 / a1)
        return torch.where(c, p_masked_corner, p_visible_corner).clamp_(0.0, 1.0)

    def update(self, scores: Any) -> None:
        """s_m = score of modality m alone (higher is better); recompute ρ_s, ρ_d and r."""
        s = check_scores(scores, self.num_modalities) + self.eps
        if self.last_scores is None:
            d = torch.ones_like(s)  # no change measured yet: treat every modality alike
        else:
            d = (s - self.last_scores).abs() + self.eps
        self.rho_s = geometric_ratio(s)
        self.rho_d = geometric_ratio(d) + self.eps
        self.r = self.rho_s / self.rho_d
        self.last_scores = s
        self.updates += 1

    def expected_probs(self) -> torch.Tensor:
        """[M] mean masking probability of each modality under the current distribution."""
        b0, a1 = self.beta_params()
        mean0 = 1.0 / (1.0 + b0)
        mean1 = a1 / (a1 + 1.0)
        c = self._corners.double()
        return (self.weights[:, None] * (c * mean1 + (1 - c) * mean0)).sum(dim=0)

    def state(self) -> dict[str, Any]:
        """ρ_s, ρ_d, r, the corner weights and the last scores (JSON-able)."""
        return {
            "name": self.name,
            "kappa": self.kappa,
            "lam": self.lam,
            "corner_weighting": self.corner_weighting,
            "eps": self.eps,
            "updates": self.updates,
            "rho_s": self.rho_s.tolist(),
            "rho_d": self.rho_d.tolist(),
            "r": self.r.tolist(),
            "expected_mask_prob": self.expected_probs().tolist(),
            "corner_weights": self.weights.tolist(),
            "last_scores": None if self.last_scores is None else self.last_scores.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore ρ_s, ρ_d, r and the last scores saved by :meth:`state`."""
        super().load_state(state)
        self.rho_s = torch.tensor(state["rho_s"], dtype=torch.float64)
        self.rho_d = torch.tensor(state["rho_d"], dtype=torch.float64)
        self.r = torch.tensor(state["r"], dtype=torch.float64)
        ls = state.get("last_scores")
        self.last_scores = None if ls is None else torch.tensor(ls, dtype=torch.float64)
        self.updates = int(state.get("updates", 0))


class BetaHypercube(MIAM):
    """MIAM with λ = 0: the mixture of product Betas ignores the scores (r has no effect)."""

    name = "beta-hypercube"
    dynamic = False

    def __init__(
        self,
        num_modalities: int,
        tokens_per_modality: int | Sequence[int] = 1,
        *,
        kappa: float = 10.0,
        eps: float = 1e-3,
        corner_weighting: str = "paper",
    ) -> None:
        super().__init__(
            num_modalities, tokens_per_modality, kappa=kappa, lam=0.0, eps=eps, corner_weighting=corner_weighting
        )
