"""The published ProM3E scheme and the baselines MIAM was compared against (MIAM appendix A.5).

Constants, as A.5 gives them: constant p = 0.75; uniform: ONE p ~ U(0, 1) per training iteration (batch),
shared by every modality and every example of the batch; Dirichlet(1_M); modality dropout 0.1 (a modality is
dropped with all its tokens); OPM with q_base = 0.5 and λ = 0.4, plus what the OPM reference implementation
(Wei et al., T-PAMI 2024, github.com/GeWu-Lab/BML_TPAMI2024, ``code/models/Classifier.py`` and
``code/main.py``) does around the formula: an execution probability, a warm-up and feature rescaling.
The uniform and beta hypercubes are in this module and :mod:`~geoprom3e.model.masking.miam`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from geoprom3e.errors import ConfigError
from geoprom3e.model.masking.base import MaskingStrategy, _fill_empty, check_scores, finite_float


class PublishedProM3E(MaskingStrategy):
    """The published ProM3E scheme: one visible set per batch; 90 % of batches show one modality, 10 % two.

    As mvrl/proM3E ``model.py`` ``_get_unmasked_indices``: ``num_unmasked = 1 if torch.rand(1) < 0.9 else 2``,
    then ``np.random.choice(options, num_unmasked, replace=False)`` where ``options`` are the modalities the
    batch's source holds (audio is left out of iNat batches). Here ``options`` are the modalities present in
    every row of the batch (in any row when none is in all). Rows whose data lack part of the set see the rest
    of it; rows that lack all of it see one of their own modalities, picked uniformly. A visible modality shows
    all its tokens.

    Args:
        num_modalities: number of modalities M.
        tokens_per_modality: tokens per modality.
        p_two: share of batches that show two modalities (published 0.1).
    """

    name = "prom3e"

    def __init__(
        self, num_modalities: int, tokens_per_modality: int | Sequence[int] = 1, *, p_two: float = 0.1
    ) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.p_two = finite_float("p_two", p_two, low=0.0, high=1.0)

    def sample_set(self, generator: torch.Generator | None = None, options: Sequence[int] | None = None) -> list[int]:
        """The batch's visible modalities (sorted indices), drawn from ``options`` (default all)."""
        opts = list(range(self.num_modalities)) if options is None else list(options)
        two = len(opts) > 1 and float(torch.rand(1, generator=generator)) < self.p_two
        perm = torch.randperm(len(opts), generator=generator)
        return sorted(opts[i] for i in perm[: 2 if two else 1].tolist())

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M]: 0 for the batch's visible set, 1 elsewhere (the same row n times)."""
        p = torch.ones(self.num_modalities, dtype=torch.float64)
        p[self.sample_set(generator)] = 0.0
        return p.expand(n, -1).clone()

    def sample_tokens(
        self, n: int, generator: torch.Generator | None = None, available: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[n, T]: every token of the batch's set visible where the row holds it."""
        self._scale = 1.0
        avail_tok = self._token_available(available, n)
        avail = self.modality_visible(avail_tok)
        in_all = avail.all(dim=0).nonzero().flatten().tolist()
        options = in_all or avail.any(dim=0).nonzero().flatten().tolist()
        chosen = torch.zeros(self.num_modalities, dtype=torch.bool)
        chosen[self.sample_set(generator, options)] = True
        vis_mod = chosen.expand(n, -1) & avail
        vis_mod = _fill_empty(vis_mod.clone(), avail, generator)
        return vis_mod[:, self.token_modality] & avail_tok


class Constant(MaskingStrategy):
    """Every token masked with the same fixed probability ``p`` (A.5: 0.75)."""

    name = "constant"
    default_p = 0.75

    def __init__(
        self, num_modalities: int, tokens_per_modality: int | Sequence[int] = 1, *, p: float | None = None
    ) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.p = finite_float("p", self.default_p if p is None else p, low=0.0, high=1.0)

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] filled with ``p``."""
        return torch.full((n, self.num_modalities), self.p, dtype=torch.float64)

    def state(self) -> dict[str, Any]:
        """Name and p."""
        return {"name": self.name, "p": self.p}


class ModalityDropout(Constant):
    """Modality dropout (A.5: p = 0.1): each modality is dropped, with ALL its tokens, with probability p."""

    name = "modality-dropout"
    default_p = 0.1

    def _token_draw(self, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(p.shape[0], self.num_modalities, generator=generator, dtype=p.dtype)
        return (u >= p)[:, self.token_modality]


class Uniform(MaskingStrategy):
    """A.5's uniform: ONE p ~ U(0, 1) per training iteration, shared by every modality and every example of
    the batch (each call of :meth:`sample_tokens` / :meth:`sample_visible` is one iteration); each token is then
    masked with probability p."""

    name = "uniform"

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M], every entry the same p."""
        p = torch.rand(1, 1, generator=generator, dtype=torch.float64)
        return p.expand(n, self.num_modalities).clone()


class UniformHypercube(MaskingStrategy):
    """p_m iid U(0, 1) per example: uniform over the hypercube [0, 1]^M."""

    name = "uniform-hypercube"

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] iid uniform."""
        return torch.rand(n, self.num_modalities, generator=generator, dtype=torch.float64)


DIRICHLET_READINGS = ("visible", "mask")


class Dirichlet(MaskingStrategy):
    """Dirichlet(α·1_M) (A.5: α = 1), one draw per example.

    A.5 names the distribution without saying what its sample is. Reading ``visible`` (default): the sample is
    each modality's share of the *visible* tokens, as in 4M, whose Dirichlet allots the visible-token budget
    among modalities (so token masking probability p_m = 1 − v_m; on average 1/M of each modality stays
    visible). Reading ``mask``: the sample is p itself (on average (M − 1)/M of each modality stays visible).

    Args:
        alpha: concentration (only 1 is implemented).
        reading: ``visible`` or ``mask``.
    """

    name = "dirichlet"

    def __init__(
        self,
        num_modalities: int,
        tokens_per_modality: int | Sequence[int] = 1,
        *,
        alpha: float = 1.0,
        reading: str = "visible",
    ) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.alpha = finite_float("alpha", alpha, low=0.0, low_open=True)
        if self.alpha != 1.0:
            raise ConfigError(f"masking parameter alpha = {alpha!r}: only the published α = 1 is implemented")
        if reading not in DIRICHLET_READINGS:
            raise ConfigError(f"masking parameter reading = {reading!r}: use one of {', '.join(DIRICHLET_READINGS)}")
        self.reading = reading

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M] masking probabilities from normalised Gamma(1) = Exp(1) variables."""
        u = torch.rand(n, self.num_modalities, generator=generator, dtype=torch.float64)
        e = -torch.log1p(-u)
        d = e / e.sum(dim=1, keepdim=True)
        return 1.0 - d if self.reading == "visible" else d

    def state(self) -> dict[str, Any]:
        """Name and reading."""
        return {"name": self.name, "reading": self.reading}


class OPM(MaskingStrategy):
    """On-the-fly prediction modulation (Wei et al. 2024) with MIAM's hyper-parameters (q_base 0.5, λ 0.4).

    From the scores s (higher is better): coeff_m = mean_{j≠m} s_m / s_j (A.5's M-modality form of the
    reference's ratio of two), drop probability q_m = q_base (1 + λ tanh(coeff_m − 1)) where coeff_m > 1, else 0,
    clipped to [0, 1] (reference ``calcu_q``). Around it, as the reference does it:

    * execution probability: on each iteration the drop runs only with probability ``p_exe`` (reference
      ``Modality_drop.execute_drop``: ``np.random.rand(1) >= 1 - p_exe``, ``--p_exe 0.7``); otherwise the batch
      is left whole;
    * warm-up: no drop during the first ``warmup_epochs`` epochs (reference ``main.py``:
      ``warm_up = 1 if epoch <= 5`` with epochs counted from 0, i.e. 6 epochs);
    * rescaling: on executed iterations the features are multiplied by 1 / (1 − θ) with θ the width-weighted mean
      drop probability (reference ``theta = sum(d * q) / sum(d)`` and ``custom_autograd``, which scales the
      forward and the gradient alike); here widths are token counts and :meth:`feature_scale` returns the factor
      for the trainer to apply.

    Deviations, stated: the reference computes each modality's performance on every training batch (summed
    softmax probability of the true class from its half of the fusion layer); here the scores come from
    :meth:`update` (MIAM's per-evaluation s_m, so OPM and MIAM see the same signal). Rows the reference drops
    because every modality was dropped are drawn again here (the same conditional mask distribution; the batch
    keeps its size). Tokens of a modality are dropped independently with q_m.

    Args:
        q_base: base drop probability (MIAM A.5: 0.5).
        lam: λ (MIAM A.5: 0.4; the reference script's default is 0.5).
        p_exe: execution probability per iteration (reference 0.7).
        warmup_epochs: epochs without dropping (reference 6).
        rescale: apply the 1 / (1 − θ) feature rescaling.
        eps: ε added to the scores.
    """

    name = "opm"
    dynamic = True

    def __init__(
        self,
        num_modalities: int,
        tokens_per_modality: int | Sequence[int] = 1,
        *,
        q_base: float = 0.5,
        lam: float = 0.4,
        p_exe: float = 0.7,
        warmup_epochs: int = 6,
        rescale: bool = True,
        eps: float = 1e-3,
    ) -> None:
        super().__init__(num_modalities, tokens_per_modality)
        self.q_base = finite_float("q_base", q_base, low=0.0, high=1.0)
        self.lam = finite_float("lam", lam, low=0.0)
        self.p_exe = finite_float("p_exe", p_exe, low=0.0, high=1.0)
        if not isinstance(warmup_epochs, int) or isinstance(warmup_epochs, bool) or warmup_epochs < 0:
            raise ConfigError(f"masking parameter warmup_epochs = {warmup_epochs!r}: must be an integer >= 0")
        self.warmup_epochs = warmup_epochs
        if not isinstance(rescale, bool):
            raise ConfigError(f"masking parameter rescale = {rescale!r}: must be true or false")
        self.rescale = rescale
        self.eps = finite_float("eps", eps, low=0.0, low_open=True)
        self.scores: torch.Tensor | None = None
        self.epoch = 0

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
        """[M] drop probability q_m when the drop executes."""
        c = self.coefficients()
        q = self.q_base * (1.0 + self.lam * torch.tanh(torch.relu(c - 1.0)))
        return torch.where(c > 1.0, q, torch.zeros_like(q)).clamp(0.0, 1.0)

    def theta(self) -> float:
        """θ = Σ_m T_m q_m / Σ_m T_m, the token-weighted mean drop probability."""
        t = torch.tensor(self.tokens, dtype=torch.float64)
        return float((t * self.drop_probs()).sum() / t.sum())

    def start_epoch(self, epoch: int) -> None:
        """Remember the epoch (counting from 0) for the warm-up."""
        self.epoch = int(epoch)

    @property
    def warming_up(self) -> bool:
        """True during the warm-up epochs."""
        return self.epoch < self.warmup_epochs

    def sample_probs(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, M]: the drop probabilities, the same for every row (the expected value ignores p_exe)."""
        return self.drop_probs().expand(n, -1).clone()

    def sample_tokens(
        self, n: int, generator: torch.Generator | None = None, available: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[n, T]: no drop during the warm-up or when this iteration's execution coin says no; else per-token
        drops with q_m, and :meth:`feature_scale` = 1 / (1 − θ)."""
        avail = self._token_available(available, n)
        self._scale = 1.0
        if self.warming_up:
            return avail.clone()
        execute = float(torch.rand(1, generator=generator, dtype=torch.float64)) >= 1.0 - self.p_exe
        if not execute:
            return avail.clone()
        p = self.sample_probs(n, generator)
        visible = self._token_draw(p, generator) & avail
        visible = self._not_empty(visible, avail, lambda rows: self._token_draw(p[rows], generator), generator)
        if self.rescale:
            th = self.theta()
            self._scale = 1.0 / (1.0 - th) if th < 1.0 else 1.0
        return visible

    def update(self, scores: Any) -> None:
        """Store the latest scores (ε added so no division by zero)."""
        self.scores = check_scores(scores, self.num_modalities) + self.eps

    def state(self) -> dict[str, Any]:
        """Scores, coefficients, drop probabilities and θ."""
        return {
            "name": self.name,
            "q_base": self.q_base,
            "lam": self.lam,
            "p_exe": self.p_exe,
            "warmup_epochs": self.warmup_epochs,
            "epoch": self.epoch,
            "scores": None if self.scores is None else self.scores.tolist(),
            "coeff": self.coefficients().tolist(),
            "drop_prob": self.drop_probs().tolist(),
            "theta": self.theta(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore the scores and the epoch."""
        super().load_state(state)
        s = state.get("scores")
        self.scores = None if s is None else torch.tensor(s, dtype=torch.float64)
        self.epoch = int(state.get("epoch", 0))
