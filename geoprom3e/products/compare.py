"""``compare_maps``: correlation of two maps over the cells valid in both, with a JSON report and a hexbin PNG."""

from __future__ import annotations

import json
from pathlib import Path

from geoprom3e.errors import OutputError
from geoprom3e.io.atomic import atomic_path, atomic_write_text
from geoprom3e.maps.compare import Comparison, compare_rasters


def compare_maps(a: str | Path, b: str | Path, *, band_a: str | None = None, band_b: str | None = None,
                 out: str | Path | None = None, overwrite: bool = False, contiguity: str = "rook") -> Comparison:
    """Correlate two maps; with ``out`` also write ``compare.json`` and ``compare.png`` (hexbin)."""
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {str(out)!r} is a file, not a folder: choose a folder path")
        if not overwrite and (out / "compare.json").exists():
            raise OutputError(f"{out / 'compare.json'} exists: pass --overwrite or choose another --out")
    res = compare_rasters(a, b, band_a=band_a, band_b=band_b, contiguity=contiguity)
    if out is None:
        return res
    targets = [out / "compare.json", out / "compare.png"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from geoprom3e.maps.compare import read_band

    x, _, _ = read_band(a, band_a)
    y, _, _ = read_band(b, band_b)
    ok = np.isfinite(x) & np.isfinite(y)
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    hb = ax.hexbin(x[ok], y[ok], gridsize=40, bins="log", cmap="viridis", mincnt=1)
    fig.colorbar(hb, ax=ax, label="cells (log)")
    ax.set_xlabel(f"{Path(str(a)).name} [{band_a or 1}]")
    ax.set_ylabel(f"{Path(str(b)).name} [{band_b or 1}]")
    ax.set_title(f"Pearson r = {res.pearson_r:.3f} (Dutilleul p = {res.pearson_p_dutilleul:.2g}, effective n = "
                 f"{res.effective_n:.0f} of {res.n_cells}), Spearman ρ = {res.spearman_rho:.3f}",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(targets[1]) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    atomic_write_text(targets[0], json.dumps(res.to_dict(), indent=1) + "\n")
    return res
