"""Per-cell representations of ProM3E beyond μ: its hidden tokens, cached like the other fused products.

A *token* names one per-cell vector:

==================  =============================================================  =========
``mu``              the μ token, L2-normalised (the fused core's ``mu``)            E
``logvar``          the log-variance token                                          E
``register<i>``     register token i (1-based); ``registers`` = all R of them       E
``token:<m>``       the encoder output at modality m's token (cells that showed m)  E
                    ``tokens`` = one per visible modality
``recon:<m>``       the model's reconstruction of modality m (a fused product)      512
``emb:<m>``         the frozen encoder's embedding of m, from the cache (baseline)  512
==================  =============================================================  =========

Hidden tokens come from :meth:`ProM3E.infer` with ``return_hidden=True`` and are stored in the fused product's
group as ``hidden_<name>`` [y, x, E] float16, one product per token with its own commit record that names the
input chunks it was computed from: a chunk whose inputs changed is recomputed, as for μ and reconstructions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from geoprom3e.engine.cache import EmbeddingCache, Window, recon_key
from geoprom3e.engine.chunks import Chunk
from geoprom3e.engine.fuse import FuseSettings, chunk_inputs
from geoprom3e.errors import CacheError, ConfigError
from geoprom3e.modalities import EMBED_DIM, MODALITIES, modality_index
from geoprom3e.progress import ProgressCallback, report

log = logging.getLogger(__name__)

KINDS = ("mu", "logvar", "register", "token", "recon", "emb")
"""Kinds of token."""

HIDDEN_BATCH = 1024
"""Cells per model call for hidden tokens: the full forward keeps every token's activations (E = 1024, 3 visible
modalities: about 0.5 GB per 1024 cells), so batches stay small whatever the cache's chunk size."""

TOKEN_HELP = ("mu, logvar, registers (or register1..registerR), tokens (or token:<m>, the hidden token of a visible "
              "modality), recon:<m> (reconstruction), emb:<m> (the frozen encoder's embedding)")


@dataclass(frozen=True)
class Token:
    """One per-cell representation."""

    kind: str
    """One of :data:`KINDS` (or ``registers``/``tokens`` before :func:`resolve_tokens` expands them)."""
    index: int | str | None = None
    """Register number (1-based) or modality name; None for ``mu``/``logvar``."""

    @property
    def name(self) -> str:
        """Variable-safe name: ``mu``, ``logvar``, ``register1``, ``token_sat``, ``recon_image``, ``emb_loc``."""
        if self.kind in ("mu", "logvar", "registers", "tokens"):
            return self.kind
        if self.kind == "register":
            return f"register{self.index}"
        return f"{self.kind}_{self.index}"

    @property
    def label(self) -> str:
        """How the user writes it: ``mu``, ``register1``, ``token:sat``, ``recon:image``, ``emb:loc``."""
        return self.name if self.kind in ("mu", "logvar", "register", "registers", "tokens") else \
            f"{self.kind}:{self.index}"

    @property
    def hidden(self) -> bool:
        """True for tokens read from the encoder's hidden states (cached as ``hidden_<name>``)."""
        return self.kind in ("logvar", "register", "token")

    @property
    def key(self) -> str:
        """Array key (and product name) in the fused group; ``emb`` tokens live in the cache's modalities."""
        if self.kind == "mu":
            return "mu"
        if self.kind == "recon":
            return recon_key(str(self.index))
        return f"hidden_{self.name}"


_REG = re.compile(r"^register:?(\d+)$")


def parse_tokens(spec: str | Iterable[str]) -> list[Token]:
    """Parse ``"mu,logvar,registers,recon:image,emb:loc"`` (syntax only; :func:`resolve_tokens` checks the model)."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise ConfigError(f"--tokens is empty: name at least one of {TOKEN_HELP}")
    out: list[Token] = []
    for item in items:
        low = item.lower()
        if low in ("mu", "logvar", "registers", "tokens"):
            tok = Token(low)
        elif _REG.match(low):
            n = int(_REG.match(low).group(1))  # type: ignore[union-attr]
            if n < 1:
                raise ConfigError(f"--tokens {item!r}: registers are numbered from 1 (register1..registerR)")
            tok = Token("register", n)
        elif ":" in low and low.split(":", 1)[0] in ("token", "recon", "emb"):
            kind, m = low.split(":", 1)
            tok = Token(kind, MODALITIES[modality_index(m)])
        else:
            raise ConfigError(f"--tokens: unknown token {item!r}: use {TOKEN_HELP}")
        if tok in out:
            raise ConfigError(f"--tokens names {item!r} twice: name each token once")
        out.append(tok)
    return out


def resolve_tokens(tokens: Sequence[Token], num_registers: int, num_modalities: int, visible: Sequence[str],
                   cached: Sequence[str]) -> list[Token]:
    """Expand ``registers``/``tokens`` and check each token against the checkpoint (R registers, M modalities),
    the visible set and the modalities the cache holds; one line naming the token otherwise."""
    out: list[Token] = []
    for t in tokens:
        if t.kind == "registers":
            if num_registers == 0:
                raise ConfigError("--tokens registers: this checkpoint has no register tokens: drop it")
            out += [Token("register", i) for i in range(1, num_registers + 1)]
        elif t.kind == "tokens":
            out += [Token("token", m) for m in visible]
        else:
            out.append(t)
    for t in out:
        if t.kind == "register" and int(t.index) > num_registers:  # type: ignore[arg-type]
            raise ConfigError(f"--tokens {t.label}: this checkpoint has {num_registers} register tokens: use "
                              f"register1..register{num_registers}" if num_registers else
                              f"--tokens {t.label}: this checkpoint has no register tokens: drop it")
        if t.kind in ("token", "recon") and MODALITIES.index(str(t.index)) >= num_modalities:
            raise ConfigError(f"--tokens {t.label}: this checkpoint has {num_modalities} modalities "
                              f"({', '.join(MODALITIES[:num_modalities])}): name one of them")
        if t.kind == "token" and t.index not in visible:
            raise ConfigError(f"--tokens {t.label}: {t.index} is not in the visible set ({','.join(visible)}), so no "
                              f"cell has that token: add it to --visible or drop the token")
        if t.kind == "emb" and t.index not in cached:
            raise ConfigError(f"--tokens {t.label}: the cache holds no {t.index} embeddings (it has "
                              f"{', '.join(cached) or 'none'}): name one it has")
    seen: list[Token] = []
    for t in out:
        if t not in seen:
            seen.append(t)
    return seen


def token_width(token: Token, embed_dim: int) -> int:
    """Feature size of ``token``: E for μ and hidden tokens, 512 for reconstructions and encoder embeddings."""
    return EMBED_DIM if token.kind in ("recon", "emb") else int(embed_dim)


def update_hidden(cache: EmbeddingCache, model: torch.nn.Module, settings: FuseSettings, group: str,
                  tokens: Sequence[Token], window: Window | None = None,
                  progress: ProgressCallback | None = None) -> list[str]:
    """Bring the hidden tokens among ``tokens`` of ``window`` up to date in fused product ``group`` (whose core
    :func:`~geoprom3e.engine.fuse.fuse_grid` has just brought up to date); returns the keys computed.

    A chunk is recomputed when a token's commit record is missing or names other inputs than the core's.
    """
    hidden = [t for t in tokens if t.hidden]
    if not hidden:
        return []
    cfg = model.config
    cache.ensure_fused_vectors(group, {t.key: (cfg.embed_dim, f"ProM3E hidden {t.label} token") for t in hidden})
    window = window or cache.window()
    have = [m for m in settings.visible if m in cache.modalities()]
    mask = cache.grid.mask()
    todo = []
    with cache.fuse_lock(group):
        for ch in cache.chunks(window):
            core = cache.fused_marker(group, "core", ch)
            if core is None:
                raise CacheError(f"chunk {ch.id} of fused product {group} is not in cache {str(cache.path)!r}: "
                                 "rerun the command")
            stale = [t for t in hidden if (cache.fused_marker(group, t.key, ch) or {}).get("inputs") != core["inputs"]]
            if stale:
                todo.append((ch, core["inputs"], stale))
        total = int(sum(mask[ch.slices].sum() for ch, _, _ in todo))
        if todo:
            log.info("hidden tokens: computing %d chunks of %s", len(todo), group)
        for ch, inputs, stale in todo:
            n = _hidden_chunk(cache, group, ch, model, settings, have, inputs, stale, mask)
            report(progress, "hidden tokens", n, total)
    return sorted({t.key for _, _, s in todo for t in s})


def _hidden_chunk(cache: EmbeddingCache, group: str, ch: Chunk, model: torch.nn.Module, settings: FuseSettings,
                  have: Sequence[str], inputs: dict[str, str], stale: Sequence[Token], mask: np.ndarray) -> int:
    h, w = ch.shape
    cfg = model.config
    m = cfg.num_modalities
    emb, vis = chunk_inputs(cache, have, ch, mask, m)
    rr, cc = np.nonzero(vis.any(-1))
    out = {t.key: np.full((h, w, cfg.embed_dim), np.nan, np.float32) for t in stale}
    dev = next(model.parameters()).device
    nc = cfg.num_cls_tokens
    step = min(settings.batch_size, HIDDEN_BATCH)
    for s in range(0, rr.size, step):
        r, c = rr[s : s + step], cc[s : s + step]
        v = torch.from_numpy(vis[r, c]).to(dev)
        res = model.infer(torch.from_numpy(emb[r, c]).to(dev), v, n_samples=0, decode=[], return_hidden=True)
        hid = res.hidden.float()
        order, _ = model.resolve_visible(v, int(r.size))
        for t in stale:
            if t.kind == "logvar":
                val = hid[:, 1]
            elif t.kind == "register":
                val = hid[:, nc + int(t.index) - 1]  # type: ignore[arg-type]
            else:
                i = MODALITIES.index(str(t.index))
                pos = nc + cfg.num_register_tokens + (i if order is None else (order.index(i) if i in order else -1))
                if pos < nc + cfg.num_register_tokens:
                    continue  # no row of this batch showed modality i
                val = torch.where(v[:, i, None], hid[:, pos], torch.full_like(hid[:, pos], float("nan")))
            out[t.key][r, c] = val.cpu().numpy()
    for t in stale:
        cache.write_fused(group, ch, {t.key: out[t.key]}, inputs, t.key)
    return int(rr.size)


def read_token(cache: EmbeddingCache, group: str | None, token: Token, chunk: Chunk) -> np.ndarray:
    """float32 [h, w, width] of ``token`` over one chunk (checksums verified); NaN where a cell has no value."""
    if token.kind == "emb":
        e, p = cache.read_modality(str(token.index), chunk)
        return np.where(p[..., None], e.astype(np.float32), np.nan)
    if group is None:
        raise CacheError(f"token {token.label} needs a fused product: fuse the cache first")
    product = "core" if token.kind == "mu" else token.key
    return cache.read_fused(group, product, chunk, [token.key])[token.key].astype(np.float32)


__all__ = ["KINDS", "TOKEN_HELP", "Token", "parse_tokens", "read_token", "resolve_tokens", "token_width",
           "update_hidden"]
