"""The ProM3E masked variational autoencoder (CVPR 2026), faithful to the published checkpoint layout.

Two paths compute the same numbers:

* :meth:`ProM3E.forward` is the published arithmetic on the whole token sequence (used in training);
* :meth:`ProM3E.infer` is the inference path the maps use. It skips work whose result a map never reads:
  in the first block the keys/values of the 2 + R constant tokens are computed once, in the last block only
  the two latent tokens are updated, and only the decoders asked for run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geoprom3e.errors import ConfigError, InputError
from geoprom3e.modalities import MODALITIES, modality_index, parse_modalities
from geoprom3e.model.config import ProM3EConfig
from geoprom3e.model.layers import EncoderBlock, MLPHead

log = logging.getLogger(__name__)

Visible = Sequence[str | int] | str | torch.Tensor | np.ndarray


@dataclass
class Inference:
    """What :meth:`ProM3E.infer` returns for a batch of B rows."""

    mu: torch.Tensor
    """[B, E] L2-normalised mean of the Gaussian latent."""
    logvar: torch.Tensor
    """[B, E] log-variance of the latent."""
    sigma_l1: torch.Tensor
    """[B] uncertainty ‖σ‖₁ = Σ exp(logvar / 2)."""
    recon: torch.Tensor | None
    """[B, len(decoded), 512] L2-normalised reconstructions, in the order of ``decoded``; None when none ran."""
    decoded: tuple[str, ...]
    """Names of the modalities in ``recon`` (all six unless ``decode`` chose fewer)."""
    visible: torch.Tensor
    """[B, M] bool: which modalities each row saw."""
    hidden: torch.Tensor | None = None
    """[B, 2 + R + V, E] encoder output (μ token, log-variance token, registers, visible tokens); only with
    ``return_hidden=True``."""
    hidden_mask: torch.Tensor | None = None
    """[B, 2 + R + V] bool, True where ``hidden`` holds a real token (False for padding of mixed batches)."""
    recon_sigma: torch.Tensor | None = None
    """[B] research option, only for models built with ``error_head=True`` (None otherwise): the predicted
    root-mean-square reconstruction distance ``sqrt(mean_j ‖recon_j − e_j‖²)`` over target modalities j (unit
    vectors: 0 … 2),
    learned with a heteroscedastic likelihood (see :func:`geoprom3e.model.loss.error_nll`). Not published;
    unlike :attr:`sigma_l1` it is trained to track how hard a row is to reconstruct."""

    def recon_of(self, modality: str | int) -> torch.Tensor:
        """[B, 512] reconstruction of one modality (it must have been decoded)."""
        name = MODALITIES[modality_index(modality)]
        if self.recon is None or name not in self.decoded:
            raise ConfigError(f"modality {name!r} was not decoded: pass decode=[..., {name!r}] to infer()")
        return self.recon[:, self.decoded.index(name)]


@dataclass
class ForwardOutput:
    """Training-time outputs of :meth:`ProM3E.forward`."""

    mu: torch.Tensor
    """[B, E] L2-normalised latent mean."""
    logvar: torch.Tensor
    """[B, E] latent log-variance."""
    z: torch.Tensor
    """[B, E] one reparameterised sample (z = μ when sampling is off)."""
    recon: torch.Tensor
    """[B, M, 512] L2-normalised reconstruction of every modality from z."""
    log_err: torch.Tensor | None = None
    """[B] predicted log of the mean squared reconstruction distance ‖recon_j − e_j‖² (``error_head`` only)."""


class ProM3E(nn.Module):
    """Masked multimodal VAE: any visible modalities in, every modality (and an uncertainty) out."""

    def __init__(self, config: ProM3EConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = ProM3EConfig(**overrides)
        elif overrides:
            config = ProM3EConfig(**{**config.to_dict(), **overrides})
        self.config = config
        c = config
        std = float(c.token_init_std)  # published: torch.randn, i.e. std 1 (mvrl/proM3E model.py)
        self.cls_tokens = nn.Parameter(torch.randn(c.num_cls_tokens, c.embed_dim) * std)
        self.register_tokens = nn.Parameter(torch.randn(c.num_register_tokens, c.embed_dim) * std)
        self.negative_scale = nn.Parameter(torch.tensor(-5.0))
        self.negative_shift = nn.Parameter(torch.tensor(5.0))
        self.projectors = nn.ModuleList(
            MLPHead(c.input_dim, c.proj_hidden_dim, c.embed_dim, c.dropout) for _ in range(c.num_modalities)
        )
        self.modality_identifiers = nn.ParameterList(
            nn.Parameter(torch.randn(c.embed_dim) * std) for _ in range(c.num_modalities)
        )
        if c.mask_token:  # project option: masked modalities become this token instead of being dropped
            self.mask_token = nn.Parameter(torch.randn(c.embed_dim) * std)
        self.encoder = nn.ModuleList(
            EncoderBlock(c.embed_dim, c.heads, c.mlp_dim, c.dropout) for _ in range(c.depth)
        )
        self.decoders = nn.ModuleList(
            MLPHead(c.embed_dim, c.embed_dim, c.input_dim, c.dropout) for _ in range(c.num_modalities)
        )
        if c.error_head:  # research option: predicted log reconstruction error from the log-variance token
            self.error_head = nn.Linear(c.embed_dim, 1)

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, map_location: str | torch.device = "cpu") -> ProM3E:
        """Load a model from a ``.safetensors`` file, a Hugging Face style folder, a Lightning ``.ckpt``
        or a plain state_dict ``.pt``/``.pth`` (see :func:`geoprom3e.model.checkpoint.read_checkpoint`)."""
        from geoprom3e.model.checkpoint import load_model

        return load_model(cls, path, map_location=map_location)

    @classmethod
    def from_pretrained(
        cls, repo_id: str = "MVRL/ProM3E", *, cache_dir: str | Path | None = None, revision: str | None = None
    ) -> ProM3E:
        """Download (or reuse from the Hugging Face cache) the published weights and load them."""
        from geoprom3e.model.checkpoint import fetch_pretrained

        return cls.from_checkpoint(fetch_pretrained(repo_id, cache_dir=cache_dir, revision=revision))

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (atomically); returns the folder."""
        from geoprom3e.model.checkpoint import save_checkpoint

        return save_checkpoint(self, directory)

    def num_parameters(self) -> int:
        """Total number of parameters."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ input checks
    def _check_embeddings(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        c = self.config
        if isinstance(embeddings, np.ndarray):
            if not np.issubdtype(embeddings.dtype, np.floating):
                raise InputError(
                    f"embeddings have dtype {embeddings.dtype}: pass floating-point values (e.g. .astype('float32'))"
                )
            embeddings = torch.from_numpy(np.ascontiguousarray(embeddings))
        if not isinstance(embeddings, torch.Tensor):
            raise InputError(
                f"embeddings must be a torch.Tensor or numpy array of shape [batch, {c.num_modalities}, "
                f"{c.input_dim}], got {type(embeddings).__name__}"
            )
        if not embeddings.is_floating_point():
            raise InputError(
                f"embeddings have dtype {embeddings.dtype}: pass floating-point values (e.g. .float())"
            )
        if embeddings.ndim != 3 or embeddings.shape[1] != c.num_modalities or embeddings.shape[2] != c.input_dim:
            raise InputError(
                f"embeddings have shape {tuple(embeddings.shape)}: expected [batch, {c.num_modalities}, "
                f"{c.input_dim}] (one {c.input_dim}-d vector per modality in the order "
                f"{', '.join(MODALITIES[: c.num_modalities])}; fill missing modalities with zeros)"
            )
        if embeddings.shape[0] == 0:
            raise InputError("embeddings have batch size 0: pass at least one row")
        p = next(self.parameters())
        return embeddings.to(device=p.device, dtype=p.dtype)

    def resolve_visible(self, visible: Visible, batch: int) -> tuple[list[int] | None, torch.Tensor]:
        """Turn ``visible`` into (order, mask): order is the token order when every row shares one set
        (None for mixed batches), mask is [B, M] bool."""
        m = self.config.num_modalities
        dev = next(self.parameters()).device
        if isinstance(visible, np.ndarray):
            visible = torch.from_numpy(visible)
        if isinstance(visible, torch.Tensor):
            if visible.dtype != torch.bool:
                raise InputError(
                    f"a visible tensor must be bool [batch, {m}] (got dtype {visible.dtype}); "
                    "pass a list of modality names or indices for one shared set"
                )
            if visible.ndim == 1:
                visible = visible.expand(batch, -1)
            if visible.ndim != 2 or visible.shape != (batch, m):
                raise InputError(
                    f"visible mask has shape {tuple(visible.shape)}: expected [{batch}, {m}] (one row per row)"
                )
            empty = (~visible.any(dim=1)).nonzero().flatten().tolist()
            if empty:
                raise InputError(
                    f"rows {_fmt_rows(empty)} have no visible modality: every row needs at least one True"
                )
            visible = visible.to(dev)
            if bool((visible == visible[:1]).all()):
                return visible[0].nonzero().flatten().tolist(), visible
            return None, visible
        order = parse_modalities(visible, m)
        mask = torch.zeros(batch, m, dtype=torch.bool, device=dev)
        mask[:, order] = True
        return order, mask

    def _check_finite(self, emb: torch.Tensor, mask: torch.Tensor) -> None:
        bad = (~torch.isfinite(emb)).any(dim=2) & mask
        if bool(bad.any()):
            rows = bad.any(dim=1).nonzero().flatten().tolist()
            mods = sorted({MODALITIES[i] for i in bad.any(dim=0).nonzero().flatten().tolist()})
            raise InputError(
                f"embeddings hold NaN or inf in visible modalities ({', '.join(mods)}) at rows {_fmt_rows(rows)}: "
                "drop those rows or mark those modalities not visible for them"
            )

    # ------------------------------------------------------------------ tokens
    def _tokens(
        self,
        emb: torch.Tensor,
        order: list[int] | None,
        mask: torch.Tensor,
        scale: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Projected modality tokens: [B, V, E] in ``order``, or [B, M, E] (zeros where masked) when mixed.

        With ``config.mask_token`` always [B, M, E] in modality order, masked entries holding the learned mask
        token plus their modality identifier. ``scale`` ([B] or a number) multiplies the projector outputs
        (OPM's feature rescaling)."""

        def proj(i: int, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
            out = self.projectors[i](x)
            if scale is not None:
                sc = scale if not isinstance(scale, torch.Tensor) or scale.ndim == 0 else (
                    scale if rows is None else scale[rows]
                )[:, None]
                out = out * sc
            return out + self.modality_identifiers[i]

        if self.config.mask_token:
            b, m, _ = emb.shape
            emb = torch.where(mask[..., None], emb, torch.zeros((), dtype=emb.dtype, device=emb.device))
            toks = []
            for i in range(m):
                masked_tok = self.mask_token + self.modality_identifiers[i]
                if bool(mask[:, i].all()):
                    toks.append(proj(i, emb[:, i]))
                elif not bool(mask[:, i].any()):
                    toks.append(masked_tok.expand(b, -1))
                else:
                    toks.append(torch.where(mask[:, i, None], proj(i, emb[:, i]), masked_tok))
            return torch.stack(toks, dim=1)
        if order is not None:
            return torch.stack([proj(i, emb[:, i]) for i in order], dim=1)
        b, m, _ = emb.shape
        tokens = emb.new_zeros(b, m, self.config.embed_dim)
        for i in range(m):
            rows = mask[:, i].nonzero().flatten()
            if rows.numel():
                tokens[rows, i] = proj(i, emb[rows, i], rows)
        return tokens

    def _constant_tokens(self) -> torch.Tensor:
        return torch.cat([self.cls_tokens, self.register_tokens], dim=0)

    def encode_sequence(
        self,
        emb: torch.Tensor,
        order: list[int] | None,
        mask: torch.Tensor,
        scale: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Published encoder on the whole sequence: returns (hidden [B, 2+R+V, E], key padding mask or None)."""
        tokens = self._tokens(emb, order, mask, scale)
        b = tokens.shape[0]
        const = self._constant_tokens().unsqueeze(0).expand(b, -1, -1)
        x = torch.cat([const, tokens], dim=1)
        kpm = None
        if order is None and not self.config.mask_token:
            kpm = torch.cat([mask.new_zeros(b, const.shape[1]), ~mask], dim=1)
        for blk in self.encoder:
            x = blk(x, key_padding_mask=kpm)
        return x, kpm

    def _latent_fast(self, emb: torch.Tensor, order: list[int] | None, mask: torch.Tensor) -> torch.Tensor:
        """[B, 2, E] outputs of the two latent tokens, skipping work that does not reach them."""
        tokens = self._tokens(emb, order, mask)
        b = tokens.shape[0]
        const = self._constant_tokens()
        nc = const.shape[0]
        keep = None
        if order is None and not self.config.mask_token:
            keep = torch.cat([mask.new_ones(b, nc), mask], dim=1)[:, None, None, :]
        depth = len(self.encoder)
        x: torch.Tensor | None = None
        for k, blk in enumerate(self.encoder):
            e = self.config.embed_dim
            w, bias = blk.attn.in_proj_weight, blk.attn.in_proj_bias
            last = k == depth - 1
            if k == 0:
                kv_const = F.linear(const, w[e:], bias[e:])  # [C, 2E], computed once for the batch
                kv_tok = F.linear(tokens, w[e:], bias[e:])
                kv = torch.cat([kv_const.unsqueeze(0).expand(b, -1, -1), kv_tok], dim=1)
                if last:
                    q_in = const[:2].unsqueeze(0).expand(b, -1, -1)
                else:
                    q_in = torch.cat([const.unsqueeze(0).expand(b, -1, -1), tokens], dim=1)
            else:
                assert x is not None
                kv = F.linear(x, w[e:], bias[e:])
                q_in = x[:, :2] if last else x
            q = F.linear(q_in, w[:e], bias[:e])
            x = self._attend_mlp(blk, q_in, q, kv, keep)
        assert x is not None
        return x

    def _attend_mlp(
        self, blk: EncoderBlock, q_in: torch.Tensor, q: torch.Tensor, kv: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        h = self.config.heads
        b, lq, e = q.shape
        lk = kv.shape[1]
        d = e // h
        qh = q.reshape(b, lq, h, d).transpose(1, 2)
        kh = kv[..., :e].reshape(b, lk, h, d).transpose(1, 2)
        vh = kv[..., e:].reshape(b, lk, h, d).transpose(1, 2)
        a = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=keep)
        a = a.transpose(1, 2).reshape(b, lq, e)
        a = blk.attn.out_proj(a)
        x = blk.norm1(a + q_in)
        return blk.norm2(blk.mlp(x) + x)

    # ------------------------------------------------------------------ public API
    def forward(
        self,
        embeddings: torch.Tensor,
        visible: Visible,
        *,
        sample: bool = True,
        generator: torch.Generator | None = None,
        token_scale: torch.Tensor | float | None = None,
    ) -> ForwardOutput:
        """Training forward on the full sequence: one reparameterised z per row, every decoder.

        ``token_scale`` ([B] or a number) multiplies the projected modality features before the modality
        identifier is added (OPM's rescaling by 1 / (1 − θ)); None leaves them as published."""
        emb = self._check_embeddings(embeddings)
        order, mask = self.resolve_visible(visible, emb.shape[0])
        h, _ = self.encode_sequence(emb, order, mask, token_scale)
        mu = F.normalize(h[:, 0], dim=-1)
        logvar = h[:, 1]
        z = mu
        if sample:
            eps = torch.randn(mu.shape[0], 1, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(logvar / 2) * eps
        recon = torch.stack([F.normalize(dec(z), dim=-1) for dec in self.decoders], dim=1)
        log_err = self.error_head(h[:, 1]).squeeze(-1) if self.config.error_head else None
        return ForwardOutput(mu=mu, logvar=logvar, z=z, recon=recon, log_err=log_err)

    def infer(
        self,
        embeddings: torch.Tensor | np.ndarray,
        visible: Visible,
        n_samples: int = 5,
        decode: Sequence[str | int] | None = None,
        generator: torch.Generator | None = None,
        *,
        return_hidden: bool = False,
    ) -> Inference:
        """Encode visible modalities and decode the others, in inference mode.

        Args:
            embeddings: [B, M, 512] L2-normalised embeddings in modality order (masked ones may hold anything
                finite or NaN; they are never read).
            visible: names or indices fed in the order given (``["sat", "loc", "env"]``), or a bool [B, M]
                tensor giving each row its own set (mixed batches; a row equals running it alone).
            n_samples: 0 decodes from μ; k > 0 decodes from the mean of k draws z = μ + exp(logvar/2)·ε with
                one scalar ε per row, as published.
            decode: modalities to reconstruct (default all; ``[]`` runs no decoder, e.g. for uncertainty maps).
            generator: torch generator for ε, for reproducible draws.
            return_hidden: also return the whole encoder output sequence (runs the full last block).
        """
        if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 0:
            raise ConfigError(f"n_samples = {n_samples!r}: must be an integer >= 0 (0 decodes from μ)")
        m = self.config.num_modalities
        dec_idx = list(range(m)) if decode is None else [modality_index(d, m) for d in decode]
        with torch.inference_mode():
            emb = self._check_embeddings(embeddings)
            order, mask = self.resolve_visible(visible, emb.shape[0])
            self._check_finite(emb, mask)
            if order is None:  # masked-out entries may be NaN: make them harmless
                emb = torch.where(mask[..., None], emb, torch.zeros((), dtype=emb.dtype, device=emb.device))
            was_training = self.training
            self.eval()
            try:
                hidden = hidden_mask = None
                if return_hidden:
                    hidden, kpm = self.encode_sequence(emb, order, mask)
                    lat = hidden[:, :2]
                    hidden_mask = None if kpm is None else ~kpm
                    if hidden_mask is None:
                        hidden_mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
                else:
                    lat = self._latent_fast(emb, order, mask)
                mu = F.normalize(lat[:, 0], dim=-1)
                logvar = lat[:, 1]
                std = torch.exp(logvar / 2)
                sigma_l1 = std.sum(dim=-1)
                recon_sigma = None
                if self.config.error_head:
                    recon_sigma = torch.exp(self.error_head(lat[:, 1]).squeeze(-1) / 2)
                recon = None
                if dec_idx:
                    z = mu
                    if n_samples > 0:
                        eps_dev = generator.device if generator is not None else mu.device
                        eps = torch.randn(
                            n_samples, mu.shape[0], 1, generator=generator, device=eps_dev, dtype=mu.dtype
                        ).to(mu.device)
                        z = mu + std * eps.mean(dim=0)
                    recon = torch.stack([F.normalize(self.decoders[i](z), dim=-1) for i in dec_idx], dim=1)
            finally:
                self.train(was_training)
        return Inference(
            mu=mu,
            logvar=logvar,
            sigma_l1=sigma_l1,
            recon=recon,
            decoded=tuple(MODALITIES[i] for i in dec_idx),
            visible=mask,
            hidden=hidden,
            hidden_mask=hidden_mask,
            recon_sigma=recon_sigma,
        )


def _fmt_rows(rows: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return f"[{shown}{', ...' if len(rows) > limit else ''}] ({len(rows)} in all)"
