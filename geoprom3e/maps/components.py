"""Components of per-cell representations for RGB maps: fit FastICA or PCA on a seeded sample of cells, apply the
fitted projection to any block of cells, and stretch each channel by robust percentiles (supp. Figs 1–3).

Arrays in, arrays out: the caller streams blocks of cells through :meth:`Components.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoprom3e.errors import ConfigError

METHODS = ("ica", "pca")
"""Component methods: scikit-learn FastICA (independent components) or PCA (principal components)."""

STRETCH_PERCENTILES = (2.0, 98.0)
"""Default robust stretch: each channel's 2nd and 98th percentiles over the fitted sample map to 0 and 255."""


@dataclass(frozen=True)
class Components:
    """A fitted linear projection ``(x - mean) @ weights`` of feature vectors onto ``k`` components."""

    method: str
    """``ica`` or ``pca``."""
    mean: np.ndarray
    """[d] feature mean of the sample."""
    weights: np.ndarray
    """[d, k] projection; column j gives component j."""
    n_sample: int
    """Cells the projection was fitted on."""
    seed: int
    """Seed of the fit (FastICA's initial unmixing; the sample is drawn by the caller)."""
    converged: bool = True
    """False when FastICA stopped at its iteration limit."""

    @property
    def k(self) -> int:
        """Number of components."""
        return int(self.weights.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """[..., k] components of feature vectors ``x`` [..., d] (float32; NaN rows stay NaN)."""
        x = np.asarray(x, dtype=np.float32)
        return ((x - self.mean.astype(np.float32)) @ self.weights.astype(np.float32)).astype(np.float32)


def check_components(k: int, n_features: int, what: str = "the token") -> None:
    """One line when ``k`` components cannot be fitted on ``n_features``-d vectors (or cannot make an RGB)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 3:
        raise ConfigError(f"--components {k!r}: must be an integer >= 3 (the RGB map shows the first three)")
    if k > n_features:
        raise ConfigError(f"--components {k} is larger than the feature size of {what} ({n_features}): "
                          f"pass --components 3..{n_features}" if n_features >= 3 else "choose another token")


def fit_components(sample: np.ndarray, method: str = "ica", k: int = 3, seed: int = 0,
                   max_iter: int = 400) -> Components:
    """Fit ``k`` components on ``sample`` [n, d] (rows with NaN are dropped).

    FastICA components are ordered by the data variance each one carries (the norm of its mixing column), PCA
    components by explained variance; each component's sign is fixed so that its largest loading is positive, so
    a refit on the same sample and seed gives the same map.
    """
    from sklearn.decomposition import PCA, FastICA

    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: use one of {', '.join(METHODS)}")
    x = np.asarray(sample, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        x = x[finite]
    check_components(k, x.shape[1])
    if x.shape[0] <= k:
        raise ConfigError(f"only {x.shape[0]} cells with values to fit {k} components: use a larger window or "
                          "fewer --components")
    converged = True
    if method == "pca":
        pca = PCA(n_components=k, random_state=seed).fit(x)
        mean, w = pca.mean_, pca.components_.T
    else:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            ica = FastICA(n_components=k, whiten="unit-variance", whiten_solver="eigh", random_state=seed,
                          max_iter=max_iter, tol=1e-4).fit(x)
        converged = not any(issubclass(c.category, ConvergenceWarning) for c in caught)
        order = np.argsort(-np.linalg.norm(ica.mixing_, axis=0), kind="stable")
        mean, w = ica.mean_, ica.components_.T[:, order]
    w = np.array(w, dtype=np.float64)
    flip = np.sign(w[np.abs(w).argmax(axis=0), np.arange(w.shape[1])])
    w *= np.where(flip == 0, 1.0, flip)
    return Components(method, np.asarray(mean, np.float64), w, int(x.shape[0]), int(seed), converged)


def percentile_limits(values: np.ndarray, percentiles: tuple[float, float] = STRETCH_PERCENTILES
                      ) -> np.ndarray:
    """[k, 2] (low, high) percentiles of each channel of ``values`` [..., k] over finite entries."""
    lo_p, hi_p = percentiles
    if not 0 <= lo_p < hi_p <= 100:
        raise ConfigError(f"stretch percentiles {percentiles!r}: need 0 <= low < high <= 100")
    v = np.asarray(values, dtype=np.float64).reshape(-1, values.shape[-1])
    out = np.zeros((v.shape[1], 2))
    for j in range(v.shape[1]):
        col = v[:, j][np.isfinite(v[:, j])]
        if col.size:
            out[j] = np.percentile(col, [lo_p, hi_p])
        if out[j, 1] <= out[j, 0]:
            out[j, 1] = out[j, 0] + 1.0
    return out


def stretch_to_uint8(values: np.ndarray, limits: np.ndarray, nodata: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 [..., k] with each channel mapped (low, high) → (1, 255), valid [...] bool).

    Invalid cells (any NaN) get ``nodata`` (0) in every channel; valid cells never do, so 0 can be the nodata value.
    """
    v = np.asarray(values, dtype=np.float32)
    valid = np.isfinite(v).all(axis=-1)
    lo = limits[:, 0].astype(np.float32)
    span = (limits[:, 1] - limits[:, 0]).astype(np.float32)
    with np.errstate(invalid="ignore"):
        scaled = np.clip((v - lo) / span, 0.0, 1.0) * 254.0 + 1.0
    out = np.where(valid[..., None], np.nan_to_num(scaled, nan=1.0), nodata).round().astype(np.uint8)
    return out, valid
