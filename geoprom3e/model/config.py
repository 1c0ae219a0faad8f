"""Frozen configuration of the ProM3E masked variational autoencoder."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any

from geoprom3e.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProM3EConfig:
    """Sizes of a ProM3E model; names match the published implementation's constructor arguments."""

    input_dim: int = 512
    """Width of each modality embedding fed in (the frozen TaxaBind encoders output 512)."""
    embed_dim: int = 1024
    """Token width E inside the transformer and of the latent μ / log-variance."""
    num_modalities: int = 6
    """Number of modalities M (image, sat, loc, env, text, audio)."""
    depth: int = 1
    """Number of post-LN transformer encoder blocks."""
    heads: int = 8
    """Attention heads per block; embed_dim must be divisible by it."""
    mlp_dim: int = 2048
    """Hidden width H of each block's MLP."""
    num_register_tokens: int = 4
    """Learned register tokens R placed after the two latent tokens."""
    num_cls_tokens: int = 2
    """Latent tokens: the μ token and the log-variance token (always 2 in the published model)."""
    dropout: float = 0.0
    """Dropout probability used in training (inactive at inference). Published: 0.0 (``train.py``
    ``--dropout`` default and ``ProM3E(dropout=0.0)`` in mvrl/proM3E)."""
    lambda_kl: float = 1e-3
    """Weight of the KL term in the training loss."""
    proj_hidden_dim: int = 1024
    """Hidden width of the per-modality input projectors (fixed at 1024 in the published model)."""
    token_init_std: float = 1.0
    """Standard deviation of the initial cls, register and modality-identifier vectors. Published: 1.0
    (``nn.Parameter(torch.randn(...))`` in mvrl/proM3E ``model.py``); 0.02 is the ViT/BERT habit."""
    mask_token: bool = False
    """Project option (not published): a masked modality becomes a learned mask token (plus its modality
    identifier) instead of being dropped from the sequence. Adds the ``mask_token`` [E] parameter."""
    error_head: bool = False
    """Research option (not published): a linear head on the log-variance token's output predicts the log of
    each row's reconstruction error (``Inference.recon_sigma``); trained with a heteroscedastic likelihood on
    detached residuals (see :mod:`geoprom3e.model.loss`). Adds ``error_head.{weight,bias}``."""

    def __post_init__(self) -> None:
        for f in ("input_dim", "embed_dim", "num_modalities", "depth", "heads", "mlp_dim", "proj_hidden_dim"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"model config {f} = {v!r}: must be a positive integer")
        if self.num_register_tokens < 0:
            raise ConfigError(f"model config num_register_tokens = {self.num_register_tokens}: must be >= 0")
        if self.num_cls_tokens != 2:
            raise ConfigError(
                f"model config num_cls_tokens = {self.num_cls_tokens}: ProM3E needs exactly 2 (μ and log-variance)"
            )
        if self.embed_dim % self.heads:
            raise ConfigError(
                f"model config embed_dim = {self.embed_dim} is not divisible by heads = {self.heads}: "
                "pick heads that divide embed_dim"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model config dropout = {self.dropout}: must be in [0, 1)")
        if self.lambda_kl < 0:
            raise ConfigError(f"model config lambda_kl = {self.lambda_kl}: must be >= 0")
        ok = isinstance(self.token_init_std, (int, float)) and not isinstance(self.token_init_std, bool)
        if not ok or not 0.0 < float(self.token_init_std) < float("inf"):
            raise ConfigError(
                f"model config token_init_std = {self.token_init_std!r}: must be a positive number "
                "(1.0 as published, 0.02 for the small-init habit)"
            )
        for name in ("mask_token", "error_head"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"model config {name} = {getattr(self, name)!r}: must be true or false")

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of the configuration fields."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> ProM3EConfig:
        """Build a config from a mapping; keys the model does not use (e.g. training settings) are ignored."""
        known = set(cls.field_names())
        unknown = sorted(set(d) - known)
        if unknown:
            log.info("%s: ignoring keys the model does not use: %s", source, ", ".join(unknown))
        kwargs = {k: d[k] for k in known if k in d}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # pragma: no cover - dataclass guards types above
            raise ConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what ``config.json`` holds)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as indented JSON."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)
