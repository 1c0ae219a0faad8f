"""The published ProM3E scheme and the baselines MIAM was compared against."""

from __future__ import annotations

from typing import Any

import torch

from geoprom3e.errors import ConfigError
from geoprom3e.model.masking.base import MaskingStrategy, check_scores, finite_float


class PublishedProM3E(MaskingStrategy):
    """The published ProM3E scheme: one visible set per batch; 90 % of batches show one modality, 10 % two.

    Rows whose data lack part of the batch's set see the rest of it; rows that lack all of it see one of
    their own modalities, picked uniformly.

    Args:
        num_modalities: number of modalities M.
        tokens_per_modality: tokens per modality (only 1 is meaningful here).
        p_two: share of batches that show two modalities (published 0.1).
    """

    name = "prom3e"

    def __init__(self, num_modalities: int, tokens_per_modality: int = 1, *, p_two: float = 0.1) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.p_two = finite_float("p_two", p_two, low=0.0, high=1.0)

    def sample_set(self, generator: torch.Generator | None = None) -> list[int]:
        """The batch's visible modalities (sorted indices)."""
        m = self.num_modalities
        two = m > 1 and float(torch.rand(1, generator=generator)) < self.p_two
        perm = torch.randperm(m, generator=generator)
        return sorted(perm[: 2 if two else 1].tolist())

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M]: 0 for the batch's visible set, 1 elsewhere (the same row n times)."""
        p = torch.ones(self.num_modalities, dtype=torch.float64)
        p[self.sample_set(generator)] = 0.0
        return p.expand(n, -1).clone()

    def _draw(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.sample_probs(n, generator) < 0.5


class Constant(MaskingStrategy):
    """Every modality masked with the same fixed probability ``p`` (default 0.75)."""

    name = "constant"
    default_p = 0.75

    def __init__(self, num_modalities: int, tokens_per_modality: int = 1, *, p: float | None = None) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.p = finite_float("p", self.default_p if p is None else p, low=0.0, high=1.0)

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] filled with ``p``."""
        return torch.full((n, self.num_modalities), self.p, dtype=torch.float64)

    def state(self) -> dict[str, Any]:
        """Name and p."""
        return {"name": self.name, "p": self.p}


class ModalityDropout(Constant):
    """Modality dropout: each modality dropped with a fixed probability ``p`` (default 0.1)."""

    name = "modality-dropout"
    default_p = 0.1


class Uniform(MaskingStrategy):
    """One shared p ~ U(0, 1) per example, used for every modality."""

    name = "uniform"

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M], each row constant."""
        p = torch.rand(n, 1, generator=generator, dtype=torch.float64)
        return p.expand(-1, self.num_modalities).clone()


class UniformHypercube(MaskingStrategy):
    """p_m iid U(0, 1): uniform over the hypercube [0, 1]^M."""

    name = "uniform-hypercube"

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] iid uniform."""
        return torch.rand(n, self.num_modalities, generator=generator, dtype=torch.float64)


class Dirichlet(MaskingStrategy):
    """p ~ Dirichlet(α·1_M) (default α = 1), drawn as normalised Gamma(α) variables."""

    name = "dirichlet"

    def __init__(self, num_modalities: int, tokens_per_modality: int = 1, *, alpha: float = 1.0) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.alpha = finite_float("alpha", alpha, low=0.0, low_open=True)
        if self.alpha != 1.0:
            raise ConfigError(f"masking parameter alpha = {alpha!r}: only the published α = 1 is implemented")

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] rows on the simplex (Gamma(1) = Exp(1) variables, normalised)."""
        u = torch.rand(n, self.num_modalities, generator=generator, dtype=torch.float64)
        e = -torch.log1p(-u)
        return e / e.sum(dim=1, keepdim=True)


class OPM(MaskingStrategy):
    """On-the-fly prediction modulation: modalities that outscore the others are dropped more.

    coeff_m = mean_{j≠m} s_m / s_j; drop probability 0.5 (1 + 0.5 tanh(coeff_m − 1)) when coeff_m > 1, else 0.
    Before the first :meth:`update` every coefficient is 1 and nothing is dropped.
    """

    name = "opm"
    dynamic = True

    def __init__(self, num_modalities: int, tokens_per_modality: int = 1, *, eps: float = 1e-3) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.eps = finite_float("eps", eps, low=0.0, low_open=True)
        self.scores: torch.Tensor | None = None

    def coefficients(self) -> torch.Tensor:
        """[M] coeff_m = mean over j ≠ m of s_m / s_j (ones before any update)."""
        m = self.num_modalities
        if self.scores is None or m == 1:
            return torch.ones(m, dtype=torch.float64)
        s = self.scores
        ratio = s[:, None] / s[None, :]
        off = ~torch.eye(m, dtype=torch.bool)
        return (ratio * off).sum(dim=1) / (m - 1)

    def drop_probs(self) -> torch.Tensor:
        """[M] drop probability per modality."""
        c = self.coefficients()
        p = 0.5 * (1.0 + 0.5 * torch.tanh(c - 1.0))
        return torch.where(c > 1.0, p, torch.zeros_like(p))

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M]: the drop probabilities, the same for every row."""
        return self.drop_probs().expand(n, -1).clone()

    def update(self, scores: Any) -> None:
        """Store the latest scores (ε added so no division by zero)."""
        self.scores = check_scores(scores, self.num_modalities) + self.eps

    def state(self) -> dict[str, Any]:
        """Scores, coefficients and drop probabilities."""
        return {
            "name": self.name,
            "scores": None if self.scores is None else self.scores.tolist(),
            "coeff": self.coefficients().tolist(),
            "drop_prob": self.drop_probs().tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore the scores."""
        super().load_state(state)
        s = state.get("scores")
        self.scores = None if s is None else torch.tensor(s, dtype=torch.float64)
