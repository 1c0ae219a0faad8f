"""Linear probes with spatial block cross-validation: from per-cell representations to a user's target.

Folds are k × k-cell blocks of the grid (scikit-learn ``GroupKFold`` with the block as the group), so
neighbouring cells never straddle train and test. Classes: standardised features → logistic regression
(accuracy, macro-F1). Continuous targets: standardised features → ridge with its penalty chosen by inner
cross-validation (R², RMSE). Arrays in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoprom3e.errors import ConfigError, InputError

TASKS = ("classify", "regress")
"""Probe tasks: ``classify`` (logistic regression) or ``regress`` (ridge)."""


@dataclass(frozen=True)
class ProbeScore:
    """Cross-validated scores of one feature set on one target."""

    name: str
    """Feature set (``mu``, ``register1``, ``emb:sat``, ``coords``, ...)."""
    n_features: int
    """Width of the feature vectors."""
    n_cells: int
    """Cells scored (each predicted once, by a model that never saw its block)."""
    metrics: dict[str, float]
    """``accuracy`` and ``macro_f1`` (classify), or ``r2`` and ``rmse`` (regress)."""


def spatial_blocks(rows: np.ndarray, cols: np.ndarray, block_size: int) -> np.ndarray:
    """Block id of each cell (``rows``, ``cols`` indices): cells in the same ``block_size`` × ``block_size`` block share
    an id."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"--block-size {block_size!r}: must be an integer >= 1 (cells per block side)")
    br = np.asarray(rows, np.int64) // block_size
    bc = np.asarray(cols, np.int64) // block_size
    return br * (int(bc.max(initial=0)) + 1) + bc


def check_target(y: np.ndarray, task: str) -> None:
    """One line when ``y`` cannot be probed as ``task`` (a single class, a constant value, too few cells)."""
    if task not in TASKS:
        raise ConfigError(f"--task {task!r}: use one of {', '.join(TASKS)}")
    if y.size == 0:
        raise InputError("the target has no value on any cell of the grid: check that it overlaps the cache's grid")
    if task == "classify":
        classes, counts = np.unique(y, return_counts=True)
        if classes.size < 2:
            raise InputError(f"the target has a single class ({classes[0]!r}) on the grid's cells: a probe needs at "
                             "least two classes (or use --task regress for a continuous target)")
    elif np.nanstd(y.astype(np.float64)) == 0:
        raise InputError(f"the target is constant ({float(y[0]):g}) on the grid's cells: a probe needs variation")


def n_folds(groups: np.ndarray, wanted: int = 5) -> int:
    """Folds to use: ``wanted``, or fewer when there are fewer blocks (at least 2)."""
    n = int(np.unique(groups).size)
    if n < 2:
        raise InputError(f"all labelled cells fall in {n} spatial block: pass a smaller --block-size so that "
                         "there are at least 2 blocks")
    return min(wanted, n)


def probe_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, task: str, *, folds: int = 5, seed: int = 0,
             name: str = "") -> ProbeScore:
    """Cross-validated linear probe of ``x`` [n, d] → ``y`` [n] with folds by ``groups`` (spatial blocks).

    Every cell is predicted by the model fitted on the other folds; the scores are computed on the pooled
    predictions. ``seed`` makes the fold assignment and the solvers reproducible.
    """
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_target(y, task)
    x = np.asarray(x, np.float64)
    k = n_folds(groups, folds)
    try:
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    except TypeError:  # scikit-learn < 1.6 has no shuffle: the blocks are dealt by size
        splitter = GroupKFold(n_splits=k)
    pred = np.empty(y.shape, dtype=y.dtype if task == "classify" else np.float64)
    for train, test in splitter.split(x, y, groups):
        if task == "classify":
            if np.unique(y[train]).size < 2:  # a fold that saw one class predicts it
                pred[test] = y[train][0]
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
        else:
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
        model.fit(x[train], y[train])
        pred[test] = model.predict(x[test])
    if task == "classify":
        metrics = {"accuracy": float(accuracy_score(y, pred)),
                   "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0))}
    else:
        metrics = {"r2": float(r2_score(y, pred)), "rmse": float(np.sqrt(mean_squared_error(y, pred)))}
    return ProbeScore(name, int(x.shape[1]), int(x.shape[0]), metrics)


def chance(y: np.ndarray, task: str) -> dict[str, float]:
    """What a probe that ignores the features scores: the majority class (accuracy, macro-F1), or R² = 0."""
    if task == "classify":
        classes, counts = np.unique(y, return_counts=True)
        acc = float(counts.max() / counts.sum())
        return {"accuracy": acc, "macro_f1": float(2 * acc / (1 + acc) / classes.size)}
    return {"r2": 0.0, "rmse": float(np.std(np.asarray(y, np.float64)))}
