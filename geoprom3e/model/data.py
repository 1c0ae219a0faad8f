"""Paired modality embeddings with presence masks, for training and evaluating ProM3E.

Real data is incomplete, so every row carries a presence mask: a missing modality is never visible and
never a reconstruction target for that row. Accepted inputs:

* the published MultiNat layout: a ``.npy`` holding a dict ``{image, sat, loc, env, text, sound}`` of
  [N, 512] arrays (read with a restricted unpickler that only rebuilds numpy arrays);
* ``.npz`` or a Zarr group with one [N, 512] array per modality, and optionally ``present`` [N, M] bool or
  ``present_<modality>`` [N] bool;
* Parquet with one list-of-512-floats column per modality (null = missing), optionally ``present_<modality>``;
* in Python: such a dict, an array [N, M, 512], or an :class:`EmbeddingSet`.

Rows are L2-normalised on load (as the TaxaBind encoders output them). An all-zero vector means "missing".
NaN or inf in a present modality is an error unless ``on_nan="absent"`` marks those entries missing.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoprom3e.errors import InputError
from geoprom3e.modalities import EMBED_DIM, MODALITIES, modality_index

log = logging.getLogger(__name__)

ON_NAN = ("error", "absent")
"""What to do with NaN/inf embeddings: fail with the rows, or mark those entries missing."""


@dataclass
class EmbeddingSet:
    """N rows of M modality embeddings with a presence mask (missing entries hold zeros)."""

    embeddings: torch.Tensor
    """[N, M, D] float32, L2-normalised where present, 0 where absent."""
    present: torch.Tensor
    """[N, M] bool: True where the row has that modality."""
    names: tuple[str, ...] = MODALITIES
    """Modality names, in model order."""

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def num_modalities(self) -> int:
        """M."""
        return int(self.embeddings.shape[1])

    def subset(self, rows: torch.Tensor | Sequence[int]) -> EmbeddingSet:
        """The rows given (indices or a bool mask)."""
        idx = torch.as_tensor(rows)
        return EmbeddingSet(self.embeddings[idx], self.present[idx], self.names)

    def summary(self) -> dict[str, Any]:
        """Rows and the share of rows holding each modality."""
        share = self.present.float().mean(dim=0).tolist() if len(self) else [0.0] * self.num_modalities
        return {"rows": len(self), "present_share": dict(zip(self.names, [round(s, 4) for s in share]))}


def as_embedding_set(
    data: Any,
    *,
    modalities: Sequence[str] | None = None,
    num_modalities: int = len(MODALITIES),
    input_dim: int = EMBED_DIM,
    on_nan: str = "error",
    normalize: bool = True,
    source: str = "data",
) -> EmbeddingSet:
    """Turn a path, dict, array or :class:`EmbeddingSet` into a checked :class:`EmbeddingSet`.

    Args:
        data: what to read (see the module docstring for the layouts).
        modalities: modalities the data is expected to hold (default all M); others become all-missing.
        num_modalities: M of the model.
        input_dim: D of each embedding (512).
        on_nan: ``"error"`` (default) or ``"absent"``.
        normalize: L2-normalise present rows.
        source: name used in error messages.
    """
    if on_nan not in ON_NAN:
        raise InputError(f"on_nan = {on_nan!r}: use one of {', '.join(ON_NAN)}")
    if isinstance(data, EmbeddingSet):
        emb, present = data.embeddings.float().numpy(), data.present.numpy()
    elif isinstance(data, (str, Path)):
        return as_embedding_set(
            read_embedding_file(data),
            modalities=modalities,
            num_modalities=num_modalities,
            input_dim=input_dim,
            on_nan=on_nan,
            normalize=normalize,
            source=str(data),
        )
    elif isinstance(data, Mapping):
        emb, present = _from_mapping(data, modalities, num_modalities, input_dim, source)
    elif isinstance(data, (np.ndarray, torch.Tensor)):
        emb = np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data)
        present = None
    elif isinstance(data, tuple) and len(data) == 2:
        emb = np.asarray(data[0])
        present = np.asarray(data[1]).astype(bool)
    else:
        raise InputError(
            f"{source}: cannot read a {type(data).__name__}; pass a file path, a dict of [N, {input_dim}] arrays, "
            f"an array [N, {num_modalities}, {input_dim}] or an EmbeddingSet"
        )
    return _finish(emb, present, num_modalities, input_dim, on_nan, normalize, source)


def _from_mapping(
    data: Mapping[str, Any], modalities: Sequence[str] | None, m: int, dim: int, source: str
) -> tuple[np.ndarray, np.ndarray | None]:
    keys = {_canonical(k): k for k in data}
    wanted = [MODALITIES[modality_index(x, m)] for x in (modalities or MODALITIES[:m])]
    lacking = [w for w in wanted if w not in keys]
    if lacking:
        have = sorted(k for k in keys if k in MODALITIES)
        raise InputError(
            f"{source} lacks modality keys {', '.join(lacking)} (it has {', '.join(have) or 'none'}): add them, "
            f"or set data.modalities to the ones it holds, e.g. data.modalities=[{','.join(have)}]"
        )
    counts = {w: int(np.shape(data[keys[w]])[0]) for w in wanted}
    if len(set(counts.values())) > 1:
        raise InputError(
            f"{source}: modalities have different row counts ({', '.join(f'{k}={v}' for k, v in counts.items())}): "
            "every modality needs one row per example, in the same order"
        )
    n = next(iter(counts.values()))
    emb = np.zeros((n, m, dim), dtype=np.float32)
    present = np.zeros((n, m), dtype=bool)
    for w in wanted:
        i = MODALITIES.index(w)
        arr = np.asarray(data[keys[w]])
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise InputError(f"{source}: {w} has shape {arr.shape}: expected [N, {dim}]")
        emb[:, i] = arr
        present[:, i] = True
    if "present" in keys or "mask" in keys:
        p = np.asarray(data[keys.get("present", keys.get("mask"))]).astype(bool)
        if p.shape != (n, m):
            raise InputError(f"{source}: present has shape {p.shape}: expected [{n}, {m}] bool")
        present &= p
    for w in wanted:
        k = keys.get(f"present_{w}")
        if k is not None:
            p = np.asarray(data[k]).astype(bool).reshape(-1)
            if p.shape[0] != n:
                raise InputError(f"{source}: present_{w} has {p.shape[0]} rows, the embeddings {n}")
            present[:, MODALITIES.index(w)] &= p
    return emb, present


def _canonical(key: str) -> str:
    k = str(key).strip().lower()
    if k.startswith("present_"):
        return "present_" + _canonical(k[len("present_") :])
    try:
        return MODALITIES[modality_index(k)]
    except Exception:  # noqa: BLE001 - not a modality name: keep it as it is
        return k


def _finish(
    emb: np.ndarray, present: np.ndarray | None, m: int, dim: int, on_nan: str, normalize: bool, source: str
) -> EmbeddingSet:
    if emb.ndim != 3 or emb.shape[1] != m or emb.shape[2] != dim:
        raise InputError(f"{source}: embeddings have shape {emb.shape}: expected [N, {m}, {dim}]")
    if not np.issubdtype(emb.dtype, np.floating):
        raise InputError(f"{source}: embeddings have dtype {emb.dtype}: pass floating-point values")
    n = emb.shape[0]
    if n == 0:
        raise InputError(f"{source} holds no rows")
    emb = np.array(emb, dtype=np.float32, copy=True)
    present = np.ones((n, m), dtype=bool) if present is None else present.astype(bool).copy()
    if present.shape != (n, m):
        raise InputError(f"{source}: presence mask has shape {present.shape}: expected [{n}, {m}]")
    bad = ~np.isfinite(emb).all(axis=2) & present
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        if on_nan == "error":
            mods = [MODALITIES[i] for i in np.flatnonzero(bad.any(axis=0))]
            raise InputError(
                f"{source}: NaN or inf in {', '.join(mods)} at rows {_fmt(rows)}: drop those rows, mark them "
                "missing in the presence mask, or set data.on_nan=absent"
            )
        log.warning("%s: %d rows hold NaN/inf; those entries are treated as missing", source, len(rows))
        present &= ~bad
    emb[~present] = 0.0
    norms = np.linalg.norm(emb, axis=2)
    zero = (norms == 0) & present
    if zero.any():  # an all-zero vector cannot be an encoder output: it marks a missing entry
        log.info("%s: %d all-zero embeddings treated as missing", source, int(zero.sum()))
        present &= ~zero
    empty = np.flatnonzero(~present.any(axis=1))
    if len(empty):
        raise InputError(f"{source}: rows {_fmt(empty)} have no modality at all: drop them")
    if normalize:
        emb /= np.where(present, norms, 1.0)[..., None]
    return EmbeddingSet(torch.from_numpy(emb), torch.from_numpy(present), MODALITIES[:m])


def _fmt(rows: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return f"[{shown}{', ...' if len(rows) > limit else ''}] ({len(rows)} in all)"


# ---------------------------------------------------------------------- files
def read_embedding_file(path: str | Path) -> dict[str, Any] | np.ndarray:
    """Read a ``.npy`` (dict or array), ``.npz``, ``.parquet`` or Zarr folder into a dict or array."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"data file {str(p)!r} does not exist: pass a .npy/.npz/.parquet file or a .zarr folder")
    name = p.name.lower()
    try:
        if name.endswith(".npy"):
            return _read_npy(p)
        if name.endswith(".npz"):
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if name.endswith(".parquet") or name.endswith(".pq"):
            return _read_parquet(p)
        if name.endswith(".zarr") or (p.is_dir() and ((p / "zarr.json").exists() or (p / ".zgroup").exists())):
            import zarr

            g = zarr.open_group(str(p), mode="r")
            return {k: np.asarray(g[k][...]) for k in g.array_keys()}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - many readers, one clear message
        raise InputError(f"cannot read {str(p)!r} ({type(exc).__name__}: {str(exc)[:160]})") from None
    raise InputError(f"data file {str(p)!r} has an unknown format: use .npy, .npz, .parquet or a .zarr folder")


_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise InputError(
            f"the .npy pickle refers to {module}.{name}, which is not a numpy array: refusing to run it. "
            "Re-save the data as .npz (np.savez) or Parquet"
        )


def _read_npy(p: Path) -> dict[str, Any] | np.ndarray:
    with open(p, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(f)
        if dtype.hasobject:
            obj = _NumpyOnlyUnpickler(f).load()
            if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
                obj = obj.item()
            if not isinstance(obj, (dict, np.ndarray)):
                raise InputError(f"{str(p)!r} holds a {type(obj).__name__}: expected a dict of modality arrays")
            return obj
    return np.load(p, allow_pickle=False, mmap_mode="r")


def _read_parquet(p: Path) -> dict[str, Any]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(p)
    out: dict[str, Any] = {}
    n = table.num_rows
    for col in table.column_names:
        arr = table.column(col).combine_chunks()
        key = _canonical(col)
        if key in MODALITIES:
            valid = np.asarray(arr.is_valid())
            dense = np.zeros((n, EMBED_DIM), dtype=np.float32)
            if valid.any():
                kept = arr.filter(valid)
                lengths = np.asarray(pc.list_value_length(kept))
                if (lengths != EMBED_DIM).any():
                    raise InputError(
                        f"{str(p)!r}: column {col!r} holds lists of length {int(lengths[lengths != EMBED_DIM][0])}: "
                        f"every embedding must have {EMBED_DIM} values"
                    )
                flat = np.asarray(pc.list_flatten(kept).to_numpy(zero_copy_only=False), dtype=np.float32)
                dense[valid] = flat.reshape(-1, EMBED_DIM)
            out[col] = dense
            out[f"present_{key}"] = out.get(f"present_{key}", np.ones(n, bool)) & valid
        elif key.startswith("present_"):
            p_col = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)
            out[key] = out.get(key, np.ones(n, bool)) & p_col
    return out


# ---------------------------------------------------------------------- splitting and batching
def split_train_val(data: EmbeddingSet, val_fraction: float, seed: int) -> tuple[EmbeddingSet, EmbeddingSet]:
    """Seeded random split into (train, validation); validation has ``ceil(N · val_fraction)`` rows."""
    n = len(data)
    n_val = int(np.ceil(n * val_fraction))
    if val_fraction > 0 and (n_val < 2 or n - n_val < 2):
        raise InputError(
            f"{n} rows cannot be split with val_fraction={val_fraction}: each part needs at least 2 rows"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    return data.subset(perm[n_val:].sort().values), data.subset(perm[:n_val].sort().values)


class BatchLoader:
    """Shuffled in-memory batches of (embeddings [B, M, D], present [B, M]); drops the last partial batch.

    The order comes from the ``generator`` passed to :meth:`epoch`, so a resumed run replays it exactly.
    """

    def __init__(self, data: EmbeddingSet, batch_size: int, *, device: str | torch.device = "cpu") -> None:
        if batch_size > len(data):
            raise InputError(
                f"batch size {batch_size} is larger than the {len(data)} training rows: "
                f"set train.batch_size to at most {len(data)}"
            )
        self.data = data
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._emb = data.embeddings.to(self.device)
        self._present = data.present.to(self.device)

    def __len__(self) -> int:
        return len(self.data) // self.batch_size

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (embeddings, present, present on the CPU) for each batch of one epoch, in a random order
        drawn from ``generator`` (the CPU copy feeds the masking strategy without a device sync)."""
        perm = torch.randperm(len(self.data), generator=generator)
        perm_dev = perm.to(self.device, non_blocking=True)
        for k in range(len(self)):
            sl = slice(k * self.batch_size, (k + 1) * self.batch_size)
            idx = perm_dev[sl]
            yield self._emb[idx], self._present[idx], self.data.present[perm[sl]]


def concat_sets(sets: Sequence[EmbeddingSet]) -> EmbeddingSet:
    """Rows of several sets, one after the other (they must share modalities and width)."""
    if len(sets) == 1:
        return sets[0]
    return EmbeddingSet(
        torch.cat([s.embeddings for s in sets]), torch.cat([s.present for s in sets]), sets[0].names
    )


class SourceMixLoader:
    """The published loader for several sources (mvrl/proM3E ``ProM3EDataset.__getitem__``).

    Every batch comes from ONE source, picked with equal probability (``torch.rand(1) < 0.5`` between the
    all-paired TaxaBind set and the iNat set there), and its rows are drawn from that source without
    replacement (``np.random.choice(n, batch_size, replace=False)``); batches are independent of each other.
    An epoch has (Σ rows) // batch_size batches (``__len__`` there). Same interface as :class:`BatchLoader`.
    """

    def __init__(
        self, sources: Sequence[EmbeddingSet], batch_size: int, *, device: str | torch.device = "cpu"
    ) -> None:
        small = [len(s) for s in sources if len(s) < batch_size]
        if small:
            raise InputError(
                f"batch size {batch_size} is larger than a source's {min(small)} training rows: every batch is "
                f"drawn from one source, so set train.batch_size to at most {min(small)}"
            )
        self.sources = list(sources)
        self.data = concat_sets(self.sources)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._emb = [s.embeddings.to(self.device) for s in self.sources]
        self._present = [s.present.to(self.device) for s in self.sources]

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources) // self.batch_size

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (embeddings, present, present on the CPU) for each batch of one epoch."""
        for _ in range(len(self)):
            k = int(torch.randint(len(self.sources), (1,), generator=generator))
            idx = torch.randperm(len(self.sources[k]), generator=generator)[: self.batch_size]
            idx_dev = idx.to(self.device, non_blocking=True)
            yield self._emb[k][idx_dev], self._present[k][idx_dev], self.sources[k].present[idx]
