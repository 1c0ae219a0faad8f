"""The similarity scores shared by species maps and evaluation (a leaf: imports nothing of geoprom3e).

ProM3E's retrieval modes (the paper's "intra-modal", "inter-modal" and "hybrid" retrieval):

* ``recon`` (intra-modal): the query against the model's reconstruction of the query's modality;
* ``inter`` (inter-modal): the query against the visible embeddings themselves (mean over them);
* ``hybrid``: ``alpha · inter + (1 − alpha) · recon``. The published code gives no weight, so ``alpha`` is a
  parameter: 0 is pure ``recon``, 1 is pure ``inter``.
"""

from __future__ import annotations

from typing import TypeVar

#: Score modes, in the order the CLI offers them.
SCORE_MODES = ("recon", "inter", "hybrid")

#: One line for ``--help`` texts and table headers.
HYBRID_CONVENTION = "hybrid = alpha * inter + (1 - alpha) * recon (alpha = weight of the inter-modal score)"

T = TypeVar("T")


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in [0, 1], or :class:`~geoprom3e.errors.ConfigError` naming the bad value."""
    from geoprom3e.errors import ConfigError

    try:
        a = float(alpha)
    except (TypeError, ValueError):
        a = float("nan")
    if not 0.0 <= a <= 1.0:
        raise ConfigError(f"--alpha {alpha!r}: must be in [0, 1] (weight of the inter-modal score; "
                          f"{HYBRID_CONVENTION})")
    return a


def hybrid_score(inter: T, recon: T, alpha: float) -> T:
    """``alpha · inter + (1 − alpha) · recon`` for arrays or tensors of the same shape."""
    return alpha * inter + (1.0 - alpha) * recon  # type: ignore[operator,return-value]
