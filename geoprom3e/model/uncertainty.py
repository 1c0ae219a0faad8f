"""Per-row uncertainty measures of a ProM3E model, each named and described for output labelling.

* ``sigma_l1`` — ‖σ‖₁ = Σ_d exp(logvar_d / 2), exactly as published (needed for the published weights). Under
  the published loss it has NOT been shown to vary with how informative the inputs are: the decoders start with
  LayerNorm, the latent noise is one scalar ε per row, so a uniform σ costs the loss nothing and the KL term
  pulls logvar to 0 (on the project's synthetic data ‖σ‖₁ is flat across rows and visible subsets).
* ``dispersion`` — research measure, no training needed: decode K samples z_k = μ + σ ⊙ ε_k with ε drawn
  per dimension (not the published scalar), and report the mean over decoded modalities of
  1 − ‖mean_k recon_k‖ (the circular variance of the unit-norm reconstructions, 0 … 1).
* ``recon_sigma`` — research option, needs a model trained with ``model.error_head=True``: the predicted
  root-mean-square reconstruction distance (0 … 2), learned with a heteroscedastic Gaussian likelihood on the
  (detached) reconstruction residuals (:func:`geoprom3e.model.loss.error_nll`).

>>> from geoprom3e.model.uncertainty import uncertainty, MEASURES
>>> u = uncertainty(model, embeddings, ["sat", "loc"], measure="dispersion")   # [B] tensor
>>> MEASURES["sigma_l1"].long_name
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from geoprom3e.errors import ConfigError
from geoprom3e.modalities import modality_index
from geoprom3e.model.prom3e import ProM3E, Visible


@dataclass(frozen=True)
class MeasureInfo:
    """How an uncertainty measure should be labelled in outputs (band description, NetCDF attributes)."""

    name: str
    """Short name (``--measure`` value, band name)."""
    long_name: str
    """CF ``long_name``."""
    units: str
    """CF ``units``."""
    published: bool
    """True only for the measure the ProM3E paper defines."""
    note: str
    """One honest sentence on what the quantity is and what is known of it."""


MEASURES: dict[str, MeasureInfo] = {
    "sigma_l1": MeasureInfo(
        "sigma_l1", "L1 norm of the latent standard deviation (ProM3E ||sigma||_1)", "1", True,
        "sum over latent dimensions of exp(logvar/2), as published; under the published loss it has not been shown "
        "to vary with input informativeness (flat across rows and visible subsets on synthetic data)",
    ),
    "dispersion": MeasureInfo(
        "dispersion", "predictive dispersion of decoded reconstructions", "1", False,
        "research measure (not in the paper): circular variance 1 - |mean of K unit-norm reconstructions| of "
        "samples z = mu + sigma * eps with per-dimension eps; 0 = all samples decode alike",
    ),
    "recon_sigma": MeasureInfo(
        "recon_sigma", "predicted RMS reconstruction distance", "1", False,
        "research option (not in the paper): error head trained with a heteroscedastic likelihood on detached "
        "reconstruction residuals; predicts sqrt(mean_j |recon_j - e_j|^2) over target modalities",
    ),
}
"""Every measure :func:`uncertainty` computes, with its labelling."""


def uncertainty(
    model: ProM3E,
    embeddings: torch.Tensor,
    visible: Visible,
    measure: str = "sigma_l1",
    *,
    n_samples: int = 16,
    decode: Sequence[str | int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """[B] uncertainty of each row under ``measure`` (a key of :data:`MEASURES`).

    ``n_samples``, ``decode`` and ``generator`` are used by ``dispersion`` only (default: decode the modalities
    that are not visible, or all when every one is).
    """
    if measure not in MEASURES:
        raise ConfigError(f"unknown uncertainty measure {measure!r}: use one of {', '.join(MEASURES)}")
    if measure == "dispersion":
        return predictive_dispersion(model, embeddings, visible, n_samples=n_samples, decode=decode,
                                     generator=generator)
    out = model.infer(embeddings, visible, n_samples=0, decode=[])
    if measure == "sigma_l1":
        return out.sigma_l1
    if out.recon_sigma is None:
        raise ConfigError(
            "measure 'recon_sigma' needs a model trained with model.error_head=true (this checkpoint has no "
            "error head): use sigma_l1 or dispersion"
        )
    return out.recon_sigma


def predictive_dispersion(
    model: ProM3E,
    embeddings: torch.Tensor,
    visible: Visible,
    *,
    n_samples: int = 16,
    decode: Sequence[str | int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """[B] mean over decoded modalities of 1 − ‖mean_k normalize(dec(μ + σ ⊙ ε_k))‖, ε_k ~ N(0, I) per dimension."""
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ConfigError(f"n_samples = {n_samples!r}: dispersion needs at least 2 samples")
    out = model.infer(embeddings, visible, n_samples=0, decode=[])
    m = model.config.num_modalities
    if decode is None:
        hidden = (~out.visible).any(dim=0).nonzero().flatten().tolist()
        dec_idx = hidden or list(range(m))
    else:
        dec_idx = [modality_index(d, m) for d in decode]
    std = torch.exp(out.logvar / 2)
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            acc = torch.zeros(out.mu.shape[0], len(dec_idx), model.config.input_dim, device=out.mu.device,
                              dtype=out.mu.dtype)
            for _ in range(n_samples):
                dev = generator.device if generator is not None else out.mu.device
                eps = torch.randn(out.mu.shape, generator=generator, device=dev, dtype=out.mu.dtype).to(out.mu.device)
                z = out.mu + std * eps
                acc += torch.stack([F.normalize(model.decoders[i](z), dim=-1) for i in dec_idx], dim=1)
            resultant = (acc / n_samples).norm(dim=-1)  # [B, J]
    finally:
        model.train(was)
    return (1.0 - resultant).mean(dim=1)
