"""``verify_cache``: check every committed chunk of a cache against its checksum, and mark bad ones for recompute."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class VerifyResult:
    """What ``cache verify`` found."""

    cache: str
    """The cache folder."""
    bad: list[dict[str, Any]] = field(default_factory=list)
    """One entry per bad chunk: group, chunk, error."""
    repaired: bool = False
    """Whether bad chunks were unmarked so the next run recomputes them."""

    @property
    def summary(self) -> str:
        """One line for the user."""
        if not self.bad:
            return f"cache {self.cache}: every committed chunk matches its checksum"
        groups = sorted({b["group"] for b in self.bad})
        what = f"{len(self.bad)} bad chunk(s) in {', '.join(groups)}"
        if self.repaired:
            return (f"cache {self.cache}: {what} marked for recompute: rerun `geoprom3e embed-grid --cache "
                    f"{self.cache} --modalities ...` for embeddings; maps recompute fused products themselves")
        return f"cache {self.cache}: {what}: run `geoprom3e cache verify --repair --cache {self.cache}`"


def verify_cache(cache: str | Path, *, repair: bool = False) -> VerifyResult:
    """Check every committed chunk; with ``repair``, unmark the bad ones."""
    from geoprom3e.engine import EmbeddingCache

    store = EmbeddingCache(cache)
    return VerifyResult(str(store.path), store.verify(repair=repair), repair)
